"""What this machine's CPU offers for bfloat16 (read from /proc/cpuinfo).

Training and inference pick bfloat16 by themselves only where it is fast: CPUs with
AMX-BF16 (Intel Sapphire Rapids and later) run bf16 convolutions and matmuls several
times faster than float32; elsewhere bf16 is emulated and slower than float32. Which
precision a model then runs in is decided in :mod:`kpac_tf.model.precision`, which also
measures the CPUs with AVX512-BF16 alone.
"""
from __future__ import annotations

import functools

__all__ = ["bf16_features", "cpu_flags"]

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
