"""Bounded LRU cache for app results (verdicts and explanation panels).

Keys are built by :func:`make_key` from ``(image sha256, detector, method, params)``;
values are whatever the app stores (``Prediction``, ``PanelResult``...). The cache is
bounded both by the number of entries and by an estimate of the bytes held (numpy
arrays and torch tensors found in the value are counted), so a few large results
cannot exhaust memory. Thread-safe: Gradio runs handlers in worker threads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["ResultCache", "make_key", "file_sha256", "source_sha256", "estimate_nbytes", "cached_predict",
           "cached_panel", "explain_model", "release_memory", "limit_malloc_arenas", "DEFAULT_MAX_ENTRIES",
           "DEFAULT_MAX_BYTES"]

#: Defaults, overridable with ``DEEPFAKE_CACHE_ENTRIES`` / ``DEEPFAKE_CACHE_MB``.
DEFAULT_MAX_ENTRIES: int = int(os.environ.get("DEEPFAKE_CACHE_ENTRIES", 256))
DEFAULT_MAX_BYTES: int = int(float(os.environ.get("DEEPFAKE_CACHE_MB", 256)) * 1024 * 1024)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (the cache identifies images by content, not name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def source_sha256(source: str | Path | bytes) -> str:
    """Hex sha256 of an image given as a file path or as bytes."""
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    return file_sha256(source)


def _canon(obj: Any) -> Any:
    """A JSON-stable form of ``obj`` (dicts sorted, tuples as lists, numpy scalars as Python)."""
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)  # 16 and 16.0 (slider values) are the same parameter
    return obj


def make_key(image_sha: str, detector: str, method: str, params: Any = None) -> tuple[str, str, str, str]:
    """Cache key ``(image sha256, detector, method, canonical JSON of params)``."""
    return (image_sha, detector, method, json.dumps(_canon(params), sort_keys=True, default=str))


def estimate_nbytes(obj: Any, _depth: int = 0, _seen: set | None = None) -> int:
    """Rough size of ``obj`` in bytes, counting arrays and tensors exactly and the rest loosely."""
    if _seen is None:
        _seen = set()
    if obj is None or _depth > 6 or id(obj) in _seen:
        return 0
    _seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if type(obj).__module__.startswith("torch") and hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, (str, bytes, bytearray, int, float, bool)):
        return sys.getsizeof(obj)
    if isinstance(obj, dict):
        return 64 + sum(estimate_nbytes(k, _depth + 1, _seen) + estimate_nbytes(v, _depth + 1, _seen)
                        for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return 56 + sum(estimate_nbytes(v, _depth + 1, _seen) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return 64 + sum(estimate_nbytes(getattr(obj, f.name, None), _depth + 1, _seen)
                        for f in dataclasses.fields(obj))
    if hasattr(obj, "__dict__"):
        return 64 + estimate_nbytes(vars(obj), _depth + 1, _seen)
    return sys.getsizeof(obj)


class ResultCache:
    """Least-recently-used mapping bounded by ``max_entries`` and ``max_bytes``.

    A value larger than ``max_bytes`` on its own is not stored. ``hits`` and ``misses``
    count lookups (shown by the latency script and tests).
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._data: "OrderedDict[Hashable, tuple[Any, int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value stored under ``key`` (now most recently used), else ``default``."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> bool:
        """Store ``value``; evicts least recently used entries. Returns False if too big to keep."""
        size = estimate_nbytes(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return False
            self._data[key] = (value, size)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, s) = self._data.popitem(last=False)
                self._bytes -= s
            return True

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    @property
    def nbytes(self) -> int:
        """Estimated bytes currently held."""
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._data), "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses}


def cached_predict(cache: ResultCache, image_sha: str, detector: str, face_crop: bool,
                   load: Callable[[], Any]) -> tuple[Any, bool]:
    """``(Prediction, was_cached)`` for ``detector`` on the image ``image_sha``.

    ``load()`` returns what ``detector.predict.predict`` accepts (a path or a
    ``LoadedImage``); it is only called on a cache miss. Raises what ``predict`` raises.
    """
    from detector.predict import predict

    key = make_key(image_sha, detector, "verdict", {"face_crop": bool(face_crop)})
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    pred = predict(load(), detector, face_crop=face_crop)
    cache.put(key, pred)
    return pred, False


