"""The validation curve of kpac-train runs, read from their TensorBoard event files.

    python experiments/quality/learning_curve.py --run=runs/photos
    python experiments/quality/learning_curve.py --run=runs/s5,runs/s6 --columns=9
    python experiments/quality/learning_curve.py --run=runs/s9 --baseline=kpac-3level \
        --data=pool:data/pool384 --val_images=24 --val_crop=256

Prints, for each run, the in-run validation gain (``val/psnr`` minus
``val/input_psnr``, dB: what the network adds over its input on the run's validation
scenes) at every validation step, as a markdown table of --columns gains per row, then
the best and the last. Needs TensorFlow only (no tensorboard package). When a resumed
run validated the same step twice, the last value counts.

With --baseline (any weights source, e.g. the file a run started from), the same
validation pass is run on those weights first: --data, --crop, --val_images, --val_crop
and --bit_depth as given to kpac-train rebuild the run's validation scenes (synthetic and
pool scenes do not depend on the data seed), so the table reads against the start.

With --soft_content, each run's checkpoints (``RUN/checkpoints/ckpt-STEP``) are also
scored on the soft-content benchmark (``soft_content_benchmark.py``'s default scenes,
scikit-image's held-out photos and --soft_natural's, float32): per step, PSNR(result,
input) of the scenes fed sharp (mean, worst), the gains on the in-focus and defocused
pixels of the partly defocused scenes, and PSNR(result, input) of the photos labelled
sharp (mean, worst). A run keeps only its last few checkpoints, so the figures of every
step scored are kept in ``RUN/soft_content_curve.json``: run it again while the run
trains and the curve grows. Each checkpoint takes a few minutes on a CPU: --soft_every=N
scores only the steps that are multiples of N.
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_list("run", None, "kpac-train work directories (their tensorboard/ folders are read).")
flags.DEFINE_integer("columns", 9, "Gains per table row.")
flags.DEFINE_string("baseline", None, "Weights to score on the runs' validation scenes (file, "
                    "preset or checkpoint); needs --data.")
flags.DEFINE_string("data", None, "With --baseline: the runs' kpac-train --data value.")
flags.DEFINE_integer("crop", 512, "With --baseline: kpac-train's --crop (the size of generated "
                     "validation scenes when --val_crop is 0).")
flags.DEFINE_integer("val_images", 0, "With --baseline: kpac-train's --val_images (0: its default).")
flags.DEFINE_integer("val_crop", 512, "With --baseline: kpac-train's --val_crop (0: whole images).")
flags.DEFINE_enum("bit_depth", "8", ["8", "16"], "With --baseline: kpac-train's --bit_depth.")
flags.DEFINE_boolean("soft_content", False, "Also score every checkpoint of each run on the "
                     "soft-content benchmark (kept in RUN/soft_content_curve.json).")
flags.DEFINE_string("soft_natural", None, "With --soft_content: a natural photo folder whose "
                    "heldout/ photos join the benchmark.")
flags.DEFINE_integer("soft_every", 0, "With --soft_content: score only the checkpoints whose "
                     "step is a multiple of this (0: every checkpoint).", lower_bound=0)


def read_scalars(event_dir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries of every event file in ``event_dir``
    (files in name order, so that a resumed run's later value of a step wins)."""
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(event_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and not value.tensor.string_val:
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                scalars.setdefault(value.tag, {})[int(event.step)] = number
    return scalars


def validation_gains(scalars: dict[str, dict[int, float]]) -> dict[int, float]:
    """{step: val/psnr - val/input_psnr} for the steps that have both."""
    psnr, before = scalars.get("val/psnr", {}), scalars.get("val/input_psnr", {})
    return {step: psnr[step] - before[step] for step in sorted(psnr) if step in before}


def baseline_gain(weights: str, data: str, *, crop: int, val_images: int, val_crop: int,
                  bit_depth: int) -> tuple[float, int]:
    """(mean PSNR gain in dB over the input, images) of ``weights`` on the validation
    scenes kpac-train builds for ``data``, scored by the trainer's own validation step
    (centre crops rounded to ``bit_depth``, outputs clipped to [0,1], PSNR per image)."""
    from kpac_tf.data import pipeline
    from kpac_tf.model import builder as models
    from kpac_tf.model import weights as kweights
    from kpac_tf.train.loop import KPACTrainer

    model = kweights.load_model(weights)
    sources = pipeline.resolve_data(data, crop=crop or None, val_crop=val_crop or None,
                                    val_images=val_images or None,
                                    dual_pixel=models.model_config(model).dual_pixel, bit_depth=bit_depth)
    if sources.val is None:
        raise ValueError(f"--data={data} has no validation scenes.")
    trainer = KPACTrainer(model)
    sums = {"psnr_sum": 0.0, "input_psnr_sum": 0.0, "count": 0.0}
    for batch in pipeline.make_eval_dataset(sources.val, crop=val_crop or None, bit_depth=bit_depth):
        out = trainer.test_step(batch)  # padding items weigh 0
        for key in sums:
            sums[key] += float(out[key])
    return (sums["psnr_sum"] - sums["input_psnr_sum"]) / sums["count"], int(sums["count"])


def gain_table(gains: dict[int, float], columns: int) -> list[str]:
    """Markdown lines: rows of ``columns`` gains, headed by their step range."""
    steps = sorted(gains)
    rows = [steps[i:i + columns] for i in range(0, len(steps), columns)]
    lines = ["| steps | gain (dB) |", "|---|---|"]
    for row in rows:
        span = f"{row[0]}" if len(row) == 1 else f"{row[0]}-{row[-1]}"
        lines.append(f"| {span} | " + " ".join(f"{gains[s]:+.2f}" for s in row) + " |")
    return lines


def soft_content_table(curve: dict[int, dict]) -> list[str]:
    """Markdown lines: the soft-content figures per step (dB)."""
    def number(value, signed=False):
        if value is None:
            return "-"
        if isinstance(value, str):
            return value
        return f"{value:+.2f}" if signed else f"{value:.2f}"

    lines = ["| step | sharp scenes mean | worst | in-focus px gain | defocused px gain | "
             "sharp photos mean | worst |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for step, s in curve.items():
        scenes, part = s.get("sharp", {}).get("all", {}), s.get("partial_defocus", {}).get("all", {})
        photos = s.get("natural", {}).get("sharp", {})
        lines.append(f"| {step} | {number(scenes.get('mean'))} | {number(scenes.get('worst'))} | "
                     f"{number(part.get('in_focus_gain'), True)} | "
                     f"{number(part.get('defocused_gain'), True)} | "
                     f"{number(photos.get('mean'))} | {number(photos.get('worst'))} |")
    return lines


def print_soft_content(runs: list[str]) -> int:
    """Prints each run's soft-content curve; returns the exit status."""
    import soft_content_scores

    try:
        benchmark = soft_content_scores.build_benchmark(natural=FLAGS.soft_natural)
    except (OSError, ValueError) as error:
        runner.error(f"--soft_natural={FLAGS.soft_natural}: {error}")
        return runner.EXIT_FAILED
    status = 0
    for run in runs:
        try:
            curve = soft_content_scores.checkpoint_curve(Path(run), benchmark,
                                                         every=FLAGS.soft_every)
        except (OSError, ValueError) as error:
            runner.error(f"{run}: {error}")
            status = runner.EXIT_FAILED
            continue
        if not curve:
            runner.error(f"{run}: no checkpoint to score on the soft-content benchmark.")
            status = runner.EXIT_FAILED
            continue
        print(f"{run}: soft-content benchmark, {len(curve)} checkpoints ({benchmark.describe()})")
        print("\n".join(soft_content_table(curve)) + "\n")
    return status


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.run:
        raise runner.usage_error("--run is required.")
    if FLAGS.columns < 1:
        raise runner.usage_error("--columns must be at least 1.")
    if FLAGS.baseline and not FLAGS.data:
        raise runner.usage_error("--baseline needs --data (the runs' kpac-train --data value).")
    runner.import_tensorflow()
    status = 0
    if FLAGS.baseline:
        try:
            gain, images = baseline_gain(FLAGS.baseline, FLAGS.data, crop=FLAGS.crop, val_images=FLAGS.val_images,
                                         val_crop=FLAGS.val_crop, bit_depth=int(FLAGS.bit_depth))
        except (OSError, ValueError) as error:
            runner.error(f"--baseline={FLAGS.baseline}: {error}")
            return runner.EXIT_FAILED
        print(f"{FLAGS.baseline}: {gain:+.2f} dB on the same validation scenes ({images} images)\n")
    for run in FLAGS.run:
        event_dir = Path(run) / "tensorboard"
        if not event_dir.is_dir():
            runner.error(f"{run}: no tensorboard/ folder; is it a kpac-train work directory?")
            status = runner.EXIT_FAILED
            continue
        gains = validation_gains(read_scalars(event_dir))
        if not gains:
            runner.error(f"{run}: no validation step logged yet.")
            status = runner.EXIT_FAILED
            continue
        best = max(gains, key=gains.get)
        last = max(gains)
        print(f"{run}: in-run validation gain, {len(gains)} validations")
        print("\n".join(gain_table(gains, FLAGS.columns)))
        print(f"best {gains[best]:+.2f} dB at step {best}; last {gains[last]:+.2f} dB at step {last}\n")
    if FLAGS.soft_content:
        status = print_soft_content(FLAGS.run) or status
    return status


if __name__ == "__main__":
    runner.run_command("learning_curve.py", main)
