"""kpac-export: write KPAC as a SavedModel for TF Serving (and optionally TFLite).

usage: kpac-export --export_dir=DIR [flags]

    kpac-export --export_dir=models                          # bundled kpac-3level weights
    kpac-export --weights=single_2level.npz --export_dir=models --model_name=kpac2
    kpac-export --weights=run/model.weights.npz --export_dir=models --attention --tflite

The result is TF Serving's layout, EXPORT_DIR/MODEL_NAME/VERSION/ (VERSION: the next
free integer unless --version is given; an existing version is never replaced), with
the signatures ``serving_default`` (float images [N,H,W,3] in [0,1], any size),
``encoded`` (PNG/JPEG bytes in, PNG bytes out, same bit depth) and with --attention
``attention``. --tflite adds VERSION/assets.extra/model.tflite (float signature,
dynamic shapes); --onnx adds VERSION/model.onnx. Requests above --max_pixels are
refused before any work. Prints the version folder.

Exit status: 0 exported; 1 the export failed while writing (nothing is left behind);
2 nothing done (usage error, or weights / export folder unusable); 130 Ctrl-C.
"""
from __future__ import annotations

import os

from absl import flags

from kpac_tf.cli import model_flags, runner

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(model_flags)
flags.DEFINE_string("export_dir", None, "Base folder (required); the model goes to "
                    "EXPORT_DIR/MODEL_NAME/VERSION/.")
flags.DEFINE_string("model_name", "kpac", "Model name (TF Serving's --model_name and folder name).")
flags.DEFINE_integer("version", None, "Version number (default: one more than the largest existing).")
flags.DEFINE_boolean("attention", False, "Add the 'attention' signature (scale and shape attention maps).")
flags.DEFINE_boolean("tflite", False, "Also write assets.extra/model.tflite (float signature).")
flags.DEFINE_boolean("onnx", False, "Also write model.onnx beside saved_model.pb (for ONNX Runtime "
                     "and OpenVINO; needs the 'onnx' extra: pip install kpac_tf[onnx]).")
flags.DEFINE_integer("max_pixels", None, "Largest request the served model accepts, in pixels "
                     "over the batch (default: 16 million; the model needs about 1 KB of memory "
                     "per pixel); 0: no limit.", allow_override=True)


def _check_flags(argv: list[str]) -> None:
    runner.no_arguments(argv)
    if not FLAGS.export_dir:
        raise runner.usage_error("give --export_dir, the folder to write "
                                 "EXPORT_DIR/MODEL_NAME/VERSION/ into.")
    if FLAGS.max_pixels is not None and FLAGS.max_pixels < 0:
        raise runner.usage_error(f"--max_pixels must be >= 0 (0: no limit), got {FLAGS.max_pixels}.")
    if FLAGS.onnx:
        from kpac_tf.deploy.onnx import onnx_available

        ok, reason = onnx_available()
        if not ok:
            raise runner.setup_error(reason)
    if FLAGS.version is not None and FLAGS.version < 1:
        raise runner.usage_error(f"--version must be a positive integer, got {FLAGS.version}.")
    existing = os.path.join(FLAGS.export_dir, FLAGS.model_name, str(FLAGS.version))
    if FLAGS.version is not None and os.path.exists(existing):
        raise runner.setup_error(f"{existing} already exists and is never replaced; pick another "
                                 "--version or leave it out to use the next free number.")
    runner.check_output_dir(FLAGS.export_dir, "--export_dir")


def _max_pixels() -> int | None:
    """--max_pixels as the exporter takes it (None: no limit)."""
    from kpac_tf.deploy.signatures import DEFAULT_MAX_PIXELS

    if FLAGS.max_pixels is None:
        return DEFAULT_MAX_PIXELS
    return FLAGS.max_pixels or None


def main(argv: list[str]) -> int:
    _check_flags(argv)
    runner.import_tensorflow()
    from kpac_tf.deploy.saved_model import export_saved_model
    from kpac_tf.model.weights import load_model

    source = FLAGS.weights or FLAGS.preset or model_flags.DEFAULT_WEIGHTS
    try:
        model = load_model(source, config=FLAGS.preset if FLAGS.weights else None)
    except (OSError, ValueError) as error:
        raise runner.setup_error(str(error)) from None
    try:
        path = export_saved_model(
            model,
            FLAGS.export_dir,
            model_name=FLAGS.model_name,
            version=FLAGS.version,
            attention=FLAGS.attention,
            tflite=FLAGS.tflite,
            onnx=FLAGS.onnx,
            max_pixels=_max_pixels(),
            weights_source=str(source),
        )
    except (OSError, ValueError) as error:  # FileExistsError, a bad name, a failed write
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    print(path)
    return runner.EXIT_OK


def run() -> None:
    """Console-script entry point."""
    runner.run_command("kpac-export", main)


if __name__ == "__main__":
    run()
