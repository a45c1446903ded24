"""N-gram index over a corpus token stream (SEAL-style substring identifiers).

The corpus is the concatenation ``doc_0 SEP doc_1 SEP ... doc_{N-1} SEP`` of integer token ids
(a separator closes every document, the last included). An n-gram is any token sequence that
contains no separator; the index answers, for such an n-gram,

* ``count(ngram)``       how many times it occurs in the corpus,
* ``next_tokens(ngram)`` which tokens follow it, with corpus frequencies (what constrained decoding
  needs at every step, for every beam),
* ``documents(ngram)``   the distinct documents that contain it,
* ``occurrences(ngram)`` every (document, position) where it starts.

Implementation: a suffix array (``pydivsufsort`` over the token stream) plus numpy. Suffixes that
start with an n-gram form one contiguous block ``[lo, hi)`` of the suffix array, and inside that
block the token right after the n-gram, ``tokens[sa[i] + len(ngram)]``, is sorted. So the next
tokens are the run-length encoding of a gathered slice, each run is the block of the longer
n-gram (cached, so extending an n-gram by one token costs one ``searchsorted`` over its parent's
next tokens), and a block nobody has seen is narrowed by binary search. Next-token answers are
kept in an LRU cache; those of huge blocks (frequent 1-2 token prefixes, the costly ones) are
pinned outside it. Document ids come from ``np.searchsorted`` of the
positions against the document start offsets.

Why a suffix array and not the PyPI ``fm-index`` package (Rust), measured with
``python -m bench.fmindex_bench`` on the project's 2-core machine. ``fm-index``'s ``FMIndex``
works on ``str`` (token ids mapped to code points); it has ``count`` and ``locate`` but no way to
list the symbols that extend a pattern, so its next-token lookup must locate every occurrence
and read the following token from a separate token array. Times are ms per batch of 100
queries, cold cache unless "warm": next-token for 100 corpus n-grams of 1-8 tokens; decode =
100 beams copying corpus text, one lookup per beam per step for 10 steps; documents (locate)
and count for 100 n-grams of 2-6 tokens. RSS = resident memory added by the index (build peak).

SciFact, title+text, sentencepiece unigram 8k: 1.70M tokens, 5,183 documents

=============  =======  ==========  ===========  =======  =========  =====
backend        build s  RSS MiB     next (warm)  decode   documents  count
=============  =======  ==========  ===========  =======  =========  =====
suffix array   0.49     26 (39)     4.0 (0.09)   29       2.6        1.8
fm-index       0.64     32 (93)     1405 (0.02)  5103     51         0.22
=============  =======  ==========  ===========  =======  =========  =====

Synthetic Zipf(1.1) ids, vocabulary 32k: 25.0M tokens (100 MB as uint32), 99,898 documents

=============  =======  ==========  ===========  =======  =========  =====
backend        build s  RSS MiB     next (warm)  decode   documents  count
=============  =======  ==========  ===========  =======  =========  =====
suffix array   6.2      165 (357)   58 (0.10)    145      16         2.2
fm-index       15.2     246 (1196)  ~2.5e6 [1]   >2.3e5   23781      0.36
=============  =======  ==========  ===========  =======  =========  =====

[1] extrapolated from 9 queries; decode did not finish its first step in 226 s. A single
frequent token occurs millions of times, and ``locate`` materialises every position.

The suffix array wins everywhere but ``count`` (fm-index is ~8x faster there, both are
microseconds per n-gram): it builds faster, takes less memory, and answers the queries that
constrained decoding and scoring make 20-350x (SciFact) to >1,000x (25M tokens) faster, so the
library does not depend on ``fm-index``. Memory is ``tokens`` (uint16 when ids fit, else uint32) + ``sa``
(int32 below 2**31 tokens) + one int64 per document: ~6 bytes a token for a 32k vocabulary;
the build peaks near 16 bytes a token. ``load(..., mmap=True)`` maps the arrays instead.

Files written by ``save``: ``ngram_index.json`` (format, version, sizes, dtypes, separator) and
plain numeric ``tokens.npy``, ``sa.npy``, ``doc_starts.npy``; no pickle.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydivsufsort import divsufsort

from docid.io import atomic_open, atomic_write_bytes

FORMAT = "dsi-ngram-index"
VERSION = 1
HEADER_NAME = "ngram_index.json"
ARRAY_NAMES = ("tokens", "sa", "doc_starts")
# Optional (indexes saved before it have none): each token id that occurs and its count, 2 x U.
UNIGRAMS = "unigrams.npy"

# Below this block size a slice is gathered and np.searchsorted'ed; above it we binary-search
# element by element so narrowing a huge block (a frequent token) stays O(log n).
_GATHER_LIMIT = 2048
# Next-token answers for blocks at least this large (frequent short n-grams: millions of
# suffixes to gather) are pinned outside the LRU so cheap entries never evict them; there are
# at most len(tokens) / _PIN_BLOCK such blocks per n-gram length.
_PIN_BLOCK = 1 << 16
# Entries of the postings cache: ~100 n-grams a search, each up to a scorer's cut-off of
# documents (1,500 by default: 4,096 entries stay below ~100 MB).
_POSTINGS_CACHE = 4096
# Load checks of a mapped index read this many evenly spaced documents and suffixes (each
# read maps its neighbouring pages too: a few thousand would map all of a 1M-passage index).
_SAMPLE = 64
_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.setflags(write=False)


def _frozen(array: np.ndarray) -> np.ndarray:
    # Cached arrays are shared between callers; make accidental in-place edits fail loudly.
    array.setflags(write=False)
    return array


class _LRU:
    """A tiny least-recently-used dict; ``maxsize`` 0 disables caching."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()

    def get(self, key):
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class NgramIndex:
    """Suffix-array n-gram index over documents given as integer token ids.

    Build with :meth:`build` or :meth:`load`. Queries take any sequence of ints; an n-gram that
    contains the separator never occurs. ``cache_size`` bounds the number of prefixes whose
    next-token answer (and block) is kept, which makes beam decoding incremental.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        sa: np.ndarray,
        doc_starts: np.ndarray,
        separator: int,
        *,
        cache_size: int = 65536,
        unigrams: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.tokens = tokens
        self.sa = sa
        self.doc_starts = doc_starts
        self.separator = int(separator)
        self._n = len(tokens)
        # The block of every unigram (see _unigram_table): given by a loaded index that saved
        # it, else computed on first use, since it reads the whole token stream.
        self._unigrams = unigrams
        self._uni_ids: np.ndarray
        self._uni_counts: np.ndarray
        self._uni_starts: np.ndarray
        self._root: tuple[np.ndarray, np.ndarray]
        self._uni_ready = False
        self._next_cache = _LRU(cache_size)
        self._range_cache = _LRU(cache_size)
        # Postings are larger than blocks (up to a scorer's max_occurrences documents each).
        self._postings_cache = _LRU(min(cache_size, _POSTINGS_CACHE))
        self._pinned: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._doc_lengths: np.ndarray | None = None

    def _ensure_unigrams(self) -> None:
        if self._uni_ready:
            return
        ids, counts = self._unigrams or _unigram_table(self.tokens, self.sa)
        self._uni_ids = _frozen(ids.astype(np.int64))
        self._uni_counts = _frozen(counts.astype(np.int64))
        starts = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(self._uni_counts, out=starts[1:])
        self._uni_starts = starts
        keep = self._uni_ids != self.separator
        self._root = (_frozen(self._uni_ids[keep].copy()), _frozen(self._uni_counts[keep].copy()))
        self._uni_ready = True

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        docs_token_ids: Sequence[Sequence[int]],
        *,
        separator: int = 0,
        cache_size: int = 65536,
    ) -> NgramIndex:
        """Index ``docs_token_ids`` (one token-id sequence per document, corpus order).

        ``separator`` closes every document; it must not occur inside one. The default 0 is
        T5's pad id, which a tokenizer never emits for text.
        """
        if len(docs_token_ids) == 0:
            raise ValueError("cannot build an n-gram index over zero documents")
        if not 0 <= separator < 2**32:
            raise ValueError(f"separator {separator} is not a token id in [0, 2**32)")
        # One preallocated stream (no per-document copies left behind on the heap).
        lengths = np.fromiter((len(doc) + 1 for doc in docs_token_ids), dtype=np.int64)
        doc_starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=doc_starts[1:])
        stream = np.empty(int(lengths.sum()), dtype=np.uint32)
        high = separator
        for i, doc in enumerate(docs_token_ids):
            ids = np.asarray(doc).reshape(-1)
            if len(ids):
                if ids.dtype.kind not in "iu":
                    raise ValueError(f"document {i} holds {ids.dtype} values, not integer ids")
                low, top = int(ids.min()), int(ids.max())
                if low < 0 or top >= 2**32:
                    bad = low if low < 0 else top
                    raise ValueError(f"document {i} has token id {bad} outside [0, 2**32)")
                if np.any(ids == separator):
                    raise ValueError(f"document {i} contains the separator token {separator}")
                high = max(high, top)
            start = int(doc_starts[i])
            stream[start : start + len(ids)] = ids
            stream[start + len(ids)] = separator
        tokens = stream.astype(np.uint16) if high < 2**16 else stream
        del stream
        sa = _suffix_array(tokens)
        return cls(tokens, sa, doc_starts, separator, cache_size=cache_size)

    @classmethod
    def from_stream(
        cls,
        token_ids: np.ndarray,
        lengths: np.ndarray,
        *,
        separator: int = 0,
        cache_size: int = 65536,
    ) -> NgramIndex:
        """Index documents given as one array of all their token ids (corpus order) and each
        one's count: what :meth:`build` makes of one sequence per document, without a Python
        object per document (a million documents take seconds)."""
        token_ids = np.asarray(token_ids).reshape(-1)
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if len(lengths) == 0:
            raise ValueError("cannot build an n-gram index over zero documents")
        if not 0 <= separator < 2**32:
            raise ValueError(f"separator {separator} is not a token id in [0, 2**32)")
        if np.any(lengths < 0) or int(lengths.sum()) != len(token_ids):
            raise ValueError(
                f"the lengths add up to {int(lengths.sum())} tokens, the stream holds "
                f"{len(token_ids)}"
            )
        high = separator
        if len(token_ids):
            if token_ids.dtype.kind not in "iu":
                raise ValueError(f"the token ids are {token_ids.dtype} values, not integers")
            low, top = int(token_ids.min()), int(token_ids.max())
            if low < 0 or top >= 2**32:
                bad = low if low < 0 else top
                doc = _owner(token_ids == bad, lengths)
                raise ValueError(f"document {doc} has token id {bad} outside [0, 2**32)")
            inside = token_ids == separator
            if inside.any():
                doc = _owner(inside, lengths)
                raise ValueError(f"document {doc} contains the separator token {separator}")
            del inside
            high = max(high, top)
        ends = np.cumsum(lengths + 1)  # one past each document's separator
        doc_starts = np.zeros(len(lengths), dtype=np.int64)
        doc_starts[1:] = ends[:-1]
        tokens = np.full(int(ends[-1]), separator, dtype=np.uint16 if high < 2**16 else np.uint32)
        body = np.ones(len(tokens), dtype=bool)
        body[ends - 1] = False
        tokens[body] = token_ids
        del body
        sa = _suffix_array(tokens)
        return cls(tokens, sa, doc_starts, separator, cache_size=cache_size)

    # ------------------------------------------------------------------ properties

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts)

    def __len__(self) -> int:
        return self.num_docs

    @property
    def total_tokens(self) -> int:
        """Number of document tokens (separators excluded): the denominator of P(n)."""
        return self._n - self.num_docs

    @property
    def doc_lengths(self) -> np.ndarray:
        """Number of tokens of every document (separators excluded), corpus order."""
        if self._doc_lengths is None:
            ends = np.append(self.doc_starts[1:], self._n)
            self._doc_lengths = _frozen(ends - self.doc_starts - 1)
        return self._doc_lengths

    def doc_tokens(self, doc: int) -> np.ndarray:
        """Token ids of document ``doc`` (a view, without the separator)."""
        start = int(self.doc_starts[doc])
        end = int(self.doc_starts[doc + 1]) - 1 if doc + 1 < self.num_docs else self._n - 1
        return self.tokens[start:end]

    def clear_cache(self) -> None:
        self._next_cache.clear()
        self._range_cache.clear()
        self._postings_cache.clear()
        self._pinned.clear()

    def _cached_next(self, key: tuple[int, ...]):
        hit = self._pinned.get(key)
        return hit if hit is not None else self._next_cache.get(key)

    # ------------------------------------------------------------------ queries

    def count(self, ngram: Sequence[int]) -> int:
        """Occurrences of ``ngram`` in the corpus; ``count(())`` is :attr:`total_tokens`."""
        key = tuple(int(t) for t in ngram)
        if not key:
            return self.total_tokens
        lo, hi = self._range(key)
        return hi - lo

    def next_tokens(self, ngram: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Tokens that follow ``ngram`` somewhere in the corpus and how often (sorted by id).

        The separator is never listed (an n-gram never crosses a document end), so the counts
        sum to ``count(ngram)`` minus the occurrences that end a document. Results are cached
        and read-only.
        """
        key = tuple(int(t) for t in ngram)
        if not key:
            self._ensure_unigrams()
            return self._root
        hit = self._cached_next(key)
        if hit is not None:
            return hit[0], hit[1]
        lo, hi = self._range(key)
        if hi <= lo:
            return _EMPTY, _EMPTY
        follow = self.tokens[self.sa[lo:hi] + len(key)]
        # Within the block the following token is sorted: run boundaries = distinct tokens.
        cuts = np.flatnonzero(follow[1:] != follow[:-1]) + 1
        starts = np.concatenate(([0], cuts)).astype(np.int64)
        ids = follow[starts].astype(np.int64)
        counts = np.diff(np.append(starts, hi - lo))
        keep = ids != self.separator
        ids, counts, starts = ids[keep], counts[keep], starts[keep] + lo
        entry = (_frozen(ids), _frozen(counts), starts)
        if hi - lo >= _PIN_BLOCK and self._next_cache.maxsize > 0:
            self._pinned[key] = entry
        else:
            self._next_cache.put(key, entry)
        return entry[0], entry[1]

    def occurrences(self, ngram: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_indices, positions)`` of every occurrence, sorted by corpus position.

        Positions are offsets into the concatenated stream (use :attr:`doc_starts` to make
        them document-relative). The empty n-gram has no occurrences.
        """
        key = tuple(int(t) for t in ngram)
        if not key:
            return _EMPTY, _EMPTY
        lo, hi = self._range(key)
        positions = np.sort(self.sa[lo:hi].astype(np.int64))
        docs = np.searchsorted(self.doc_starts, positions, side="right") - 1
        return docs, positions

    def postings(self, ngram: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct documents containing ``ngram`` (ascending) and its occurrences in each;
        cached (read-only arrays): a search scores ~100 n-grams, most of them seen before."""
        key = tuple(int(t) for t in ngram)
        hit = self._postings_cache.get(key)
        if hit is not None:
            return hit
        docs, _ = self.occurrences(key)
        docs, counts = np.unique(docs, return_counts=True)
        entry = (_frozen(docs), _frozen(counts))
        self._postings_cache.put(key, entry)
        return entry

    def documents(self, ngram: Sequence[int]) -> np.ndarray:
        """Sorted distinct indices of the documents containing ``ngram`` (all for ``()``)."""
        if len(ngram) == 0:
            return np.arange(self.num_docs, dtype=np.int64)
        docs, _ = self.occurrences(ngram)
        if len(docs) == 0:
            return docs
        # Positions are sorted, so doc ids are too: keep the first of each run.
        return docs[np.concatenate(([True], docs[1:] != docs[:-1]))]

    # ------------------------------------------------------------------ block search

    def _range(self, key: tuple[int, ...]) -> tuple[int, int]:
        """Suffix-array block ``[lo, hi)`` of suffixes starting with ``key`` (non-empty)."""
        hit = self._range_cache.get(key)
        if hit is not None:
            return hit
        if self.separator in key:
            return (0, 0)
        # Start from the longest prefix whose block is known, then narrow token by token.
        depth = len(key) - 1
        while depth > 1:
            known = self._range_cache.get(key[:depth])
            if known is not None:
                lo, hi = known
                break
            depth -= 1
        if depth <= 1:
            depth = 1
            lo, hi = self._unigram_range(key[0])
        for k in range(depth, len(key)):
            if hi <= lo:
                return (0, 0)
            lo, hi = self._narrow(key[:k], lo, hi, k, key[k])
            self._range_cache.put(key[: k + 1], (lo, hi))
        return (lo, hi)

    def _unigram_range(self, token: int) -> tuple[int, int]:
        self._ensure_unigrams()
        i = int(np.searchsorted(self._uni_ids, token))
        if i == len(self._uni_ids) or self._uni_ids[i] != token:
            return (0, 0)
        return int(self._uni_starts[i]), int(self._uni_starts[i + 1])

    def _narrow(
        self, parent: tuple[int, ...], lo: int, hi: int, k: int, token: int
    ) -> tuple[int, int]:
        """Sub-block of ``[lo, hi)`` whose token at offset ``k`` equals ``token``."""
        cached = self._cached_next(parent)
        if cached is not None:
            ids, counts, starts = cached
            i = int(np.searchsorted(ids, token))
            if i < len(ids) and ids[i] == token:
                return int(starts[i]), int(starts[i] + counts[i])
            return (0, 0)
        if hi - lo <= _GATHER_LIMIT:
            follow = self.tokens[self.sa[lo:hi] + k]
            a = int(np.searchsorted(follow, token, side="left"))
            b = int(np.searchsorted(follow, token, side="right"))
            return lo + a, lo + b
        tokens, sa = self.tokens, self.sa
        # Every suffix in the block continues past offset k (documents end with a separator
        # and the parent n-gram contains none), so tokens[sa[i] + k] is always in bounds.
        a, b = lo, hi
        while a < b:
            mid = (a + b) >> 1
            if tokens[sa[mid] + k] < token:
                a = mid + 1
            else:
                b = mid
        first = a
        b = hi
        while a < b:
            mid = (a + b) >> 1
            if tokens[sa[mid] + k] <= token:
                a = mid + 1
            else:
                b = mid
        return first, a

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory`` (created if needed); returns the file names.

        Every file goes through a temporary name and ``os.replace``; the JSON header is written
        last, so a directory with a header always has complete arrays.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"tokens": self.tokens, "sa": self.sa, "doc_starts": self.doc_starts}
        names = []
        for name, array in arrays.items():
            _atomic_save_npy(directory / f"{name}.npy", np.ascontiguousarray(array))
            names.append(f"{name}.npy")
        # The unigram blocks, so that a mapped index need not read its whole token stream.
        self._ensure_unigrams()
        _atomic_save_npy(directory / UNIGRAMS, np.stack([self._uni_ids, self._uni_counts]))
        names.append(UNIGRAMS)
        header = {
            "format": FORMAT,
            "version": VERSION,
            "separator": self.separator,
            "num_tokens": self._n,
            "num_docs": self.num_docs,
            "arrays": {
                name: {"dtype": np.dtype(a.dtype).str, "shape": list(a.shape)}
                for name, a in arrays.items()
            },
        }
        atomic_write_bytes(directory / HEADER_NAME, json.dumps(header, indent=2).encode("utf-8"))
        names.append(HEADER_NAME)
        return names

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False, cache_size: int = 65536) -> NgramIndex:
        """Read an index written by :meth:`save`; raises ``ValueError`` if it is malformed."""
        directory = Path(directory)
        header_path = directory / HEADER_NAME
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{header_path} is missing: not an n-gram index directory") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{header_path} is not readable JSON: {exc}") from None
        problem = _header_problem(header)
        if problem:
            raise ValueError(f"{header_path}: {problem}")
        arrays = {}
        for name in ARRAY_NAMES:
            path = directory / f"{name}.npy"
            spec = header["arrays"][name]
            try:
                array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path} is not a readable numeric .npy file: {exc}") from None
            if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
                raise ValueError(
                    f"{path} holds {array.dtype.str}{list(array.shape)}, header says "
                    f"{spec['dtype']}{spec['shape']}"
                )
            arrays[name] = array
        n, num_docs = header["num_tokens"], header["num_docs"]
        tokens, sa, starts = arrays["tokens"], arrays["sa"], arrays["doc_starts"]
        if len(tokens) != n or len(sa) != n or len(starts) != num_docs:
            raise ValueError(f"{header_path}: array lengths disagree with num_tokens/num_docs")
        # Mapped, the checks that read every token or suffix read a sample instead: reading
        # all would page the whole index in (the index directory's checksums cover the rest).
        ends = starts[1:] - 1
        suffixes = sa
        if mmap and num_docs > _SAMPLE:
            ends = ends[np.linspace(0, len(ends) - 1, _SAMPLE).astype(np.int64)]
        if mmap and n > _SAMPLE:
            suffixes = sa[np.linspace(0, n - 1, _SAMPLE).astype(np.int64)]
        if (
            num_docs < 1
            or starts[0] != 0
            or np.any(np.diff(starts) < 1)
            or starts[-1] >= n
            or tokens[n - 1] != header["separator"]
            or np.any(tokens[ends] != header["separator"])
        ):
            raise ValueError(f"{directory}: document boundaries do not match the separator")
        if int(suffixes.min()) < 0 or int(suffixes.max()) >= n:
            raise ValueError(f"{directory / 'sa.npy'} points outside the token stream")
        unigrams = None
        if (directory / UNIGRAMS).is_file():
            unigrams = _load_unigrams(directory / UNIGRAMS, n)
        return cls(
            tokens, sa, starts, header["separator"], cache_size=cache_size, unigrams=unigrams
        )


