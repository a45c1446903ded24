"""The example store: the same examples as the list-based construction it replaced, read back
by a resumed build, and rebuilt (never trained on) when truncated or damaged."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import dsi.example_store as example_store
from docid.ngram import salient_span_pairs, span_stopwords, supervised_pairs
from dsi.data import Corpus
from dsi.example_store import POOL, STORE_FILE, TRAIN, ExampleStore, StoreDamaged, open_store
from dsi.examples import Chain, ExampleSet
from dsi.index import GenerativeIndex, TrainingQueries
from dsi.seal import NgramGenerativeIndex
from dsi.train import epoch_batches
from tests.conftest import random_corpus, tiny_config


def _corpus(seed: int):
    """Short documents, and a few long enough for more windows than a document keeps (drawn by
    the rng)."""
    corpus = random_corpus(random.Random(seed), 12)
    rng = random.Random(seed)
    texts = [
        " ".join(rng.choices(text.split(), k=rng.randint(200, 300))) if i % 4 == 1 else text
        for i, text in enumerate(corpus.texts)
    ]
    return Corpus(list(corpus.doc_ids), list(corpus.titles), texts, source="long and short")


# ------------------------------------------------- the list-based construction, for reference


def _old_views(ids, config, eos, rng):
    body = list(ids)
    lead_len = config.max_source_length - 1
    views = [body[:lead_len] + [eos]]
    if len(body) > lead_len:
        starts = list(
            range(config.window_stride, len(body) - config.window_stride, config.window_stride)
        )
        if len(starts) > config.max_windows_per_doc:
            starts = sorted(rng.sample(starts, config.max_windows_per_doc))
        views += [body[s : s + config.window_length] + [eos] for s in starts]
    return views


def _old_retrieval(sources, targets, config, eos, repeats, task):
    cut = config.max_source_length - 1
    out = []
    for _ in range(repeats):
        for ids, target in zip(sources, targets, strict=True):
            out.append((list(ids[:cut]) + [eos], list(target), task))
    return out


def _old_docid_examples(index, pairs):
    config, eos = index.config.train, index.model.config.eos_token_id
    tokens = index.tokenizer(index.corpus.full_texts(), add_special_tokens=False)["input_ids"]
    rng = random.Random(config.seed)
    out = []
    for ids, doc_id in zip(tokens, index.corpus.doc_ids, strict=True):
        target = index._target(index.docids.sequence(doc_id))
        out += [(view, target, "index") for view in _old_views(ids, config, eos, rng)]
    queries = index.tokenizer([q for q, _ in pairs], add_special_tokens=False)["input_ids"]
    targets = [index._target(index.docids.sequence(d)) for _, d in pairs]
    return out + _old_retrieval(queries, targets, config, eos, config.query_repeats, "retrieve")


def _old_text_examples(index, text_pairs, repeats, task):
    eos, options = index.model.config.eos_token_id, index.options
    sources = index.tokenizer([s for s, _ in text_pairs], add_special_tokens=False)["input_ids"]
    targets = index.tokenizer([t for _, t in text_pairs], add_special_tokens=False)["input_ids"]
    targets = [list(t[: options.max_tokens]) + [eos] for t in targets]
    return _old_retrieval(sources, targets, index.config.train, eos, repeats, task)


def _old_seal_examples(index, pairs, copies):
    options, corpus, config = index.options, index.corpus, index.config.train
    stop = span_stopwords(index.config.language)
    spans = salient_span_pairs(
        corpus.full_texts(),
        pairs_per_doc=copies,
        min_words=options.salient_words[0],
        max_words=options.salient_words[1],
        word_dropout=options.word_dropout,
        rarity=options.rarity,
        seed=options.seed,
        stopwords=stop,
    )
    out = _old_text_examples(index, spans, 1, "seal-span") if spans else []
    if pairs:
        position = corpus.positions()
        query_pairs = supervised_pairs(
            [(q, corpus.titles[position[d]], corpus.texts[position[d]]) for q, d in pairs],
            spans_per_query=options.spans_per_query,
            min_words=options.min_words,
            max_words=options.max_words,
            temperature=options.temperature,
            include_title=options.include_title,
            seed=options.seed,
            stopwords=stop,
        )
        out += _old_text_examples(index, query_pairs, config.query_repeats, "seal-query")
    return out


def _stored(examples) -> list[tuple[list[int], list[int], str]]:
    """Every (source, target, task) of a store part, in order."""
    plan = examples.plan
    tasks = [examples.store.tasks[code] for code in plan["task"]]
    got = examples.pairs(range(len(examples)))
    return [
        ([int(x) for x in s], [int(x) for x in t], task)
        for (s, t), task in zip(got, tasks, strict=True)
    ]


def _training(corpus):
    queries = {"q0": corpus.titles[0], "q1": corpus.texts[4][:40], "q2": corpus.texts[2][:25]}
    return TrainingQueries(queries, {"q0": {"d0": 1}, "q1": {"d4": 1}, "q2": {"d2": 1, "d7": 1}})


@pytest.fixture(scope="module")
def docid_build(tmp_path_factory):
    corpus = _corpus(21)
    work = tmp_path_factory.mktemp("docid") / "work"
    config = tiny_config("atomic", steps=2)
    index = GenerativeIndex.build(corpus, config, _training(corpus), work, progress_bar=False)
    return index, work


@pytest.fixture(scope="module")
def ngram_build(tmp_path_factory):
    corpus = _corpus(22)
    work = tmp_path_factory.mktemp("ngram") / "work"
    # The with_queries preset: copy pairs drawn from a pool every epoch.
    config = tiny_config("ngram", steps=2).updated({"docid_options.preset": "with_queries"})
    index = NgramGenerativeIndex.build(corpus, config, _training(corpus), work, progress_bar=False)
    return index, work


def test_docid_store_holds_the_examples_of_the_list_construction(docid_build):
    index, work = docid_build
    store = ExampleStore(work / "examples")
    want = _old_docid_examples(index, index.training_pairs)
    # Some documents have windows, and more than they keep.
    counts = [len(index.tokenizer(t)["input_ids"]) for t in index.corpus.full_texts()]
    train = index.config.train
    assert max(counts) > train.window_stride * (train.max_windows_per_doc + 2)
    got = _stored(store.part(TRAIN))
    assert got == [(list(s), list(t), task) for s, t, task in want]
    assert len(store.part(POOL)) == 0
    # The documents' tokens are stored once: views are slices of them, not copies.
    assert len(got) > len(index.corpus.doc_ids) == len(store.tables[0])
    queries = index.config.train.query_repeats * len(index.training_pairs)
    assert index.lineage[0]["examples"] == {"index": len(got) - queries, "retrieve": queries}


def test_ngram_store_holds_the_examples_of_the_list_construction(ngram_build):
    index, work = ngram_build
    store = ExampleStore(work / "examples")
    options, n = index.options, len(index.corpus.doc_ids)
    pairs = index.training_pairs
    pooled = options.salient_pool_for(n, True)
    assert pooled > 0
    assert _stored(store.part(POOL)) == _old_seal_examples(index, [], pooled)
    assert _stored(store.part(TRAIN)) == _old_seal_examples(index, pairs, 0)
    assert store.extra["pool_per_epoch"] == options.salient_pairs_for(n, True) * n


def test_store_lengths_and_tasks_match_its_examples(ngram_build):
    _, work = ngram_build
    store = ExampleStore(work / "examples")
    both = Chain([store.part(TRAIN), store.part(POOL)])
    rows = _stored(store.part(TRAIN)) + _stored(store.part(POOL))
    assert both.lengths().tolist() == [len(s) + len(t) for s, t, _ in rows]
    counts: dict[str, int] = {}
    for _, _, task in rows:
        counts[task] = counts.get(task, 0) + 1
    assert both.task_counts() == counts
    picked = [len(rows) - 1, 0, 5]
    assert [(list(s), list(t)) for s, t in both.pairs(picked)] == [
        (rows[i][0], rows[i][1]) for i in picked
    ]


def test_epoch_batches_keep_the_order_of_the_list_implementation():
    def old(lengths, batch_size, seed, epoch, world, indices=None):
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(range(len(lengths))) if indices is None else list(indices)
        rng.shuffle(order)
        window = batch_size * 50
        for start in range(0, len(order), window):
            order[start : start + window] = sorted(
                order[start : start + window], key=lengths.__getitem__
            )
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        usable = len(batches) - len(batches) % world if len(batches) >= world else len(batches)
        return batches[:usable]

    rng = random.Random(4)
    lengths = [rng.randint(3, 9) for _ in range(2000)]  # many ties: stability matters
    for epoch, world, indices in [(0, 1, None), (3, 2, None), (1, 1, list(range(0, 2000, 3)))]:
        got = epoch_batches(np.array(lengths), 7, 13, epoch, world, indices)
        assert [b.tolist() for b in got] == old(lengths, 7, 13, epoch, world, indices)


def _rebuild(work, cls, index, monkeypatch, caplog):
    """Build again into ``work`` (a resumed run), counting the token tables written."""
    written = []
    real = example_store.StoreWriter.tables_of

    def counting(self, names, rows):
        written.append(tuple(names))
        return real(self, names, rows)

    monkeypatch.setattr(example_store.StoreWriter, "tables_of", counting)
    corpus = index.corpus
    with caplog.at_level("INFO", logger="dsi.example_store"):
        again = cls.build(corpus, index.config, _training(corpus), work, progress_bar=False)
    return again, written


def test_resumed_build_reads_the_stored_examples(docid_build, monkeypatch, caplog):
    index, work = docid_build
    stamp = (work / "examples" / STORE_FILE).stat().st_mtime_ns
    before = _stored(ExampleStore(work / "examples").part(TRAIN))
    again, written = _rebuild(work, GenerativeIndex, index, monkeypatch, caplog)
    assert written == []  # nothing tokenized or written again
    assert "Reading the example store" in caplog.text
    assert (work / "examples" / STORE_FILE).stat().st_mtime_ns == stamp
    assert again.lineage[0]["examples"] == index.lineage[0]["examples"]
    assert _stored(ExampleStore(work / "examples").part(TRAIN)) == before


@pytest.mark.parametrize("damage", ["truncate_table", "flip_plan", "drop_meta"])
def test_damaged_store_is_detected_and_rebuilt(ngram_build, damage, monkeypatch, caplog):
    index, work = ngram_build
    directory = work / "examples"
    before = {part: _stored(ExampleStore(directory).part(part)) for part in (TRAIN, POOL)}
    meta = json.loads((directory / STORE_FILE).read_text())
    table = directory / "tables" / meta["tables"][0]
    plan = directory / "parts" / f"{TRAIN}.plan"
    if damage == "truncate_table":
        table.write_bytes(table.read_bytes()[:-100])
        reason = "is truncated"
    elif damage == "flip_plan":
        data = bytearray(plan.read_bytes())
        data[len(data) // 2] ^= 0xFF
        plan.write_bytes(bytes(data))
        reason = "is damaged"
    else:
        (directory / STORE_FILE).unlink()
        reason = f"has no readable {STORE_FILE}"
    with pytest.raises(StoreDamaged, match=reason):
        ExampleStore(directory)
    _, written = _rebuild(work, NgramGenerativeIndex, index, monkeypatch, caplog)
    # One warning naming the store and what is wrong with it, then a rebuild.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(reason in w and "Rebuilding it." in w for w in warnings), warnings
    assert written  # tokenized and written again
    rebuilt = ExampleStore(directory)
    assert {part: _stored(rebuilt.part(part)) for part in (TRAIN, POOL)} == before


def test_store_of_other_inputs_is_rebuilt(tmp_path, caplog):
    def fill(rows):
        def write(out):
            example_store.write_pairs(out, TRAIN, "t", rows, tiny_config().train, 1)
            return {}

        return write

    first = open_store(tmp_path / "s", "a", 1, fill([([5, 6], [7, 1])]))
    assert _stored(first.part(TRAIN)) == [([5, 6, 1], [7, 1], "t")]
    with caplog.at_level("INFO", logger="dsi.example_store"):
        second = open_store(tmp_path / "s", "b", 1, fill([([8], [9, 1]), ([4], [3, 1])]))
    assert "was built from other inputs" in caplog.text
    assert _stored(second.part(TRAIN)) == [([8, 1], [9, 1], "t"), ([4, 1], [3, 1], "t")]


def test_temporary_store_is_deleted_with_its_examples():
    store = open_store(None, "k", 1, lambda out: {})
    directory = store.directory
    assert directory.exists() and len(store.part(TRAIN)) == 0
    del store
    import gc

    gc.collect()
    assert not directory.exists()


def test_example_set_reads_like_a_store_part():
    examples = ExampleSet([[5, 1], [6, 7, 1]], [[2, 1], [3, 1]], ["a", "b"])
    assert examples.lengths().tolist() == [4, 5]
    assert examples.pairs([1]) == [([6, 7, 1], [3, 1])]
    assert examples.task_counts() == {"a": 1, "b": 1}


@pytest.mark.parametrize("replay", ["documents", "queries"])
def test_addition_keeps_its_replay_pool_in_its_store(replay, tmp_path, monkeypatch, caplog):
    import copy

    from dsi.config import AddConfig

    full = _corpus(23)
    old, new = full.subset(full.doc_ids[:8]), full.subset(full.doc_ids[8:])
    index = GenerativeIndex.build(old, tiny_config("atomic", steps=2), _training(old))
    first, second = copy.deepcopy(index), copy.deepcopy(index)
    config = AddConfig(replay=replay, max_steps=2)
    work = tmp_path / "add.work"
    entry = first.add(new, config=config, progress_bar=False, work_dir=work)
    store = ExampleStore(work / "examples")
    part = "replay" if replay == "documents" else "replay-query"
    assert store.part(part).task_counts() == entry["replay"]["pool"] != {}
    assert store.part(TRAIN).task_counts() == entry["examples"]
    if replay == "documents":  # the old documents' views, as the build made them
        views = _stored(store.part(part))
        assert {t for _, _, t in views} == {"replay-index"}
        assert len(views) >= len(old.doc_ids)

    written = []
    real = example_store.StoreWriter.tables_of
    monkeypatch.setattr(
        example_store.StoreWriter,
        "tables_of",
        lambda self, names, rows: written.append(names) or real(self, names, rows),
    )
    with caplog.at_level("INFO", logger="dsi.example_store"):
        again = second.add(new, config=config, progress_bar=False, work_dir=work)
    assert written == [] and "Reading the example store" in caplog.text
    assert again["replay"]["pool"] == entry["replay"]["pool"]
