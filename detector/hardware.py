"""What the machine's CPU can do fast: shared by training (bf16 autocast) and the explainers."""
from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["cpu_bf16", "fast_bf16"]


@functools.lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """True if the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_bf16(device: str) -> bool:
    """True where bf16 autocast speeds a forward pass up: CUDA, or a CPU with native bf16."""
    kind = str(device).split(":")[0]
    return kind == "cuda" or (kind == "cpu" and cpu_bf16())
