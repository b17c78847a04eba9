"""--precision (kpac-deblur, kpac-eval, kpac-demo), --max_pixels and --onnx: the
commands pass them to the library and refuse bad values before any work."""
from __future__ import annotations

import os

import numpy as np
import pytest
from absl import flags

from kpac_tf import build_kpac
from kpac_tf.cli import deblur, export, inference_flags, runner
from kpac_tf.images import codec
from kpac_tf.model.weights import save_weights


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_weights(build_kpac("kpac-2level", num_blocks=1), tmp_path_factory.mktemp("w") / "tiny")


def _parse(name, argv):
    flags.FLAGS.unparse_flags()
    return flags.FLAGS([name, *argv])


def test_deblurrer_follows_precision_and_max_pixels(weights_file, monkeypatch):
    monkeypatch.setattr(codec, "MAX_PIXELS", codec.MAX_PIXELS)
    _parse("kpac-deblur", ["--precision=float32", "--max_pixels=1000", "--tile=64", "--overlap=8"])
    from kpac_tf.model.weights import load_model

    deblurrer = inference_flags.make_deblurrer(load_model(str(weights_file)))
    assert deblurrer.precision == "float32" and codec.MAX_PIXELS == 1000
    with pytest.raises(flags.IllegalFlagValueError):
        _parse("kpac-deblur", ["--precision=float16"])
    flags.FLAGS.unparse_flags()


def test_deblur_refuses_an_image_above_max_pixels_and_does_the_rest(tmp_path, weights_file, rng,
                                                                   monkeypatch):
    monkeypatch.setattr(codec, "MAX_PIXELS", codec.MAX_PIXELS)
    monkeypatch.chdir(tmp_path)
    codec.write_image(tmp_path / "small.png", rng.random((20, 30, 3)))
    codec.write_image(tmp_path / "big.png", rng.random((40, 60, 3)))
    remaining = _parse("kpac-deblur", ["small.png", "big.png", f"--weights={weights_file}",
                                       "--max_pixels=1000", "--precision=float32",
                                       "--output_dir=out"])
    code = runner.call_main("kpac-deblur", deblur.main, remaining)
    flags.FLAGS.unparse_flags()
    assert code == 1
    assert os.listdir(tmp_path / "out") == ["small_deblurred.png"]
    expected = codec.read_image(tmp_path / "small.png").rgb
    assert codec.read_image(tmp_path / "out" / "small_deblurred.png").rgb.shape == expected.shape


def test_export_checks_max_pixels_before_any_work(tmp_path):
    remaining = _parse("kpac-export", [f"--export_dir={tmp_path / 'm'}", "--max_pixels=-5"])
    code = runner.call_main("kpac-export", export.main, remaining)
    flags.FLAGS.unparse_flags()
    assert code == 2 and not (tmp_path / "m").exists()


def test_export_max_pixels_default_and_off():
    from kpac_tf.deploy.signatures import DEFAULT_MAX_PIXELS

    _parse("kpac-export", ["--export_dir=x"])
    assert export._max_pixels() == DEFAULT_MAX_PIXELS
    _parse("kpac-export", ["--export_dir=x", "--max_pixels=0"])
    assert export._max_pixels() is None
    _parse("kpac-export", ["--export_dir=x", "--max_pixels=123"])
    assert export._max_pixels() == 123
    flags.FLAGS.unparse_flags()


def test_export_onnx_writes_a_model_onnx_runtime_runs(tmp_path, weights_file, rng):
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    remaining = _parse("kpac-export", [f"--export_dir={tmp_path}", f"--weights={weights_file}", "--onnx"])
    code = runner.call_main("kpac-export", export.main, remaining)
    flags.FLAGS.unparse_flags()
    assert code == 0
    onnx_file = tmp_path / "kpac" / "1" / "model.onnx"
    assert onnx_file.is_file()
    from kpac_tf.model.weights import load_model

    image = rng.random((1, 24, 40, 3)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: image})[0]
    want = np.asarray(load_model(str(weights_file))(image))
    np.testing.assert_allclose(np.clip(got, 0, 1), np.clip(want, 0, 1), atol=1e-4)
