"""kpac-deblur: deblur defocused photos with KPAC.

usage: kpac-deblur [flags] INPUT [INPUT ...]

    kpac-deblur photo.jpg shots/ 'more/*.png' --output_dir=sharp
    kpac-deblur --weights=single_3level.npz --ensemble photo.png
    kpac-deblur --dual_pixel --weights=dual.npz left.png right.png centre.png
    kpac-deblur --jpeg_quality=98 IMG_1234.jpg IMG_1235.heic

Inputs are files, globs or folders (their images, not recursive). Each result keeps the
input's format, bit depth (8/16), grayscale and alpha, and its colour profile, EXIF
(orientation reset to 1: the pixels are upright) and XMP unless --strip_metadata; JPEG
results use 4:4:4 chroma. HEIC and AVIF need the photo extra (pip install
"kpac_tf[photo]"). Only kpac-3level ships weights (the default); the 2-level and
dual-pixel models need the authors' files or your own training (--weights). Bad inputs
are reported one line each and skipped; the others are still deblurred. Results are
written atomically, never replace an input, and never replace an earlier result
without --overwrite.

Exit status: 0 all deblurred; 1 some inputs failed; 2 nothing done (usage error, or
weights / output folder unusable); 130 Ctrl-C.
"""
from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

from absl import flags, logging

from kpac_tf.cli import inference_flags, model_flags, runner

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(model_flags)
flags.adopt_module_key_flags(inference_flags)
DEFAULT_OUTPUT_DIR = "deblurred"

flags.DEFINE_string("output_dir", None, f"Folder for the results (default: {DEFAULT_OUTPUT_DIR}; "
                    "created if missing).", allow_override=True)
flags.DEFINE_boolean("overwrite", False, "Replace existing results (inputs are never replaced).",
                     allow_override=True)
flags.DEFINE_string("suffix", "_deblurred", "Appended to each input's file stem.")
flags.DEFINE_boolean(
    "dual_pixel", False, "Inputs are LEFT RIGHT CENTRE file triples for the dual-pixel model."
)
flags.DEFINE_string("jpeg_quality", "95", "Quality of JPEG results: 1-100, or keep (the input's "
                    "own, estimated from its quantisation tables). Chroma stays at full "
                    "resolution (4:4:4).")
flags.DEFINE_boolean("strip_metadata", False, "Write results without the input's colour "
                     "profile, EXIF and XMP (kept by default).", allow_override=True)


def jpeg_quality_value(text: str) -> int | None:
    """--jpeg_quality as an integer 1..100, or None for keep; ValueError otherwise."""
    text = text.strip().lower()
    if text == "keep":
        return None
    if text.isdigit() and 1 <= int(text) <= 100:
        return int(text)
    raise ValueError(f"--jpeg_quality must be an integer from 1 to 100 or keep, got {text!r}.")


def _is_jpeg_quality(text: str) -> bool:
    try:
        jpeg_quality_value(text)
    except ValueError:
        return False
    return True


flags.register_validator("jpeg_quality", _is_jpeg_quality,
                         message="--jpeg_quality must be an integer from 1 to 100 or keep.")

Job = tuple[list[Path], Path]  # input files (one, or left/right/centre), result path


class InputError(ValueError):
    """A command-line input that cannot be used; the message is one line."""


def _folder_images(folder: str, errors: list[str]) -> list[Path]:
    runner.import_tensorflow()  # kpac_tf.images.codec loads TensorFlow
    from kpac_tf.images.codec import READ_EXTENSIONS

    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        errors.append(f"{folder}: folder cannot be read ({error.strerror or error}).")
        return []
    images = [Path(folder, e) for e in entries if Path(e).suffix.lower() in READ_EXTENSIONS]
    if not images:
        errors.append(f"{folder}: folder holds no images ({', '.join(READ_EXTENSIONS)}).")
    return [p for p in images if p.is_file()]


