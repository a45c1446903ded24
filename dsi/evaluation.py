"""What ``dsi eval`` reports: metrics of dsi and its baselines, seen / unseen, paired intervals.

A query is *seen* when one of its relevant documents is judged by a training query of the index
(the model was taught that document with a query), *unseen* otherwise: the unseen part is what a
user with new documents gets, so whenever the index has training queries both are reported.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docid.guard import FileKind
from docid.io import atomic_write_text
from dsi.metrics import Run, mean_metrics, paired_interval, per_query

log = logging.getLogger(__name__)

COMPARED = ("nDCG@10", "Hits@10")
RESAMPLES = 10_000
SEED = 0


def _is_per_query_line(line: str) -> bool:
    """A line of ``dsi eval --per-query``: a JSON object with a ``query_id``."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "query_id" in record


# What --per-query may replace: an earlier per-query file or an empty file, never a user's.
PER_QUERY_FILE = FileKind("a dsi eval per-query file", _is_per_query_line)
# Refuse when at least this share of the evaluated queries are the index's training queries.
TRAINING_SHARE_REFUSED = 0.5


def _training_overlap(texts: Sequence[str], training_pairs: Sequence[tuple[str, str]]) -> int:
    """How many of ``texts`` are the text of a training query of the index."""
    trained = {query for query, _ in training_pairs}
    return sum(text in trained for text in texts)


def is_training_split(texts: Sequence[str], training_pairs: Sequence[tuple[str, str]]) -> bool:
    """True when the evaluated queries are the index's training split: at least
    ``TRAINING_SHARE_REFUSED`` of them are its training queries (the lineage records no split
    name, so the queries themselves say it; :func:`check_not_training` refuses such a split)."""
    overlap = _training_overlap(texts, training_pairs)
    return bool(overlap) and overlap >= TRAINING_SHARE_REFUSED * len(texts)


def check_not_training(
    texts: Sequence[str], training_pairs: Sequence[tuple[str, str]], qrels_path: str | Path
) -> None:
    """Refuse an evaluation whose queries are mostly the index's training queries (the training
    split passed as evaluation qrels); log a warning when a few are."""
    overlap = _training_overlap(texts, training_pairs)
    if is_training_split(texts, training_pairs):
        raise ValueError(
            f"{overlap} of the {len(texts)} queries judged in {qrels_path} are the index's own "
            "training queries, so this would evaluate on training queries; pass the qrels of a "
            "held-out split (e.g. qrels/test.tsv)."
        )
    if overlap:
        log.warning(
            "%d of the %d evaluated queries have the text of a training query of the index.",
            overlap,
            len(texts),
        )


def seen_queries(
    qrels: Mapping[str, Mapping[str, int]], training_pairs: Sequence[tuple[str, str]]
) -> set[str]:
    """The queries with a relevant document that some training query judges."""
    taught = {doc_id for _, doc_id in training_pairs}
    return {
        qid
        for qid, judged in qrels.items()
        if any(grade > 0 and doc_id in taught for doc_id, grade in judged.items())
    }


def report(
    runs: Mapping[str, Run],
    qrels: Mapping[str, Mapping[str, int]],
    training_pairs: Sequence[tuple[str, str]] = (),
    *,
    compare: bool = False,
    per_query_file: str | Path | None = None,
) -> dict[str, Any]:
    """One block per run (``runs`` holds ``"dsi"`` first, then the baselines): the six metrics
    and ``num_queries``, with ``"seen"`` / ``"unseen"`` blocks when there are training queries;
    ``"compare"`` (``compare``): per baseline, ``[mean, low, high]`` of dsi minus it, overall and
    seen / unseen. ``per_query_file`` gets one JSON line of metrics per query."""
    scores = {name: per_query(run, qrels) for name, run in runs.items()}
    if not scores["dsi"]:
        raise ValueError("The qrels hold no relevant judgements, so there is nothing to evaluate.")
    qids = list(scores["dsi"])
    seen = seen_queries(qrels, training_pairs) if training_pairs else None
    parts = {"seen": [], "unseen": []} if seen is not None else {}
    for qid in qids:
        if seen is not None:
            parts["seen" if qid in seen else "unseen"].append(qid)

    out: dict[str, Any] = {}
    for name, by_query in scores.items():
        block = mean_metrics(by_query)
        for part, members in parts.items():
            block[part] = mean_metrics({q: by_query[q] for q in members})
        out[name] = block
    if compare:
        out["compare"] = {
            name: _intervals(scores["dsi"], scores[name], parts) for name in scores if name != "dsi"
        }
        out["compare_settings"] = {"resamples": RESAMPLES, "seed": SEED, "interval": 0.95}
    if per_query_file is not None:
        lines = []
        for qid in qids:
            record: dict[str, Any] = {"query_id": qid}
            if seen is not None:
                record["seen"] = qid in seen
            record.update({name: by_query[qid] for name, by_query in scores.items()})
            lines.append(json.dumps(record) + "\n")
        atomic_write_text(Path(per_query_file), "".join(lines))
        out["per_query_file"] = str(per_query_file)
    return out


