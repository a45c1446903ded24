"""Continual indexing: GenerativeIndex.add, replay, SAM, the query generator and `dsi add`."""

from __future__ import annotations

import json
import random

import pytest
import torch

from dsi.config import AddConfig, TrainConfig
from dsi.examples import ExampleSet, count_tasks, mix_examples
from dsi.index import GenerativeIndex, TrainingQueries
from dsi.index_format import TRAINING_QUERIES_FILE
from dsi.pseudo_queries import QueryGenerator
from dsi.retriever import Retriever
from dsi.sam import SAM
from dsi.train import train
from tests.conftest import random_corpus, tiny_config
from tests.dsi.test_cli import TINY, dsi, kill_after_checkpoint, write_corpus


def _split(seed: int = 0, old: int = 12, new: int = 6):
    full = random_corpus(random.Random(seed), old + new)
    return full.subset(full.doc_ids[:old]), full.subset(full.doc_ids[old:])


def _config(scheme: str, steps: int = 40):
    config = tiny_config(scheme, steps=steps)
    config.train.learning_rate = 1e-2
    # Its generator is as small as the index's model (config.generator).
    return config


def _queries(corpus, prefix: str) -> TrainingQueries:
    """One training query per document: its first three words."""
    queries = {f"{prefix}{i}": " ".join(t.split()[:3]) for i, t in enumerate(corpus.texts)}
    qrels = {f"{prefix}{i}": {d: 1} for i, d in enumerate(corpus.doc_ids)}
    return TrainingQueries(queries, qrels)


@pytest.mark.parametrize("scheme", ["atomic", "naive", "semantic"])
def test_added_documents_are_retrievable_and_old_docids_stay(tmp_path, scheme):
    old, new = _split()
    index = GenerativeIndex.build(old, _config(scheme), progress_bar=False)
    before = {d: index.docids.sequence(d) for d in old.doc_ids}
    symbols_before = list(index.docids.symbols)

    entry = index.add(
        new,
        config=AddConfig(replay="documents", max_steps=150, train={"warmup_steps": 2}),
        progress_bar=False,
    )

    assert {d: index.docids.sequence(d) for d in old.doc_ids} == before
    assert index.docids.symbols[: len(symbols_before)] == symbols_before
    assert index.model.config.vocab_size >= index.docid_offset + len(index.docids.symbols)
    assert len(index.trie) == len(index.corpus) == 18
    hits = Retriever(index, device="cpu").search(new.full_texts(), k=1)
    assert [h[0].doc_id for h in hits] == new.doc_ids
    assert entry["event"] == "add" and entry["order"] == 1 and entry["documents"] == 6
    assert entry["optimizer_updates"] == entry["training"]["steps"] == 150
    assert entry["replay"]["pool"]["replay-index"] >= 12

    index.save(tmp_path / "idx")
    loaded = GenerativeIndex.load(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert [e["event"] for e in manifest["lineage"]] == ["build", "add"]
    assert manifest["lineage"][1]["settings"]["replay"] == "documents"
    assert loaded.docids.doc_ids == old.doc_ids + new.doc_ids
    again = Retriever(loaded, device="cpu").search(new.full_texts(), k=1)
    assert [h[0].doc_id for h in again] == new.doc_ids


def test_colliding_ids_are_rejected_and_index_is_unchanged():
    old, new = _split()
    index = GenerativeIndex.build(old, _config("atomic", steps=2), progress_bar=False)
    from dsi.data import Corpus

    clash = Corpus.concat([new.subset(new.doc_ids[:1]), old.subset(old.doc_ids[3:5])])
    with pytest.raises(ValueError, match=f"'{old.doc_ids[3]}' is already in the index"):
        index.add(clash, config=AddConfig(max_steps=2), progress_bar=False)
    assert len(index.docids) == len(index.trie) == len(index.corpus) == 12
    assert len(index.lineage) == 1


def test_training_queries_are_kept_and_replayed(tmp_path):
    old, new = _split()
    index = GenerativeIndex.build(
        old, _config("semantic", steps=4), _queries(old, "q"), progress_bar=False
    )
    assert len(index.training_pairs) == 12
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / TRAINING_QUERIES_FILE).is_file()
    loaded = GenerativeIndex.load(tmp_path / "idx")
    assert loaded.training_pairs == index.training_pairs

    entry = loaded.add(
        new, _queries(new, "n"), AddConfig(replay="queries", max_steps=4), progress_bar=False
    )
    assert entry["replay"]["pool"] == {"replay-query": 12}
    assert entry["examples"]["retrieve"] == 6 * 2  # query_repeats
    assert len(loaded.training_pairs) == 18

    # An index without training queries loads with none, and cannot replay them.
    bare = GenerativeIndex.build(old, _config("atomic", steps=2), progress_bar=False)
    bare.save(tmp_path / "bare")
    assert not (tmp_path / "bare" / TRAINING_QUERIES_FILE).exists()
    bare = GenerativeIndex.load(tmp_path / "bare")
    assert bare.training_pairs == []
    with pytest.raises(ValueError, match="Replay of training queries"):
        bare.add(new, config=AddConfig(replay="queries", max_steps=2), progress_bar=False)


