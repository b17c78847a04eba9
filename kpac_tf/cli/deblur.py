"""kpac-deblur: deblur defocused photos with KPAC.

    kpac-deblur photo.jpg shots/ 'more/*.png' --output_dir=sharp
    kpac-deblur --weights=single_3level.npz --ensemble photo.png
    kpac-deblur --dual_pixel left.png right.png centre.png --output_dir=sharp

Inputs are files, globs or folders (their images, not recursive). Each result keeps the
input's format, bit depth (8/16), grayscale and alpha. Bad inputs are reported one line
each and skipped; the exit status is 1 if any failed. Outputs are written atomically
and never replace an input.
"""
from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from kpac_tf.cli import common_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("suffix", "_deblurred", "Appended to each input's file stem.")
flags.DEFINE_boolean(
    "dual_pixel", False, "Inputs are LEFT RIGHT CENTRE file triples for the dual-pixel model."
)
flags.DEFINE_boolean("overwrite", False, "Replace existing results (inputs are never replaced).")


class InputError(ValueError):
    """A command-line input that cannot be used; the message is one line."""


def expand_inputs(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, globs and folders, in order, without duplicates; plus errors."""
    from kpac_tf.io import READ_EXTENSIONS

    files: list[Path] = []
    errors: list[str] = []
    for argument in arguments:
        if any(char in argument for char in "*?["):
            matches = sorted(glob.glob(argument))
            if not matches:
                errors.append(f"{argument}: no file matches this pattern.")
            files += [Path(m) for m in matches if os.path.isfile(m)]
        elif os.path.isdir(argument):
            try:
                entries = sorted(os.listdir(argument))
            except OSError as error:
                errors.append(f"{argument}: folder cannot be read ({error.strerror or error}).")
                continue
            images = [Path(argument, e) for e in entries if Path(e).suffix.lower() in READ_EXTENSIONS]
            if not images:
                errors.append(f"{argument}: folder holds no images ({', '.join(READ_EXTENSIONS)}).")
            files += [p for p in images if p.is_file()]
        else:
            files.append(Path(argument))  # missing files are reported when read
    unique = list(dict.fromkeys(files))
    return unique, errors


def output_path(source: Path, output_dir: Path, suffix: str) -> Path:
    """Result path for ``source``: same extension; BMP/GIF/WebP results become PNG."""
    extension = source.suffix.lower()
    if extension not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        extension = ".png"
    return output_dir / f"{source.stem}{suffix}{extension}"


def _check_target(target: Path, inputs: set[Path], planned: set[Path], overwrite: bool) -> None:
    resolved = target.resolve()
    if resolved in inputs:
        raise InputError(f"{target}: would replace an input file; choose another --output_dir or --suffix.")
    if resolved in planned:
        raise InputError(f"{target}: another input already writes this result (same file name).")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: already exists; pass --overwrite to replace it.")


def main(argv: list[str]) -> int:
    arguments = argv[1:]
    if not arguments:
        print("error: give image files, globs or folders to deblur (see --help).", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from kpac_tf import io as kio
    from kpac_tf.weights import load_model

    files, errors = expand_inputs(arguments)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if FLAGS.dual_pixel and len(files) % 3:
        print(
            f"error: --dual_pixel takes LEFT RIGHT CENTRE triples; got {len(files)} files.",
            file=sys.stderr,
        )
        return 2
    if not files:
        print("error: no input images.", file=sys.stderr)
        return 2

    weights = FLAGS.weights or ("kpac-dual" if FLAGS.dual_pixel else "kpac-3level")
    try:
        model = load_model(weights, FLAGS.preset)
        deblurrer = common_flags.make_deblurrer(model)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if deblurrer.config.dual_pixel != FLAGS.dual_pixel:
        print(
            "error: the dual-pixel model needs --dual_pixel and LEFT RIGHT CENTRE triples; "
            "single-image models take single images.", file=sys.stderr,
        )
        return 2

    output_dir = Path(FLAGS.output_dir or "deblurred")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: {output_dir}: cannot create the output folder ({error.strerror or error}).", file=sys.stderr)
        return 2

    jobs = [files[i : i + 3] for i in range(0, len(files), 3)] if FLAGS.dual_pixel else [[f] for f in files]
    inputs = {f.resolve() for f in files}
    planned: set[Path] = set()
    done, failed = 0, len(errors)
    started = time.perf_counter()
    for job in tqdm(jobs, desc="deblurring", unit="image", disable=None):
        reference = job[-1]
        target = output_path(reference, output_dir, FLAGS.suffix)
        try:
            _check_target(target, inputs, planned, FLAGS.overwrite)
            images = [kio.read_image(path) for path in job]
            if FLAGS.dual_pixel:
                result = deblurrer.deblur_dual(*(image.rgb for image in images))
            else:
                result = deblurrer.deblur(images[0].rgb)
            source = images[-1]
            kio.write_image(
                target, result, bit_depth=source.bit_depth,
                grayscale=source.grayscale, alpha=source.alpha,
            )
        except (kio.ImageError, InputError, ValueError) as error:
            tqdm.write(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        planned.add(target.resolve())
        done += 1
        logging.info("%s -> %s", reference, target)
    seconds = time.perf_counter() - started
    print(f"{done} deblurred, {failed} failed, {seconds:.1f} s; results in {output_dir}/")
    return 1 if failed else 0


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
