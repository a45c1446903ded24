"""Retrieval metrics computed the way pytrec_eval / BEIR compute them, plus TREC run files.

A run maps each query id to its retrieved documents, either as a list of ``(doc_id, score)``
pairs (or objects with ``doc_id`` and ``score`` attributes, such as ``Hit``) or as a
``{doc_id: score}`` dict. As in trec_eval, documents are ranked by score, highest first, with
ties broken by doc id in descending order, whatever order the list is in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from docid.guard import FileKind, ensure_replaceable
from docid.io import atomic_write_text
from dsi.data import DataError

METRIC_NAMES = ("nDCG@10", "Hits@1", "Hits@10", "MRR@10", "Recall@10", "Recall@100")
Run = Mapping[str, Any]  # qid -> list[(doc_id, score)] | list[Hit] | dict[doc_id, score]


def _is_run_line(line: str) -> bool:
    """``qid Q0 docid rank score tag``: six columns, an integer rank and a numeric score."""
    fields = line.split()
    if len(fields) != 6 or not fields[3].lstrip("+-").isdigit():
        return False
    try:
        float(fields[4])
    except ValueError:
        return False
    return True


# A run file is replaced only by a run file: never a user's other file, a folder or a link.
RUN_FILE = FileKind("a TREC run file", _is_run_line)


def rank(qid: str, entries: Mapping[str, float] | Iterable[Any]) -> list[tuple[str, float]]:
    """``(doc_id, score)`` pairs of one query in trec_eval order."""
    if isinstance(entries, Mapping):
        pairs = [(str(doc_id), float(score)) for doc_id, score in entries.items()]
    else:
        pairs = []
        seen: set[str] = set()
        for entry in entries:
            if hasattr(entry, "doc_id"):
                doc_id, score = entry.doc_id, entry.score
            else:
                doc_id, score = entry
            doc_id = str(doc_id)
            if doc_id in seen:
                raise ValueError(f"run for query {qid!r} lists doc {doc_id!r} twice")
            seen.add(doc_id)
            pairs.append((doc_id, float(score)))
    for doc_id, score in pairs:
        if math.isnan(score):
            raise ValueError(f"run for query {qid!r} gives doc {doc_id!r} a NaN score")
    pairs.sort(key=lambda pair: (pair[1], pair[0]), reverse=True)
    return pairs


def query_metrics(ranking: list[str], judged: Mapping[str, int]) -> dict[str, float]:
    """All metrics of one ranked list of doc ids against one query's judgments.

    Gain is the grade itself (negative grades count as 0), discount ``log2(rank + 1)``; the ideal
    ranking sorts every judged document with grade > 0.
    """
    relevant = {doc_id for doc_id, grade in judged.items() if grade > 0}
    if not relevant:
        raise ValueError("query has no relevant judgments, so its metrics are undefined")
    dcg = sum(
        max(judged.get(doc_id, 0), 0) / math.log2(i + 2) for i, doc_id in enumerate(ranking[:10])
    )
    ideal = sorted((judged[doc_id] for doc_id in relevant), reverse=True)[:10]
    idcg = sum(grade / math.log2(i + 2) for i, grade in enumerate(ideal))
    first = next((i for i, doc_id in enumerate(ranking[:10]) if doc_id in relevant), None)
    return {
        "nDCG@10": dcg / idcg,
        "Hits@1": float(bool(ranking[:1]) and ranking[0] in relevant),
        "Hits@10": float(first is not None),
        "MRR@10": 0.0 if first is None else 1.0 / (first + 1),
        "Recall@10": len(relevant.intersection(ranking[:10])) / len(relevant),
        "Recall@100": len(relevant.intersection(ranking[:100])) / len(relevant),
    }


def per_query(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """Metrics for every query with at least one relevant judgment.

    Queries judged only non-relevant are left out (every metric is undefined for them); a judged
    query missing from the run scores 0; run queries without judgments are ignored.
    """
    results: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if not any(grade > 0 for grade in judged.values()):
            continue
        ranking = [doc_id for doc_id, _ in rank(qid, run.get(qid, ()))]
        results[qid] = query_metrics(ranking, judged)
    return results


def evaluate_run(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean ``nDCG@10, Hits@1, Hits@10, MRR@10, Recall@10, Recall@100`` and ``num_queries``."""
    scores = per_query(run, qrels)
    if not scores:
        raise ValueError("qrels hold no relevant judgments, so there is nothing to evaluate")
    means: dict[str, float] = {
        name: sum(s[name] for s in scores.values()) / len(scores) for name in METRIC_NAMES
    }
    means["num_queries"] = len(scores)
    return means


