"""What this machine's CPU offers for bfloat16 (read from /proc/cpuinfo).

Training and inference pick bfloat16 by themselves only where it is fast: CPUs with
AMX-BF16 (Intel Sapphire Rapids and later) run bf16 convolutions and matmuls several
times faster than float32; AVX512-BF16 has dot-product instructions only; elsewhere
bf16 is emulated and slower than float32.
"""
from __future__ import annotations

import functools
import platform

__all__ = ["bf16_features", "cpu_flags", "fast_bfloat16"]

_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_features() -> tuple[str, ...]:
    """The bfloat16 features present ("amx_bf16", "avx512_bf16"), in that order."""
    flags = cpu_flags()
    return tuple(name for name in _BF16_FLAGS if name in flags)


def fast_bfloat16(include_avx512: bool = True) -> tuple[bool, str]:
    """(bfloat16 is worth using, the reason in words) for this CPU.

    ``include_avx512``: count AVX512-BF16 alone as fast (training measured a gain
    there; inference may not).
    """
    features = bf16_features()
    if "amx_bf16" in features:
        return True, "the CPU has AMX-BF16"
    if "avx512_bf16" in features:
        if include_avx512:
            return True, "the CPU has AVX512-BF16"
        return False, "the CPU has AVX512-BF16 but no AMX (no measured bfloat16 gain there)"
    machine = platform.machine() or "this"
    return False, f"the {machine} CPU has neither AMX-BF16 nor AVX512-BF16 (bfloat16 would be emulated)"
