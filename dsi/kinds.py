"""One dispatch from an identifier kind to its classes: the index that builds and loads it.

The n-gram kind (``dsi.seal``, the default) and the docid kinds (``dsi.index``: semantic,
atomic, naive) build on the same lower modules; only this module, the retriever and the command
line, above both, choose between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docid import available_schemes
from dsi.config import IndexConfig
from dsi.data import Corpus
from dsi.hub import locate_index
from dsi.index import GenerativeIndex, read_manifest, resolve_index_dir
from dsi.index import prepare_work_dir as prepare_docid_work_dir
from dsi.seal import SCHEME as NGRAM
from dsi.seal import NgramGenerativeIndex
from dsi.seal import prepare_work_dir as prepare_ngram_work_dir


def docid_kinds() -> list[str]:
    """Every ``IndexConfig.docids`` this dispatch builds: n-gram (the default), then the docid
    schemes registered in :mod:`docid`."""
    return [NGRAM, *available_schemes()]


def index_class(docids: str) -> type[GenerativeIndex] | type[NgramGenerativeIndex]:
    """The index class that builds identifiers of kind ``docids`` (``IndexConfig.docids``)."""
    return NgramGenerativeIndex if docids == NGRAM else GenerativeIndex


def index_kind(docids: str) -> str:
    """ "ngram" when n-gram identifiers (SEAL) index the documents, "docid" for a docid scheme."""
    return "ngram" if index_class(docids) is NgramGenerativeIndex else "docid"


def prepare_work_dir(
    state: Any, corpus: Corpus, config: IndexConfig, training: Any, work_dir: Path
) -> None:
    """Before a distributed build: the main process prepares ``work_dir``, the others wait."""
    ngram = index_class(config.docids) is NgramGenerativeIndex
    prepare = prepare_ngram_work_dir if ngram else prepare_docid_work_dir
    prepare(state, corpus, config, training, work_dir)


def load_index(directory: str | Path, verify: bool = True) -> Any:
    """Load an index directory of either kind: docid (``GenerativeIndex``) or n-gram (SEAL);
    ``directory`` may be a hub repo id (:func:`dsi.hub.locate_index`)."""
    resolved = resolve_index_dir(locate_index(directory))
    kind = index_class(read_manifest(resolved).get("docid_scheme"))
    return kind.load(resolved, verify=verify)