def test_generative_replay_trains_a_generator_when_the_index_has_none(tmp_path):
    old, new = _split()
    index = GenerativeIndex.build(old, _config("semantic", steps=4), progress_bar=False)
    assert index.query_generator is None
    entry = index.add(
        new,
        config=AddConfig(replay="generative", generated_per_doc=2, max_steps=6, sam=True),
        progress_bar=False,
    )
    assert entry["replay"]["generator_trained"] is True
    assert entry["replay"]["pool"] == {"replay-generated": 24}
    assert entry["training"]["forward_backward_passes"] == 2 * entry["optimizer_updates"] == 12
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "query_generator" / "model.safetensors").is_file()
    assert GenerativeIndex.load(tmp_path / "idx").query_generator is not None


def test_build_with_pseudo_queries_keeps_its_generator():
    old, _ = _split()
    config = _config("atomic", steps=4)
    config.pseudo_queries = 2
    index = GenerativeIndex.build(old, config, progress_bar=False)
    assert index.lineage[0]["examples"]["pseudo"] == 24
    assert index.query_generator is not None


def test_query_generator_round_trip(tmp_path):
    old, _ = _split()
    index = GenerativeIndex.build(old, _config("atomic", steps=2), progress_bar=False)
    texts = old.full_texts()
    pairs = [(i, " ".join(t.split()[:3])) for i, t in enumerate(texts)]
    generator = QueryGenerator.fit(
        index.tokenizer, texts, pairs, index.config.generator, progress_bar=False
    )
    first = generator.generate(texts[:4], 3, seed=7)
    assert all(len(qs) == 3 == len(set(qs)) and all(qs) for qs in first)
    generator.save(tmp_path / "gen")
    loaded = QueryGenerator.load(tmp_path / "gen", index.tokenizer)
    assert loaded.config == generator.config
    assert loaded.generate(texts[:4], 3, seed=7) == first
    for a, b in zip(loaded.model.parameters(), generator.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sam_step_reduces_loss_on_a_toy_problem():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]) + 0.1
    model = torch.nn.Linear(5, 1)
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.05), rho=0.05)

    def closure():
        loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
        loss.backward()
        return loss

    with torch.no_grad():
        start = torch.nn.functional.mse_loss(model(x).squeeze(-1), y).item()
    weights = model.weight.detach().clone()
    closure()
    sam.first_step()
    assert not torch.equal(model.weight, weights)  # perturbed towards the ascent direction
    closure()
    sam.restore()
    assert torch.allclose(model.weight, weights)  # and put back exactly before the update
    sam.optimizer.step()
    sam.zero_grad()
    losses = [sam.step(closure).item() for _ in range(30)]
    assert losses[0] < start and losses[-1] < 0.5 * start
    assert losses == sorted(losses, reverse=True)


