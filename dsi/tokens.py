"""Token ids of many texts at once, as the tokenizer gives them, fast enough for a million.

``tokenizer(texts, add_special_tokens=False)["input_ids"]`` costs ~0.4 ms per passage on the
project's 2 cores (the Rust encoding, then a Python object per text with offsets, masks and
types nobody reads): ~7 minutes for 1M passages, and the training examples tokenize several
texts per document more. The tokenizers this library trains (``dsi.model.train_tokenizer``) split
text at whitespace and encode every word alone (``WhitespaceSplit`` then
``Metaspace(prepend_scheme="always")``), after a normaliser that maps character by character
where a text is printable ASCII. So such a text's ids are its words' ids one after the other,
and each distinct word is encoded once (:class:`WordCache`). Other texts, and tokenizers of
another make (a pretrained model's), go through the tokenizer's own batch encoding; either way the
ids are the tokenizer's (``tests/dsi/test_tokens.py`` compares them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# The pre-tokenizer under which a text's ids are the concatenation of its words' ids.
_WORDWISE = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    ],
}
# Normalisers that map printable ASCII character by character (no context across characters).
_CHARWISE_NORMALIZERS = {None, "Precompiled", "Lowercase", "NFKC", "NFC", "NFD", "NFKD"}
# Texts encoded per call of the tokenizer's own batch encoding (bounded temporary objects).
_BATCH = 4096


def _wordwise(tokenizer: Any) -> Any | None:
    """A copy of the Rust tokenizer of ``tokenizer`` when a text's ids are its words' ids, else
    None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer")
    kind = None if normalizer is None else normalizer.get("type")
    pre = spec.get("pre_tokenizer")
    if kind not in _CHARWISE_NORMALIZERS or pre is None:
        return None
    if {k: v for k, v in pre.items()} != _WORDWISE:
        return None
    # A copy of its own: the tokenizer leaves the padding and truncation of its last call set
    # on its backend (a padded batch would pad every word here), and this one sets neither.
    from tokenizers import Tokenizer

    own = Tokenizer.from_str(backend.to_str())
    own.no_padding()
    own.no_truncation()
    return own


class WordCache:
    """Token ids of texts by their words, each distinct word encoded once (the module's why)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._backend = _wordwise(tokenizer)
        self._words: dict[str, list[int]] = {}

    def _learn(self, texts: Sequence[str]) -> None:
        """Encode the words of ``texts`` not seen yet."""
        words = self._words
        new = list({w: None for t in texts for w in t.split(" ") if w and w not in words})
        for begin in range(0, len(new), _BATCH):
            chunk = new[begin : begin + _BATCH]
            encoded = self._backend.encode_batch(chunk, add_special_tokens=False)
            for word, encoding in zip(chunk, encoded, strict=True):
                words[word] = encoding.ids

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """``tokenizer(texts, add_special_tokens=False)["input_ids"]``, the same ids."""
        out: list[list[int] | None] = [None] * len(texts)
        others: list[int] = []
        for begin in range(0, len(texts), _BATCH * 4):
            chunk = texts[begin : begin + _BATCH * 4]
            plain = (
                [] if self._backend is None else [t.isascii() and t.isprintable() for t in chunk]
            )
            if self._backend is not None:
                self._learn([t for t, ok in zip(chunk, plain, strict=True) if ok])
            words = self._words
            for i, text in enumerate(chunk):
                if self._backend is not None and plain[i]:
                    ids: list[int] = []
                    for word in text.split(" "):
                        if word:
                            ids += words[word]
                    out[begin + i] = ids
                else:
                    others.append(begin + i)
        for begin in range(0, len(others), _BATCH):
            where = others[begin : begin + _BATCH]
            encoded = self.tokenizer([texts[i] for i in where], add_special_tokens=False)
            for i, ids in zip(where, encoded["input_ids"], strict=True):
                out[i] = list(ids)
        return out  # type: ignore[return-value]


def token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """The token ids of each of ``texts`` without special tokens, as
    ``tokenizer(texts, add_special_tokens=False)["input_ids"]`` gives them."""
    return WordCache(tokenizer).encode(texts)


def token_stream(
    tokenizer: Any, texts: Iterable[str], chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """All the token ids of ``texts`` in one int32 array, and each text's count (int64).

    ``chunk`` texts are encoded at a time, so no list of every text's ids is ever held."""
    cache = WordCache(tokenizer)
    parts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    batch: list[str] = []

    def flush() -> None:
        ids = cache.encode(batch)
        lengths.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
        total = int(lengths[-1].sum())
        parts.append(np.fromiter((t for row in ids for t in row), dtype=np.int32, count=total))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == chunk:
            flush()
    if batch:
        flush()
    if not parts:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    return np.concatenate(parts), np.concatenate(lengths)
