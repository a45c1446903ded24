"""Atomic docids: one new symbol per document, so every docid has length 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from docid.base import Docid, DocidError, DocidMap, check_corpus, register_scheme


def atomic_symbol(index: int) -> str:
    """Name of the symbol of the ``index``-th document."""
    return f"<doc_{index}>"


@register_scheme
class AtomicDocidMap(DocidMap):
    """Document ``i`` (in corpus order) is the single symbol ``<doc_i>``."""

    scheme = "atomic"

    @classmethod
    def fit(
        cls, doc_ids: Sequence[str], texts: Sequence[str] | None = None, **options: Any
    ) -> AtomicDocidMap:
        """One symbol per document; texts are not used."""
        if options:
            raise DocidError(f"the atomic scheme takes no options, got {sorted(options)}.")
        doc_ids = list(doc_ids)
        check_corpus(doc_ids, texts)
        symbols = [atomic_symbol(i) for i in range(len(doc_ids))]
        return cls(doc_ids, [(i,) for i in range(len(doc_ids))], symbols)

    def _plan_add(
        self, doc_ids: list[str], texts: list[str] | None, **options: Any
    ) -> tuple[list[str], list[Docid]]:
        if options:
            raise DocidError(f"the atomic scheme takes no add options, got {sorted(options)}.")
        start = len(self.symbols)
        # New symbols go after every existing one, so existing indices stay valid; skip a name
        # already taken (possible only in hand-made maps) to keep symbols distinct.
        taken = set(self.symbols)
        new: list[str] = []
        index = start
        while len(new) < len(doc_ids):
            name = atomic_symbol(index)
            if name not in taken:
                new.append(name)
            index += 1
        seqs = [(start + j,) for j in range(len(doc_ids))]
        return self.symbols + new, seqs
