"""Bundle a finished training run as the package's default weights, with its record.

    python experiments/recipe/bundle_weights.py --run=runs/kpac3_long

The run's ``model.weights.npz`` replaces ``kpac_tf/assets/weights/PRESET.weights.npz``
and its ``train_record.json`` is appended, as one more training stage, to the bundled
record ``PRESET.json`` (commands, steps, learning rates, precision, wall time,
validation). The run must have started from the bundled weights (``--init_from``), so
that the stages chain; --fresh starts a new record instead. A run that started from
another run's weights which were never bundled (say an average of its checkpoints)
names that run with ``--after=RUN:WEIGHTS``: both stages are appended, in order, and
the chain is checked file by file (the same name or the same bytes)::

    python experiments/recipe/bundle_weights.py --after=runs/s9:s9_avg.weights.npz --run=runs/s12

Paths in the commands are reduced to their last component, so the record names no
machine's folders. Both files are written atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from absl import flags

from kpac_tf.cli import runner
from kpac_tf.data.pool import parse_pool_list

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Work directory of the finished kpac-train run.")
flags.DEFINE_string("preset", "kpac-3level", "Preset whose bundled weights are replaced.")
flags.DEFINE_string("assets_dir", None, "Bundled-weights folder (default: the package's).")
flags.DEFINE_string("hardware", None, "The record's text on where its stages ran, all of them "
                    "(it replaces the old text; default: keep the record's text).")
flags.DEFINE_string("note", None, "A remark on this stage kept in the record (e.g. restarts).")
flags.DEFINE_boolean("fresh", False, "Start a new record instead of appending a stage.")
flags.DEFINE_string("weights", None, "Bundle this weights file of the run instead of its final "
                    "model.weights.npz, e.g. an average of its last checkpoints "
                    "(python -m kpac_tf.tools.average_weights); the record says which file it was.")

flags.DEFINE_multi_string("after", [], "RUN[:WEIGHTS] (repeatable, in order): a finished run whose "
                          "weights (default its model.weights.npz) the next run started from, "
                          "never bundled on its own; appended as a stage before --run.")

_PATH_FLAGS = ("--workdir=", "--init_from=", "--vgg19_weights=", "--flagfile=", "--val_data=",
               "--data=pool:")


def sanitize_command(command: str) -> str:
    """The command with the values of path flags reduced to their last component."""
    words = []
    for word in command.split():
        for prefix in _PATH_FLAGS:
            if word.startswith(prefix) and os.sep in word[len(prefix):]:
                values = word[len(prefix):].split(",") if prefix == "--data=pool:" else [word[len(prefix):]]
                word = prefix + ",".join(Path(value).name for value in values)
        words.append(word)
    return " ".join(words)


def append_stage(record: dict, run: dict, hardware: str | None = None, note: str | None = None) -> dict:
    """``record`` (the bundled record, possibly empty) with the run ``run`` appended."""
    if not run.get("finished"):
        raise ValueError(f"The run stopped at step {run.get('step')} of {run['config']['steps']}; "
                         "finish it (rerun its command) before bundling.")
    record = dict(record)
    stage = len(record.get("stage_steps", [])) + 1
    record["command"] = [*record.get("command", []), sanitize_command(run["command"])]
    record["stage_steps"] = [*record.get("stage_steps", []), int(run["step"])]
    record["steps"] = sum(record["stage_steps"])
    batch_sizes = record.get("batch_size", [])
    if not isinstance(batch_sizes, list):  # records before per-stage batch sizes: one for all
        batch_sizes = [batch_sizes] * (stage - 1)
    record["batch_size"] = [*batch_sizes, run["config"]["batch_size"]]
    record["learning_rate"] = [*record.get("learning_rate", []), run["config"]["learning_rate"]]
    record["lr_schedule"] = [*record.get("lr_schedule", ["constant"] * (stage - 1)),
                             run["config"]["lr_schedule"]]
    record["precision"] = [*record.get("precision", ["float32"] * (stage - 1)),
                           run.get("dtype_policy", "float32")]
    hours = record.get("wall_time_hours", 0.0) + run["wall_time_seconds"] / 3600
    record["wall_time_hours"] = round(hours, 2)
    record["final_validation"] = {**record.get("final_validation", {}), f"stage{stage}": run["final_logs"]}
    if hardware:
        record["hardware"] = hardware
    if note:
        record["stage_notes"] = {**record.get("stage_notes", {}), f"stage{stage}": note}
    record["stage_data"] = {**record.get("stage_data", {}), f"stage{stage}": stage_data(run)}
    record["stage_precision_reason"] = {**record.get("stage_precision_reason", {}),
                                        f"stage{stage}": run.get("precision_reason", "")}
    return record


def stage_data(run: dict) -> dict:
    """What a run trained on: its --data value (folders reduced to their names) and, for
    pools, how each was rendered (``pool``; ``pools`` when there are several) and the
    manifest counts of their photo folders (``photos_manifest``; ``photos_manifests`` by
    folder name when the pools drew on several)."""
    spec = str(run.get("data", ""))
    info: dict = {"data": sanitize_command(f"--data={spec}")[len("--data="):]}
    if spec.startswith("pool:"):
        manifests: dict = {}
        pools = [_pool_info(Path(folder), weight, manifests)
                 for folder, weight in parse_pool_list(spec.split(":", 1)[1])]
        pools = [pool for pool in pools if pool is not None]
        if len(pools) == 1:
            info["pool"] = pools[0]
        elif pools:
            info["pools"] = pools
        if len(manifests) == 1:
            info["photos_manifest"] = next(iter(manifests.values()))
        elif manifests:
            info["photos_manifests"] = manifests
    return info


def _pool_info(pool_dir: Path, weight: int, manifests: dict) -> dict | None:
    """How the pool in ``pool_dir`` was rendered, with its training weight when above 1
    (None without its record); the manifest counts of each of its photo folders go into
    ``manifests`` under the folder's name."""
    pool_record = pool_dir / "pool.json"
    if not pool_record.is_file():
        return None
    pool = json.loads(pool_record.read_text())
    described = {key: pool.get(key) for key in ("count", "size", "dead_leaves_fraction",
                                                "photo_count", "seed", "crops_per_photo")}
    described["name"] = pool_dir.name
    described["kinds"] = [_short_kind(kind) for kind in pool.get("kinds", [])]
    described["renderer"] = pool.get("config")
    if weight > 1:
        described["weight"] = weight
    for kind in pool.get("kinds", []):
        folder = Path(kind.split("=", 1)[1]) if kind.startswith("photos=") else None
        if folder is not None and (folder / "manifest.json").is_file():
            manifests[folder.name] = _manifest_counts(json.loads((folder / "manifest.json").read_text()))
    return described


