"""Colour conversions shared by the renderer, the data tools and the baselines.

Images are float32 arrays of any shape (HWC, CHW or single values); sRGB-encoded and
linear-light values both live on the [0, 1] scale. NumPy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["REC709_LUMA", "linear_to_srgb", "luma", "srgb_to_linear"]

#: Rec. 709 luma weights of (R, G, B), float32.
REC709_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def srgb_to_linear(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light in [0, 1], computed in ``dtype``
    (float32 by default)."""
    x = np.asarray(x, dtype=dtype)
    number = np.dtype(dtype).type
    return np.where(x <= 0.04045, x / number(12.92),
                    ((x + number(0.055)) / number(1.055)) ** number(2.4)).astype(dtype)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> sRGB-encoded values in [0, 1] (float32)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y = np.where(x <= 0.0031308, x * np.float32(12.92),
                 np.float32(1.055) * x ** np.float32(1.0 / 2.4) - np.float32(0.055)
                 ).astype(np.float32)
    y[x >= 1.0] = 1.0  # exact white (the formula gives 1 - 6e-8 in float32)
    return y


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of an HWC (or ...x3) RGB image in [0, 1]: float32, the last axis dropped."""
    return np.asarray(rgb, np.float32) @ REC709_LUMA
