"""glibc memory control for a long-running server (no-ops elsewhere)."""
from __future__ import annotations

__all__ = ["limit_malloc_arenas", "release_memory"]


def limit_malloc_arenas(n: int) -> bool:
    """Cap glibc's malloc arenas at ``n`` (``DEEPFAKE_MALLOC_ARENAS``; 0 leaves glibc's default).

    glibc gives each thread that allocates its own arena (up to 8 per core); a server whose
    worker threads take turns with large temporary arrays then keeps many half-empty arenas
    and its resident memory creeps up. Call it early, before the server's threads start.
    Returns whether the limit was set (False off glibc).
    """
    import ctypes

    if int(n) <= 0:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, int(n)))  # M_ARENA_MAX
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
