"""Document identifier schemes: map document ids to token-symbol sequences and back.

``fit_docids(scheme, doc_ids, texts, **options)`` builds a :class:`DocidMap`;
``DocidMap.load(directory)`` reads one back. Importing the package registers the built-in
schemes (atomic, naive, semantic, title, keywords); faiss, torch and scikit-learn are imported only when a
scheme needs them.
"""

# Imported for their registration (@register_scheme), before anything here is used.
import docid.atomic
import docid.lexical
import docid.naive
import docid.semantic  # noqa: F401
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