def _manifest_counts(manifest: dict) -> dict:
    """A photo folder's manifest reduced to its counts: the fetched packages' manifest
    (``packages``, ``counts``) or a list-per-split one (``source``, names per split)."""
    if "counts" in manifest or "packages" in manifest:
        return {"packages": manifest.get("packages"), "counts": manifest.get("counts")}
    counts = {split: len(names) for split, names in manifest.items() if isinstance(names, list)}
    return {"source": manifest.get("source"), "counts": counts}


def _short_kind(kind: str) -> str:
    if kind.startswith("photos="):
        return "photos=" + Path(kind.split("=", 1)[1]).name
    return Path(kind).name if os.sep in kind else kind


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.run:
        raise runner.usage_error("--run is required (the finished run's work directory).")
    runner.import_tensorflow()
    try:
        bundle(Path(FLAGS.run))
    except (ValueError, OSError) as error:
        runner.error(str(error))
        return runner.EXIT_FAILED
    return runner.EXIT_OK


def bundle(run_dir: Path) -> None:
    """Copy the run's weights over the bundled file and append its stage (and those of the
    ``--after`` runs before it) to the record."""
    from kpac_tf import files as kio
    from kpac_tf.model import weights

    target = weights.bundled_weights_path(FLAGS.preset)
    if FLAGS.assets_dir:
        target = Path(FLAGS.assets_dir) / target.name
    record_path = target.with_name(f"{FLAGS.preset}.json")
    record = {} if FLAGS.fresh or not record_path.exists() else json.loads(record_path.read_text())
    chain = [_split_after(value) for value in FLAGS.after]
    chain.append((run_dir, Path(FLAGS.weights) if FLAGS.weights else run_dir / "model.weights.npz"))
    previous = target
    for position, (stage_dir, source) in enumerate(chain):
        last = position == len(chain) - 1
        note = FLAGS.note if last else (f"not bundled on its own; {source.name} started the "
                                        "next stage")
        record = _append_run(record, stage_dir, source, previous, position == 0,
                             FLAGS.hardware if last else None, note)
        previous = source
    target.parent.mkdir(parents=True, exist_ok=True)
    kio.atomic_write(target, previous.read_bytes())
    kio.atomic_write(record_path, json.dumps(record, indent=2) + "\n")
    print(f"bundled {previous} as {target} "
          f"(stage {len(record['stage_steps'])}, {record['steps']} steps, {record['wall_time_hours']} h)")


