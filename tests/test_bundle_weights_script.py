"""experiments/recipe/bundle_weights.py: a finished run becomes the bundled weights, and its
stage is appended to the bundled record without machine paths."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # every test here starts a Python process

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "recipe" / "bundle_weights.py"


def _run_record(**changes) -> dict:
    record = {
        "command": "kpac-train --preset=kpac-3level --steps=6 --lr=1e-4 --mixed_precision "
                   "--init_from=/some/where/kpac-3level.weights.npz --workdir=/scratch/runs/long",
        "config": {"batch_size": 4, "learning_rate": 1e-4, "lr_schedule": "cosine", "steps": 6},
        "dtype_policy": "mixed_bfloat16",
        "final_logs": {"val_psnr": 28.0, "val_input_psnr": 27.0},
        "finished": True,
        "flags": {"preset": "kpac-3level"},
        "init_from": "/some/where/kpac-3level.weights.npz",
        "step": 6,
        "wall_time_seconds": 1800.0,
    }
    record.update(changes)
    return record


def _bundle(run_dir: Path, assets: Path, *extra: str) -> subprocess.CompletedProcess:
    return _bundles((run_dir, assets, *extra))[0]


def _bundles(*calls: tuple) -> list[subprocess.CompletedProcess]:
    """The script once per ``(run_dir, assets, *extra)``, the processes started together
    (the script defines absl flags that the commands imported by other tests define too)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    started = [subprocess.Popen([sys.executable, str(SCRIPT), f"--run={run_dir}", f"--assets_dir={assets}",
                                 *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for run_dir, assets, *extra in calls]
    results = []
    for process in started:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from kpac_tf import build_kpac
    from kpac_tf.model import weights

    run_dir = tmp_path_factory.mktemp("run")
    weights.save_weights(build_kpac("kpac-3level"), run_dir / "model.weights.npz")
    (run_dir / "train_record.json").write_text(json.dumps(_run_record(
        model=build_kpac("kpac-3level").kpac_config.to_dict())))
    return run_dir


def test_a_finished_run_is_appended_as_a_stage(finished_run, tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "kpac-3level.json").write_text(json.dumps({
        "preset": "kpac-3level", "command": ["kpac-train --steps=100"], "stage_steps": [100],
        "steps": 100, "batch_size": 2, "learning_rate": [2e-4], "lr_schedule": ["constant"],
        "precision": ["float32"], "wall_time_hours": 1.0, "final_validation": {"stage1": {"val_psnr": 27.5}},
    }))
    result = _bundle(finished_run, assets, "--note=resumed twice")
    assert result.returncode == 0, result.stderr
    record = json.loads((assets / "kpac-3level.json").read_text())
    assert record["stage_steps"] == [100, 6] and record["steps"] == 106
    assert record["batch_size"] == [2, 4]  # an older record's one batch size becomes per stage
    assert record["learning_rate"] == [2e-4, 1e-4] and record["lr_schedule"] == ["constant", "cosine"]
    assert record["precision"] == ["float32", "mixed_bfloat16"]
    assert record["wall_time_hours"] == 1.5
    assert record["stage_notes"] == {"stage2": "resumed twice"}
    assert record["final_validation"]["stage2"]["val_psnr"] == 28.0
    assert record["command"][1].endswith("--init_from=kpac-3level.weights.npz --workdir=long")
    assert "/" not in record["command"][1]
    bundled = assets / "kpac-3level.weights.npz"
    assert bundled.read_bytes() == (finished_run / "model.weights.npz").read_bytes()
    assert sorted(p.name for p in assets.iterdir()) == ["kpac-3level.json", "kpac-3level.weights.npz"]


def test_another_file_of_the_run_can_stand_in_for_its_final_weights(finished_run, tmp_path):
    import keras

    from kpac_tf import build_kpac
    from kpac_tf.model import weights

    assets = tmp_path / "assets"
    assets.mkdir()
    keras.utils.set_random_seed(5)
    average = weights.save_weights(build_kpac("kpac-3level"), tmp_path / "average.weights.npz")
    other = weights.save_weights(build_kpac("kpac-2level"), tmp_path / "other.weights.npz")
    prefix = finished_run / "checkpoints" / "ckpt-6"
    result, refused, refused_prefix = _bundles(
        (finished_run, assets, f"--weights={average}", "--note=mean of 5 checkpoints"),
        (finished_run, tmp_path / "assets2", f"--weights={other}"),
        (finished_run, tmp_path / "assets3", f"--weights={prefix}"),
    )
    assert result.returncode == 0, result.stderr
    assert (assets / "kpac-3level.weights.npz").read_bytes() == average.read_bytes()
    record = json.loads((assets / "kpac-3level.json").read_text())
    assert record["stage_weights"] == {"stage1": "average.weights.npz"}
    # A file of another model than the run trained is refused; nothing is written.
    assert refused.returncode == 1 and "holds another model than the run trained" in refused.stderr
    assert not (tmp_path / "assets2").exists()
    # A checkpoint prefix is not a file to copy: one line, nothing written.
    refused = refused_prefix
    assert refused.returncode == 1 and "give a project *.weights.npz file" in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("bundle_weights.py: error:")]
    assert len(errors) == 1 and not (tmp_path / "assets3").exists()


def test_unfinished_or_unrelated_runs_are_refused(finished_run, tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "kpac-3level.json").write_text(json.dumps({"preset": "kpac-3level", "stage_steps": [100]}))
    before = (assets / "kpac-3level.json").read_text()
    runs = {}
    for name, record in (("unfinished", _run_record(finished=False, step=3)),
                         ("scratch", _run_record(init_from=None))):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        shutil.copy(finished_run / "model.weights.npz", runs[name])
        (runs[name] / "train_record.json").write_text(json.dumps(record))
    unfinished, scratch = _bundles((runs["unfinished"], assets), (runs["scratch"], assets))
    assert unfinished.returncode != 0 and "stopped at step 3 of 6" in unfinished.stderr
    assert scratch.returncode != 0 and "started from 'scratch'" in scratch.stderr
    assert (assets / "kpac-3level.json").read_text() == before
    assert not (assets / "kpac-3level.weights.npz").exists()


def _append_stage(run: dict) -> dict:
    """bundle_weights.append_stage({}, run) in a fresh process (the script defines absl
    flags that the commands imported by other tests define too)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bundle_weights; "
            "print(json.dumps(bundle_weights.append_stage({}, json.loads(sys.argv[2]))))")
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "experiments" / "recipe"), json.dumps(run)],
                            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_a_pool_stage_records_its_data_without_machine_paths(tmp_path):
    photos = tmp_path / "secret" / "photos"
    photos.mkdir(parents=True)
    (photos / "manifest.json").write_text(json.dumps(
        {"packages": {"ufoai-textures": {"train": 9, "map": 3}}, "counts": {"train": 9, "val": 1, "heldout": 1}}))
    pool = tmp_path / "secret" / "pool384"
    pool.mkdir()
    (pool / "pool.json").write_text(json.dumps(
        {"count": 3200, "size": 384, "kinds": [f"photos={photos}", "deadleaves"], "photo_count": 9,
         "dead_leaves_fraction": 0.1, "seed": 0, "crops_per_photo": 4, "config": {"max_radius": [1, 16]}}))
    run = _run_record(data=f"pool:{pool}", precision_reason="automatic: no bf16",
                      command=f"kpac-train --data=pool:{pool} --workdir={tmp_path}/runs/x")
    record = _append_stage(run)
    data = record["stage_data"]["stage1"]
    assert data["data"] == "pool:pool384"
    assert data["pool"]["count"] == 3200 and data["pool"]["kinds"] == ["photos=photos", "deadleaves"]
    assert data["photos_manifest"]["counts"] == {"train": 9, "val": 1, "heldout": 1}
    assert record["stage_precision_reason"]["stage1"] == "automatic: no bf16"
    assert "secret" not in json.dumps(record) and str(tmp_path) not in json.dumps(record)


def test_a_stage_on_two_pools_records_both(tmp_path):
    textures, natural = tmp_path / "secret" / "photos", tmp_path / "secret" / "natural"
    textures.mkdir(parents=True)
    natural.mkdir(parents=True)
    (textures / "manifest.json").write_text(json.dumps(
        {"packages": {"ufoai-textures": {"train": 9}}, "counts": {"train": 9, "val": 1}}))
    (natural / "manifest.json").write_text(json.dumps(
        {"source": "scikit-image training list", "train": ["camera", "grass"], "val": ["moon"]}))
    folders = []
    for name, radius, photos in (("pool384", [1, 16], textures), ("large", [8, 16], natural)):
        folder = tmp_path / "secret" / name
        folder.mkdir(parents=True)
        (folder / "pool.json").write_text(json.dumps(
            {"count": 64, "size": 384, "kinds": [f"photos={photos}", "deadleaves"], "seed": 1,
             "config": {"max_radius": radius}}))
        folders.append(str(folder))
    spec = "pool:" + ",".join(folders) + "@2"
    run = _run_record(data=spec, command=f"kpac-train --data={spec} --workdir={tmp_path}/runs/x")
    record = _append_stage(run)
    data = record["stage_data"]["stage1"]
    assert data["data"] == "pool:pool384,large@2" and "pool" not in data
    assert [(p["name"], p["renderer"]["max_radius"], p.get("weight")) for p in data["pools"]] == [
        ("pool384", [1, 16], None), ("large", [8, 16], 2)]
    # Each photo folder's counts are kept: the second pool's manifest does not replace the first's.
    assert "photos_manifest" not in data and data["photos_manifests"] == {
        "photos": {"packages": {"ufoai-textures": {"train": 9}}, "counts": {"train": 9, "val": 1}},
        "natural": {"source": "scikit-image training list", "counts": {"train": 2, "val": 1}},
    }
    assert record["command"][-1].split()[1] == "--data=pool:pool384,large@2"
    assert "secret" not in json.dumps(record) and str(tmp_path) not in json.dumps(record)


def test_a_run_that_started_from_an_unbundled_run_is_bundled_after_it(finished_run, tmp_path):
    import keras

    from kpac_tf import build_kpac
    from kpac_tf.model import weights

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "kpac-3level.json").write_text(json.dumps({"preset": "kpac-3level", "stage_steps": [100],
                                                         "steps": 100}))
    keras.utils.set_random_seed(7)
    average = weights.save_weights(build_kpac("kpac-3level"), tmp_path / "first_avg.weights.npz")
    start = tmp_path / "start.weights.npz"  # the same bytes under another name
    start.write_bytes(average.read_bytes())
    second = tmp_path / "second"
    second.mkdir()
    (second / "model.weights.npz").write_bytes((finished_run / "model.weights.npz").read_bytes())
    config = build_kpac("kpac-3level").kpac_config.to_dict()
    (second / "train_record.json").write_text(json.dumps(_run_record(
        model=config, init_from=str(start), step=8, config={**_run_record()["config"], "steps": 8})))
    # Alone, the second run does not continue the record: refused, nothing written.
    alone = _bundle(second, assets)
    assert alone.returncode == 1 and "not from the bundled kpac-3level.weights.npz" in alone.stderr
    assert not (assets / "kpac-3level.weights.npz").exists()
    chained = _bundle(second, assets, f"--after={finished_run}:{average}", "--note=second")
    assert chained.returncode == 0, chained.stderr
    record = json.loads((assets / "kpac-3level.json").read_text())
    assert record["stage_steps"] == [100, 6, 8] and record["steps"] == 114
    assert record["stage_weights"] == {"stage2": "first_avg.weights.npz", "stage3": "model.weights.npz"}
    assert record["stage_notes"]["stage3"] == "second" and "first_avg" in record["stage_notes"]["stage2"]
    assert (assets / "kpac-3level.weights.npz").read_bytes() == (second / "model.weights.npz").read_bytes()
    # A chain whose second run started elsewhere is refused before anything is written.
    before = (assets / "kpac-3level.json").read_text()
    other = tmp_path / "other.weights.npz"
    other.write_bytes((finished_run / "model.weights.npz").read_bytes())
    broken = _bundle(second, assets, f"--after={finished_run}:{other}")
    assert broken.returncode == 1 and "not from the previous stage other.weights.npz" in broken.stderr
    assert (assets / "kpac-3level.json").read_text() == before