def _unigram_table(tokens: np.ndarray, sa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each token id that occurs in ``tokens`` and its count, by id.

    Suffixes are sorted by their first token, so the block of every unigram is a run of the
    sorted token multiset (the FM-index "C" array, kept sparse over ids that occur).
    """
    n = len(tokens)
    if n and int(tokens.max()) < 2**24:
        counts = np.bincount(tokens)
        ids = np.flatnonzero(counts)
        return ids, counts[ids]
    # Huge ids: read the first token of each suffix in order instead of a dense table.
    first = tokens[sa]
    cuts = np.flatnonzero(first[1:] != first[:-1]) + 1
    run_starts = np.concatenate(([0], cuts)).astype(np.int64)
    ids = first[run_starts] if n else np.zeros(0, dtype=np.int64)
    counts = np.diff(np.append(run_starts, n)) if n else ids
    return ids, counts


def _load_unigrams(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The table :meth:`NgramIndex.save` wrote, checked against the stream's length."""
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable numeric .npy file: {exc}") from None
    ids, counts = (table[0], table[1]) if table.ndim == 2 and len(table) == 2 else (None, None)
    if (
        ids is None
        or table.dtype != np.int64
        or np.any(counts < 1)
        or np.any(np.diff(ids) < 1)
        or int(counts.sum()) != n
    ):
        raise ValueError(f"{path} is not the unigram table of a {n}-token stream")
    return ids, counts


def _owner(where: np.ndarray, lengths: np.ndarray) -> int:
    """The document of the first True of ``where`` (a mask over the documents' tokens)."""
    first = int(np.argmax(where))
    return int(np.searchsorted(np.cumsum(lengths), first, side="right"))


def _suffix_array(tokens: np.ndarray) -> np.ndarray:
    """Suffix array of a uint16/uint32 token stream, sorted by token-wise comparison.

    divsufsort sorts bytes, so the stream is viewed as big-endian bytes (byte order = token
    order) and the suffixes at token boundaries are kept. Done here rather than through
    pydivsufsort's integer path to keep the peak near 16 bytes a token (uint16 ids).
    """
    width = tokens.dtype.itemsize
    raw = divsufsort(tokens.astype(f">u{width}").view(np.uint8))
    n = len(tokens)
    dtype = np.int32 if n < 2**31 else np.int64
    sa = np.empty(n, dtype=dtype)
    filled, chunk = 0, 1 << 22
    for begin in range(0, len(raw), chunk):
        part = raw[begin : begin + chunk]
        part = part[part % width == 0] // width
        sa[filled : filled + len(part)] = part
        filled += len(part)
    if filled != n:  # cannot happen unless divsufsort misbehaves; never return garbage
        raise RuntimeError(f"suffix sorting returned {filled} token suffixes for {n} tokens")
    return sa


def _header_problem(header: object) -> str | None:
    """Why ``header`` is not a valid index header, or None."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return f"not a {FORMAT} header"
    if header.get("version") != VERSION:
        return f"unsupported version {header.get('version')!r} (this code reads {VERSION})"
    for field in ("separator", "num_tokens", "num_docs"):
        if not isinstance(header.get(field), int) or header[field] < 0:
            return f"field {field!r} must be a non-negative integer"
    specs = header.get("arrays")
    allowed = {
        "tokens": ("<u2", "<u4"),
        "sa": ("<i4", "<i8"),
        "doc_starts": ("<i8",),
    }
    if not isinstance(specs, dict):
        return "field 'arrays' is missing"
    for name, dtypes in allowed.items():
        spec = specs.get(name)
        if (
            not isinstance(spec, dict)
            or spec.get("dtype") not in dtypes
            or not isinstance(spec.get("shape"), list)
            or len(spec["shape"]) != 1
        ):
            return f"array {name!r} must be 1-D with dtype in {dtypes}"
    return None


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path) as handle:
        np.save(handle, array, allow_pickle=False)
