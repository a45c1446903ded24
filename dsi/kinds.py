"""One dispatch from an identifier kind to its classes: the index that builds, adds to, saves
and loads it (one lifecycle, :class:`dsi.index.IndexLifecycle`) and the retriever that searches it.

The n-gram kind (``dsi.seal``, the default; ``ngram+semantic`` fuses it with semantic
docids, :mod:`dsi.fusion`) and the docid kinds (``dsi.index``: semantic,
atomic, naive, title, keywords: every scheme registered in :mod:`docid`) build on the same
lower modules; only this module and those above it (the retriever, the command line) choose
between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docid import available_schemes
from docid.io import published
from dsi.config import IndexConfig
from dsi.data import Corpus
from dsi.decoding import ConstrainedRetriever
from dsi.docid_retriever import DocidRetriever
from dsi.hub import locate_index
from dsi.index import GenerativeIndex, IndexLifecycle
from dsi.index_format import read_manifest, resolve_index_dir
from dsi.ngram_retriever import NgramRetriever
from dsi.seal import FUSED, NgramGenerativeIndex
from dsi.seal import SCHEME as NGRAM


@dataclass(frozen=True)
class Kind:
    """What an identifier kind plugs into the lifecycle and into retrieval."""

    name: str  # "ngram" or "docid", as ``dsi info`` shows it
    index: type[IndexLifecycle]
    retriever: type[ConstrainedRetriever]


DOCID = Kind("docid", GenerativeIndex, DocidRetriever)
# IndexConfig.docids -> its kind. Every value without a row names a docid scheme of
# :mod:`docid` (``docid.fit_docids`` refuses unknown ones with the list of known ones).
KINDS: dict[str, Kind] = {
    NGRAM: Kind("ngram", NgramGenerativeIndex, NgramRetriever),
    # N-grams and semantic docids from one model (dsi.fusion): the n-gram kind's index and
    # retriever, which fuse the docids in when the index has them.
    FUSED: Kind("ngram", NgramGenerativeIndex, NgramRetriever),
}


def kind_of(docids: str | None) -> Kind:
    """The kind of identifiers ``docids`` (``IndexConfig.docids``, a manifest's
    ``docid_scheme``)."""
    return KINDS.get(docids or "", DOCID)


def kind_of_index(index: Any) -> Kind:
    """The kind of an index object."""
    for kind in (*KINDS.values(), DOCID):
        if isinstance(index, kind.index):
            return kind
    raise TypeError(f"{type(index).__name__} is not an index of any identifier kind.")


def kind_of_saved(directory: str | Path) -> Kind:
    """The kind of a saved index, by its manifest (the previous index if a crash interrupted
    replacing it)."""
    return kind_of(read_manifest(published(Path(directory))).get("docid_scheme"))


def docid_kinds() -> list[str]:
    """Every ``IndexConfig.docids`` this dispatch builds: n-gram (the default), then the docid
    schemes registered in :mod:`docid`."""
    return [*KINDS, *available_schemes()]


def index_class(docids: str) -> type[IndexLifecycle]:
    """The index class that builds identifiers of kind ``docids`` (``IndexConfig.docids``)."""
    return kind_of(docids).index


def index_kind(docids: str) -> str:
    """ "ngram" when n-gram identifiers (SEAL) index the documents, "docid" for a docid scheme."""
    return kind_of(docids).name


def prepare_work_dir(
    state: Any, corpus: Corpus, config: IndexConfig, training: Any, work_dir: Path
) -> None:
    """Before a distributed build: the main process prepares ``work_dir``, the others wait."""
    index_class(config.docids).prepare_work_dir(state, corpus, config, training, work_dir)


def prepare_search(
    index: Any, progress_bar: bool = True, work_dir: str | Path | None = None
) -> None:
    """Before saving a built or grown index: compute what its searches would otherwise compute
    on first use (the n-gram kind's feedback words, :meth:`NgramRetriever.prepare_feedback`),
    keeping what is done in ``work_dir`` so that an interrupted run resumes it."""
    if kind_of_index(index).retriever is NgramRetriever:
        keep_in = None if work_dir is None else Path(work_dir) / "feedback"
        NgramRetriever(index).prepare_feedback(progress_bar=progress_bar, keep_in=keep_in)


def load_index(directory: str | Path, verify: bool | str = True) -> Any:
    """Load an index directory of any kind: docid (``GenerativeIndex``) or n-gram (SEAL);
    ``directory`` may be a hub repo id (:func:`dsi.hub.locate_index`)."""
    resolved = resolve_index_dir(locate_index(directory))
    return kind_of(read_manifest(resolved).get("docid_scheme")).index.load(resolved, verify=verify)