def _intervals(
    first: Mapping[str, Mapping[str, float]],
    second: Mapping[str, Mapping[str, float]],
    parts: Mapping[str, list[str]],
) -> dict[str, Any]:
    found: dict[str, Any] = {
        m: paired_interval(first, second, m, RESAMPLES, SEED) for m in COMPARED
    }
    for part, members in parts.items():
        block: dict[str, Any] = {"num_queries": len(members)}
        for m in COMPARED:
            a = {q: first[q] for q in members}
            b = {q: second[q] for q in members}
            block[m] = paired_interval(a, b, m, RESAMPLES, SEED) if members else None
        found[part] = block
    return found


MEMORIZATION_RANKS = (1, 10)
# The keys :func:`memorization` returns: from the document's text, and (title and keyword
# docids) from the text with the docid's words removed.
MEMORIZATION_KEYS = tuple(f"memorization@{rank}" for rank in MEMORIZATION_RANKS)
MASKED_MEMORIZATION_KEYS = tuple(
    f"memorization_without_docid_words@{rank}" for rank in MEMORIZATION_RANKS
)
# Documents a build measures its memorization on (``record_memorization``; all when fewer).
BUILD_MEMORIZATION_SAMPLE = 1000


def memorization(
    retriever: Any,
    sample: int | None = None,
    seed: int = SEED,
    batch_size: int = 32,
    doc_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """DSI's indexing accuracy: the share of indexed documents whose own first indexing view,
    exactly as trained (``dsi.examples.document_views``), decodes their docid at rank 1
    (``memorization@1``) and within the top 10 (``memorization@10``), over all documents (or
    those of ``doc_ids``, in index order) or ``sample`` of them drawn with ``seed``;
    ``memorization_documents`` counts them.

    For title and keyword docids, whose words the document's text holds, the same is measured
    on the text with the docid's words removed (``memorization_without_docid_words@1``, ``@10``).
    ``retriever`` is a :class:`dsi.retriever.Retriever`; an n-gram index has no docids to
    memorize and is refused (``ValueError``).
    """
    from docid.lexical import LexicalDocidMap, without_words
    from dsi.kinds import index_kind

    index = retriever.index
    if index_kind(index.config.docids) == "ngram":
        raise ValueError(
            "Memorization is measured for docid indexes only; this index holds n-gram "
            "identifiers (the default kind), which give no document its own identifier to decode."
        )
    all_ids = list(index.corpus.doc_ids)
    chosen = list(range(len(all_ids)))
    if doc_ids is not None:
        wanted_ids = set(doc_ids)
        unknown = wanted_ids - set(all_ids)
        if unknown:
            raise ValueError(f"{len(unknown)} of the documents to measure are not in the index.")
        chosen = [i for i in chosen if all_ids[i] in wanted_ids]
    if sample is not None:
        if sample < 1:
            raise ValueError(f"The memorization sample must be at least 1 document, got {sample}.")
        if sample < len(chosen):
            chosen = sorted(random.Random(seed).sample(chosen, sample))
    texts = index.corpus.full_texts()
    wanted = [all_ids[i] for i in chosen]
    out: dict[str, Any] = _decoded_at(retriever, [texts[i] for i in chosen], wanted, batch_size)
    out["memorization_documents"] = len(chosen)
    if isinstance(index.docids, LexicalDocidMap):
        stripped = [without_words(texts[i], index.docids.docid_words(all_ids[i])) for i in chosen]
        found = _decoded_at(retriever, stripped, wanted, batch_size)
        for masked, key in zip(MASKED_MEMORIZATION_KEYS, MEMORIZATION_KEYS, strict=True):
            out[masked] = found[key]
    return out


def record_memorization(
    index: Any,
    sample: int = BUILD_MEMORIZATION_SAMPLE,
    device: str | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Measure a docid index's :func:`memorization` on ``sample`` documents (all when it has
    fewer) drawn with the fixed seed, and keep it in its latest lineage entry (the build's, or
    an addition's) as ``"memorization"``, which ``dsi info`` shows; return it. An n-gram index
    is refused (``ValueError``)."""
    from dsi.kinds import kind_of_index

    retriever = kind_of_index(index).retriever(index, device=device)
    found = memorization(retriever, sample=sample, batch_size=batch_size)
    found["memorization_sample"] = (
        f"{found['memorization_documents']} of {len(index.corpus.doc_ids)} documents "
        f"(at most {sample}, drawn with seed {SEED}), each its first indexing view"
    )
    if index.lineage:
        index.lineage[-1]["memorization"] = found
    return found


def _decoded_at(
    retriever: Any, texts: Sequence[str], doc_ids: Sequence[str], batch_size: int
) -> dict[str, float]:
    """``memorization@r`` for r in MEMORIZATION_RANKS: the share of ``texts`` whose first
    indexing view decodes the matching doc id at rank r or better."""
    from dsi.examples import document_views

    index = retriever.index
    eos = index.model.config.eos_token_id
    tokens = index.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    rng = random.Random(0)  # the windows document_views may draw are not used
    views = [document_views(ids, index.config.train, eos, rng)[0] for ids in tokens]
    hits = retriever.search_token_ids(views, k=max(MEMORIZATION_RANKS), batch_size=batch_size)
    out = {}
    for rank in MEMORIZATION_RANKS:
        found = sum(
            doc_id in {h.doc_id for h in ranked[:rank]}
            for doc_id, ranked in zip(doc_ids, hits, strict=True)
        )
        out[f"memorization@{rank}"] = found / max(len(doc_ids), 1)
    return out
