"""Semantic docids: hierarchical k-means over document embeddings, as in DSI.

Each internal node splits its documents into at most ``k`` clusters; a node with at most ``c``
documents is a leaf. A docid is the path of cluster indices from the root, then the document's
position inside its leaf: the *value path*, e.g. ``(3, 7, 42)``. Value paths are spelled with
symbols ``<d{depth}_{value}>`` (``position_tokens=True``, one symbol per depth and value, as in
NCI) or ``<c{value}>`` shared by all depths.

Adding documents: a new document follows the nearest centroid at every node down to a leaf (ties,
e.g. the equal centroids of an evenly split group of identical vectors, go to the first child) and
takes the leaf's next free position, even when the leaf already holds ``c`` documents (leaves
may then exceed ``c``). Splitting the full leaf would change the docids of documents already
there, which ``add`` must never do; refit to rebalance. A position beyond the existing symbols
appends a new symbol at the end of the vocabulary, so existing symbol indices never move.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from docid.base import (
    DOCIDS_FILE,
    VOCAB_FILE,
    Docid,
    DocidError,
    DocidMap,
    check_corpus,
    register_scheme,
)
from docid.embed import MiniLMEmbedder, TfidfEmbedder, resolve_method
from docid.io import atomic_write_bytes

TREE_FILE = "docid_tree.safetensors"
TFIDF_PREFIX = "docid_tfidf"
TREE_FORMAT_VERSION = "1"

_POSITION_SYMBOL = re.compile(r"<d(\d+)_(\d+)>")
_SHARED_SYMBOL = re.compile(r"<c(\d+)>")

EmbedderArg = str | Callable[[Sequence[str]], np.ndarray]


# --- the cluster tree ------------------------------------------------------------------------


@dataclass
class ClusterTree:
    """The k-means hierarchy as plain arrays; node 0 is the root and ``parent[i] < i``.

    ``value[i]`` is node ``i``'s index among its parent's children (the docid value at its
    depth); ``centroids[i]`` is the centre of node ``i``'s cluster, used to route new documents.
    """

    centroids: np.ndarray  # float32 [num_nodes, dim]
    parent: np.ndarray  # int64 [num_nodes], -1 for the root
    value: np.ndarray  # int64 [num_nodes], -1 for the root
    children: list[np.ndarray] = field(init=False, repr=False)
    paths: list[tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self.parent = np.asarray(self.parent, dtype=np.int64)
        self.value = np.asarray(self.value, dtype=np.int64)
        self._check()
        order = np.argsort(self.parent[1:], kind="stable") + 1
        counts = np.bincount(self.parent[1:], minlength=len(self.parent))
        groups = np.split(order, np.cumsum(counts)[:-1])
        self.children = [g[np.argsort(self.value[g], kind="stable")] for g in groups]
        self.paths = [()]
        for node in range(1, len(self.parent)):
            self.paths.append(self.paths[self.parent[node]] + (int(self.value[node]),))

    def _check(self) -> None:
        n = len(self.parent)
        if self.centroids.ndim != 2 or len(self.centroids) != n or len(self.value) != n or n < 1:
            raise DocidError("the tree arrays 'centroids', 'parent' and 'value' disagree in size.")
        if self.parent[0] != -1 or np.any(self.parent[1:] < 0):
            raise DocidError("only the first node of the tree may lack a parent.")
        if np.any(self.parent[1:] >= np.arange(1, n)):
            raise DocidError("every tree node must come after its parent.")
        if np.any(self.value[1:] < 0):
            raise DocidError("tree node values must be non-negative.")
        pairs = self.parent[1:] * (int(self.value.max(initial=0)) + 1) + self.value[1:]
        if len(np.unique(pairs)) != n - 1:
            raise DocidError("two children of one tree node share a value.")
        if not np.all(np.isfinite(self.centroids)):
            raise DocidError("tree centroids must be finite numbers.")

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def is_leaf(self, node: int) -> bool:
        return len(self.children[node]) == 0

    def route(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of ``x`` reaches by following the nearest child centroid."""
        leaf = np.empty(len(x), dtype=np.int64)
        stack = [(0, np.arange(len(x)))]
        while stack:
            node, rows = stack.pop()
            kids = self.children[node]
            if len(kids) == 0:
                leaf[rows] = node
                continue
            cents = self.centroids[kids]
            # argmin of squared L2 distance without materialising [rows, kids, dim].
            dist = (cents * cents).sum(1)[None, :] - 2.0 * (x[rows] @ cents.T)
            best = np.argmin(dist, axis=1)  # first of equal centroids wins: deterministic
            for j in np.unique(best):
                stack.append((int(kids[j]), rows[best == j]))
        return leaf

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {
            "centroids": self.centroids,
            "parent": self.parent,
            "value": self.value,
        }
        return save(tensors, metadata={"format_version": TREE_FORMAT_VERSION})

    @classmethod
    def read(cls, path: Path) -> ClusterTree:
        """Load a tree file; ``ValueError`` naming the file if it is missing or inconsistent."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.exists():
            raise DocidError(f"{path} does not exist.")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                version = (handle.metadata() or {}).get("format_version")
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as err:
            raise DocidError(f"{path} is not a valid safetensors file ({err}).") from None
        if version != TREE_FORMAT_VERSION:
            raise DocidError(f"{path} has tree format {version!r}, expected {TREE_FORMAT_VERSION}.")
        missing = {"centroids", "parent", "value"} - tensors.keys()
        if missing:
            raise DocidError(f"{path} lacks the tensors {sorted(missing)}.")
        try:
            return cls(tensors["centroids"], tensors["parent"], tensors["value"])
        except DocidError as err:
            raise DocidError(f"{path}: {err}") from None


def _kmeans_split(
    x: np.ndarray,
    idx: np.ndarray,
    k: int,
    seed: int,
    niter: int,
    max_points_per_centroid: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split the documents ``idx`` into at most ``k`` non-empty groups: (members, centroid)."""
    import faiss

    sub = x if len(idx) == len(x) else x[idx]
    kk = min(k, len(idx))
    # min_points_per_centroid=1 silences faiss's "too few points" warning on small nodes;
    # max_points_per_centroid caps the training sample, so big nodes train in bounded time.
    kmeans = faiss.Kmeans(
        sub.shape[1],
        kk,
        niter=niter,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max_points_per_centroid,
    )
    kmeans.train(sub)
    _, labels = kmeans.index.search(sub, 1)
    labels = labels.ravel()
    counts = np.bincount(labels, minlength=kk)
    if counts.max() == len(idx):
        # No split (identical or nearly identical vectors): cut into even chunks in corpus
        # order so the recursion always makes progress and leaves end up with at most c docs.
        parts = np.array_split(np.arange(len(idx)), kk)
        return [(idx[p], sub[p].mean(axis=0)) for p in parts]
    order = np.argsort(labels, kind="stable")  # stable: members stay in corpus order
    groups = np.split(order, np.cumsum(counts)[:-1])
    # Empty clusters are dropped; the remaining ones are renumbered 0.. in centroid order.
    return [(idx[g], kmeans.centroids[j]) for j, g in enumerate(groups) if len(g)]


