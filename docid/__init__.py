"""Document identifier schemes: map document ids to token-symbol sequences and back.

``fit_docids(scheme, doc_ids, texts, **options)`` builds a :class:`DocidMap`;
``DocidMap.load(directory)`` reads one back. Scheme modules (and faiss, torch, scikit-learn)
are imported only when a scheme is used.
"""

from docid.base import (
    DocidError,
    DocidMap,
    available_schemes,
    fit_docids,
    get_scheme,
    register_scheme,
)

__all__ = [
    "DocidError",
    "DocidMap",
    "available_schemes",
    "fit_docids",
    "get_scheme",
    "register_scheme",
]
