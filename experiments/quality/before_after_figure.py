"""Before/after crops of held-out photographs, deblurred with the bundled weights.

usage: python experiments/quality/before_after_figure.py [flags]

    python experiments/quality/before_after_figure.py
    python experiments/quality/before_after_figure.py --pairs=bench_natural_heldout/heldout/photos \\
        --count=3 --out=before_after.png

Reads held-out pairs as the benchmarks render them: folders with test_c/source and
test_c/target, such as those of
`python experiments/quality/defocus_benchmark.py --photos=data/natural_photos
--split=heldout --skimage_pairs=2 --pairs_per_photo=3 --benchmark_dir=bench_natural_heldout`
(bench_natural_heldout/heldout/photos and .../skimage) or of the texture held-out
benchmark (defocus_benchmark/heldout/photos). Deblurs each chosen input whole with
--weights and writes one figure: a row per pair, input | result | sharp target, each a
--crop px square crop labelled with its PSNR against the target.

The pairs are chosen by a seeded rule, not by hand: the pairs of each folder, in file
name order, are shuffled with numpy.random.default_rng(--seed), and the figure takes
them in turn from each folder until it has --count. The crop of each pair is chosen
before the result is computed: the --crop square (on a grid of --crop/4 px steps) where
the input differs most from the target (mean absolute difference), i.e. where the
defocus shows most. PSNR: 8-bit (clipped, rounded to 255 levels), over all pixels and
channels of the crop; each row's label also gives the whole frame's PSNR.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_list("pairs", ["bench_natural_heldout/heldout/photos",
                            "bench_natural_heldout/heldout/skimage"],
                  "Benchmark folders, each with test_c/source and test_c/target (same file names).")
flags.DEFINE_string("weights", "kpac-3level", "Weights: a preset, a *.weights.npz, a checkpoint "
                    "or an authors' npz.")
flags.DEFINE_integer("count", 4, "Pairs in the figure (one row each).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the pair choice.")
flags.DEFINE_integer("crop", 192, "Side of each square crop in pixels.", lower_bound=32)
flags.DEFINE_string("out", "experiments/results/figures/before_after.jpg",
                    "Figure path (.jpg or .png); its folder is created if missing.")
flags.DEFINE_integer("jpeg_quality", 85, "JPEG quality of the figure.", lower_bound=1, upper_bound=100)

_LABEL = 18  # px of text above each panel
_GAP = 4     # px between panels


def list_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(source, target) paths of a benchmark folder, in file name order."""
    source_dir, target_dir = folder / "test_c" / "source", folder / "test_c" / "target"
    if not source_dir.is_dir() or not target_dir.is_dir():
        raise runner.setup_error(
            f"--pairs: {folder} has no test_c/source and test_c/target; render it with "
            "experiments/quality/defocus_benchmark.py (see --help).")
    pairs = [(source, target_dir / source.name) for source in sorted(source_dir.iterdir())
             if source.is_file() and (target_dir / source.name).is_file()]
    if not pairs:
        raise runner.setup_error(f"--pairs: {folder}/test_c holds no source/target pair.")
    return pairs


def choose_pairs(folders: list[Path], count: int, seed: int) -> list[tuple[Path, Path]]:
    """The seeded rule: each folder's pairs shuffled, then taken in turn from each folder."""
    rng = np.random.default_rng(seed)
    queues = []
    for folder in folders:
        pairs = list_pairs(folder)
        queues.append([pairs[i] for i in rng.permutation(len(pairs))])
    chosen = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def quantize(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((quantize(a) - quantize(b)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(1.0 / mse)


def crop_window(blurred: np.ndarray, target: np.ndarray, side: int) -> tuple[int, int, int]:
    """(top, left, side) of the square where the input differs most from the target."""
    height, width = blurred.shape[:2]
    side = min(side, height, width)
    error = np.abs(blurred - target).mean(axis=-1)
    step = max(1, side // 4)
    best, where = -1.0, (0, 0)
    for top in range(0, height - side + 1, step):
        for left in range(0, width - side + 1, step):
            value = float(error[top:top + side, left:left + side].mean())
            if value > best:
                best, where = value, (top, left)
    return where[0], where[1], side


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def compose(rows: list[dict], weights: str, side: int):
    """The figure as a Pillow image: a title line, then one row of three panels per pair."""
    from PIL import Image, ImageDraw

    font, small = _font(13), _font(12)
    width = 3 * side + 2 * _GAP
    row_height = _LABEL + side + _LABEL
    title = 2 * _LABEL
    canvas = Image.new("RGB", (width, title + len(rows) * (row_height + _GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), f"input | {Path(weights).name} | sharp: held-out pairs, {side} px crops", fill="black",
              font=font)
    draw.text((2, 2 + _LABEL), "PSNR against the sharp target, 8-bit, on the crop", fill="black",
              font=small)
    y = title
    for row in rows:
        draw.text((2, y + 2), row["title"], fill="black", font=small)
        for column, (panel, label) in enumerate(zip(row["panels"], row["labels"])):
            x = column * (side + _GAP)
            image = Image.fromarray((quantize(panel) * 255.0).round().astype(np.uint8))
            canvas.paste(image, (x, y + _LABEL))
            draw.text((x + 2, y + _LABEL + side + 2), label, fill="black", font=font)
        y += row_height + _GAP
    return canvas


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    out = Path(FLAGS.out)
    if out.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise runner.usage_error(f"--out must end in .jpg, .jpeg or .png, got {out.name}.")
    chosen = choose_pairs([Path(folder) for folder in FLAGS.pairs], FLAGS.count, FLAGS.seed)
    runner.check_output_dir(out.parent, "--out")
    runner.import_tensorflow()
    import kpac_tf

    deblurrer = kpac_tf.Deblurrer(kpac_tf.load_model(FLAGS.weights))
    rows = []
    for source, target_path in chosen:
        blurred = kpac_tf.read_image(source).rgb
        target = kpac_tf.read_image(target_path).rgb
        top, left, side = crop_window(blurred, target, FLAGS.crop)
        result = deblurrer.deblur(blurred)
        window = (slice(top, top + side), slice(left, left + side))
        panels = [image[window] for image in (blurred, result, target)]
        benchmark = source.parents[2].name
        rows.append({
            "panels": panels,
            "labels": [f"input {psnr(panels[0], panels[2]):.2f} dB",
                       f"{Path(FLAGS.weights).name} {psnr(panels[1], panels[2]):.2f} dB", "sharp"],
            "title": (f"{benchmark}/{source.name}: whole frame "
                      f"{psnr(blurred, target):.2f} -> {psnr(result, target):.2f} dB"),
        })
        print(f"{benchmark}/{source.name}: crop at ({top}, {left}), "
              f"{rows[-1]['labels'][0]}, {rows[-1]['labels'][1]}; {rows[-1]['title']}")
    side = min(row["panels"][0].shape[0] for row in rows)
    for row in rows:
        row["panels"] = [panel[:side, :side] for panel in row["panels"]]
    figure = np.asarray(compose(rows, FLAGS.weights, side), dtype=np.float32) / 255.0
    out.parent.mkdir(parents=True, exist_ok=True)
    kpac_tf.write_image(out, figure, jpeg_quality=FLAGS.jpeg_quality)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB, {len(rows)} pairs)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("before_after_figure.py", main)
