"""Whether bfloat16 is worth using on this CPU, measured where the flags cannot say.

CPUs with AMX-BF16 (Intel Sapphire Rapids and later) run bf16 convolutions and matmuls
several times faster than float32 (:func:`kpac_tf.cpu.bf16_features` reads the flags);
elsewhere bf16 is emulated and slower than float32. AVX512-BF16 alone has dot-product
instructions only, and what they are worth differs between machines (a KPAC training
step ran 1.45-1.8x faster in bf16 on one, 0.51x on another), so training measures it
there: :func:`bfloat16_conv_speedup` times a short convolution probe, computed as the
model computes its dilated convolutions, in both precisions.
"""
from __future__ import annotations

import functools
import math
import platform
import time

from kpac_tf import cpu

__all__ = ["MIN_PROBE_SPEEDUP", "bfloat16_conv_speedup", "fast_bfloat16"]

#: The probe's bfloat16 speed-up over float32 from which AVX512-BF16 counts as fast.
MIN_PROBE_SPEEDUP = 1.1


def fast_bfloat16(include_avx512: bool = True) -> tuple[bool, str]:
    """(bfloat16 is worth using, the reason in words) for this CPU.

    ``include_avx512``: on a CPU with AVX512-BF16 and no AMX, run the
    :func:`bfloat16_conv_speedup` probe and use bf16 if it is at least
    :data:`MIN_PROBE_SPEEDUP` times as fast (training); False: never use bf16 there
    (inference, which measured no gain).
    """
    features = cpu.bf16_features()
    if "amx_bf16" in features:
        return True, "the CPU has AMX-BF16"
    if "avx512_bf16" in features:
        if not include_avx512:
            return False, "the CPU has AVX512-BF16 but no AMX (no measured bfloat16 gain there)"
        speedup = bfloat16_conv_speedup()
        fast = speedup >= MIN_PROBE_SPEEDUP
        return fast, (f"the CPU has AVX512-BF16 but no AMX, and a convolution probe ran {speedup:.2f}x "
                      f"as fast in bfloat16 as in float32 ({'at least' if fast else 'under'} "
                      f"{MIN_PROBE_SPEEDUP}x)")
    machine = platform.machine() or "this"
    return False, f"the {machine} CPU has neither AMX-BF16 nor AVX512-BF16 (bfloat16 would be emulated)"


@functools.lru_cache(maxsize=None)
def bfloat16_conv_speedup(size: int = 64, channels: int = 64, repeats: int = 5) -> float:
    """Float32 time over bfloat16 time (above 1: bf16 is faster) of a training-like probe
    on this machine: two 3x3 convolutions (one dilated) over a batch of 4 x ``size`` x
    ``size`` x ``channels`` and the gradient of their weights, best of ``repeats`` runs
    after one untimed call. About a second; cached for the process."""
    import tensorflow as tf

    from kpac_tf.model.layers import same_conv2d  # the dilated conv as the model computes it

    def best_time(dtype) -> float:
        x = tf.cast(tf.random.stateless_uniform((4, size, size, channels), seed=(1, 2)), dtype)
        w = tf.cast(tf.random.stateless_normal((3, 3, channels, channels), seed=(3, 4)) * 0.05, dtype)

        @tf.function
        def step(x, w):
            with tf.GradientTape() as tape:
                tape.watch(w)
                y = tf.nn.conv2d(x, w, 1, "SAME")
                y = same_conv2d(tf.nn.relu(y), w, 3, 2)
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            return tape.gradient(loss, w)

        step(x, w).numpy()
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            step(x, w).numpy()
            best = min(best, time.perf_counter() - started)
        return best

    return best_time(tf.float32) / best_time(tf.bfloat16)
