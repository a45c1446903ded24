"""Naive string docids: the characters of the document id itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docid.base import (
    DOCIDS_FILE,
    Docid,
    DocidError,
    DocidMap,
    check_corpus,
    register_scheme,
)


@register_scheme
class NaiveDocidMap(DocidMap):
    """Symbols are the distinct characters of all ids; a docid spells its document id."""

    scheme = "naive"

    @classmethod
    def fit(
        cls, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> NaiveDocidMap:
        """Spell each id with its characters; texts are not used."""
        if options:
            raise DocidError(f"the naive scheme takes no options, got {sorted(options)}.")
        doc_ids = list(doc_ids)
        check_corpus(doc_ids, texts)
        symbols = sorted({ch for doc_id in doc_ids for ch in doc_id})
        index = {ch: i for i, ch in enumerate(symbols)}
        return cls(doc_ids, [tuple(index[ch] for ch in d) for d in doc_ids], symbols)

    def _plan_add(
        self, doc_ids: list[str], texts: list[str] | None, **options: Any
    ) -> tuple[list[str], list[Docid]]:
        if options:
            raise DocidError(f"the naive scheme takes no add options, got {sorted(options)}.")
        index = {ch: i for i, ch in enumerate(self.symbols)}
        # Unseen characters are appended (sorted among themselves) so old indices stay valid.
        new = sorted({ch for doc_id in doc_ids for ch in doc_id} - index.keys())
        symbols = self.symbols + new
        index.update({ch: len(self.symbols) + j for j, ch in enumerate(new)})
        return symbols, [tuple(index[ch] for ch in d) for d in doc_ids]

    def _load_extra(self, directory: Path) -> None:
        # Naive docids must spell their ids; anything else means the files were edited.
        for doc_id, seq in zip(self.doc_ids, self.sequences, strict=True):
            if "".join(self.symbols[i] for i in seq) != doc_id:
                raise DocidError(
                    f"{Path(directory) / DOCIDS_FILE}: the naive docid of {doc_id!r} does not spell it."
                )
