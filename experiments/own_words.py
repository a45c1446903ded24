"""How much of what the n-gram model scores with is the query's own words.

    python -m experiments.own_words --index runs/scifact \
        --queries ../shared/data/scifact/queries.jsonl --qrels ../shared/data/scifact/qrels/test.tsv

For every evaluated query, the words that score documents in the first ranking (the stemmed
content words, ``docid.words.analyze``, as BM25 reads them, of the beams' n-grams and the
completed words; and again with the most likely first tokens added) are split into those the
query itself holds and the rest. Prints one JSON object: the share of scored word occurrences and
of distinct scored words that are the query's own, averaged over queries (unweighted by score),
and how many queries score only with, or with none of, their own words. Feedback words (models trained without queries) are not counted: they come from documents.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from docid.words import analyze
from dsi.data import load_qrels, load_queries
from dsi.ngram_retriever import NgramRetriever
from dsi.retriever import Retriever


def own_shares(query_words: Sequence[str], scored_words: Sequence[str]) -> tuple[float, float]:
    """(share of ``scored_words`` occurrences, share of distinct scored words) that are among
    ``query_words``; (0.0, 0.0) when nothing is scored."""
    if not scored_words:
        return 0.0, 0.0
    own = set(query_words)
    occurrences = sum(word in own for word in scored_words) / len(scored_words)
    distinct = set(scored_words)
    return occurrences, len(distinct & own) / len(distinct)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True, help="an n-gram index directory")
    parser.add_argument("--queries", required=True, help="queries file (jsonl/tsv)")
    parser.add_argument("--qrels", required=True, help="the evaluated split's qrels")
    parser.add_argument("--batch-size", type=int, default=32, help="queries decoded at once")
    args = parser.parse_args(argv)
    retriever = Retriever.load(args.index)
    if not isinstance(retriever, NgramRetriever):
        parser.error(f"{args.index} is not an n-gram index: its docids are what it scores.")
    queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    texts = [queries[qid] for qid in queries if qid in qrels]
    generated = retriever.generate(texts, batch_size=args.batch_size)
    decode = retriever.index.tokenizer.decode
    own = analyze(texts)
    report: dict[str, object] = {"index": args.index, "queries": len(texts)}
    # The beams' n-grams and the completed words carry most of the score; the first tokens are
    # many (``unigrams``) and weighted by their probability, so they are counted apart.
    parts = {
        "ngrams_and_words": lambda g: g.beams + g.words,
        "with_first_tokens": lambda g: g.beams + g.unigrams + g.words,
    }
    for name, terms in parts.items():
        scored = analyze([" ".join(decode(list(t)) for t, _ in terms(g)) for g in generated])
        shares = [own_shares(q, s) for q, s in zip(own, scored, strict=True)]
        n = len(shares)
        report[name] = {
            "own_share_of_scored_occurrences": round(sum(o for o, _ in shares) / n, 4),
            "own_share_of_distinct_scored_words": round(sum(d for _, d in shares) / n, 4),
            "queries_scored_only_with_own_words": sum(d == 1.0 for _, d in shares),
            "queries_scored_with_no_own_word": sum(d == 0.0 for _, d in shares),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
