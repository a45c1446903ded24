"""The fused kind end to end on examples/tiny: `dsi index --docids ngram+semantic`, search, and
experiments/fusion.py's grid, ablation and latency (a smoke run: it decides nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsi.cli import main as dsi_main
from dsi.data import load_qrels
from dsi.retriever import Retriever
from experiments import fusion
from tests.conftest import REPO

TINY = REPO / "examples" / "tiny"


@pytest.fixture(scope="module")
def fused_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion") / "idx"
    code = dsi_main(
        [
            *("index", "--corpus", str(TINY), "--output", str(out), "--docids", "ngram+semantic"),
            *("--set", "model_config.size=tiny", "--set", "model_config.vocab_size=200"),
            *("--set", "train.batch_size=8", "--set", "train.warmup_steps=2"),
            *("--max-steps", "6", "--quiet"),
        ]
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_a_fused_index_built_from_the_command_line_searches(fused_dir):
    retriever = Retriever.load(fused_dir, device="cpu")
    assert retriever.index.fused is not None
    hits = retriever.search(["which town is famous for reed clocks", "copper baskets"], k=10)
    corpus = set(retriever.index.corpus.doc_ids)
    assert all(len(row) == 10 and {h.doc_id for h in row} <= corpus for row in hits)


@pytest.mark.slow
def test_grid_ablation_and_latency_write_their_tables(fused_dir, tmp_path):
    dev = ["--dev", str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")]
    fusion.main(["grid", *dev, "--output", str(tmp_path / "grid")])
    result = json.loads((tmp_path / "grid.json").read_text())
    assert result["rule"] is None  # a smoke run decides nothing
    cells = {(r["fusion_weight"], r["plan_weight"]) for r in result["rows"]}
    expected = {(w, p) for w in fusion.FUSION_WEIGHTS[1:] for p in fusion.PLAN_WEIGHTS}
    assert cells == expected | {(0.0, 0.0)}
    assert result["best"]["fusion_weight"] in fusion.FUSION_WEIGHTS
    fusion.main(["ablation", *dev, "--weights", "0.5", "1", "--output", str(tmp_path / "abl")])
    rows = json.loads((tmp_path / "abl.json").read_text())["rows"]
    assert {(r["terms"], r["docids"]) for r in rows} == {
        ("model", True),
        ("model", False),
        ("own", True),
        ("own", False),
    }
    judged = len(load_qrels(TINY / "qrels" / "test.tsv"))
    assert all(r["num_queries"] == judged for r in rows)
    fusion.main(
        ["latency", *dev, "--weights", "0.5", "1", "--latency-queries", "6"]
        + ["--output", str(tmp_path / "lat")]
    )
    rows = json.loads((tmp_path / "lat.json").read_text())["rows"]
    assert [r["ranking"] for r in rows] == ["lexical", "fused", "fused+plan"]
    assert all(r["batch32_ms"] > 0 and r["batch1_ms"] > 0 for r in rows)
    assert (tmp_path / "lat.md").read_text().startswith("# fusion latency")


def _row(fusion_weight: float, plan_weight: float, ndcg: float) -> dict:
    return {"fusion_weight": fusion_weight, "plan_weight": plan_weight, "mean nDCG@10": ndcg}


def test_the_rule_takes_the_cheapest_of_the_level_candidates():
    rows = [
        _row(0.0, 0.0, 0.700),
        _row(0.5, 1.0, 0.710),
        _row(1.0, 0.0, 0.7085),
        _row(2.0, 4.0, 0.701),
    ]
    # 0.7085 is within 0.002 of the best 0.710 and needs no planning prior: it wins.
    assert fusion.decide(rows) == {"fusion_weight": 1.0, "plan_weight": 0.0}
    rows.append(_row(0.5, 0.0, 0.7095))  # level too, and a smaller fusion weight
    assert fusion.decide(rows) == {"fusion_weight": 0.5, "plan_weight": 0.0}
    rows.append(_row(0.0, 0.0, 0.7081))  # the lexical ranking alone is level: it wins
    assert fusion.decide(rows) == {"fusion_weight": 0.0, "plan_weight": 0.0}
    assert fusion.decide([_row(0.0, 0.0, 0.6), _row(0.25, 2.0, 0.65)]) == {
        "fusion_weight": 0.25,
        "plan_weight": 2.0,
    }


@pytest.mark.slow
def test_word_expansion_scores_each_candidate_and_leaves_the_index_as_it_was(fused_dir, tmp_path):
    from docid.words import WordIndex
    from experiments import word_expansion

    dev = fusion.load_dev(
        str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")
    )
    index = dev.retriever.index
    plain, options = index.words, dev.retriever.options
    rows = word_expansion.candidates(dev, word_expansion.CANDIDATES)
    assert [(r["expand"], r["word_weight"]) for r in rows] == list(word_expansion.CANDIDATES)
    assert all(0.0 <= r["fused nDCG@10"] <= 1.0 for r in rows)
    assert index.word_index is plain and dev.retriever.options == options
    # The index was built with training queries: its word index holds their words too, more
    # than the documents' own.
    alone = WordIndex.build(index.corpus.full_texts())
    assert plain.expanded and plain.doc_lengths.sum() > alone.doc_lengths.sum()


def _expansion_row(expand: bool, weight: float, ndcg: float) -> dict:
    return {"expand": expand, "word_weight": weight, "fused nDCG@10": ndcg}


def test_word_expansion_is_adopted_only_by_the_rule_s_margin():
    from experiments.word_expansion import decide

    today = _expansion_row(False, 0.75, 0.700)
    assert decide([today, _expansion_row(True, 0.75, 0.709), _expansion_row(True, 3.0, 0.705)]) == {
        "expand": False,
        "word_weight": 0.75,
    }
    rows = [today, _expansion_row(True, 0.75, 0.7195), _expansion_row(True, 1.5, 0.721)]
    assert decide(rows) == {"expand": True, "word_weight": 0.75}  # level: nearest to 0.75
    rows.append(_expansion_row(True, 3.0, 0.74))
    assert decide(rows) == {"expand": True, "word_weight": 3.0}


@pytest.mark.slow
def test_query_words_add_the_bm25_of_the_query_s_own_words(fused_dir):
    from docid.words import analyze
    from experiments import query_words

    dev = fusion.load_dev(
        str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")
    )
    retriever, queries = dev.retriever, list(dev.queries.values())[:3]
    generated = retriever.generate(queries)
    model = retriever.lexical_rankings(generated)
    both = query_words.with_query_words(retriever, 2.0)(queries, generated)
    alone = query_words.with_query_words(retriever, None)(queries, generated)
    # Weight 0 is the model's ranking unchanged (a falsy weight once meant 1).
    unchanged = query_words.with_query_words(retriever, 0.0)(queries, generated)
    assert [dict(r) for r in unchanged] == [pytest.approx(dict(r)) for r in model]
    words = analyze(queries, language=retriever.index.config.language)
    for q, (m, b, a) in enumerate(zip(model, both, alone, strict=True)):
        bm25 = retriever.index.words.bm25(words[q], retriever.options.k1, retriever.options.b)
        expected = 2.0 * bm25
        for doc, score in m:
            expected[doc] += score
        assert dict(b) == pytest.approx({d: expected[d] for d, _ in b})
        assert {d for d, _ in b} == {d for d, _ in m} | set(np.flatnonzero(bm25).tolist())
        assert dict(a) == pytest.approx({d: bm25[d] for d, _ in a})
    rows = query_words.candidates(dev, (0.0, 1.0))
    assert [r["query_weight"] for r in rows] == [0.0, 1.0, "query words alone"]
    assert query_words.decide(rows)["query_weight"] in (0.0, 1.0)


def _setting_row(candidate: dict, ndcg: float) -> dict:
    return {"candidate": candidate, "nDCG@10": ndcg}


def test_search_dev_keeps_today_unless_beaten_by_the_margin_then_takes_the_cheapest_level():
    from experiments.search_dev import decide

    five, ten, twenty = ({"num_beams": n} for n in (5, 10, 20))
    rows = [_setting_row(five, 0.700), _setting_row(ten, 0.705), _setting_row(twenty, 0.714)]
    assert decide(rows, ten) == ten  # 0.009 above today's: not by the margin
    rows[2]["nDCG@10"] = 0.716
    assert decide(rows, ten) == twenty
    rows[0]["nDCG@10"] = 0.7145  # level with the best (within 0.002) and cheaper
    assert decide(rows, ten) == five


@pytest.mark.slow
def test_search_dev_scores_every_candidate_in_order_and_leaves_the_retriever_as_it_was(
    fused_dir, tmp_path
):
    from experiments import search_dev

    dev = fusion.load_dev(
        str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")
    )
    options, beams = dev.retriever.options, dev.retriever.num_beams
    assert search_dev.today(dev, "scoring") == {"scoring": "bm25"}
    rows, decided = search_dev.candidates(dev)
    expected = [(s, c) for s, cands in search_dev.SETTINGS.items() for c in cands]
    assert [(r["setting"], r["candidate"]) for r in rows] == expected
    assert all(0.0 <= r["nDCG@10"] <= 1.0 and r["seconds"] > 0 for r in rows)
    assert sum(r["chosen"] for r in rows) == len(search_dev.SETTINGS)
    assert {"scoring", "num_beams", "feedback_docs"} <= set(decided)
    assert dev.retriever.options == options and dev.retriever.num_beams == beams


@pytest.mark.slow
def test_search_dev_searches_with_each_candidate_s_options(fused_dir, monkeypatch):
    from experiments import search_dev

    dev = fusion.load_dev(
        str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")
    )
    seen = []
    search = dev.retriever.search

    def spy(queries, k=10, batch_size=32, num_beams=None):
        options = dev.retriever.options
        seen.append((options.scoring, options.alpha, options.feedback_docs, num_beams))
        return search(queries, k=k, batch_size=batch_size, num_beams=num_beams)

    monkeypatch.setattr(dev.retriever, "search", spy)
    search_dev.score(dev, {"scoring": "intersective", "alpha": 2.0, "num_beams": 5})
    search_dev.score(dev, {"feedback_docs": 5})
    assert seen == [("intersective", 2.0, 0, 5), ("bm25", 3.0, 5, None)]


@pytest.mark.slow
def test_search_dev_reads_a_plain_ngram_index_that_the_fused_experiments_refuse(tmp_path):
    from experiments import search_dev

    out = tmp_path / "ngram"
    assert (
        dsi_main(
            [
                *("index", "--corpus", str(TINY), "--output", str(out)),
                *("--set", "model_config.size=tiny", "--set", "model_config.vocab_size=200"),
                *("--max-steps", "2", "--quiet"),
            ]
        )
        == 0
    )
    files = (str(out), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv"))
    with pytest.raises(SystemExit, match="is not an 'ngram\\+semantic' index"):
        fusion.load_dev(*files)
    search_dev.main(["--dev", *files, "--output", str(tmp_path / "sd")])
    result = json.loads((tmp_path / "sd.json").read_text())
    assert result["kind"] == "ngram" and result["rule"] is None
    assert set(result["decision"]) >= {"scoring", "num_beams", "feedback_docs"}


@pytest.mark.slow
def test_doc2query_expansion_lets_a_generated_word_find_its_document(fused_dir):
    from experiments import doc2query

    dev = fusion.load_dev(
        str(fused_dir), str(TINY / "queries.jsonl"), str(TINY / "qrels" / "test.tsv")
    )
    index = dev.retriever.index
    target = index.corpus.doc_ids[3]
    dev.queries, dev.qrels = {"q": "zanzibarite"}, {"q": {target: 1}}
    generated = [["zanzibarite"] if d == 3 else ["nothing here"] for d in range(index.num_docs)]
    saved = index.word_index
    rows = doc2query.candidates(dev, generated, (0, 1))
    assert index.word_index is saved
    assert rows[0]["own words nDCG@10"] == 0.0 and rows[1]["own words nDCG@10"] == 1.0
    assert doc2query.decide(rows) == {"generated per document": 1}


def test_doc2query_keeps_no_expansion_unless_beaten_by_the_margin():
    from experiments.doc2query import decide

    def row(n, ndcg):
        return {"generated per document": n, "nDCG@10": ndcg}

    assert decide([row(0, 0.70), row(5, 0.709), row(10, 0.70)]) == {"generated per document": 0}
    assert decide([row(0, 0.70), row(5, 0.7105), row(10, 0.712)]) == {"generated per document": 5}
