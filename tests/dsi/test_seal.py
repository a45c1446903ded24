"""N-gram identifiers (SEAL): build -> decode corpus n-grams -> score documents -> save -> load."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time

import pytest
import torch

from docid.words import WordIndex, analyze
from dsi.cli import main
from dsi.config import AddConfig
from dsi.decoding import next_token_logits
from dsi.docid_retriever import DocidRetriever
from dsi.example_store import TRAIN, open_store
from dsi.index import GenerativeIndex, TrainingQueries
from dsi.index_format import MANIFEST_DIGEST, IndexLoadError, write_manifest
from dsi.ngram_retriever import Generation, NgramRetriever
from dsi.retriever import Retriever
from dsi.scoring import score_documents
from dsi.seal import NGRAM_PRESETS, NgramGenerativeIndex, SealOptions, seal_examples
from tests.conftest import random_corpus, tiny_config


def _contains(haystack: list[int], needle: tuple[int, ...]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))


@pytest.fixture(scope="module")
def built():
    corpus = random_corpus(random.Random(5), 10)
    training = TrainingQueries(
        {"q0": corpus.titles[0], "q1": corpus.texts[4][:40]}, {"q0": {"d0": 1}, "q1": {"d4": 1}}
    )
    index = NgramGenerativeIndex.build(
        corpus, tiny_config("ngram", steps=20), training, progress_bar=False
    )
    queries = corpus.texts[:5] + [corpus.titles[7], "\u2207\u2207", "unrelated words"]
    return index, queries


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    directory = tmp_path_factory.mktemp("seal") / "idx"
    built[0].save(directory)
    return directory


def test_trained_on_span_and_query_pairs(built):
    index, _ = built
    examples = index.lineage[0]["examples"]
    assert examples["seal-span"] > 0 and examples["seal-query"] > 0
    # Targets are text: the model has no docid symbols beyond the tokenizer's vocabulary.
    assert index.model.config.vocab_size == len(index.tokenizer)


def test_every_generated_ngram_occurs_in_the_corpus(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    generated = retriever.generate_ngrams(queries, batch_size=3, num_beams=6)
    assert len(generated) == len(queries)
    doc_tokens = [index.ngrams.doc_tokens(i).tolist() for i in range(index.num_docs)]
    for ngrams in generated:
        assert ngrams
        for ngram, logprob in ngrams:
            assert 1 <= len(ngram) <= retriever.options.max_tokens
            assert index.ngrams.count(ngram) > 0
            assert any(_contains(doc, ngram) for doc in doc_tokens)
            assert logprob < 0


def test_every_hit_contains_a_generated_ngram_or_its_words(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, unigrams=0)
    generated = retriever.generate_ngrams(queries, num_beams=6)
    words = retriever.query_words([Generation(row, [], []) for row in generated])
    assert any(words)
    position = index.corpus.positions()
    texts = index.tokenizer(index.corpus.full_texts(), add_special_tokens=False)["input_ids"]
    doc_words = analyze(index.corpus.full_texts())
    for word_weight in (0.0, 0.75):
        retriever.options = dataclasses.replace(retriever.options, word_weight=word_weight)
        results = retriever.search(queries, k=4, num_beams=6)
        for hits, ngrams, query_words in zip(results, generated, words, strict=True):
            assert 1 <= len(hits) <= 4
            assert len({h.doc_id for h in hits}) == len(hits)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            for hit in hits:
                doc = position[hit.doc_id]
                has_ngram = any(_contains(texts[doc], n) for n, _ in ngrams)
                has_word = word_weight > 0 and bool(set(query_words) & set(doc_words[doc]))
                assert has_ngram or has_word


def test_words_of_the_beams_and_completed_first_tokens_add_their_bm25(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    o = retriever.options
    assert o.word_weight > 0 and o.word_unigrams > 0 and o.complete_words  # the defaults
    generated = retriever.generate(queries[:4])
    words = retriever.query_words(generated)
    pieces = index.tokenizer.convert_ids_to_tokens
    for generation, row_words, hits in zip(
        generated, words, retriever.search(queries[:4], k=10), strict=True
    ):
        ngrams = generation.beams + generation.unigrams
        ngram_scores = dict(score_documents(o, ngrams, index.ngrams, None))
        word_scores = index.words.bm25(row_words, o.k1, o.b)
        # The query's own words add their BM25 at query_weight (the with-queries preset's).
        assert o.query_weight > 0 and generation.own_words
        own_scores = index.words.bm25(generation.own_words, o.k1, o.b)
        for hit in hits:
            doc = index.corpus.positions()[hit.doc_id]
            expected = (
                ngram_scores.get(doc, 0.0)
                + o.word_weight * word_scores[doc]
                + o.query_weight * own_scores[doc]
            )
            if expected > 0:  # not a backfilled document
                assert hit.score == pytest.approx(expected)
        # The words are those of the beams and of the completions of the best first tokens
        # that start a word.
        starts = [n for n, _ in generation.unigrams if pieces(n[0]).startswith("\u2581")]
        assert starts
        assert [w[0][0] for w in generation.words] == [n[0] for n in starts[: o.word_unigrams]]
        decoded = [index.tokenizer.decode(list(n)) for n, _ in generation.beams + generation.words]
        assert row_words == analyze([" ".join(decoded)])[0]
    # Without completion the words are those of the first tokens themselves.
    retriever.options = dataclasses.replace(o, complete_words=False)
    for generation in retriever.generate(queries[:4]):
        starts = [u for u in generation.unigrams if pieces(u[0][0]).startswith("\u2581")]
        assert generation.words == starts[: o.word_unigrams]


def test_completion_first_step_from_the_beams_pass_completes_the_same_words(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    generated = retriever.generate(queries[:6])  # the first step rides along with the beams
    encoded, mask = retriever._encode(list(queries[:6]))
    starts = retriever._word_starts_of([g.unigrams for g in generated])
    by_own_passes = retriever._complete_words(encoded, mask, starts)
    assert any(len(w) > 1 for row in by_own_passes for w, _ in row)  # multi-token words
    for generation, own in zip(generated, by_own_passes, strict=True):
        assert [w for w, _ in generation.words] == [w for w, _ in own]
        assert [lp for _, lp in generation.words] == pytest.approx([lp for _, lp in own], abs=1e-5)
    # Given the first step's logits, every later step is the model's own: the words that
    # continue past their first two steps (so no row ends at the first) complete the same.
    long = [[s for s, (w, _) in zip(a, b, strict=True) if len(w) >= 3] for a, b in zip(
        starts, by_own_passes, strict=True)]  # fmt: skip
    rows = torch.tensor([r for r, row in enumerate(long) for _ in row])
    assert len(rows) > 0
    start = index.model.config.decoder_start_token_id
    ids = torch.tensor([[start, w[0]] for row in long for w, _ in row])
    with torch.inference_mode():
        states = type(encoded)(**{name: value[rows] for name, value in encoded.items()})
        first, _ = next_token_logits(retriever.model, states, mask[rows], ids)
    again = retriever._complete_words(encoded, mask, long, first)
    expected = [[w for w, _ in row if len(w) >= 3] for row in by_own_passes]
    assert [[w for w, _ in row] for row in again] == expected


def test_words_weigh_more_for_a_model_trained_without_queries(built):
    index, queries = built
    options = index.options
    queried, alone = NGRAM_PRESETS["with_queries"], NGRAM_PRESETS["without_queries"]
    assert alone.word_weight > queried.word_weight
    # The options' own values are the with_queries preset's.
    assert options.for_search(with_queries=True) == options
    # The fixture's model learned from training queries: its words weigh as word_weight says.
    assert NgramRetriever(index, device="cpu").options == options
    unqueried = dataclasses.replace(index, training_pairs=[])
    retriever = NgramRetriever(unqueried, device="cpu")
    weight = alone.word_weight
    # It reads its best documents too (the preset without queries; tested on its own below).
    assert queried.feedback_docs == 0 < alone.feedback_docs
    assert retriever.options == dataclasses.replace(
        options,
        word_weight=weight,
        feedback_docs=alone.feedback_docs,
        fusion_weight=alone.fusion_weight,
        plan_weight=alone.plan_weight,
        expand_words=alone.expand_words,
        query_weight=alone.query_weight,
    )
    # The fused kind's weights follow the preset too (chosen on dev for each).
    assert (options.fusion_weight, options.plan_weight) == (0.0, 0.0)
    assert (queried.fusion_weight, queried.plan_weight) == (0.0, 0.0)
    assert (alone.fusion_weight, alone.plan_weight) == (0.0, 0.0)
    retriever.options = dataclasses.replace(retriever.options, feedback_docs=0)
    generated = retriever.generate(queries[:4])
    words = retriever.query_words(generated)
    for generation, row_words, hits in zip(
        generated, words, retriever.search(queries[:4], k=10), strict=True
    ):
        ngram_scores = dict(
            score_documents(options, generation.beams + generation.unigrams, index.ngrams, None)
        )
        # Its word index holds the documents alone: it has no training queries to expand with.
        assert not unqueried.words.expanded and index.words.expanded
        word_scores = unqueried.words.bm25(row_words, options.k1, options.b)
        for hit in hits:
            doc = index.corpus.positions()[hit.doc_id]
            expected = ngram_scores.get(doc, 0.0) + weight * word_scores[doc]
            if expected > 0:  # not a backfilled document
                assert hit.score == pytest.approx(expected)
    # A preset named in the config holds whether or not the index has training queries.
    named = unqueried.config.updated({"docid_options.preset": "with_queries"})
    searched = NgramRetriever(dataclasses.replace(unqueried, config=named), device="cpu")
    assert searched.options == dataclasses.replace(options, preset="with_queries")
    named = index.config.updated({"docid_options.preset": "without_queries"})
    searched = NgramRetriever(dataclasses.replace(index, config=named), device="cpu")
    assert (searched.options.word_weight, searched.options.feedback_docs) == (
        alone.word_weight,
        alone.feedback_docs,
    )


def test_feedback_adds_the_bm25_of_the_words_generated_from_the_best_documents(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, feedback_docs=0)
    plain = retriever.search(queries[:4], k=5)
    o = dataclasses.replace(retriever.options, feedback_docs=2, feedback_words=6)
    retriever.options = o
    generated = retriever.generate(queries[:4])
    words = retriever.query_words(generated)
    texts = index.corpus.full_texts()
    windows_read = []
    generate = retriever.generate
    retriever.generate = lambda texts, *a: windows_read.extend(texts) or generate(texts, *a)
    for generation, row_words, hits in zip(
        generated, words, retriever.rank_generations(generated, k=5), strict=True
    ):
        first = score_documents(
            o,
            generation.beams + generation.unigrams,
            index.ngrams,
            None,
            row_words,
            index.words,
            generation.own_words,
        )
        best = [doc for doc, _ in first[:2]]
        shares = retriever.generated_words_of(best)
        weights: dict[str, float] = {}
        for doc in best:
            assert sum(shares[doc].values()) == pytest.approx(1.0)
            for word, share in shares[doc].items():
                weights[word] = weights.get(word, 0.0) + share
        heaviest = dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
        extra = index.words.weighted_bm25(heaviest, o.k1, o.b)
        assert extra.max() > 0
        scale = o.feedback_weight * first[0][1] / extra.max()
        expected = dict(first)
        for doc in range(index.num_docs):
            expected[doc] = expected.get(doc, 0.0) + scale * extra[doc]
        assert len(hits) == 5
        for hit in hits:
            assert hit.score == pytest.approx(expected[index.corpus.positions()[hit.doc_id]])
        assert [h.score for h in hits] == sorted(expected.values(), reverse=True)[:5]
    # The words of a document are what the model generates reading its 24-word windows.
    doc = best[0]
    read = texts[doc].split()
    windows = [" ".join(read[i : i + 24]) for i in range(0, len(read), 24)]
    counted: dict[str, int] = {}
    for window_words in retriever.query_words(generate(windows)):
        for word in set(window_words):
            counted[word] = counted.get(word, 0) + 1
    total = sum(counted.values())
    assert retriever.generated_words_of([doc])[doc] == {w: n / total for w, n in counted.items()}
    # Each document is read once per retriever (and beam count), however often it ranks high.
    assert set(windows_read) <= {
        " ".join(texts[d].split()[i : i + 24])
        for d in range(index.num_docs)
        for i in range(0, 400, 24)
    }
    assert len(windows_read) == len(set(windows_read))
    # No feedback documents: the plain ranking.
    retriever.options = dataclasses.replace(o, feedback_docs=0)
    assert retriever.search(queries[:4], k=5) == plain
    # Feedback's parameters are constants of the n-gram kind, not settings.
    with pytest.raises(ValueError, match="'docid_options.feedback_docs' is not a setting"):
        index.config.updated({"docid_options.feedback_docs": 3})
    with pytest.raises(ValueError, match="preset must be one of"):
        SealOptions.from_config(index.config.updated({"docid_options.preset": "fast"}))


def test_completed_words_are_the_greedy_constrained_continuations(built):
    """The batched completion against a one-row-at-a-time reference: same tokens, same
    log-probabilities, each a corpus n-gram holding a single word start."""
    index, queries = built
    # Whether any first token grows depends on the briefly trained model, which differs between
    # library versions (none grew for two of eight training seeds here): a copy of it that never
    # predicts EOS, so that some must.
    model = copy.deepcopy(index.model)
    eos = torch.tensor([model.config.eos_token_id])
    model.lm_head.register_forward_hook(lambda _m, _i, logits: logits.index_fill(-1, eos, -1e4))
    index = dataclasses.replace(index, model=model)
    retriever = NgramRetriever(index, device="cpu")
    generated = retriever.generate(queries, batch_size=3)
    model, tokenizer = retriever.model, index.tokenizer
    cfg = model.config
    word_start = [
        p.startswith("\u2581") for p in tokenizer.convert_ids_to_tokens(range(cfg.vocab_size))
    ]
    extended = 0
    for query, generation in zip(queries, generated, strict=True):
        enc = tokenizer(
            [query],
            max_length=index.config.train.max_source_length,
            truncation=True,
            return_tensors="pt",
        )
        for (word, logprob), (first, first_logprob) in zip(
            generation.words, [u for u in generation.unigrams if word_start[u[0][0]]], strict=False
        ):
            expected, total = list(first), first_logprob
            while len(expected) < retriever.options.max_tokens:
                decoder = torch.tensor([[cfg.decoder_start_token_id, *expected]])
                with torch.no_grad():
                    logits = model(**enc, decoder_input_ids=decoder).logits[:, -1].float()
                step = retriever._processor(decoder, logits.log_softmax(-1))[0]
                best = int(step.argmax())
                if best == cfg.eos_token_id or word_start[best] or not torch.isfinite(step[best]):
                    break
                expected.append(best)
                total += float(step[best])
            assert list(word) == expected
            assert logprob == pytest.approx(total, abs=1e-4)
            assert index.ngrams.count(word) > 0
            assert sum(word_start[t] for t in word) == 1
            extended += len(word) > 1
    assert extended > 0  # some first tokens did grow


def test_best_unigrams_join_the_generated_ngrams(built):
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, unigrams=0)
    beams_only = retriever.generate_ngrams(queries[:3], num_beams=4)
    retriever.options = dataclasses.replace(retriever.options, unigrams=7)
    with_unigrams = retriever.generate_ngrams(queries[:3], num_beams=4)
    for before, after in zip(beams_only, with_unigrams, strict=True):
        assert after[: len(before)] == before
        unigrams = after[len(before) :]
        assert len(unigrams) == 7
        logprobs = [lp for _, lp in unigrams]
        assert logprobs == sorted(logprobs, reverse=True) and all(lp < 0 for lp in logprobs)
        for ngram, _ in unigrams:
            assert len(ngram) == 1 and index.ngrams.count(ngram) > 0
            assert ngram[0] != index.model.config.eos_token_id
    hits = retriever.search(queries[:3], k=3, num_beams=4)
    assert all(1 <= len(row) <= 3 for row in hits)


def test_best_unigrams_are_the_first_decoder_step_without_a_pass_of_their_own(built):
    """They come from beam search's first step: the same tokens and log-probabilities as a
    decoder pass from the start token would give, and one pass fewer per query."""
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, unigrams=7, complete_words=False)
    model = retriever.model
    passes = []
    hook = model.register_forward_hook(lambda *_: passes.append(1))
    try:
        generated = retriever.generate(queries[:3], num_beams=4)
        with_unigrams = len(passes)
        retriever.options = dataclasses.replace(retriever.options, unigrams=0)
        passes.clear()
        retriever.generate(queries[:3], num_beams=4)
    finally:
        hook.remove()
    assert with_unigrams == len(passes)  # no pass of their own
    encoded, mask = retriever._encode(queries[:3])
    start = torch.full((3, 1), model.config.decoder_start_token_id)
    with torch.inference_mode():
        logits = model(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=start)
    logprobs = logits.logits[:, 0].float().log_softmax(dim=-1)
    for row, generation in enumerate(generated):
        assert len(generation.unigrams) == 7
        for (token,), logprob in generation.unigrams:
            assert logprob == pytest.approx(float(logprobs[row, token]), abs=1e-4)
        allowed = torch.as_tensor(retriever._processor.allowed(()))
        allowed = allowed[allowed != model.config.eos_token_id]
        best = logprobs[row, allowed].topk(7).indices
        assert {t for (t,), _ in generation.unigrams} == set(allowed[best].tolist())


def test_monitor_sees_the_index_during_training():
    corpus = random_corpus(random.Random(8), 6)
    seen = []

    def monitor(index, seconds):
        seen.append((seconds, NgramRetriever(index, device="cpu").search([corpus.texts[0]], k=2)))
        time.sleep(1.0)  # evaluation time must not count against the training budget

    config = tiny_config("ngram", steps=6)
    index = NgramGenerativeIndex.build(
        corpus, config, progress_bar=False, monitor=monitor, monitor_minutes=1e-9
    )
    # Called after every step but the last (the budget ends the run first).
    assert 5 <= len(seen) <= 6
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert all(len(hits[0]) >= 1 for _, hits in seen)
    assert index.lineage[0]["training"]["steps"] == 6
    # The training clock between two calls advances by one step, not by the 1 s in the monitor.
    clock = [s for s, _ in seen]
    assert clock[-1] - clock[0] < 1.0 * (len(clock) - 1)


def test_copy_pairs_per_document_depend_on_training_queries(built):
    index, _ = built
    options = index.options
    queried, alone = NGRAM_PRESETS["with_queries"], NGRAM_PRESETS["without_queries"]
    eos = index.model.config.eos_token_id

    def copy_pairs(pairs: list[tuple[str, str]], **kwargs) -> int:
        def fill(out):
            seal_examples(
                *(index.tokenizer, index.corpus, pairs, index.config.train, options, eos),
                *(out, TRAIN),
                **kwargs,
            )
            return {}

        made = open_store(None, "copy pairs", eos, fill).part(TRAIN)
        return made.task_counts().get("seal-span", 0)

    assert copy_pairs([]) == alone.salient_pairs_per_doc * index.num_docs
    assert copy_pairs([(index.corpus.titles[0], "d0")]) == queried.salient_pairs_per_doc * (
        index.num_docs
    )
    assert copy_pairs([], salient_pairs_per_doc=3) == 3 * index.num_docs
    # A large corpus without queries gets fewer per document, never fewer than with queries.
    capped = dataclasses.replace(options, max_salient_pairs=500)
    assert capped.salient_pairs_for(10, with_queries=False) == 50
    assert capped.salient_pairs_for(1000, with_queries=False) == queried.salient_pairs_per_doc
    assert capped.salient_pairs_for(10, with_queries=True) == queried.salient_pairs_per_doc
    # The pool obeys the same cap, and is none unless larger than an epoch's pairs.
    pooled = dataclasses.replace(options, max_salient_pairs=100)
    assert pooled.salient_pool_for(10, with_queries=True) == 10
    assert pooled.salient_pool_for(50, with_queries=True) == 0
    assert pooled.salient_pool_for(10, with_queries=False) == 0  # the preset without: none
    # A preset named in the config decides whatever the training queries.
    named = dataclasses.replace(pooled, preset="with_queries")
    assert named.salient_pool_for(10, with_queries=False) == 10
    assert named.salient_pairs_for(10, with_queries=False) == queried.salient_pairs_per_doc


def test_copy_pairs_drawn_afresh_from_a_pool_every_epoch(caplog):
    corpus = random_corpus(random.Random(3), 8)
    # The with_queries preset (6 pairs per document drawn from 60), though there are none.
    config = tiny_config("ngram", steps=4).updated({"docid_options.preset": "with_queries"})
    with caplog.at_level("INFO", logger="dsi.index"):
        index = NgramGenerativeIndex.build(corpus, config, progress_bar=False)
    # No training queries: every example of an epoch is drawn from the pool.
    assert "on 0 examples + 48 of 480 per epoch" in caplog.text
    assert index.lineage[0]["examples"] == {"seal-span": 480}
    assert index.lineage[0]["training"]["steps"] == 4


def test_saved_config_names_every_ngram_setting(built, saved, tmp_path):
    import shutil

    saved_options = json.loads((saved / "index.json").read_text())["docid_options"]
    assert saved_options == {"preset": None, "scoring": "bm25"}
    assert NgramGenerativeIndex.load(saved).options == built[0].options
    # An index without its word index builds it when asked.
    directory = tmp_path / "older"
    shutil.copytree(saved, directory)
    shutil.rmtree(directory / "word_index")
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest[MANIFEST_DIGEST]
    listed = manifest["checksums"].items()
    manifest["checksums"] = {n: d for n, d in listed if not n.startswith("word_index/")}
    write_manifest(directory / "manifest.json", manifest)
    older = NgramGenerativeIndex.load(directory, verify=False)
    assert older.word_index is None
    assert older.words.vocabulary == built[0].words.vocabulary


def test_save_load_search_is_identical(built, saved):
    index, queries = built
    before = NgramRetriever(index, device="cpu").search(queries, k=5, batch_size=4)
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["docid_scheme"] == "ngram"
    assert "ngram_index/tokens.npy" in manifest["checksums"]
    assert "word_index/postings.npz" in manifest["checksums"]
    assert json.loads((saved / "index.json").read_text())["docids"] == "ngram"
    assert not (saved / "config.json").exists()  # hub tooling would take it for a model's
    loaded = Retriever.load(saved, device="cpu")
    assert isinstance(loaded, NgramRetriever)
    after = loaded.search(queries, k=5, batch_size=4)
    assert [[h.doc_id for h in hits] for hits in after] == [
        [h.doc_id for h in hits] for hits in before
    ]
    for a, b in zip(after, before, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_search_refuses_an_empty_or_blank_query(built):
    retriever = NgramRetriever(built[0], device="cpu")
    with pytest.raises(ValueError, match="Query 1 is empty"):
        retriever.search(["river", ""], k=3)
    with pytest.raises(ValueError, match="Query 0 is only whitespace"):
        retriever.search(["  \n"], k=3)


def test_loading_validates_the_directory(saved, tmp_path):
    import shutil

    with pytest.raises(IndexLoadError, match="n-gram identifiers"):
        GenerativeIndex.load(saved)
    directory = tmp_path / "idx"
    shutil.copytree(saved, directory)
    sa = directory / "ngram_index" / "sa.npy"
    data = bytearray(sa.read_bytes())
    data[-1] ^= 0xFF
    sa.write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match="sa.npy does not match its checksum"):
        NgramGenerativeIndex.load(directory)
    other = tmp_path / "other"
    shutil.copytree(saved, other)
    WordIndex.build(["one text"]).save(other / "word_index")
    with pytest.raises(IndexLoadError, match="word index holds 1 documents"):
        NgramGenerativeIndex.load(other, verify=False)


def test_a_decoding_setting_does_not_restart_the_work_dir(tmp_path, caplog):
    corpus = random_corpus(random.Random(3), 6)
    config = tiny_config("ngram", steps=3)
    work = tmp_path / "work"
    NgramGenerativeIndex.build(corpus, config, work_dir=work, progress_bar=False)
    checkpoints = sorted(p.name for p in work.iterdir())
    for key, value in (("scoring", "intersective"),):
        caplog.clear()
        changed = config.updated({f"docid_options.{key}": value})
        NgramGenerativeIndex.build(corpus, changed, work_dir=work, progress_bar=False)
        assert "starting afresh" not in caplog.text
        assert sorted(p.name for p in work.iterdir()) == checkpoints
    stamp = (work / "fingerprint").read_text()
    # No training queries: naming the other preset changes the training examples.
    changed = config.updated({"docid_options.preset": "with_queries"})
    NgramGenerativeIndex.build(corpus, changed, work_dir=work, progress_bar=False)
    assert "starting afresh" in caplog.text
    # The other config's checkpoints are moved aside, not deleted.
    (aside,) = tmp_path.glob("work.replaced-*")
    assert (aside / "fingerprint").read_text() == stamp
    assert sorted(p.name for p in aside.iterdir()) == checkpoints
    assert (work / "fingerprint").read_text() != stamp


def test_cli_index_and_search(tmp_path, capsys):
    corpus = random_corpus(random.Random(2), 6)
    path = tmp_path / "corpus.jsonl"
    with path.open("w") as handle:
        for doc_id, title, text in zip(corpus.doc_ids, corpus.titles, corpus.texts, strict=True):
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    tiny = tiny_config("ngram").to_dict()
    settings = [f"model_config.{k}={v}" for k, v in tiny["model_config"].items()]
    settings += ["train.batch_size=8", "train.warmup_steps=2", "num_beams=4"]
    output = tmp_path / "idx"
    args = ["index", "--corpus", str(path), "--output", str(output), "--docids", "ngram"]
    args += [x for s in settings for x in ("--set", s)]
    assert main([*args, "--max-steps", "3", "--quiet"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "training" not in captured.err  # --quiet: no progress bar
    assert report["docids"] == "ngram" and report["documents"] == 6
    assert main(["search", "--index", str(output), "-k", "3", "--quiet", corpus.texts[0]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 1 <= len(record["hits"]) <= 3
    assert {h["doc_id"] for h in record["hits"]} <= set(corpus.doc_ids)
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"_id": "new1", "title": "", "text": "quartz lantern"}) + "\n")
    args = ["add", "--index", str(output), "--corpus", str(extra), "--max-steps", "2", "--quiet"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 7
    assert NgramGenerativeIndex.load(output).corpus.doc_ids[-1] == "new1"


def test_add_documents_to_an_ngram_index(tmp_path):
    full = random_corpus(random.Random(11), 14)
    old, new = full.subset(full.doc_ids[:9]), full.subset(full.doc_ids[9:])
    training = TrainingQueries({"q0": old.titles[0]}, {"q0": {old.doc_ids[0]: 1}})
    index = NgramGenerativeIndex.build(old, tiny_config("ngram", steps=10), training)
    index.save(tmp_path / "old")
    queries = [new.texts[0], old.texts[1]]
    old_results = Retriever.load(tmp_path / "old", device="cpu").search(queries, k=3)

    with pytest.raises(ValueError, match="already in the index"):
        index.add(old.subset(old.doc_ids[:1]))
    entry = index.add(
        new,
        config=AddConfig(replay="documents", max_steps=5, train={"warmup_steps": 1}),
        progress_bar=False,
    )
    assert entry["documents"] == 5 and entry["total_documents"] == 14
    assert entry["optimizer_updates"] == 5
    assert entry["examples"]["seal-span"] > 0 and entry["replay"]["pool"]["replay-span"] > 0
    assert index.corpus.doc_ids == full.doc_ids and index.ngrams.num_docs == 14
    # Every n-gram of a new document is now in the index and maps back to it.
    position = index.corpus.positions()
    for doc_id, text in zip(new.doc_ids, new.full_texts(), strict=True):
        tokens = tuple(index.tokenizer(text, add_special_tokens=False)["input_ids"][:4])
        assert position[doc_id] in index.ngrams.documents(tokens).tolist()
    index.save(tmp_path / "new")
    assert [e["event"] for e in index.lineage] == ["build", "add"]
    reloaded = NgramGenerativeIndex.load(tmp_path / "new")
    assert reloaded.lineage[-1]["order"] == 1 and reloaded.num_docs == 14
    hits = NgramRetriever(reloaded, device="cpu").search(queries, k=14)
    assert {h.doc_id for row in hits for h in row} & set(new.doc_ids)
    # The saved old index is untouched.
    again = Retriever.load(tmp_path / "old", device="cpu").search(queries, k=3)
    assert [[h.doc_id for h in r] for r in again] == [[h.doc_id for h in r] for r in old_results]


def test_generative_replay_on_an_ngram_index(tmp_path):
    """Generated queries for old documents -> their spans; the generator is kept in the index."""
    full = random_corpus(random.Random(12), 10)
    old, new = full.subset(full.doc_ids[:6]), full.subset(full.doc_ids[6:])
    config = tiny_config("ngram", steps=4)
    config.query_generator = True  # a generator of the index's tiny size
    training = TrainingQueries({"q0": old.titles[0]}, {"q0": {old.doc_ids[0]: 1}})
    index = NgramGenerativeIndex.build(old, config, training, progress_bar=False)
    assert index.query_generator is not None and index.lineage[0]["query_generator"]
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "query_generator" / "model.safetensors").is_file()
    loaded = NgramGenerativeIndex.load(tmp_path / "idx")
    assert loaded.query_generator is not None

    add = AddConfig(replay="generative", generated_per_doc=2, replay_docs=6, max_steps=3)
    entry = loaded.add(new, config=add, progress_bar=False, work_dir=tmp_path / "work")
    assert entry["replay"]["generator_trained"] is False
    # Generated queries, mixed about half and half with the old documents' real query.
    pool = entry["replay"]["pool"]
    assert pool["replay-generated"] > 0
    assert 0.3 < pool["replay-query"] / (pool["replay-query"] + pool["replay-generated"]) < 0.7
    # Two queries for each of the 6 replayed old documents, cached for a resumed addition.
    generated = json.loads((tmp_path / "work" / "replay_queries.json").read_text())
    assert len(generated) == 6 and all(len(qs) == 2 for qs in generated)
    assert loaded.num_docs == 10 and entry["optimizer_updates"] == 3


def test_build_with_pseudo_queries_on_an_ngram_index():
    corpus = random_corpus(random.Random(13), 6)
    config = tiny_config("ngram", steps=2)
    config.pseudo_queries = 2
    index = NgramGenerativeIndex.build(corpus, config, progress_bar=False)
    assert index.lineage[0]["examples"]["pseudo"] > 0
    assert index.query_generator is not None


def test_retriever_for_index_picks_the_kind(built):
    index, queries = built
    retriever = Retriever.for_index(index, device="cpu")
    assert isinstance(retriever, NgramRetriever)
    docid_index = GenerativeIndex.build(
        random_corpus(random.Random(1), 5), tiny_config("atomic", steps=2), progress_bar=False
    )
    plain = Retriever.for_index(docid_index, device="cpu")
    assert type(plain) is DocidRetriever
    assert len(plain.search(queries[:1], k=2)[0]) == 2


def test_scoring_option_picks_the_document_score(built):
    from docid.ngram import bm25_score, seal_score
    from dsi.seal import SealOptions

    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    o = retriever.options
    direct = {
        "bm25": lambda row: bm25_score(row, index.ngrams, gamma=o.gamma, k1=o.k1, b=o.b),
        "intersective": lambda row: seal_score(
            row, index.ngrams, alpha=o.alpha, beta=o.beta, smoothing=o.smoothing
        ),
    }
    generated = retriever.generate_ngrams(queries[:3])
    for scoring, score in direct.items():
        retriever.options = dataclasses.replace(
            o, scoring=scoring, word_weight=0.0, query_weight=0.0
        )
        for row, hits in zip(generated, retriever.search(queries[:3], k=5), strict=True):
            expected = [(index.corpus.doc_ids[d], s) for d, s in score(row)[:5]]
            # Documents past the scored ones are backfilled (score <= 0).
            assert [(h.doc_id, h.score) for h in hits[: len(expected)]] == expected
    with pytest.raises(ValueError, match="scoring must be one of"):
        SealOptions.from_config(index.config.updated({"docid_options.scoring": "tfidf"}))


def test_explain_accounts_for_each_hits_score(built):
    """``explain`` returns search's hits, and for each the generated n-grams it holds and the
    scored words it holds, whose scores add up to its score (BM25 scoring, no feedback)."""
    index, queries = built
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, feedback_docs=0)
    assert retriever.options.scoring == "bm25" and retriever.options.word_weight > 0
    hits, explained = retriever.explain(queries[:4], k=5)
    assert hits == retriever.search(queries[:4], k=5)
    texts = index.corpus.full_texts()
    doc_words = analyze(texts)
    position = index.corpus.positions()
    for row, reasons in zip(hits, explained, strict=True):
        assert len(reasons) == len(row)
        for hit, why in zip(row, reasons, strict=True):
            doc = position[hit.doc_id]
            own = why.get("query_words", [])
            assert why["ngrams"] or why["words"] or own or hit.score <= 0  # a backfilled one
            if hit.score > 0:
                summed = sum(t["score"] for t in why["ngrams"] + why["words"] + own)
                assert summed == pytest.approx(hit.score, abs=1e-3)
                assert why["rest"] == pytest.approx(0.0, abs=1e-3)
            for word in why["words"]:
                assert word["word"] in doc_words[doc] and word["score"] > 0
            for word in own:  # the query's own words, at query_weight
                assert word["word"] in doc_words[doc] and word["score"] > 0
            for ngram in why["ngrams"]:
                assert ngram["logprob"] <= 0 and ngram["score"] > 0
    # With feedback on, the rest is the feedback's share of the score.
    retriever.options = dataclasses.replace(retriever.options, feedback_docs=2)
    hits, explained = retriever.explain(queries[:2], k=5)
    assert hits == retriever.search(queries[:2], k=5)
    for row, reasons in zip(hits, explained, strict=True):
        for hit, why in zip(row, reasons, strict=True):
            parts = why["ngrams"] + why["words"] + why.get("query_words", [])
            assert sum(t["score"] for t in parts) + why["rest"] == pytest.approx(
                hit.score, abs=1e-4
            )


def test_search_explain_shows_the_ngrams_and_words_of_each_hit(saved, capsys):
    capsys.readouterr()
    args = ["search", "--index", str(saved), "-k", "3", "--quiet", "--explain", "river stone"]
    assert main(args) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits
    for hit in hits:
        why = hit["explain"]
        assert {"ngrams", "words", "rest"} <= set(why) <= {"ngrams", "words", "query_words", "rest"}
        parts = why["ngrams"] + why["words"] + why.get("query_words", [])
        total = sum(t["score"] for t in parts) + why["rest"]
        assert total == pytest.approx(hit["score"], abs=1e-3)
