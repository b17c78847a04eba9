"""kpac-export: write KPAC as a SavedModel for TF Serving (and optionally TFLite).

    kpac-export --export_dir=models                          # bundled kpac-3level weights
    kpac-export --weights=single_2level.npz --export_dir=models --model_name=kpac2
    kpac-export --weights=run/best.weights.npz --export_dir=models --attention --tflite

The result is TF Serving's layout, EXPORT_DIR/MODEL_NAME/VERSION/ (VERSION: the next
free integer unless --version is given; an existing version is never replaced), with
the signatures ``serving_default`` (float images [N,H,W,3] in [0,1], any size),
``encoded`` (PNG/JPEG bytes in, PNG bytes out, same bit depth) and with --attention
``attention``. --tflite adds VERSION/assets.extra/model.tflite (float signature,
dynamic shapes). Prints the version folder; on failure prints one line and exits 1.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from kpac_tf.cli import common_flags  # noqa: F401  (--weights, --preset)

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "Base folder; the model goes to EXPORT_DIR/MODEL_NAME/VERSION/.")
flags.DEFINE_string("model_name", "kpac", "Model name (TF Serving's --model_name and folder name).")
flags.DEFINE_integer("version", None, "Version number (default: one more than the largest existing).")
flags.DEFINE_boolean("attention", False, "Add the 'attention' signature (scale and shape attention maps).")
flags.DEFINE_boolean("tflite", False, "Also write assets.extra/model.tflite (float signature).")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"kpac-export: unexpected arguments {' '.join(argv[1:])}; all options are --flags.",
              file=sys.stderr)
        return 1
    if not FLAGS.export_dir:
        print("kpac-export: give --export_dir, the folder to write EXPORT_DIR/MODEL_NAME/VERSION/ into.",
              file=sys.stderr)
        return 1
    if FLAGS.version is not None and FLAGS.version < 1:
        print(f"kpac-export: --version must be a positive integer, got {FLAGS.version}.", file=sys.stderr)
        return 1

    existing = os.path.join(FLAGS.export_dir, FLAGS.model_name, str(FLAGS.version))
    if FLAGS.version is not None and os.path.exists(existing):
        print(f"kpac-export: {existing} already exists and is never replaced; pick another "
              "--version or leave it out to use the next free number.", file=sys.stderr)
        return 1

    from kpac_tf.export import export_saved_model
    from kpac_tf.weights import load_model

    source = FLAGS.weights or FLAGS.preset or "kpac-3level"
    try:
        model = load_model(source, config=FLAGS.preset if FLAGS.weights else None)
        path = export_saved_model(
            model,
            FLAGS.export_dir,
            model_name=FLAGS.model_name,
            version=FLAGS.version,
            attention=FLAGS.attention,
            tflite=FLAGS.tflite,
            weights_source=str(source),
        )
    except (OSError, ValueError) as error:  # FileNotFoundError, FileExistsError, mismatch
        message = " ".join(str(error).split())
        print(f"kpac-export: {message}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