def expand_inputs(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, globs and folders, in order, without duplicates; plus errors."""
    files: list[Path] = []
    errors: list[str] = []
    for argument in arguments:
        if any(char in argument for char in "*?["):
            matches = sorted(glob.glob(argument))
            if not matches:
                errors.append(f"{argument}: no file matches this pattern.")
            files += [Path(m) for m in matches if os.path.isfile(m)]
        elif os.path.isdir(argument):
            files += _folder_images(argument, errors)
        else:
            files.append(Path(argument))  # checked by plan_jobs
    unique = list(dict.fromkeys(files))
    return unique, errors


def output_path(source: Path, output_dir: Path, suffix: str) -> Path:
    """Result path for ``source``: same extension; BMP/GIF/WebP results become PNG."""
    extension = source.suffix.lower()
    if extension not in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".avif"):
        extension = ".png"
    return output_dir / f"{source.stem}{suffix}{extension}"


def _check_input(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file.")
    if not path.exists():
        raise InputError(f"{path}: file not found.")


def _check_target(target: Path, inputs: set[Path], planned: set[Path], overwrite: bool) -> None:
    resolved = target.resolve()
    if resolved in inputs:
        raise InputError(f"{target}: would replace an input file; choose another --output_dir or --suffix.")
    if resolved in planned:
        raise InputError(f"{target}: another input already writes this result (same file name).")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: already exists; pass --overwrite to replace it.")


def plan_jobs(files: list[Path], output_dir: Path, dual_pixel: bool, suffix: str,
              overwrite: bool) -> tuple[list[Job], list[str]]:
    """(jobs whose inputs exist and whose result may be written, one error per other)."""
    groups = [files[i : i + 3] for i in range(0, len(files), 3)] if dual_pixel else [[f] for f in files]
    inputs = {f.resolve() for f in files}
    planned: set[Path] = set()
    jobs: list[Job] = []
    errors: list[str] = []
    for group in groups:
        target = output_path(group[-1], output_dir, suffix)
        try:
            for path in group:
                _check_input(path)
            _check_target(target, inputs, planned, overwrite)
        except InputError as error:
            errors.append(str(error))
            continue
        planned.add(target.resolve())
        jobs.append((group, target))
    return jobs, errors


def load_deblurrer(weights: str):
    """The Deblurrer for --weights / --preset and the tiling flags (set-up errors: exit 2)."""
    runner.import_tensorflow()
    from kpac_tf.model.weights import load_model

    try:
        model = load_model(weights, FLAGS.preset)
        deblurrer = inference_flags.make_deblurrer(model)
    except (OSError, ValueError) as error:
        raise runner.setup_error(str(error)) from None
    if deblurrer.config.dual_pixel != FLAGS.dual_pixel:
        raise runner.usage_error(
            "the dual-pixel model needs --dual_pixel and LEFT RIGHT CENTRE triples; "
            "single-image models take single images."
        )
    return deblurrer


def deblur_all(deblurrer, jobs: list[Job]) -> int:
    """Deblur and write every job; returns how many failed (one error line each)."""
    from tqdm import tqdm

    from kpac_tf.images import codec

    failed = 0
    no_bar = not runner.progress_bar_wanted()
    for group, target in tqdm(jobs, desc="deblurring", unit="image", disable=no_bar):
        try:
            images = [codec.read_image(path) for path in group]
            if FLAGS.dual_pixel:
                result = deblurrer.deblur_dual(*(image.stored_rgb for image in images))
            else:
                result = deblurrer.deblur(images[0].stored_rgb)
            source = images[-1]
            quality = jpeg_quality_value(FLAGS.jpeg_quality)
            codec.write_image(target, result, bit_depth=source.bit_depth,
                              grayscale=source.grayscale, alpha=source.alpha,
                              metadata=None if FLAGS.strip_metadata else source.metadata,
                              jpeg_quality=quality or source.jpeg_quality or 95)
        except (codec.ImageError, ValueError) as error:
            tqdm.write(runner.line("error", str(error)), file=sys.stderr)
            failed += 1
            continue
        logging.info("%s -> %s", group[-1], target)
    return failed


def main(argv: list[str]) -> int:
    arguments = argv[1:]
    if not arguments:
        raise runner.usage_error("give the image files, globs or folders to deblur.")
    files, errors = expand_inputs(arguments)
    if FLAGS.dual_pixel and len(files) % 3:
        raise runner.usage_error(f"--dual_pixel takes LEFT RIGHT CENTRE triples; got {len(files)} file(s).")
    output_dir = Path(FLAGS.output_dir or DEFAULT_OUTPUT_DIR)
    jobs, job_errors = plan_jobs(files, output_dir, FLAGS.dual_pixel, FLAGS.suffix, FLAGS.overwrite)
    errors += job_errors
    for message in errors:
        runner.error(message)
    started = time.perf_counter()
    failed = len(errors)
    if jobs:
        runner.check_output_dir(output_dir)
        weights = FLAGS.weights or ("kpac-dual" if FLAGS.dual_pixel else model_flags.DEFAULT_WEIGHTS)
        deblurrer = load_deblurrer(weights)
        output_dir.mkdir(parents=True, exist_ok=True)
        failed += deblur_all(deblurrer, jobs)
    done = len(jobs) - (failed - len(errors))
    seconds = time.perf_counter() - started
    where = f"; results in {output_dir}/" if jobs else ""
    print(f"{done} deblurred, {failed} failed, {seconds:.1f} s{where}")
    return runner.EXIT_FAILED if failed else runner.EXIT_OK


def run() -> None:
    """Console-script entry point."""
    runner.run_command("kpac-deblur", main)


if __name__ == "__main__":
    run()