def hierarchical_kmeans(
    x: np.ndarray,
    k: int = 10,
    c: int = 100,
    *,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 256,
    threads: int | None = 1,
) -> tuple[ClusterTree, np.ndarray, np.ndarray]:
    """Cluster rows of ``x`` recursively; return (tree, leaf node per row, position in leaf).

    Positions inside a leaf follow corpus order. Deterministic for a fixed ``seed``.
    ``threads``: faiss OpenMP threads (None: faiss's default, all cores).
    """
    x = _as_embeddings(x)
    if k < 2 or c < 1:
        raise DocidError(f"semantic docids need k >= 2 and c >= 1, got k={k} and c={c}.")
    import faiss

    n = len(x)
    centroids = [x.mean(axis=0) if n else np.zeros(x.shape[1], np.float32)]
    parent, value = [-1], [-1]
    leaf_of = np.full(n, -1, dtype=np.int64)
    position = np.zeros(n, dtype=np.int64)
    stack = [(0, np.arange(n))]
    previous = faiss.omp_get_max_threads()
    # One thread by default: each node's work is small (training is capped at
    # k * max_points_per_centroid points), and OpenMP spin-waiting on a busy machine made
    # 2 threads 5-7x slower than 1 on a shared 2-core box.
    faiss.omp_set_num_threads(threads or previous)
    try:
        while stack:
            node, idx = stack.pop()
            if len(idx) <= c:
                leaf_of[idx] = node
                position[idx] = np.arange(len(idx))
                continue
            for v, (members, centroid) in enumerate(
                _kmeans_split(x, idx, k, seed, niter, max_points_per_centroid)
            ):
                stack.append((len(parent), members))
                parent.append(node)
                value.append(v)
                centroids.append(centroid)
    finally:
        faiss.omp_set_num_threads(previous)
    tree = ClusterTree(np.stack(centroids), np.array(parent), np.array(value))
    return tree, leaf_of, position


