"""Make the bundled demo sample: a held-out scikit-image photo, synthetically defocused.

The default, stereo_motorcycle, is sharp across the frame (a stereo-rig photograph) and
comes with its real depth (from its disparity map), so the defocus follows the scene.

    python experiments/assets/make_demo_sample.py [--name=stereo_motorcycle] [--seed=3]

Writes kpac_tf/assets/samples/<name>_blurred.png, <name>_sharp.png (8-bit) and
<name>.json (how it was made). The photo is in the synthetic generator's HELD-OUT list,
so the bundled weights never saw it in training.
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("name", "stereo_motorcycle",
                    "A held-out scikit-image sample, sharp across the frame.")
flags.DEFINE_integer("seed", 3, "Synthetic stream seed.")
flags.DEFINE_integer("index", 0, "Pair index in the stream.")
flags.DEFINE_float("max_radius", 6.0, "Largest blur radius in pixels.")

OUT = Path(__file__).resolve().parents[2] / "kpac_tf" / "assets" / "samples"


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    from kpac_tf.data.pairs import SyntheticConfig, SyntheticDefocusSource
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES, load_skimage_sample
    from kpac_tf.images.codec import write_image

    if FLAGS.name not in SKIMAGE_HELDOUT_SAMPLES:
        raise runner.usage_error(f"{FLAGS.name} is not a held-out sample: {SKIMAGE_HELDOUT_SAMPLES}.")
    rgb, _ = load_skimage_sample(FLAGS.name)
    config = SyntheticConfig(max_radius=(FLAGS.max_radius, FLAGS.max_radius), noise_sigma=(0.002, 0.002))
    source = SyntheticDefocusSource(
        rgb.shape[:2], photos=f"skimage:{FLAGS.name}", dead_leaves_fraction=0.0, config=config, seed=FLAGS.seed
    )
    pair = source.pair(FLAGS.index)
    OUT.mkdir(parents=True, exist_ok=True)
    write_image(OUT / f"{FLAGS.name}_blurred.png", pair.blurred)
    write_image(OUT / f"{FLAGS.name}_sharp.png", pair.sharp)
    record = {"photo": f"skimage.data.{FLAGS.name} (held out from training)", "seed": FLAGS.seed,
              "index": FLAGS.index, "mean_radius_px": pair.mean_radius, **pair.info}
    (OUT / f"{FLAGS.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("make_demo_sample.py", main)
