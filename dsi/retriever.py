"""Retrieval: one retriever protocol (:class:`dsi.decoding.Searcher`) for every identifier kind.

``Retriever.load(dir)`` opens a saved index with its kind's retriever and
``Retriever.for_index(index)`` searches an index object, both through :mod:`dsi.kinds`: a
:class:`dsi.docid_retriever.DocidRetriever` for the docid kinds, a
:class:`dsi.ngram_retriever.NgramRetriever` (scoring and optional feedback stages) for n-grams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsi.decoding import ConstrainedRetriever, Hit, Searcher, check_queries
from dsi.docid_retriever import DocidRetriever
from dsi.hub import locate_index
from dsi.kinds import kind_of_index, kind_of_saved

__all__ = ["Hit", "Retriever", "Searcher", "check_queries"]


class Retriever(DocidRetriever):
    """``Retriever(index)`` searches a docid index (:class:`DocidRetriever`); its class
    methods open or wrap an index of any kind with the kind's retriever."""

    @classmethod
    def for_index(cls, index: Any, device: str | None = None, **kwargs) -> ConstrainedRetriever:
        """The retriever of an index object of any kind (:func:`dsi.kinds.kind_of_index`)."""
        return kind_of_index(index).retriever(index, device=device, **kwargs)

    @classmethod
    def load(
        cls, directory: str | Path, device: str | None = None, **kwargs
    ) -> ConstrainedRetriever:
        """Open a saved index of any kind, a local directory or a hub repo id
        (:func:`dsi.hub.locate_index`), with its kind's retriever (an n-gram index gets a
        :class:`dsi.ngram_retriever.NgramRetriever`)."""
        directory = locate_index(directory)
        return kind_of_saved(directory).retriever.load(directory, device=device, **kwargs)
