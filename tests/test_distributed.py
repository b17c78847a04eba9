"""The one train step under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy
(2 local worker processes). Each runs in subprocesses: devices and collectives must be set
up before TensorFlow initialises."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.process  # every test here starts a Python process

REPO = Path(__file__).resolve().parents[1]

COMMON = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    def tiny_model():
        from kpac_tf.model import builder
        return builder.build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))

    def tiny_data():
        from kpac_tf.data import pipeline
        from kpac_tf.train.config import TrainData
        sources = pipeline.resolve_data("synthetic:deadleaves", crop=32, val_images=4, seed=3)
        return TrainData(train=sources.train, val=sources.val, val_crop=32,
                         pipeline=pipeline.PipelineConfig(crop=32, flip_rot=True, seed=3))

    def tiny_config(**kw):
        from kpac_tf.train.config import TrainConfig
        base = dict(steps=3, batch_size=4, learning_rate=1e-3, checkpoint_every=3, summary_every=0,
                    image_summary_every=0, eval_every=3, val_batch_size=2)
        base.update(kw)
        return TrainConfig(**base)
    """
)

MIRRORED = COMMON + textwrap.dedent(
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kpac_tf.train import loop
    from kpac_tf.train.config import TrainConfig, TrainData
    workdir = sys.argv[1]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}

    # 1. Gradient scaling: one SGD step over 2 replicas equals one step on one device.
    rng = np.random.default_rng(0)
    blurred = rng.random((4, 32, 32, 3)).astype(np.float32)
    sharp = rng.random((4, 32, 32, 3)).astype(np.float32)
    results = []
    for strat in (tf.distribute.get_strategy(), strategy):
        with strat.scope():
            keras.utils.set_random_seed(1)
            trainer = loop.KPACTrainer(tiny_model())
            trainer.compile(optimizer=keras.optimizers.SGD(0.5))
        dataset = strat.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((blurred, sharp)).batch(4))
        batch = next(iter(dataset))
        per_replica = strat.run(trainer.train_step, args=(batch,))
        loss = float(strat.reduce("SUM", per_replica["loss"], axis=None))
        results.append((loss, [v.numpy() for v in trainer.network.trainable_variables]))
    out["sgd_loss"] = [results[0][0], results[1][0]]
    out["sgd_max_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(results[0][1], results[1][1]))

    # 2. The full training loop: default strategy vs mirrored, same data and init.
    single = loop.train(tiny_model, tiny_data(), tiny_config(), workdir + "/single")
    mirrored = loop.train(tiny_model, tiny_data(), tiny_config(), workdir + "/mirrored", strategy=strategy)
    replica_diff = 0.0
    for variable in mirrored.network.weights:
        local = [t.numpy() for t in strategy.experimental_local_results(variable.value)]
        assert len(local) == 2
        replica_diff = max(replica_diff, float(np.abs(local[0] - local[1]).max()))
    out["replica_max_diff"] = replica_diff
    out["losses"] = [single.logs["loss"], mirrored.logs["loss"]]
    out["val_psnr"] = [single.val_psnr, mirrored.val_psnr]
    out["val_images"] = [single.logs["val_images"], mirrored.logs["val_images"]]
    out["strategies"] = [single.record["strategy"], mirrored.record["strategy"]]
    out["weights_max_diff"] = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(single.network.weights, mirrored.network.weights))
    keras.utils.set_random_seed(tiny_config().seed)  # the initial weights, as train() draws them
    start = tiny_model()
    out["weights_moved"] = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(start.weights, single.network.weights))
    print("RESULT " + json.dumps(out))
    """
)

WORKER = COMMON + textwrap.dedent(
    """
    from kpac_tf.model import weights
    from kpac_tf.train import distribution, loop
    from kpac_tf.train.config import TrainConfig, TrainData
    strategy = distribution.make_strategy("multi_worker")
    workdir, out_dir, task = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = loop.train(tiny_model, tiny_data(), tiny_config(image_summary_every=3), workdir,
                        strategy=strategy)
    np.savez(f"{out_dir}/worker{task}.npz", *weights.get_arrays(result.network))
    print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": result.logs["loss"],
                                  "step": result.step, "chief": distribution.is_chief(strategy),
                                  "val_images": result.logs["val_images"]}))
    """
)


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout
    return json.loads(lines[-1][len("RESULT "):])


#: What a worker prints when its gRPC server cannot bind its port.
BIND_ERRORS = ("Address already in use", "Could not start gRPC server", "Failed to add port")


def _free_ports(count: int, attempts: int = 5) -> list[int]:
    """``count`` distinct ports that were free a moment ago (probes that fail to bind
    are retried). Another process may still take one before a worker binds it: the
    caller retries the launch on a bind error (:func:`_run_workers`)."""
    for _ in range(attempts):
        sockets = [socket.socket() for _ in range(count)]
        try:
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            ports = [s.getsockname()[1] for s in sockets]
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        if len(set(ports)) == count:
            return ports
    raise RuntimeError(f"no {count} free local ports after {attempts} attempts")


def _launch_workers(workdir: Path, out_dir: Path, timeout: float = 300) -> list[tuple[int, str, str]]:
    """Two workers on fresh ports; (exit code, stdout, stderr) of each. A worker that
    fails stops the other (which would wait for its peer)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes, logs = [], []
    for task in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": task}})
        out, err = (open(out_dir / f"worker{task}.{kind}", "w+") for kind in ("out", "err"))
        logs.append((out, err))
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(workdir), str(out_dir), str(task)],
            env=_env(TF_CONFIG=tf_config), stdout=out, stderr=err, text=True))
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in processes):
                break
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    results = []
    for process, (out, err) in zip(processes, logs):
        out.seek(0)
        err.seek(0)
        results.append((process.returncode, out.read(), err.read()))
        out.close()
        err.close()
    return results