def mean_metrics(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries of ``scores`` (from :func:`per_query`) and
    ``num_queries``; every metric is None when there are no queries."""
    means: dict[str, Any] = {
        name: (sum(s[name] for s in scores.values()) / len(scores) if scores else None)
        for name in METRIC_NAMES
    }
    means["num_queries"] = len(scores)
    return means


def paired_difference(
    first: np.ndarray, second: np.ndarray, resamples: int, rng: np.random.Generator
) -> dict[str, float]:
    """Mean of ``first - second`` (per-query scores of the same queries), its 95% bootstrap
    interval over resamples of the queries, and the share of resamples where the difference is
    not above zero."""
    if first.shape != second.shape or first.ndim != 1 or len(first) == 0:
        raise ValueError("paired scores must be two non-empty vectors over the same queries")
    differences = first - second
    picks = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[picks].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "difference": float(differences.mean()),
        "low": float(low),
        "high": float(high),
        "not_above": float((means <= 0).mean()),
        "wins": int((differences > 0).sum()),
        "losses": int((differences < 0).sum()),
    }


def paired_interval(
    first: Mapping[str, Mapping[str, float]],
    second: Mapping[str, Mapping[str, float]],
    metric: str,
    resamples: int = 10_000,
    seed: int = 0,
) -> list[float]:
    """``[mean, low, high]`` of ``first - second`` in ``metric`` over the queries both score
    (per-query metrics from :func:`per_query`): the paired bootstrap 95% interval."""
    qids = sorted(set(first) & set(second))
    a = np.array([first[q][metric] for q in qids], dtype=np.float64)
    b = np.array([second[q][metric] for q in qids], dtype=np.float64)
    found = paired_difference(a, b, resamples, np.random.default_rng(seed))
    return [found["difference"], found["low"], found["high"]]


def _check_token(value: str, what: str) -> str:
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} {value!r} cannot be written to a TREC run (empty or whitespace)")
    return value


def write_trec_run(run: Run, path: str | Path, tag: str = "dsi") -> None:
    """Write ``qid Q0 docid rank score tag`` lines atomically, in trec_eval's ranking order.

    Anything at ``path`` but a run file (or an empty file) is refused (:class:`PathRefused`).
    """
    ensure_replaceable(Path(path), RUN_FILE)
    atomic_write_text(Path(path), "".join(trec_lines(run, tag)))


def trec_lines(run: Run, tag: str = "dsi") -> list[str]:
    """The ``qid Q0 docid rank score tag`` lines of ``run`` (each ending in a newline), in
    trec_eval's ranking order; an id or tag that is empty or holds whitespace is refused."""
    _check_token(tag, "run tag")
    lines = []
    for qid, entries in run.items():
        _check_token(str(qid), "query id")
        for position, (doc_id, score) in enumerate(rank(qid, entries), start=1):
            _check_token(doc_id, "doc id")
            # repr round-trips the float exactly, so re-reading keeps the same order and ties.
            lines.append(f"{qid} Q0 {doc_id} {position} {score!r} {tag}\n")
    return lines


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{qid: {doc_id: score}}``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise DataError(f"{path} line {number}: expected 6 columns, found {len(fields)}")
            qid, _, doc_id, _, score, _ = fields
            try:
                value = float(score)
            except ValueError:
                raise DataError(f"{path} line {number}: score {score!r} is not a number") from None
            docs = run.setdefault(qid, {})
            if doc_id in docs:
                raise DataError(f"{path} line {number}: doc {doc_id!r} repeated for query {qid!r}")
            docs[doc_id] = value
    return run
