"""kpac-demo: deblur a photo and show a before/after figure.

usage: kpac-demo [flags] [PHOTO]

    kpac-demo                            # the bundled sample, scored against its sharp original
    kpac-demo holiday.jpg                # your photo: result and before/after figure
    kpac-demo --weights=single_3level.npz --output_dir=demo2

With no PHOTO it runs the bundled sample: a real photograph that the bundled weights
never saw in training, defocused with the project's synthetic depth-of-field renderer,
so its sharp original is known. It writes the input, the result and a side-by-side
figure (input / result / ground truth, with zoomed crops) and prints PSNR and SSIM
before and after. With a PHOTO it writes the result and a figure (input / result with a
zoomed crop where the result changed most); there is no ground truth, so no scores.
The PNG result keeps the photo's bit depth, colour profile, EXIF (orientation reset to
1: the pixels are upright) and XMP unless --strip_metadata. HEIC and AVIF photos need
the photo extra (pip install "kpac_tf[photo]").
kpac-demo rewrites its own files in --output_dir (use kpac-deblur for results that are
never replaced).

Exit status: 0 done; 1 the photo cannot be read or written; 2 usage error or unusable
weights / output folder; 130 Ctrl-C.
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from kpac_tf.cli import model_flags, runner

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(model_flags)
DEFAULT_OUTPUT_DIR = "demo_output"
flags.DEFINE_string("output_dir", None, f"Folder for the input, the result and the figure "
                    f"(default: {DEFAULT_OUTPUT_DIR}; created if missing).", allow_override=True)
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "bfloat16"],
                  "auto: bfloat16 on CPUs with AMX-BF16 (about 2-3x faster), float32 elsewhere.",
                  allow_override=True)
flags.DEFINE_boolean("strip_metadata", False, "Write results without the input's colour "
                     "profile, EXIF and XMP (kept by default).", allow_override=True)
flags.DEFINE_string("sample", "stereo_motorcycle", "Name of the bundled sample (kpac_tf/assets/samples) "
                    "run when no PHOTO is given.")

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
    """(top, left, size) of the window where ``blurred`` and ``sharp`` differ most."""
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


def _load_deblurrer():
    """The Deblurrer for --weights / --preset (set-up errors: exit 2)."""
    from kpac_tf.inference import Deblurrer
    from kpac_tf.model.weights import load_model

    try:
        model = load_model(FLAGS.weights or model_flags.DEFAULT_WEIGHTS, FLAGS.preset)
    except (OSError, ValueError) as error:
        raise runner.setup_error(str(error)) from None
    if model.kpac_config.dual_pixel:
        raise runner.usage_error("the demo runs single-image models; deblur dual-pixel triples "
                                 "with kpac-deblur --dual_pixel.")
    return Deblurrer(model, precision=FLAGS.precision)


def run_sample(output_dir: Path) -> int:
    """Deblur the bundled sample, write the figure, print the scores."""
    from kpac_tf.evaluation.metrics import psnr, ssim
    from kpac_tf.images import codec

    name = FLAGS.sample
    blurred_path, sharp_path = sample_paths(name)
    if not blurred_path.is_file():
        raise runner.usage_error(f"there is no bundled sample {name!r} in {SAMPLES_DIR}.")
    deblurrer = _load_deblurrer()
    blurred = codec.read_image(blurred_path).rgb
    sharp = codec.read_image(sharp_path).rgb
    result = deblurrer.deblur(blurred)
    output_dir.mkdir(parents=True, exist_ok=True)
    codec.write_image(output_dir / f"{name}_input.png", blurred)
    codec.write_image(output_dir / f"{name}_deblurred.png", result)
    before = (psnr(blurred, sharp), ssim(blurred, sharp))
    after = (psnr(result, sharp), ssim(result, sharp))
    figure = output_dir / f"{name}_before_after.png"
    side_by_side_figure(figure, [
        (f"input  {before[0]:.2f} dB / SSIM {before[1]:.3f}", blurred),
        (f"KPAC  {after[0]:.2f} dB / SSIM {after[1]:.3f}", result),
        ("ground truth", sharp),
    ], sharpest_difference_crop(blurred, sharp, 96))
    weights = FLAGS.weights or model_flags.DEFAULT_WEIGHTS
    print(f"sample {name!r} ({blurred.shape[1]}x{blurred.shape[0]}), weights {weights}")
    print(f"input   : PSNR {before[0]:6.2f} dB  SSIM {before[1]:.4f}")
    print(f"deblurred: PSNR {after[0]:6.2f} dB  SSIM {after[1]:.4f}  ({after[0] - before[0]:+.2f} dB)")
    print(f"wrote {output_dir}/{name}_deblurred.png and the figure {figure}")
    return runner.EXIT_OK


def run_photo(photo: Path, output_dir: Path) -> int:
    """Deblur the user's ``photo``; write the result and an input/result figure."""
    from kpac_tf.images import codec

    result_path = output_dir / f"{photo.stem}_deblurred.png"
    figure = output_dir / f"{photo.stem}_before_after.png"
    if photo.resolve() in (result_path.resolve(), figure.resolve()):
        raise runner.usage_error(f"{photo}: the demo would write over it; choose another --output_dir.")
    try:
        image = codec.read_image(photo)
    except codec.ImageError as error:
        runner.error(str(error))
        return runner.EXIT_FAILED
    deblurrer = _load_deblurrer()
    result = deblurrer.deblur(image.rgb)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        codec.write_image(result_path, result, bit_depth=image.bit_depth,
                          metadata=None if FLAGS.strip_metadata else image.metadata)
    except codec.ImageError as error:
        runner.error(str(error))
        return runner.EXIT_FAILED
    side_by_side_figure(figure, [("input", image.rgb), ("KPAC", result)],
                        sharpest_difference_crop(image.rgb, result, 96))
    print(f"{photo} ({image.width}x{image.height}), weights {FLAGS.weights or model_flags.DEFAULT_WEIGHTS}")
    print(f"wrote {result_path} and the figure {figure}")
    return runner.EXIT_OK


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        raise runner.usage_error(f"kpac-demo takes one PHOTO at most, got {len(argv) - 1}; "
                                 "kpac-deblur deblurs many.")
    output_dir = Path(FLAGS.output_dir or DEFAULT_OUTPUT_DIR)
    runner.check_output_dir(output_dir)
    runner.import_tensorflow()
    if len(argv) == 2:
        return run_photo(Path(argv[1]), output_dir)
    return run_sample(output_dir)


def run() -> None:
    """Console-script entry point."""
    runner.run_command("kpac-demo", main)


if __name__ == "__main__":
    run()