def _split_after(value: str) -> tuple[Path, Path]:
    """(run folder, weights file) of an ``--after`` value RUN[:WEIGHTS]."""
    run, _, weights_file = value.partition(":")
    if not run:
        raise ValueError(f"--after={value}: give RUN or RUN:WEIGHTS.")
    return Path(run), Path(weights_file) if weights_file else Path(run) / "model.weights.npz"


def _continues(started_from: str, previous: Path, bundled: bool) -> bool:
    """Whether a run's --init_from value names ``previous`` (the same file name, the
    preset's name when ``previous`` is the bundled file, or a file with the same bytes)."""
    if not started_from:
        return False
    if Path(started_from).name == previous.name or (bundled and started_from == FLAGS.preset):
        return True
    start = Path(started_from)
    return start.is_file() and previous.is_file() and start.read_bytes() == previous.read_bytes()


def _append_run(record: dict, run_dir: Path, source: Path, previous: Path, bundled: bool,
                hardware: str | None, note: str | None) -> dict:
    """``record`` with the run in ``run_dir`` appended as a stage whose weights are ``source``,
    after checking that the run started from ``previous`` (the bundled file when
    ``bundled``) and trained the preset."""
    from kpac_tf.model import builder as models
    from kpac_tf.model import weights

    run = json.loads((run_dir / "train_record.json").read_text())
    if run["flags"].get("preset") != FLAGS.preset:
        raise ValueError(f"The run trained {run['flags'].get('preset')!r}, not {FLAGS.preset!r}.")
    started_from = run.get("init_from") or ""
    if record and not _continues(started_from, previous, bundled):
        raise ValueError(f"The run {run_dir.name} started from {Path(started_from).name or 'scratch'!r}, "
                         f"not from {'the bundled' if bundled else 'the previous stage'} "
                         f"{previous.name}: its stage does not continue the record (use --fresh, "
                         "or --after for a run in between).")
    record = append_stage(record, run, hardware, note)
    record.setdefault("preset", FLAGS.preset)
    if not source.name.endswith(weights.OWN_SUFFIX):
        raise ValueError(f"--weights={source}: give a project *{weights.OWN_SUFFIX} file (a checkpoint "
                         "or another format becomes one with "
                         "python -m kpac_tf.tools.average_weights).")
    stage = f"stage{len(record['stage_steps'])}"
    record["stage_weights"] = {**record.get("stage_weights", {}), stage: source.name}
    model = weights.load_model(str(source))  # refuses a broken or foreign file
    if "model" in run and models.model_config(model) != models.ModelConfig(**run["model"]):
        raise ValueError(f"{source} holds another model than the run trained.")
    return record


if __name__ == "__main__":
    runner.run_command("bundle_weights.py", main)
