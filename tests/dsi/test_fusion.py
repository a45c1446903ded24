"""One model, two identifiers (issue 29): n-grams and semantic docids, fused at search."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from docid.ngram import best_first
from dsi.fusion import ExcludeFirst, PlanningPrior, PrefixRanges, fuse, lexical_vectors
from dsi.index import TrainingQueries
from dsi.kinds import load_index
from dsi.ngram_retriever import NgramRetriever
from dsi.retriever import Retriever
from dsi.seal import FUSED, NgramGenerativeIndex
from tests.conftest import random_corpus, tiny_config


@pytest.fixture(scope="module")
def fused_index():
    corpus = random_corpus(random.Random(7), 12)
    training = TrainingQueries(
        {"q0": corpus.titles[0], "q1": corpus.texts[4][:40]}, {"q0": {"d0": 1}, "q1": {"d4": 1}}
    )
    index = NgramGenerativeIndex.build(
        corpus, tiny_config(FUSED, steps=20), training, progress_bar=False
    )
    queries = corpus.texts[:4] + [corpus.titles[7], "unrelated words"]
    return index, queries


def _retriever(index, **options) -> NgramRetriever:
    retriever = NgramRetriever(index, device="cpu")
    retriever.options = dataclasses.replace(retriever.options, **options)
    return retriever


def test_fused_model_learns_both_targets_and_saves_and_loads(fused_index, tmp_path):
    index, queries = fused_index
    tasks = index.lineage[0]["examples"]
    assert tasks["seal-span"] > 0 and tasks["seal-query"] > 0
    assert tasks["fused-index"] >= len(index.corpus.doc_ids) and tasks["fused-query"] > 0
    # The marker and the docid symbols follow the text vocabulary.
    fused = index.fused
    assert fused.marker == len(index.tokenizer)
    assert index.model.config.vocab_size >= fused.offset + len(fused.docids.symbols)
    index.save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert loaded.config.docids == FUSED and loaded.fused.marker == fused.marker
    assert loaded.fused.docids.sequences == fused.docids.sequences
    a = Retriever.for_index(index, device="cpu").search(queries, k=5)
    b = Retriever.load(tmp_path / "idx", device="cpu").search(queries, k=5)
    assert [[h.doc_id for h in row] for row in a] == [[h.doc_id for h in row] for row in b]
    for x, y in zip(a, b, strict=True):
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-4)


def test_docid_part_returns_only_existing_docids(fused_index):
    index, queries = fused_index
    for plan in (0.0, 2.0):
        _, parts = _retriever(index).fusion_parts(queries, k=5, plan_weight=plan)
        for _, reached in parts:
            assert reached, "the docid beams reach some document"
            docs = [doc for doc, _ in reached]
            assert len(docs) == len(set(docs))
            assert all(0 <= doc < index.num_docs for doc in docs)
            assert all(lp <= 1e-6 for _, lp in reached)  # log-probabilities, the prior taken out


def test_weight_zero_is_the_lexical_ranking_exactly(fused_index):
    index, queries = fused_index
    lexical_only = _retriever(index, fusion_weight=0.0)
    generated = lexical_only.generate(queries)
    expected = lexical_only.rank_generations(generated, k=8)
    assert lexical_only.search(queries, k=8) == expected
    # ...and fuse() at weight 0 over the real parts gives the same ranking and scores.
    _, parts = _retriever(index).fusion_parts(queries, k=8)
    for (lexical, reached), hits in zip(parts, expected, strict=True):
        fused = fuse(lexical, reached, 0.0, k=8)
        doc_ids = [index.corpus.doc_ids[d] for d, _ in fused]
        assert doc_ids == [h.doc_id for h in hits][: len(fused)]


def test_documents_the_beams_never_reach_keep_their_lexical_score(fused_index):
    index, queries = fused_index
    _, parts = _retriever(index).fusion_parts(queries, k=5)
    for lexical, reached in parts:
        fused = dict(fuse(lexical, reached, 0.7))
        touched = {doc for doc, _ in reached}
        for doc, score in lexical:
            if doc in touched:
                assert fused[doc] > score
            else:
                assert fused[doc] == score
        assert set(fused) == {doc for doc, _ in lexical} | touched  # no recall lost


def test_fused_search_ranks_by_lexical_plus_weighted_docid_share(fused_index):
    index, queries = fused_index
    retriever = _retriever(index, fusion_weight=0.5)
    hits = retriever.search(queries, k=6)
    _, parts = retriever.fusion_parts(queries, k=6)
    for row, (lexical, reached) in zip(hits, parts, strict=True):
        expected = fuse(lexical, reached, 0.5, k=6)
        assert [h.doc_id for h in row][: len(expected)] == [
            index.corpus.doc_ids[d] for d, _ in expected
        ]


def test_fusion_adds_weight_times_best_lexical_times_share():
    lexical = [(0, 4.0), (1, 2.0), (2, 1.0)]
    reached = [(2, np.log(0.75)), (3, np.log(0.25))]
    out = dict(fuse(lexical, reached, 0.5))
    assert out[0] == 4.0 and out[1] == 2.0
    assert out[2] == pytest.approx(1.0 + 0.5 * 4.0 * 0.75)
    assert out[3] == pytest.approx(0.5 * 4.0 * 0.25)
    assert fuse(lexical, reached, 0.0) == best_first(list(lexical), None)


def _random_docids(rng: random.Random, n: int) -> list[tuple[int, ...]]:
    seqs: set[tuple[int, ...]] = set()
    while len(seqs) < n:
        seqs.add(tuple(rng.randrange(100, 104) for _ in range(rng.randint(1, 3))) + (1,))
    out = list(seqs)
    rng.shuffle(out)
    return out


def test_prior_per_trie_node_is_the_best_lexical_score_under_it():
    rng = random.Random(3)
    seqs = _random_docids(rng, 30)
    ranges = PrefixRanges(seqs)
    scores = np.array([[rng.random() * (rng.random() < 0.6) for _ in seqs] for _ in range(4)])
    priors = ranges.node_max(scores)
    assert ranges.num_nodes == len({s[:i] for s in seqs for i in range(len(s) + 1)})
    for prefix, node in ranges.node_of.items():
        under = [i for i, s in enumerate(seqs) if s[: len(prefix)] == prefix]
        assert under
        np.testing.assert_allclose(priors[:, node], scores[:, under].max(axis=1))
    for doc, seq in enumerate(seqs):
        assert ranges.node_of[seq] == ranges.leaf_of[doc]


def test_planning_prior_adds_the_change_of_prefix_prior():
    rng = random.Random(4)
    seqs = _random_docids(rng, 12)
    ranges = PrefixRanges(seqs)
    rankings = [[(d, float(d + 1)) for d in range(0, 12, 3)], [(5, 2.0)]]
    priors = ranges.node_max(lexical_vectors(rankings, len(seqs)))
    assert priors[:, 0].tolist() == [1.0, 1.0]  # the root's prior is the best, scaled to 1
    beams, weight = 2, 3.0
    prefix = seqs[0][:1]
    ids = torch.tensor([[0, 99, *prefix]] * (2 * beams))
    scores = torch.zeros((2 * beams, 110))
    out = PlanningPrior(ranges, priors, beams, weight)(ids, scores.clone())
    node = ranges.node_of[prefix]
    tokens, kids = ranges.children[node]
    for row in range(2 * beams):
        q = row // beams
        expected = torch.zeros(110, dtype=torch.float64)
        expected[tokens] = torch.from_numpy(weight * (priors[q, kids] - priors[q, node]))
        torch.testing.assert_close(out[row].double(), expected)


def test_docid_scores_are_the_models_log_probabilities_of_the_docids(fused_index):
    index, queries = fused_index
    retriever = _retriever(index)
    fused, model = index.fused, retriever.model
    eos, start = model.config.eos_token_id, model.config.decoder_start_token_id
    for query in queries[:2]:
        # One query per batch: no padding, as it is scored here.
        _, [(_, reached)] = retriever.fusion_parts([query], k=3)
        longest = index.config.train.max_source_length  # as search cuts queries
        enc = index.tokenizer([query], max_length=longest, truncation=True, return_tensors="pt")
        for doc, logprob in reached[:3]:
            target = fused.target(index.corpus.doc_ids[doc], eos)  # [marker, docid..., EOS]
            decoder = torch.tensor([[start, *target[:-1]]])
            with torch.inference_mode():
                logits = model(**enc, decoder_input_ids=decoder).logits[0].float()
            steps = logits.log_softmax(-1)[torch.arange(1, len(target)), torch.tensor(target[1:])]
            assert logprob == pytest.approx(float(steps.sum()), abs=1e-3)


def test_a_strong_plan_leads_the_docid_beams_to_the_best_lexical_document(fused_index):
    index, queries = fused_index
    _, parts = _retriever(index).fusion_parts(queries, k=5, plan_weight=1000.0)
    led = 0
    for lexical, reached in parts:
        if lexical and lexical[0][1] > 0:
            assert lexical[0][0] in {doc for doc, _ in reached}
            led += 1
    assert led  # some query has a lexical ranking to follow


def test_the_ngram_task_decodes_without_the_marker_s_mass():
    marker = 5
    scores = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0, 3.0]]), dim=-1)
    first = ExcludeFirst([marker])(torch.tensor([[0]]), scores.clone())
    assert first[0, marker] == float("-inf")
    kept = torch.softmax(torch.tensor([0.0, 1.0, 2.0, 0.5, -1.0]), dim=-1).log()
    torch.testing.assert_close(first[0, :marker], kept)
    later = ExcludeFirst([marker])(torch.tensor([[0, 2]]), scores.clone())
    torch.testing.assert_close(later, scores)  # only the first step is renormalized


def test_a_deeper_search_begins_with_the_shallower_one(fused_index):
    # The docid beams do not widen with k: a search's top documents do not depend on how many
    # it asks for (they once numbered max(beams, k), which spread the docids' shares).
    index, queries = fused_index
    retriever = _retriever(index, fusion_weight=1.0, plan_weight=1.0)
    shallow = retriever.search(queries, k=3, num_beams=2)
    deep = retriever.search(queries, k=10, num_beams=2)
    for few, many in zip(shallow, deep, strict=True):
        assert [(h.doc_id, pytest.approx(h.score)) for h in few] == [
            (h.doc_id, h.score) for h in many[:3]
        ]
