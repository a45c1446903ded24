"""Write a BEIR folder that a build may read whole: the corpus, and only the training queries
that remain after ``experiments/quality.py`` holds its dev set out (seed 13), with the dev qrels
beside the folder, never inside it.

    python -m experiments.dev_split --dataset scifact --output runs/data/scifact_dev

writes ``runs/data/scifact_dev/{corpus.jsonl,queries.jsonl,qrels/train.tsv}`` and
``runs/data/scifact_dev.dev.tsv`` (the 150 held-out queries' qrels; their text stays in
``../shared``'s ``queries.jsonl``, which ``dsi eval --queries`` reads).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from experiments.quality import SHARED, load_dataset


def write_split(dataset: str, output: Path, seed: int = 13) -> dict[str, int]:
    """Write the folder and the dev qrels; return the query counts."""
    data = load_dataset(dataset, seed)
    if data["train"] is None:
        raise SystemExit(f"{dataset} has no training queries to split.")
    output.mkdir(parents=True, exist_ok=True)
    (output / "qrels").mkdir(exist_ok=True)
    shutil.copyfile(SHARED / dataset / "corpus.jsonl", output / "corpus.jsonl")
    with open(output / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid in sorted(data["train"]):
            f.write(json.dumps({"_id": qid, "text": data["queries"][qid]}) + "\n")

    def qrels(path: Path, judged: dict[str, dict[str, int]]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid in sorted(judged):
                for docid, grade in sorted(judged[qid].items()):
                    f.write(f"{qid}\t{docid}\t{grade}\n")

    qrels(output / "qrels" / "train.tsv", data["train"])
    qrels(output.with_name(output.name + ".dev.tsv"), data["dev"])
    return {"train": len(data["train"]), "dev": len(data["dev"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    print(json.dumps(write_split(args.dataset, args.output, args.seed)))


if __name__ == "__main__":
    main()
