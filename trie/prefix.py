"""Static prefix trie over integer token sequences, stored in one marisa-trie file.

Storage layout (format version 1)
---------------------------------
One ``marisa_trie.BytesTrie``. Every *internal* node of the token trie (a prefix that has at
least one child, plus the root) is one key; its value is::

    byte 0      flags: bit 0 = this prefix is itself a stored sequence,
                       bit 1 = children are uint32 (else uint16)
    bytes 1..   the sorted distinct next tokens, little-endian uint16 or uint32

Leaves (prefixes with no child) get no key: a leaf is always the end of a stored sequence, so
``seq in trie`` is "``seq`` is a key with flag bit 0, or ``seq[-1]`` is a child of ``seq[:-1]``".
Lookups are one exact-key ``get``; nothing is ever enumerated under a prefix.

Key encoding: each token id ``t`` (0 <= t < 2**31) becomes a prefix-free code of 1..6 ASCII
characters, so a key is the concatenation of its tokens' codes. The last character of a code is
``chr(0x40 + t % 64)`` (0x40..0x7F); the quotient ``t // 64``, if non-zero, is written before it
in base 63, most significant digit first, digit ``d`` as ``chr(0x01 + d)`` (0x01..0x3F). NUL is
never used (marisa-trie's Python API mishandles NUL in keys) and every character is one UTF-8 byte; ids
below 64 take 1 byte, below 4,032 two, below 254,016 three, below 16,003,008 four, below
1,008,189,504 five, else six.

The header is the key ``"\\x80dsi"`` (non-ASCII, so no token key can equal it) holding UTF-8
JSON: ``{"format": "dsi-prefix-trie", "version": 1, "num_sequences": n, "num_nodes": k,
"max_token": m}``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import marisa_trie
import numpy as np

FORMAT_NAME = "dsi-prefix-trie"
FORMAT_VERSION = 1
MAX_TOKEN = 2**31 - 1
HEADER_KEY = "\x80dsi"

_TERMINAL = 1
_WIDE = 2
_LAST_BASE = 64
_HIGH_BASE = 63
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.flags.writeable = False


def encode_token(token: int) -> str:
    """The prefix-free key code of one token id (see module docstring)."""
    high, last = divmod(token, _LAST_BASE)
    code = chr(0x40 + last)
    while high:
        high, digit = divmod(high, _HIGH_BASE)
        code = chr(0x01 + digit) + code
    return code


def encode_key(tokens: Sequence[int]) -> str:
    """The marisa key of a token sequence; raises ValueError for an id outside [0, 2**31)."""
    for t in tokens:
        if not 0 <= t <= MAX_TOKEN:
            raise ValueError(f"token id {t!r} is outside the supported range [0, 2**31).")
    return "".join(map(encode_token, tokens))


def decode_key(key: str) -> tuple[int, ...]:
    """Inverse of :func:`encode_key`."""
    out: list[int] = []
    acc = 0
    for ch in key:
        c = ord(ch)
        if c >= 0x40:
            out.append(acc * _LAST_BASE + c - 0x40)
            acc = 0
        else:
            acc = acc * _HIGH_BASE + c - 0x01
    return tuple(out)


def _pack(children: list[int], terminal: bool) -> bytes:
    wide = children[-1] > 0xFFFF if children else False
    arr = array("I" if wide else "H", children)
    if arr.itemsize != (4 if wide else 2):  # exotic platforms: fall back to numpy
        payload = np.asarray(children, dtype="<u4" if wide else "<u2").tobytes()
    else:
        if sys.byteorder == "big":
            arr.byteswap()
        payload = arr.tobytes()
    return bytes(((_TERMINAL if terminal else 0) | (_WIDE if wide else 0),)) + payload


def _unpack(value: bytes) -> np.ndarray:
    dtype = "<u4" if value[0] & _WIDE else "<u2"
    arr = np.frombuffer(value, dtype=dtype, offset=1).astype(np.int64)
    arr.flags.writeable = False
    return arr


def _internal_nodes(
    uniq: list[tuple[int, ...]], enc: Callable[[int], str]
) -> Iterator[tuple[str, bytes]]:
    """(key, packed value) of every node with children, plus the root, from sorted sequences.

    Sorted input lets one stack of open nodes (root at depth 0) emit every internal node
    exactly once with its children already in ascending order.
    """
    single: dict[tuple[int, bool], bytes] = {}  # most nodes have one child: pack each once
    stack: list[list] = [["", [], False]]  # [key, children, terminal]
    prev: tuple[int, ...] = ()
    for seq in uniq:
        lcp = 0
        limit = min(len(prev), len(seq))
        while lcp < limit and prev[lcp] == seq[lcp]:
            lcp += 1
        while len(stack) > lcp + 1:
            key, children, terminal = stack.pop()
            if len(children) == 1:
                ident = (children[0], terminal)
                value = single.get(ident)
                if value is None:
                    value = single[ident] = _pack(children, terminal)
                yield key, value
            elif children:
                yield key, _pack(children, terminal)
        for tok in seq[lcp:]:
            top = stack[-1]
            top[1].append(tok)
            stack.append([top[0] + enc(tok), [], False])
        stack[-1][2] = True
        prev = seq
    while stack:
        key, children, terminal = stack.pop()
        if children or not stack:  # the root is always stored
            yield key, _pack(children, terminal)


def _as_tuple(seq: Sequence[int]) -> tuple[int, ...]:
    if isinstance(seq, np.ndarray):
        return tuple(seq.tolist())
    if hasattr(seq, "tolist"):  # torch tensors
        return tuple(seq.tolist())
    return tuple(seq)


class PrefixTrie:
    """Sorted next-token lookup over a fixed set of token-id sequences.

    Build with :meth:`from_sequences` or :meth:`load`. ``next_tokens`` results are cached in a
    bounded LRU keyed by the prefix tuple, so the repeated prefixes of beam search are O(1).
    """

    def __init__(self, trie: marisa_trie.BytesTrie, header: dict, cache_size: int = 1 << 16):
        self._trie = trie
        self._header = header
        self._len = int(header["num_sequences"])
        self.cache_size = cache_size
        self._cached_next = functools.lru_cache(maxsize=cache_size)(self._lookup)

    # ------------------------------------------------------------------ build / io
    @classmethod
    def from_sequences(
        cls, seqs: Iterable[Sequence[int]], *, cache_size: int = 1 << 16
    ) -> PrefixTrie:
        """Build from token-id sequences (duplicates are merged; order does not matter)."""
        uniq = sorted({_as_tuple(s) for s in seqs})
        tokens = {t for s in uniq for t in s}
        for t in tokens:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
                raise TypeError(f"token ids must be integers, got {t!r}.")
            if not 0 <= t <= MAX_TOKEN:
                raise ValueError(f"token id {t} is outside the supported range [0, 2**31).")
        # Few distinct tokens (semantic ids): encode each once. Many (atomic ids): each token
        # appears about once, so a table would only cost memory.
        if len(tokens) <= 1 << 16:
            enc = {t: encode_token(int(t)) for t in tokens}.__getitem__
        else:
            enc = encode_token
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "num_sequences": len(uniq),
            "num_nodes": 0,
            "max_token": int(max(tokens)) if tokens else -1,
        }

        def entries() -> Iterator[tuple[str, bytes]]:
            # Streamed into marisa so no list of all keys and values is ever held.
            for entry in _internal_nodes(uniq, enc):
                header["num_nodes"] += 1
                yield entry
            yield HEADER_KEY, json.dumps(header, sort_keys=True).encode()

        return cls(marisa_trie.BytesTrie(entries()), header, cache_size)

    def save(self, path: Path | str) -> None:
        """Write the marisa file (header included) atomically: temp file + os.replace."""
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            self._trie.save(str(tmp))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path: Path | str, *, mmap: bool = False, cache_size: int = 1 << 16) -> PrefixTrie:
        """Read a file written by :meth:`save`; ``mmap=True`` maps it instead of reading it."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"trie file {path} does not exist or is not a file.")
        trie = marisa_trie.BytesTrie()
        try:
            trie.mmap(str(path)) if mmap else trie.load(str(path))
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"{path} is not a marisa-trie file ({exc}).") from None
        raw = trie.get(HEADER_KEY)
        try:
            header = json.loads(raw[0]) if raw else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise ValueError(f"{path} is a marisa-trie file but not a dsi prefix trie.")
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has prefix-trie format version {header.get('version')!r}, "
                f"this code reads version {FORMAT_VERSION}."
            )
        return cls(trie, header, cache_size)

    # ------------------------------------------------------------------ lookups
    def _value(self, prefix: tuple[int, ...]) -> bytes | None:
        try:
            key = encode_key(prefix)
        except (TypeError, ValueError):
            return None
        vals = self._trie.get(key)
        return vals[0] if vals else None

    def _lookup(self, prefix: tuple[int, ...]) -> np.ndarray:
        value = self._value(prefix)
        return _EMPTY if value is None else _unpack(value)

    def next_tokens(self, prefix: Sequence[int]) -> np.ndarray:
        """Sorted allowed next ids (read-only int64); empty if none or the prefix is unknown."""
        return self._cached_next(prefix if isinstance(prefix, tuple) else _as_tuple(prefix))

    def clear_cache(self) -> None:
        """Drop cached next-token arrays (e.g. to measure cold lookups)."""
        self._cached_next.cache_clear()

    def __contains__(self, seq: object) -> bool:
        try:
            t = _as_tuple(seq)  # type: ignore[arg-type]
        except TypeError:
            return False
        value = self._value(t)
        if value is not None:
            return bool(value[0] & _TERMINAL)
        if not t:
            return False
        children = self.next_tokens(t[:-1])
        last = t[-1]
        if isinstance(last, bool) or not isinstance(last, (int, np.integer)):
            return False
        i = int(np.searchsorted(children, last))
        return i < len(children) and int(children[i]) == last

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        """Every stored sequence as a tuple, in ascending lexicographic order."""
        items = [(k, v) for k, v in self._trie.items() if k != HEADER_KEY]
        internal = {k for k, _ in items}
        found: list[tuple[int, ...]] = []
        for key, value in items:
            prefix = decode_key(key)
            if value[0] & _TERMINAL:
                found.append(prefix)
            for tok in _unpack(value).tolist():
                if key + encode_token(tok) not in internal:
                    found.append(prefix + (tok,))
        found.sort()
        return iter(found)

    # ------------------------------------------------------------------ info
    @property
    def max_token(self) -> int:
        """Largest token id stored (-1 for an empty trie)."""
        return int(self._header["max_token"])

    @property
    def num_nodes(self) -> int:
        """Number of stored (internal) prefixes, root included."""
        return int(self._header["num_nodes"])

    def __repr__(self) -> str:
        return f"PrefixTrie(num_sequences={self._len}, num_nodes={self.num_nodes})"
