"""Build -> search -> save -> load -> search on tiny random corpora, for every docid scheme."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsi.index import GenerativeIndex
from dsi.index_format import IndexLoadError
from dsi.retriever import Retriever
from tests.conftest import random_corpus, tiny_config

SCHEMES = ["atomic", "naive", "semantic"]


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), n_docs=st.integers(2, 14))
def test_search_returns_corpus_docs_and_survives_save_load(tmp_path_factory, scheme, seed, n_docs):
    rng = random.Random(seed)
    corpus = random_corpus(rng, n_docs, id_style="plain" if scheme != "naive" else "odd")
    index = GenerativeIndex.build(corpus, tiny_config(scheme, steps=4), progress_bar=False)
    queries = [corpus.texts[i] for i in range(len(corpus.doc_ids))] + [
        "\u2207\u2207",
        "unrelated words",
    ]
    k = rng.randint(1, n_docs + 3)
    before = Retriever(index, device="cpu").search(queries, k=k, batch_size=4)
    known = set(corpus.doc_ids)
    for hits in before:
        assert 1 <= len(hits) <= min(k, n_docs)
        assert {h.doc_id for h in hits} <= known
        assert len({h.doc_id for h in hits}) == len(hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    directory = tmp_path_factory.mktemp("index") / "idx"
    index.save(directory)
    after = Retriever.load(directory, device="cpu").search(queries, k=k, batch_size=4)
    assert [[h.doc_id for h in hits] for hits in after] == [
        [h.doc_id for h in hits] for hits in before
    ]
    for a, b in zip(after, before, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


@pytest.fixture(scope="module")
def saved_index(tmp_path_factory):
    corpus = random_corpus(random.Random(3), 8)
    directory = tmp_path_factory.mktemp("saved") / "idx"
    GenerativeIndex.build(corpus, tiny_config("atomic", steps=2), progress_bar=False).save(
        directory
    )
    return directory


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_wrong_format_version_is_refused(saved_index, tmp_path):
    directory = _copy(saved_index, tmp_path / "idx")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format_version"] = 99
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="format version 99.*reads only format version 2"):
        GenerativeIndex.load(directory)


def test_an_index_of_format_version_1_is_refused_with_how_to_rebuild_it(
    saved_index, tmp_path, capsys
):
    """Format 1 kept its settings in config.json (and more of them): it is refused, not read."""
    from dsi.cli import main
    from dsi.index_format import FORMAT_VERSION, write_manifest
    from dsi.kinds import load_index

    assert FORMAT_VERSION == 2
    directory = _copy(saved_index, tmp_path / "old")
    (directory / "index.json").rename(directory / "config.json")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["checksums"]["config.json"] = manifest["checksums"].pop("index.json")
    write_manifest(directory / "manifest.json", manifest)
    sentence = (
        f"Index {directory} has format version 1, but dsi .* reads only format version 2; "
        f"rebuild it with `dsi index --corpus {directory / 'documents.jsonl'} --output NEW_DIR` "
        "\\(with the training queries it was built with, if any\\)\\.$"
    )
    for load in (GenerativeIndex.load, load_index):
        with pytest.raises(IndexLoadError, match=sentence):
            load(directory)
    for command in (["info", str(directory)], ["search", "--index", str(directory), "river"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "format version 1" in err and "dsi index" in err


def test_corrupted_file_fails_its_checksum(saved_index, tmp_path):
    directory = _copy(saved_index, tmp_path / "idx")
    weights = directory / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match="model.safetensors does not match its checksum"):
        GenerativeIndex.load(directory)


def test_missing_and_truncated_files_are_named(saved_index, tmp_path):
    directory = _copy(saved_index, tmp_path / "a")
    (directory / "trie.marisa").unlink()
    with pytest.raises(IndexLoadError, match="missing its file trie.marisa"):
        GenerativeIndex.load(directory)
    directory = _copy(saved_index, tmp_path / "b")
    docids = directory / "docids.jsonl"
    docids.write_bytes(docids.read_bytes()[:10])
    with pytest.raises(IndexLoadError, match="docids.jsonl does not match its checksum"):
        GenerativeIndex.load(directory)
    with pytest.raises(IndexLoadError, match="no index directory"):
        GenerativeIndex.load(tmp_path / "nowhere")


def test_save_replaces_an_existing_index_completely(saved_index, tmp_path):
    directory = _copy(saved_index, tmp_path / "idx")
    corpus = random_corpus(random.Random(5), 5)
    GenerativeIndex.build(corpus, tiny_config("atomic", steps=1), progress_bar=False).save(
        directory
    )
    loaded = GenerativeIndex.load(directory)
    assert loaded.docids.doc_ids == corpus.doc_ids
    assert not list(tmp_path.glob(".idx*")), "no staging or backup folder is left behind"


def test_search_rejects_bad_arguments(saved_index):
    retriever = Retriever.load(saved_index, device="cpu")
    with pytest.raises(TypeError, match="list of queries"):
        retriever.search("a single string", k=3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        retriever.search(["q"], k=0)
    # A blank query has nothing to search for: refused rather than answered by nothing.
    with pytest.raises(ValueError, match="Query 1 is empty; give something to search for"):
        retriever.search(["q", ""], k=3)
    with pytest.raises(ValueError, match="Query 0 is only whitespace"):
        retriever.search([" \t\n\u3000"], k=3)


def test_one_beam_decodes_greedily_with_the_same_scores_as_beam_search(saved_index):
    retriever = Retriever.load(saved_index, device="cpu")
    queries = ["river stone", "amber birch quartz", "\u2207\u2207"]
    greedy = retriever.search(queries, k=1, num_beams=1)
    for hits in greedy:
        assert len(hits) == 1 and hits[0].doc_id in retriever.index.docids
    # Greedy picks the best token each step; its docid's score is the same log-probability
    # beam search gives that docid.
    beam = retriever.search(queries, k=8, num_beams=8)
    for (g,), ranked in zip(greedy, beam, strict=True):
        score = {h.doc_id: h.score for h in ranked}[g.doc_id]
        assert g.score == pytest.approx(score, abs=1e-4)


def test_config_updated_applies_dotted_settings_and_refuses_unknown_ones():
    from dsi.config import IndexConfig

    base = IndexConfig()
    changed = base.updated({"train.batch_size": 16, "docids": "semantic", "docid_options.k": 4})
    assert (changed.train.batch_size, changed.docids, changed.docid_options) == (
        16,
        "semantic",
        {"k": 4},
    )
    assert base.train.batch_size == IndexConfig().train.batch_size  # the original is untouched
    assert IndexConfig.from_dict(changed.to_dict()) == changed
    with pytest.raises(ValueError, match="'train.batch' is not a setting; the settings are"):
        base.updated({"train.batch": 16})
    with pytest.raises(ValueError, match="'docids.k' is not a setting"):
        base.updated({"docids.k": 3})
    # A setting of another identifier kind than the config's.
    with pytest.raises(ValueError, match="unknown atomic settings \\['k'\\]"):
        base.updated({"docids": "atomic", "docid_options.k": 4})
    with pytest.raises(ValueError, match="unknown settings \\['window_length'\\]"):
        IndexConfig.from_dict({"train": {"window_length": 12}})


def test_load_index_opens_either_kind(saved_index, tmp_path):
    from dsi.kinds import load_index
    from dsi.seal import NgramGenerativeIndex

    assert isinstance(load_index(saved_index), GenerativeIndex)
    corpus = random_corpus(random.Random(3), 5)
    NgramGenerativeIndex.build(corpus, tiny_config("ngram", steps=2), progress_bar=False).save(
        tmp_path / "ngram"
    )
    assert isinstance(load_index(tmp_path / "ngram"), NgramGenerativeIndex)
    with pytest.raises(IndexLoadError):
        load_index(tmp_path / "missing")


def test_lowercase_tokenizer_folds_case_and_keeps_it_when_saved(tmp_path):
    from dsi.model import load_tokenizer, train_tokenizer

    texts = [f"The Heart RATE of runner {i} rises with Exercise" for i in range(200)]
    folded = train_tokenizer(texts, 80, tmp_path / "spm", lowercase=True)
    assert folded.tokenize("The HEART rate") == folded.tokenize("the heart rate")
    folded.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert again("The HEART rate")["input_ids"] == folded("the heart rate")["input_ids"]
    cased = train_tokenizer(texts, 80, tmp_path / "cased")
    assert cased.tokenize("The HEART rate") != cased.tokenize("the heart rate")


def test_the_default_model_copies_and_folds_case_and_the_generator_is_a_plain_t5():
    from dsi.config import MODEL_SIZES, IndexConfig

    config = IndexConfig()
    assert config.model_config.lowercase and config.model_config.shape == MODEL_SIZES["small"]
    assert config.model_config.shape.copy_attention and config.model_config.shape.dropout_rate == 0
    generator = config.generator.model_config
    assert not generator.copy_attention and generator.dropout_rate == 0.1
    # The generator is a constant, not a setting saved with the index.
    assert "generator" not in config.to_dict()


def test_fixed_training_parameters_are_not_settings():
    from dsi.config import TRAIN_CONSTANTS, IndexConfig, TrainConfig

    saved = IndexConfig().to_dict()["train"]
    assert not set(TRAIN_CONSTANTS) & set(saved) and "batch_size" in saved
    with pytest.raises(ValueError, match="train.window_length is not a setting of an index"):
        IndexConfig(train=TrainConfig(window_length=12))


def test_explain_shows_each_hits_decoded_docid_and_log_probability(saved_index):
    index = GenerativeIndex.load(saved_index)
    retriever = Retriever(index, device="cpu")
    queries = index.corpus.texts[:3]
    hits, explained = retriever.explain(queries, k=3, batch_size=2)
    assert hits == retriever.search(queries, k=3, batch_size=2)
    for row, reasons in zip(hits, explained, strict=True):
        for hit, why in zip(row, reasons, strict=True):
            symbols = [index.docids.symbols[s] for s in index.docids.sequence(hit.doc_id)]
            assert why == {"docid": symbols, "logprob": round(hit.score, 5)}
    with pytest.raises(ValueError, match="k must be at least 1"):
        retriever.explain(queries, k=0)
