"""Benchmark: peak memory and time of ``kpac-deblur`` on a very large photo.

    python experiments/speed/benchmark_big_photo.py                     # 12000x8000 (96 MP), 8-bit
    python experiments/speed/benchmark_big_photo.py --size=6000x4000 --bit_depth=16

Writes a photo-like PNG of --size (a scikit-image photo resized up, with grain, so
the PNG is as hard to compress as a real photo), then runs the real command,
``kpac-deblur`` with the bundled weights and its defaults (automatic precision and
tiling), in a child process, and reads the child's peak resident memory from the
kernel (``getrusage``). In the same run it deblurs a 1-megapixel photo the same way,
the baseline: the command's fixed cost (TensorFlow, the model, one tile's
activations). Printed: the CPU's bfloat16 flags, time, peak RSS, peak bytes per pixel
of the big photo (the target is under 40) and the bytes per pixel above the baseline.
An oversized file is checked too (--oversized, a 30000x30000 PNG written without
holding it in memory): the command must call it too large, never corrupt.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("size", "12000x8000", "WIDTHxHEIGHT of the big photo.")
flags.DEFINE_integer("bit_depth", 8, "Bit depth of the big photo's PNG (8 or 16).")
flags.DEFINE_string("precision", "auto", "--precision passed to kpac-deblur.")
flags.DEFINE_boolean("oversized", True, "Also check the message for a 30000x30000 PNG.")


def photo(width: int, height: int, bit_depth: int, seed: int = 0):
    """A photo-like RGB image, HWC uint8/uint16: astronaut resized up plus grain."""
    import numpy as np
    import skimage.data
    import skimage.transform

    small = skimage.data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    levels = 255 if bit_depth == 8 else 65535
    out = np.empty((height, width, 3), np.uint8 if bit_depth == 8 else np.uint16)
    band = 1000
    for top in range(0, height, band):
        rows = min(band, height - top)
        # Resize band by band (the same bilinear map as one whole resize would use).
        ys = (np.arange(top, top + rows) + 0.5) * small.shape[0] / height - 0.5
        xs = (np.arange(width) + 0.5) * small.shape[1] / width - 0.5
        y0 = np.clip(np.floor(ys).astype(int), 0, small.shape[0] - 2)
        x0 = np.clip(np.floor(xs).astype(int), 0, small.shape[1] - 2)
        fy = np.clip(ys - y0, 0, 1)[:, None, None]
        fx = np.clip(xs - x0, 0, 1)[None, :, None]
        top_row = small[y0][:, x0] * (1 - fx) + small[y0][:, x0 + 1] * fx
        bottom_row = small[y0 + 1][:, x0] * (1 - fx) + small[y0 + 1][:, x0 + 1] * fx
        values = top_row * (1 - fy) + bottom_row * fy
        values += rng.normal(0, 0.01, values.shape).astype(np.float32)
        out[top:top + rows] = np.round(np.clip(values, 0, 1) * levels)
    return out


def write_png(path: str, pixels) -> None:
    import tensorflow as tf

    with open(path, "wb") as f:
        f.write(tf.io.encode_png(pixels, compression=1).numpy())


def write_oversized_png(path: str, side: int = 30000) -> None:
    """A valid gray 8-bit PNG of side x side, streamed row by row (a few MB on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(side)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                + chunk(b"IEND", b""))


def run_deblur(path: str, out_dir: str, extra: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Runs kpac-deblur in a child; returns (seconds, peak RSS MB of all children so far)."""
    command = [sys.executable, "-m", "kpac_tf.cli.deblur", path, f"--output_dir={out_dir}",
               f"--precision={FLAGS.precision}", "--overwrite", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb, done


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    from kpac_tf import cpu

    width, height = (int(v) for v in FLAGS.size.lower().split("x"))
    print(f"CPU bfloat16 flags: {', '.join(cpu.bf16_features()) or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        # Baseline first: children's peak RSS is a running maximum.
        small_path = os.path.join(tmp, "small.png")
        write_png(small_path, photo(1200, 800, FLAGS.bit_depth))
        base_s, base_mb, done = run_deblur(small_path, os.path.join(tmp, "out"), [])
        if done.returncode:
            print(done.stderr[-2000:])
            return runner.EXIT_FAILED
        print(f"baseline 1200x800: {base_s:.1f} s, peak RSS {base_mb:.0f} MB")
        big_path = os.path.join(tmp, "big.png")
        write_png(big_path, photo(width, height, FLAGS.bit_depth, seed=1))
        print(f"big photo {width}x{height} {FLAGS.bit_depth}-bit PNG: "
              f"{os.path.getsize(big_path) / 2**20:.0f} MB on disk")
        big_s, big_mb, done = run_deblur(big_path, os.path.join(tmp, "out"),
                                         ["--max_pixels=400000000"])
        if done.returncode:
            print(done.stderr[-2000:])
            return runner.EXIT_FAILED
        pixels = width * height
        print(f"big {width}x{height}: {big_s:.1f} s, peak RSS {big_mb:.0f} MB = "
              f"{big_mb * 2**20 / pixels:.1f} bytes/pixel (target < 40); "
              f"{(big_mb - base_mb) * 2**20 / pixels:.1f} bytes/pixel above the baseline")
        if FLAGS.oversized:
            huge = os.path.join(tmp, "huge.png")
            write_oversized_png(huge)
            _, _, done = run_deblur(huge, os.path.join(tmp, "out"), [])
            line = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            print(f"30000x30000 PNG: exit {done.returncode}: {line}")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("benchmark_big_photo.py", main)
