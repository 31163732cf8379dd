"""A bounded, thread-safe LRU cache, and the helpers that key and size its entries.

Keys are built by :func:`make_key` from ``(image sha256, detector, method, params)``;
values are whatever the caller stores (the analysis service stores ``Prediction`` and
``PanelResult`` objects). The cache is bounded both by the number of entries and by an
estimate of the bytes held (numpy arrays and torch tensors found in the value are
counted), so a few large results cannot exhaust memory. What to cache and when is the
caller's business (:mod:`analysis.service`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable

import numpy as np

__all__ = ["ResultCache", "make_key", "file_sha256", "source_sha256", "estimate_nbytes", "DEFAULT_MAX_ENTRIES",
           "DEFAULT_MAX_BYTES"]

#: Defaults of a bare ``ResultCache()``; the app passes ``DEEPFAKE_CACHE_ENTRIES`` / ``DEEPFAKE_CACHE_MB``.
DEFAULT_MAX_ENTRIES: int = 256
DEFAULT_MAX_BYTES: int = 256 * 1024 * 1024


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
        """Drop every entry (the hit/miss counters are kept)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Entries, bytes, bounds and hit/miss counts."""
        with self._lock:
            return {"entries": len(self._data), "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses}
