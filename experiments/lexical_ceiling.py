"""What ranking by the tokenizer's pieces can reach: BM25 over query pieces, no model involved.

    python -m experiments.lexical_ceiling                 # SciFact and Cranfield, dev queries

An n-gram model that copied every query piece perfectly would rank like this BM25 over
sentencepiece pieces (``docid.ngram.bm25_score`` with every query piece at probability 1),
so it bounds what the default retriever gains from copying alone, and it shows what the
tokenizer costs: the same BM25 over cased and case-folded pieces and over whole words, next to
the BM25 baseline (bm25s, stopwords + Snowball stemming). Dev splits are
``experiments/quality.py``'s. Writes ``<results>/lexical_ceiling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from docid.io import atomic_write_text
from docid.ngram import bm25_score
from dsi.bm25 import BM25Retriever
from dsi.metrics import evaluate_run
from dsi.model import train_tokenizer
from experiments import quality
from trie.fmindex import NgramIndex

log = logging.getLogger("lexical_ceiling")


def piece_bm25(data: dict, lowercase: bool, vocab_size: int, split: str) -> dict[str, float]:
    """Dev metrics of BM25 over the pieces of a tokenizer trained like ``dsi index``'s."""
    corpus = data["corpus"]
    qids = sorted(data[split])
    texts = corpus.full_texts()
    extra = [data["queries"][q] for q in data["train"]] if data["train"] else []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(texts + extra, vocab_size, Path(tmp), lowercase=lowercase)
    index = NgramIndex.build(tokenizer(texts, add_special_tokens=False)["input_ids"])
    pieces = tokenizer([data["queries"][q] for q in qids], add_special_tokens=False)["input_ids"]
    run = {}
    for qid, query in zip(qids, pieces, strict=True):
        ranked = bm25_score([((p,), 0.0) for p in query], index, max_occurrences=len(index.tokens))
        run[qid] = [(corpus.doc_ids[d], score) for d, score in ranked[:100]]
    return evaluate_run(run, data[split])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--results", type=Path, default=quality.ROOT / "experiments" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = {}
    lines = [
        "# BM25 over tokenizer pieces (what perfect copying of the query could reach), dev",
        "",
        f"Sentencepiece unigram tokenizers of {args.vocab_size} pieces trained on the corpus "
        "(and training queries) as `dsi index` trains them; seed "
        f"{args.seed}. `python -m experiments.lexical_ceiling`",
        "",
        "| dataset | ranking | nDCG@10 | Hits@1 | Hits@10 | Recall@100 |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.datasets:
        data = quality.load_dataset(name, args.seed)
        bm25 = BM25Retriever().index(data["corpus"])
        rows = {
            "bm25 (bm25s, stopwords + Snowball)": quality.evaluate(
                bm25.search, data["queries"], data["dev"]
            )
        }
        for lowercase in (False, True):
            label = f"BM25 over {'case-folded' if lowercase else 'cased'} pieces"
            rows[label] = piece_bm25(data, lowercase, args.vocab_size, "dev")
            log.info("%s %s: %s", name, label, quality._brief(rows[label]))
        results[name] = rows
        for label, m in rows.items():
            lines.append(
                f"| {name} ({len(data['dev'])} dev queries) | {label} | {m['nDCG@10']:.3f} | "
                f"{m['Hits@1']:.3f} | {m['Hits@10']:.3f} | {m['Recall@100']:.3f} |"
            )
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results / "lexical_ceiling.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(args.results / "lexical_ceiling.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