def _run_workers(workdir: Path, out_dir: Path, attempts: int = 3) -> list[dict]:
    """The two workers' results, relaunched on new ports when a port was taken between
    the probe and the worker's bind."""
    for attempt in range(attempts):
        results = _launch_workers(workdir, out_dir)
        if all(code == 0 for code, _, _ in results):
            return [_result(stdout) for _, stdout, _ in results]
        taken = any(code != 0 and any(e in stderr for e in BIND_ERRORS) for code, _, stderr in results)
        if not taken or attempt == attempts - 1:
            code, _, stderr = next(r for r in results if r[0] != 0)
            raise AssertionError(f"worker exit code {code}: {stderr[-3000:]}")
        shutil.rmtree(workdir, ignore_errors=True)
    raise AssertionError("unreachable")


def test_mirrored_two_logical_cpus(tmp_path):
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = _result(done.stdout)
    assert out["replicas"] == 2 and out["strategies"] == ["default", "mirrored"]
    # compute_average_loss + the optimizer's SUM all-reduce = the single-device gradient.
    np.testing.assert_allclose(out["sgd_loss"][0], out["sgd_loss"][1], rtol=1e-5)
    assert out["sgd_max_diff"] < 1e-5
    assert out["replica_max_diff"] == 0.0  # every replica holds the same weights
    np.testing.assert_allclose(out["losses"][0], out["losses"][1], rtol=1e-4)
    np.testing.assert_allclose(out["val_psnr"][0], out["val_psnr"][1], atol=1e-2)
    assert out["val_images"] == [4, 4]  # no padding image counted
    # 3 Adam steps of lr 1e-3 move the weights 3.0e-3 from the same start; the two runs
    # end 9.8e-5 apart (measured; Adam amplifies round-off in near-zero gradients).
    assert out["weights_moved"] > 2.5e-3
    assert out["weights_max_diff"] < 3e-4


def test_multi_worker_two_processes(tmp_path):
    workdir = tmp_path / "run"
    outputs = _run_workers(workdir, tmp_path)
    assert [o["replicas"] for o in outputs] == [2, 2]
    assert [o["chief"] for o in outputs] == [True, False]
    assert [o["step"] for o in outputs] == [3, 3]
    assert outputs[0]["loss"] == outputs[1]["loss"]
    assert [o["val_images"] for o in outputs] == [4, 4]
    with np.load(tmp_path / "worker0.npz") as a, np.load(tmp_path / "worker1.npz") as b:
        assert len(a.files) == len(b.files) > 0
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    # Only the chief writes; the other worker's throw-away checkpoints are gone.
    assert (workdir / "model.weights.npz").exists() and (workdir / "train_record.json").exists()
    assert (workdir / "checkpoints" / "ckpt-3.index").exists()
    assert not list((workdir / "worker_tmp").glob("*/*"))
    record = json.loads((workdir / "train_record.json").read_text())
    assert record["strategy"] == "multi_worker" and record["replicas"] == 2
