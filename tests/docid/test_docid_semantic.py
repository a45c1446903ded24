"""Semantic docids: hierarchical k-means invariants, degenerate inputs, add, files."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from docid import DocidMap, fit_docids
from docid.base import DOCIDS_FILE, VOCAB_FILE
from docid.semantic import TREE_FILE, SemanticDocidMap, hierarchical_kmeans


def blobs(n: int, dim: int = 16, centers: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, dim)) * 4
    return (means[rng.integers(0, centers, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def ids(n: int) -> list[str]:
    return [f"d{i}" for i in range(n)]


def fit(x: np.ndarray, **options) -> SemanticDocidMap:
    m = fit_docids("semantic", ids(len(x)), None, embeddings=x, **options)
    assert isinstance(m, SemanticDocidMap)
    return m


def check_invariants(m: SemanticDocidMap, k: int, c: int) -> None:
    """Unique docids, leaves of at most c docs at positions 0..size-1, at most k children."""
    assert len(set(m.sequences)) == len(m)
    leaves: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for doc_id in m.doc_ids:
        values = m.values(doc_id)
        leaves[values[:-1]].append(values[-1])
    for positions in leaves.values():
        assert sorted(positions) == list(range(len(positions)))
        assert len(positions) <= c
    for node, kids in enumerate(m.tree.children):
        assert len(kids) <= k
        assert sorted(m.tree.value[kids].tolist()) == list(range(len(kids)))
        if len(kids) == 0:
            assert m.tree.paths[node] in leaves  # no empty leaves
    for seq in m.sequences:  # position symbols name their depth
        assert [m.symbols[i] for i in seq] == [
            f"<d{t}_{v}>" for t, v in enumerate(m.values(m.lookup(seq)))
        ]


def test_leaves_at_most_c_and_branching_at_most_k() -> None:
    m = fit(blobs(3000), k=4, c=20)
    check_invariants(m, k=4, c=20)
    assert m.max_sequence_length >= 3
    assert len(m.symbols) == m.max_sequence_length * 20  # depths x max(k, c)


def test_fit_is_deterministic() -> None:
    x = blobs(1500)
    a, b = fit(x, k=5, c=30), fit(x, k=5, c=30)
    assert a.sequences == b.sequences
    np.testing.assert_array_equal(a.tree.centroids, b.tree.centroids)


def test_shared_symbols_spell_the_same_value_paths() -> None:
    x = blobs(800)
    pos = fit(x, k=4, c=25)
    shared = fit(x, k=4, c=25, position_tokens=False)
    assert shared.symbols == [f"<c{v}>" for v in range(25)]
    assert len(set(shared.sequences)) == len(shared)
    assert all(pos.values(d) == shared.values(d) for d in pos.doc_ids)
    assert all(shared.symbol_names(d) == [f"<c{v}>" for v in shared.values(d)] for d in ids(800))


def test_separated_blobs_share_their_first_cluster() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 40)
    x = (np.eye(4, 8)[labels] * 100 + rng.normal(size=(160, 8))).astype(np.float32)
    m = fit(x, k=4, c=50)
    first = [m.values(d)[0] for d in m.doc_ids]
    for blob in range(4):
        assert len({f for f, lab in zip(first, labels, strict=True) if lab == blob}) == 1
    assert len(set(first)) == 4


@pytest.mark.parametrize(
    ("n", "k", "c"),
    [(1, 10, 100), (3, 10, 1), (7, 2, 1), (50, 10, 100), (101, 10, 100), (250, 3, 2)],
)
def test_small_corpora(n: int, k: int, c: int) -> None:
    m = fit(blobs(n, dim=4), k=k, c=c)
    check_invariants(m, k=k, c=c)
    if n <= c:  # the root is the only leaf: the docid is the position
        assert m.sequences == [(i,) for i in range(n)]


def test_identical_embeddings_are_split_evenly() -> None:
    x = np.ones((1000, 8), dtype=np.float32)
    m = fit(x, k=3, c=10)
    check_invariants(m, k=3, c=10)


def test_partly_duplicated_embeddings() -> None:
    x = np.concatenate([np.zeros((500, 6)), blobs(40, dim=6), np.ones((300, 6))]).astype(np.float32)
    m = fit(x, k=4, c=16)
    check_invariants(m, k=4, c=16)


def test_bad_embeddings_and_options() -> None:
    with pytest.raises(ValueError, match="finite"):
        fit(np.full((5, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="got 4 embeddings for 5 documents"):
        fit_docids("semantic", ids(5), None, embeddings=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="k >= 2"):
        fit(blobs(5), k=1)
    with pytest.raises(ValueError, match="texts or their embeddings"):
        fit_docids("semantic", ids(5), None)


# --- add -------------------------------------------------------------------------------------


def test_add_follows_the_nearest_centroid_path() -> None:
    x = blobs(2000, seed=1)
    m = fit(x, k=5, c=40)
    old = list(m.sequences)
    before = Counter(m.values(d)[:-1] for d in m.doc_ids)
    picks = [3, 500, 1999]
    new = m.add(["n0", "n1", "n2"], embeddings=x[picks])
    assert m.sequences[:2000] == old
    for doc_id, pick in zip(["n0", "n1", "n2"], picks, strict=True):
        leaf = m.values(f"d{pick}")[:-1]
        assert m.values(doc_id) == (
            *leaf,
            before[leaf],
        )  # same leaf, next free position
    assert len(set(m.sequences)) == len(m) == 2003
    assert [m.lookup(s) for s in new] == ["n0", "n1", "n2"]


def test_full_leaf_overflows_with_appended_symbols(tmp_path: Path) -> None:
    x = blobs(60, dim=4)
    m = fit(x, k=2, c=5)
    old_seqs, old_symbols = list(m.sequences), list(m.symbols)
    leaf = m.values("d0")[:-1]
    new_ids = [f"n{i}" for i in range(12)]
    m.add(new_ids, embeddings=np.repeat(x[:1], 12, axis=0))
    assert m.sequences[:60] == old_seqs and m.symbols[: len(old_symbols)] == old_symbols
    size = sum(1 for d in ids(60) if m.values(d)[:-1] == leaf)
    assert [m.values(d) for d in new_ids] == [(*leaf, size + i) for i in range(12)]
    assert m.symbols[len(old_symbols) :] == [f"<d{len(leaf)}_{v}>" for v in range(5, size + 12)]
    assert len(set(m.sequences)) == len(m)
    # Occupancy is rebuilt from the files: a reloaded map continues where this one stopped.
    m.save(tmp_path)
    again = DocidMap.load(tmp_path)
    assert isinstance(again, SemanticDocidMap)
    assert again.add(["late"], embeddings=x[:1]) == m.add(["late"], embeddings=x[:1])
    assert again.values("late") == (*leaf, size + 12)


def test_add_with_shared_symbols() -> None:
    x = blobs(40, dim=4)
    m = fit(x, k=2, c=4, position_tokens=False)
    m.add([f"n{i}" for i in range(6)], embeddings=np.repeat(x[:1], 6, axis=0))
    assert m.symbols[4:] == [f"<c{v}>" for v in range(4, len(m.symbols))]
    assert len(set(m.sequences)) == len(m)


def test_add_needs_embeddings_for_precomputed_maps() -> None:
    m = fit(blobs(30, dim=4), k=2, c=5)
    assert m.embedder == "precomputed"
    with pytest.raises(ValueError, match="pass embeddings= or a callable embedder="):
        m.add(["n"], ["some text"])
    with pytest.raises(ValueError, match="3 dimensions but the tree has 4"):
        m.add(["n"], embeddings=np.zeros((1, 3)))
    assert len(m) == 30  # a failed add changes nothing
    m.add(["n"], ["text"], embedder=lambda texts: np.zeros((len(texts), 4)))
    assert "n" in m


TEXTS = [
    f"{topic} {word} report number {i}"
    for i, (topic, word) in enumerate(
        (t, w)
        for t in ("protein folding", "stock market", "football match", "rain forecast")
        for w in ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta")
    )
]


def test_tfidf_embedder_is_saved_for_later_adds(tmp_path: Path) -> None:
    m = fit_docids("semantic", ids(len(TEXTS)), TEXTS, embedder="tfidf", k=3, c=4, dims=8)
    assert m.embedder == "tfidf"
    check_invariants(m, k=3, c=4)
    names = m.save(tmp_path)
    assert {"docid_tfidf.json", "docid_tfidf.safetensors", TREE_FILE} <= set(names)
    loaded = DocidMap.load(tmp_path)
    new_texts = ["stock market report alpha", "rain forecast omega report"]
    assert loaded.add(["n0", "n1"], new_texts) == m.add(["n0", "n1"], new_texts)


def test_callable_embedder_is_recorded_as_custom() -> None:
    m = fit_docids(
        "semantic",
        ids(20),
        TEXTS[:20],
        embedder=lambda t: blobs(len(t), dim=4),
        k=2,
        c=5,
    )
    assert m.embedder == "custom"
    check_invariants(m, k=2, c=5)


def test_hierarchical_kmeans_returns_leaf_and_position() -> None:
    tree, leaf, pos = hierarchical_kmeans(blobs(500), k=4, c=30)
    assert all(tree.is_leaf(int(n)) for n in np.unique(leaf))
    assert len({(int(a), int(b)) for a, b in zip(leaf, pos, strict=True)}) == 500
    np.testing.assert_array_equal(tree.route(blobs(500)), leaf)  # training docs route home


# --- damaged files ---------------------------------------------------------------------------


def saved(tmp_path: Path) -> Path:
    fit(blobs(200, dim=4), k=3, c=10).save(tmp_path)
    return tmp_path


def test_load_rejects_corrupt_tree(tmp_path: Path) -> None:
    d = saved(tmp_path)
    (d / TREE_FILE).write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ValueError, match=r"docid_tree\.safetensors is not a valid safetensors"):
        DocidMap.load(d)
    (d / TREE_FILE).unlink()
    with pytest.raises(ValueError, match=r"docid_tree\.safetensors does not exist"):
        DocidMap.load(d)


def test_load_rejects_tree_with_bad_structure(tmp_path: Path) -> None:
    from safetensors.numpy import load, save

    d = saved(tmp_path)
    tensors = load((d / TREE_FILE).read_bytes())
    tensors["parent"][3] = 7  # a node pointing at a later node
    (d / TREE_FILE).write_bytes(save(tensors, metadata={"format_version": "1"}))
    with pytest.raises(ValueError, match=r"docid_tree\.safetensors: every tree node must come"):
        DocidMap.load(d)


def test_load_rejects_docid_outside_the_tree(tmp_path: Path) -> None:
    d = saved(tmp_path)
    symbols = json.loads((d / VOCAB_FILE).read_text())["symbols"]
    seq = [
        symbols.index("<d0_9>"),
        symbols.index("<d1_9>"),
    ]  # the root has only 3 children
    lines = (d / DOCIDS_FILE).read_text().splitlines()
    lines[0] = json.dumps({"doc_id": "d0", "docid": seq})
    (d / DOCIDS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"docids\.jsonl line 1: docid \[9, 19\] does not end"):
        DocidMap.load(d)


def test_load_rejects_symbol_at_the_wrong_depth(tmp_path: Path) -> None:
    d = saved(tmp_path)
    lines = (d / DOCIDS_FILE).read_text().splitlines()
    record = json.loads(lines[4])
    record["docid"][0] += 10  # <d0_v> -> <d1_v>: width is max(k, c) = 10
    lines[4] = json.dumps(record)
    (d / DOCIDS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"docids\.jsonl line 5: .* symbol at the wrong depth"):
        DocidMap.load(d)


def test_load_rejects_foreign_symbols(tmp_path: Path) -> None:
    d = saved(tmp_path)
    vocab = json.loads((d / VOCAB_FILE).read_text())
    vocab["symbols"][0] = "<doc_0>"
    (d / VOCAB_FILE).write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match=r"docid_vocab\.json: symbol '<doc_0>' is not a semantic"):
        DocidMap.load(d)