def limit_malloc_arenas(n: int | None = None) -> bool:
    """Cap glibc's malloc arenas (``DEEPFAKE_MALLOC_ARENAS``, default 2; 0 leaves glibc's default).

    glibc gives each thread that allocates its own arena (up to 8 per core); a server whose
    worker threads take turns with large temporary arrays then keeps many half-empty arenas
    and its resident memory creeps up. Call it early, before the server's threads start.
    Returns whether the limit was set (False off glibc).
    """
    import ctypes

    n = int(os.environ.get("DEEPFAKE_MALLOC_ARENAS", 2)) if n is None else int(n)
    if n <= 0:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def release_memory() -> None:
    """Hand freed heap memory back to the OS after a big job (glibc ``malloc_trim``; no-op elsewhere).

    Explanations allocate large temporary batches (SHAP, LIME, IG); glibc keeps the freed
    blocks, so without this a server's resident memory stays at the highest peak seen.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_TWINS: dict[tuple[str, str], tuple[Any, Any]] = {}
_TWINS_LOCK = threading.Lock()


def explain_model(loaded: Any) -> Any:
    """The ``LoadedModel`` to explain with: same weights, a private copy of the network.

    Grad-CAM and LRP register hooks on the network while they run; a verdict computed on
    the same module at that moment (another request) would fire them and corrupt the
    map. Explanations therefore run on a deep copy (one per detector, made on first use),
    so verdicts can be served while an explanation is running. Run one explanation at a
    time per process (the app's "explain" concurrency group has limit 1).
    """
    import copy

    key = (loaded.spec.name, str(loaded.device))
    with _TWINS_LOCK:
        item = _TWINS.get(key)
        if item is None or item[0] is not loaded.model:  # first use, or the weights were reloaded
            item = (loaded.model, dataclasses.replace(loaded, model=copy.deepcopy(loaded.model)))
            _TWINS[key] = item
        return item[1]


def cached_panel(cache: ResultCache, image_sha: str, pred: Any, loaded: Any, methods: Sequence[str],
                 params: Mapping[str, Mapping[str, Any]] | None = None, target: int | None = None,
                 face_crop: bool = True, faithfulness: bool = True,
                 preview_first: bool = False) -> Iterator[tuple[Any, bool]]:
    """Yield ``(PanelResult, was_cached)`` for each method in ``methods``.

    Cached results come first (instantly); the missing methods are then computed by
    ``explainers.panel.iter_panel`` and yielded one by one as each finishes. ``pred`` is
    the detector's ``Prediction`` (its ``input.tensor`` and CLAHE ``face`` are explained),
    ``loaded`` the ``LoadedModel``; ``target`` defaults to the predicted class. Failed
    methods (``error`` set) are yielded but not cached, so a retry runs them again.
    ``preview_first`` is passed to ``iter_panel``; previews (``pending``) are not cached.
    """
    from explainers.panel import iter_panel

    params = {m: dict(params.get(m, {})) for m in methods} if params else {m: {} for m in methods}
    spec = loaded.spec
    if target is None:
        target = spec.label_names.index(pred.label)
    context = {"target": int(target), "face_crop": bool(face_crop), "faithfulness": bool(faithfulness),
               "weights": getattr(loaded, "source", "")}
    keys = {m: make_key(image_sha, spec.name, m, {"params": params[m], **context}) for m in methods}
    todo = []
    for m in methods:
        hit = cache.get(keys[m])
        if hit is not None:
            yield hit, True
        else:
            todo.append(m)
    if not todo:
        return
    twin = explain_model(loaded)
    x = pred.input.tensor.to(twin.device)
    for res in iter_panel(twin.model, x, pred.input.face, int(target), spec=spec, methods=todo,
                          params={m: params[m] for m in todo}, faithfulness=faithfulness,
                          preview_first=preview_first):
        if getattr(res, "error", None) is None and not getattr(res, "pending", False) and res.method in keys:
            cache.put(keys[res.method], res)
        yield res, False