def test_train_with_sam_counts_two_passes_per_update():
    old, _ = _split()
    index = GenerativeIndex.build(old, _config("atomic", steps=2), progress_bar=False)
    from dsi.examples import ExampleSet

    examples = ExampleSet([[5, 6, 1], [7, 8, 1]], [[index.docid_offset, 1]] * 2, ["index"] * 2)
    config = TrainConfig(max_steps=3, max_minutes=None, batch_size=2, sam=True, sam_rho=0.1)
    stats = train(index.model, examples, config, progress_bar=False)
    assert stats.optimizer_updates == 3 and stats.forward_backward_passes == 6


@pytest.mark.slow
def test_sigkill_during_dsi_add_keeps_old_index_and_resumes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", n_docs=12)
    extra = tmp_path / "new.jsonl"
    rows = [json.loads(line) for line in write_corpus(tmp_path / "all.jsonl", 18).open()]
    extra.write_text("".join(json.dumps({**r, "_id": f"n{r['_id']}"}) + "\n" for r in rows[12:]))
    out = tmp_path / "idx"
    dsi("index", "--corpus", str(corpus), "--output", str(out), "--max-steps", "3", *TINY)
    queries = ["river stone", "amber birch", "quartz"]
    before = Retriever.load(out, device="cpu").search(queries, k=4)
    manifest_before = (out / "manifest.json").read_text()

    args = ["add", "--index", str(out), "--corpus", str(extra)]
    args += ["--set", "train.checkpoint_minutes=0.01", "--set", "train.warmup_steps=2"]
    state = tmp_path / ".idx.add.work" / "checkpoint" / "state.json"
    kill_after_checkpoint([*args, "--max-steps", "100000"], state)

    assert (out / "manifest.json").read_text() == manifest_before
    after = Retriever.load(out, device="cpu").search(queries, k=4)
    assert [[(h.doc_id, round(h.score, 5)) for h in hits] for hits in after] == [
        [(h.doc_id, round(h.score, 5)) for h in hits] for hits in before
    ]

    step = json.loads(state.read_text())["position"]["step"]
    assert step > 0
    resumed = dsi(*args, "--max-steps", str(step + 3))
    assert f"Resuming training from step {step}" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["added"] == 6 and summary["documents"] == 18
    assert summary["training"]["steps"] == step + 3
    assert not (tmp_path / ".idx.add.work").exists()
    lineage = json.loads((out / "manifest.json").read_text())["lineage"]
    assert [e["event"] for e in lineage] == ["build", "add"]
    assert lineage[1]["corpus"].endswith("new.jsonl")

    clash = dsi("add", "--index", str(out), "--corpus", str(extra), check=False)
    assert clash.returncode == 2 and "'nd12' is already in the index" in clash.stderr


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_mix_examples_follows_the_share(share):
    generated = ExampleSet([[1]] * 40, [[2]] * 40, ["replay-generated"] * 40)
    real = ExampleSet([[3]] * 7, [[4]] * 7, ["replay-query"] * 7)
    pool = mix_examples(generated, real, share)
    counts = count_tasks(pool)
    got = counts.get("replay-query", 0) / len(pool)
    assert abs(got - share) < 0.1
    # Nothing is lost: every example of a set that is in the mix is in the pool.
    assert counts.get("replay-query", 0) % 7 == 0
    assert counts.get("replay-generated", 0) in ((0, 40, 80) if share < 1 else (0,))
    # ...and the pool reads them in place: its lengths and pairs are the sets' own.
    assert len(pool.lengths()) == len(pool) == sum(counts.values())
    last = tuple(pool.pairs([len(pool) - 1])[0])
    assert last == (([1], [2]) if share == 0.0 else ([3], [4]))
    assert mix_examples(generated, ExampleSet([], [], []), 0.5) is generated
