"""kpac-demo: deblur the bundled sample photo and show a before/after.

    kpac-demo [--output_dir=demo_output] [--weights=kpac-3level]

The sample is a real photograph that the bundled weights never saw in training,
defocused with the project's synthetic depth-of-field renderer, so its sharp original
is known. The command writes the input, the result and a side-by-side figure (input /
result / ground truth, with zoomed crops) and prints PSNR and SSIM before and after.
"""
from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from kpac_tf.cli import common_flags  # noqa: F401  (--weights, --output_dir)

FLAGS = flags.FLAGS
flags.DEFINE_string("sample", "coffee", "Name of the bundled sample (kpac_tf/assets/samples).")

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


def sample_paths(name: str) -> tuple[Path, Path]:
    """(blurred, sharp) paths of a bundled sample."""
    return SAMPLES_DIR / f"{name}_blurred.png", SAMPLES_DIR / f"{name}_sharp.png"


def side_by_side_figure(path: Path, panels: list, crop: tuple) -> None:
    """Save a figure: ``panels`` are (title, HWC [0,1] image); full images on the top row,
    the same zoomed ``crop`` (top, left, size) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    top, left, size = crop
    figure, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.2), squeeze=False)
    for column, (title, image) in enumerate(panels):
        axes[0, column].imshow(image)
        axes[0, column].add_patch(Rectangle((left, top), size, size, fill=False, edgecolor="yellow", lw=1.5))
        axes[0, column].set_title(title, fontsize=10)
        axes[1, column].imshow(image[top : top + size, left : left + size], interpolation="nearest")
        for axis in axes[:, column]:
            axis.set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def sharpest_difference_crop(blurred, sharp, size: int) -> tuple[int, int, int]:
    """(top, left, size) of the window where blur removed the most detail."""
    import numpy as np

    size = min(size, blurred.shape[0], blurred.shape[1])
    error = np.abs(blurred - sharp).mean(axis=-1)
    step = max(size // 4, 1)
    best, best_score = (0, 0), -1.0
    for top in range(0, blurred.shape[0] - size + 1, step):
        for left in range(0, blurred.shape[1] - size + 1, step):
            score = float(error[top : top + size, left : left + size].mean())
            if score > best_score:
                best, best_score = (top, left), score
    return best[0], best[1], size


def main(argv: list[str]) -> int:
    del argv
    from kpac_tf import io as kio
    from kpac_tf.inference import Deblurrer
    from kpac_tf.metrics import psnr, ssim
    from kpac_tf.weights import load_model

    blurred_path, sharp_path = sample_paths(FLAGS.sample)
    try:
        blurred = kio.read_image(blurred_path).rgb
        sharp = kio.read_image(sharp_path).rgb
    except kio.ImageError as error:
        print(f"error: bundled sample {FLAGS.sample!r} is unreadable: {error}", file=sys.stderr)
        return 2
    try:
        model = load_model(FLAGS.weights or "kpac-3level", FLAGS.preset)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        print(
            "The demo needs weights: the package bundles them for 'kpac-3level' once trained; "
            "otherwise pass --weights=single_3level.npz (the authors' file, "
            "github.com/HyeongseokSon1/KPAC, folder pretrained/) or a *.weights.npz of yours.",
            file=sys.stderr,
        )
        return 2
    result = Deblurrer(model).deblur(blurred)

    output_dir = Path(FLAGS.output_dir or "demo_output")
    output_dir.mkdir(parents=True, exist_ok=True)
    kio.write_image(output_dir / f"{FLAGS.sample}_input.png", blurred)
    kio.write_image(output_dir / f"{FLAGS.sample}_deblurred.png", result)
    before = (psnr(blurred, sharp), ssim(blurred, sharp))
    after = (psnr(result, sharp), ssim(result, sharp))
    crop = sharpest_difference_crop(blurred, sharp, 96)
    figure = output_dir / f"{FLAGS.sample}_before_after.png"
    side_by_side_figure(
        figure,
        [
            (f"input  {before[0]:.2f} dB / SSIM {before[1]:.3f}", blurred),
            (f"KPAC  {after[0]:.2f} dB / SSIM {after[1]:.3f}", result),
            ("ground truth", sharp),
        ],
        crop,
    )
    print(f"sample {FLAGS.sample!r} ({blurred.shape[1]}x{blurred.shape[0]}), weights {FLAGS.weights or 'kpac-3level'}")
    print(f"input   : PSNR {before[0]:6.2f} dB  SSIM {before[1]:.4f}")
    print(f"deblurred: PSNR {after[0]:6.2f} dB  SSIM {after[1]:.4f}  ({after[0] - before[0]:+.2f} dB)")
    print(f"wrote {output_dir}/{FLAGS.sample}_deblurred.png and the figure {figure}")
    return 0


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