def _as_embeddings(x: Any, rows: int | None = None, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DocidError(f"embeddings must be a 2-D array, got shape {x.shape}.")
    if rows is not None and len(x) != rows:
        raise DocidError(f"got {len(x)} embeddings for {rows} documents.")
    if dim is not None and x.shape[1] != dim:
        raise DocidError(f"embeddings have {x.shape[1]} dimensions but the tree has {dim}.")
    if not np.all(np.isfinite(x)):
        raise DocidError("embeddings must be finite numbers (found NaN or inf).")
    return x


# --- the docid map ---------------------------------------------------------------------------


def semantic_symbol(depth: int, value: int, position_tokens: bool) -> str:
    """Name of the symbol for ``value`` at ``depth`` of a value path."""
    return f"<d{depth}_{value}>" if position_tokens else f"<c{value}>"


@register_scheme
class SemanticDocidMap(DocidMap):
    """Docids from hierarchical k-means over document embeddings (see the module docstring)."""

    scheme = "semantic"

    def __init__(
        self,
        doc_ids: Sequence[str],
        sequences: Sequence[Sequence[int]],
        symbols: Sequence[str],
        options: dict[str, Any],
        tree: ClusterTree,
        tfidf: TfidfEmbedder | None = None,
    ) -> None:
        super().__init__(doc_ids, sequences, symbols, options)
        self._attach(tree, tfidf, label="document")

    def _attach(
        self, tree: ClusterTree, tfidf: TfidfEmbedder | None, label: str, start: int = 0
    ) -> None:
        """Check the docids against the tree and index leaf occupancy (needed by ``add``)."""
        self.tree = tree
        self._tfidf = tfidf
        position_tokens = self.options.get("position_tokens")
        if not isinstance(position_tokens, bool):
            raise DocidError("semantic options need a boolean 'position_tokens'.")
        self._keys = _parse_symbols(self.symbols, position_tokens)
        self._next_position: dict[int, int] = {}
        self._occupy(range(len(self.sequences)), label, start)

    def _occupy(self, rows: range, label: str, start: int) -> None:
        """Check that docids ``rows`` end in leaves; record each leaf's next free position."""
        keys = self._keys
        position_tokens = self.options["position_tokens"]
        # Group by symbol prefix first: one check per leaf instead of one per document.
        last: dict[Docid, int] = {}
        first_row: dict[Docid, int] = {}
        for row in rows:
            seq = self.sequences[row]
            prefix = seq[:-1]
            depth, position = keys[seq[-1]]
            if position_tokens and depth != len(prefix):
                raise DocidError(
                    f"{label} {row + start}: docid {list(seq)} uses a symbol at the wrong depth."
                )
            if prefix not in last:
                last[prefix], first_row[prefix] = position, row
            elif position > last[prefix]:
                last[prefix] = position
        node_of = {path: node for node, path in enumerate(self.tree.paths)}
        for prefix, position in last.items():
            row = first_row[prefix]
            where = f"{label} {row + start}"
            leaf = node_of.get(self._values(prefix, where))
            if leaf is None or not self.tree.is_leaf(leaf):
                raise DocidError(
                    f"{where}: docid {list(self.sequences[row])} does not end in a leaf of "
                    "the cluster tree."
                )
            self._next_position[leaf] = max(self._next_position.get(leaf, 0), position + 1)

    def _values(self, seq: Sequence[int], where: str) -> tuple[int, ...]:
        keys = [self._keys[i] for i in seq]
        if self.options["position_tokens"] and any(d != t for t, (d, _) in enumerate(keys)):
            raise DocidError(f"{where}: docid {list(seq)} uses a symbol at the wrong depth.")
        return tuple(v for _, v in keys)

    def values(self, doc_id: str) -> tuple[int, ...]:
        """The value path of ``doc_id``: cluster indices from the root, then leaf position."""
        return self._values(self.sequence(doc_id), repr(doc_id))

    @property
    def embedder(self) -> str:
        """How documents were embedded: "minilm", "tfidf", "precomputed" or "custom"."""
        return str(self.options.get("embedder"))

    # --- fitting -------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        doc_ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        k: int = 10,
        c: int = 100,
        position_tokens: bool = True,
        embedder: EmbedderArg = "auto",
        embeddings: np.ndarray | None = None,
        max_length: int = 128,
        dims: int = 128,
        seed: int = 0,
        niter: int = 20,
        max_points_per_centroid: int = 256,
        threads: int | None = 1,
        show_progress: bool = True,
    ) -> SemanticDocidMap:
        """Cluster the corpus and give every document a unique value path.

        ``embeddings`` (``[n, d]``) skips embedding; otherwise ``texts`` are embedded with
        ``embedder``: "auto", "minilm", "tfidf" or a callable ``texts -> [n, d]``.
        ``max_length`` applies to MiniLM, ``dims`` to TF-IDF + SVD. ``niter``,
        ``max_points_per_centroid`` and ``threads`` tune faiss k-means at every node.
        """
        doc_ids = list(doc_ids)
        texts = check_corpus(doc_ids, texts)
        if not isinstance(k, int) or not isinstance(c, int) or k < 2 or c < 1:
            raise DocidError(f"semantic docids need integers k >= 2 and c >= 1, got {k}, {c}.")
        tfidf = None
        if embeddings is not None:
            x = _as_embeddings(embeddings, rows=len(doc_ids))
            # Record MiniLM when the caller says the vectors came from it, so add() can embed.
            method = "minilm" if embedder == "minilm" else "precomputed"
        elif texts is None:
            raise DocidError("semantic docids need the document texts or their embeddings.")
        elif callable(embedder):
            x = _as_embeddings(embedder(texts), rows=len(doc_ids))
            method = "custom"
        else:
            method = resolve_method(embedder)
            if method == "minilm":
                x = MiniLMEmbedder(max_length, show_progress=show_progress)(texts)
            else:
                tfidf = TfidfEmbedder(dims=dims, seed=seed)
                x = tfidf.fit_transform(texts)
            x = _as_embeddings(x, rows=len(doc_ids))
        tree, leaf_of, position = hierarchical_kmeans(
            x,
            k,
            c,
            seed=seed,
            niter=niter,
            max_points_per_centroid=max_points_per_centroid,
        )
        width = max(k, c)
        depth = max(len(tree.paths[leaf]) for leaf in np.unique(leaf_of))
        if position_tokens:
            symbols = [semantic_symbol(t, v, True) for t in range(depth + 1) for v in range(width)]
        else:
            symbols = [semantic_symbol(0, v, False) for v in range(width)]
        stride = width if position_tokens else 0
        prefixes = {
            int(leaf): tuple(t * stride + v for t, v in enumerate(tree.paths[leaf]))
            for leaf in np.unique(leaf_of)
        }
        seqs = [
            prefixes[leaf] + (len(prefixes[leaf]) * stride + pos,)
            for leaf, pos in zip(leaf_of.tolist(), position.tolist(), strict=True)
        ]
        options = {
            "k": k,
            "c": c,
            "position_tokens": bool(position_tokens),
            "embedder": method,
            "embedding_dim": tree.dim,
            "max_length": max_length,
            "dims": dims,
            "seed": seed,
            "niter": niter,
            "max_points_per_centroid": max_points_per_centroid,
        }
        return cls(doc_ids, seqs, symbols, options, tree, tfidf)

    # --- adding --------------------------------------------------------------------------------

    def assign(self, embeddings: np.ndarray) -> list[tuple[int, ...]]:
        """Value paths that new documents with these embeddings get (the map is not changed).

        Each follows the nearest-centroid path to a leaf and takes its next free position;
        several new documents in one leaf take successive positions in input order.
        """
        x = _as_embeddings(embeddings, dim=self.tree.dim)
        next_position = dict(self._next_position)
        paths = []
        for leaf in self.tree.route(x).tolist():
            pos = next_position.get(leaf, 0)
            next_position[leaf] = pos + 1
            paths.append(self.tree.paths[leaf] + (pos,))
        return paths

    def _embed_new(
        self,
        texts: list[str] | None,
        n: int,
        embedder: EmbedderArg | None,
        embeddings: np.ndarray | None,
    ) -> np.ndarray:
        if embeddings is not None:
            return _as_embeddings(embeddings, rows=n, dim=self.tree.dim)
        if texts is None:
            raise DocidError("adding semantic docids needs the new texts or their embeddings.")
        if callable(embedder):
            return _as_embeddings(embedder(texts), rows=n, dim=self.tree.dim)
        method = resolve_method(embedder) if embedder is not None else self.embedder
        if method == "minilm":
            max_length = int(self.options.get("max_length", 128))
            x = MiniLMEmbedder(max_length, show_progress=False)(texts)
        elif method == "tfidf" and self._tfidf is not None:
            x = self._tfidf(texts)
        else:
            raise DocidError(
                f"this semantic map was built from {self.embedder} embeddings; pass "
                "embeddings= or a callable embedder= to add documents."
            )
        return _as_embeddings(x, rows=n, dim=self.tree.dim)

    def _plan_add(
        self,
        doc_ids: list[str],
        texts: list[str] | None,
        embedder: EmbedderArg | None = None,
        embeddings: np.ndarray | None = None,
    ) -> tuple[list[str], list[Docid]]:
        paths = self.assign(self._embed_new(texts, len(doc_ids), embedder, embeddings))
        position_tokens = self.options["position_tokens"]
        symbols = list(self.symbols)
        index = {key: i for i, key in enumerate(self._keys)}
        seqs = []
        for path in paths:
            seq = []
            for t, v in enumerate(path):
                key = (t if position_tokens else -1, v)
                if key not in index:
                    index[key] = len(symbols)  # appended: existing indices never move
                    symbols.append(semantic_symbol(t, v, position_tokens))
                seq.append(index[key])
            seqs.append(tuple(seq))
        return symbols, seqs

    def add(
        self,
        doc_ids: Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        embedder: EmbedderArg | None = None,
        embeddings: np.ndarray | None = None,
    ) -> list[Docid]:
        """Place new documents under the existing tree; existing docids never change.

        Embeddings come from ``embeddings``, else ``embedder`` (name or callable), else the
        embedder the map was fitted with (MiniLM, or the saved TF-IDF model).
        """
        start = len(self)
        seqs = super().add(doc_ids, texts, embedder=embedder, embeddings=embeddings)
        self._keys = _parse_symbols(self.symbols, self.options["position_tokens"])
        self._occupy(range(start, len(self)), "new document", -start)
        return seqs

    # --- files ---------------------------------------------------------------------------------

    def _save_extra(self, directory: Path) -> list[str]:
        atomic_write_bytes(directory / TREE_FILE, self.tree.to_bytes())
        names = [TREE_FILE]
        if self._tfidf is not None:
            names += self._tfidf.save(directory, prefix=TFIDF_PREFIX)
        return names

    def _load_extra(self, directory: Path) -> None:
        vocab_path = directory / VOCAB_FILE
        for key, kind in (
            ("k", int),
            ("c", int),
            ("position_tokens", bool),
            ("embedder", str),
        ):
            if not isinstance(self.options.get(key), kind):
                raise DocidError(f"{vocab_path} lacks the semantic option {key!r}.")
        tree = ClusterTree.read(directory / TREE_FILE)
        tfidf = None
        if self.options["embedder"] == "tfidf":
            tfidf = TfidfEmbedder.load(directory, prefix=TFIDF_PREFIX)
            if tfidf.components is not None and tfidf.components.shape[0] != tree.dim:
                raise DocidError(
                    f"{directory / (TFIDF_PREFIX + '.safetensors')} makes "
                    f"{tfidf.components.shape[0]}-d vectors but the tree is {tree.dim}-d."
                )
        try:
            self._attach(tree, tfidf, label=f"{directory / DOCIDS_FILE} line", start=1)
        except DocidError as err:
            message = str(err)
            if not message.startswith(str(directory)):
                message = f"{vocab_path}: {message}"
            raise DocidError(message) from None


def _parse_symbols(symbols: list[str], position_tokens: bool) -> list[tuple[int, int]]:
    """(depth, value) of each symbol; depth is -1 for shared symbols."""
    pattern = _POSITION_SYMBOL if position_tokens else _SHARED_SYMBOL
    keys = []
    for symbol in symbols:
        match = pattern.fullmatch(symbol)
        if match is None:
            raise DocidError(f"symbol {symbol!r} is not a semantic docid symbol.")
        groups = [int(g) for g in match.groups()]
        keys.append((groups[0], groups[1]) if position_tokens else (-1, groups[0]))
    return keys
