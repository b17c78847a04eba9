"""Helpers shared by tests: the test-vector weights recipe and authors-layout npz files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def recipe_arrays(shapes: list[tuple]) -> list[np.ndarray]:
    """The deterministic weights of the test vectors (see tests/data README recipe):
    one generator seeded 2021, drawn in list order, std 1/sqrt(fan-in) for kernels and
    0.1 for biases."""
    rng = np.random.default_rng(2021)
    arrays = []
    for shape in shapes:
        std = 1 / np.sqrt(np.prod(shape[:-1])) if len(shape) == 4 else 0.1
        arrays.append((rng.standard_normal(shape) * std).astype(np.float32))
    return arrays


def write_authors_npz(path: Path, arrays: list[np.ndarray]) -> Path:
    """Write arrays the way TensorLayer's save_npz does: np.savez(params=<object array>)."""
    params = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        params[index] = array
    np.savez(path, params=params)
    return path
