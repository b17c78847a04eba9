"""The TF Serving clients, against the loopback REST stand-in (tests/serving_stub.py)
that serves an exported SavedModel loaded in-process."""
from __future__ import annotations

import importlib.util
import socket

import keras
import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.deploy import saved_model
from kpac_tf.deploy import signatures as ksignatures
from kpac_tf.deploy.serving import GrpcClient, RestClient, ServingError
from kpac_tf.model.builder import build_kpac
from tests.serving_stub import ServingStub


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    keras.utils.set_random_seed(21)
    model = build_kpac("kpac-2level")
    saved_model.export_saved_model(model, root, "kpac")
    with ServingStub(root, "kpac") as stub:
        yield {"model": model, "url": stub.url}


def _keras(model, images: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(model(images, training=False)), 0.0, 1.0)


def _png(array01: np.ndarray, bits: int) -> bytes:
    levels = 255 if bits == 8 else 65535
    values = np.round(array01 * levels).astype(np.uint8 if bits == 8 else np.uint16)
    return tf.io.encode_png(values).numpy()


def test_status_and_metadata(served):
    client = RestClient(served["url"], "kpac")
    status = client.status()["model_version_status"][0]
    assert status["version"] == "1" and status["state"] == "AVAILABLE"
    signatures = client.metadata()["metadata"]["signature_def"]["signature_def"]
    assert signatures["encoded"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    dims = signatures["serving_default"]["inputs"]["images"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "-1", "-1", "3"]


def test_deblur_encoded_returns_png_with_the_input_bit_depth(served, rng):
    client = RestClient(served["url"], "kpac", version=1)
    photo = rng.random((13, 22, 3), dtype=np.float32)
    jpeg = tf.io.encode_jpeg(np.round(photo * 255).astype(np.uint8), quality=92).numpy()
    inputs = [(_png(photo, 8), 8), (_png(photo, 16), 16), (jpeg, 8)]
    results = client.deblur_encoded([data for data, _ in inputs])
    assert len(results) == 3
    decoded_inputs = [
        np.round(photo * 255) / 255,
        np.round(photo * 65535) / 65535,
        tf.io.decode_jpeg(jpeg).numpy() / 255.0,
    ]
    for result, (_, bits), decoded in zip(results, inputs, decoded_inputs):
        assert result[:8] == b"\x89PNG\r\n\x1a\n" and result[24] == bits
        got = tf.io.decode_png(result, dtype=tf.uint8 if bits == 8 else tf.uint16).numpy()
        want = np.round(_keras(served["model"], decoded[None].astype(np.float32))[0] * (2**bits - 1))
        assert got.shape == (13, 22, 3)
        assert np.abs(got.astype(np.int64) - want).max() <= 1
    # A single file (not a list) is accepted too.
    assert client.deblur_encoded(inputs[0][0]) == results[:1]


def test_deblur_floats_over_json(served, rng):
    client = RestClient(served["url"], "kpac")
    image = rng.random((7, 9, 3), dtype=np.float32)
    got = client.deblur(image)
    assert got.shape == (7, 9, 3)
    assert np.abs(got - _keras(served["model"], image[None])[0]).max() <= 1e-5
    batch = rng.random((2, 6, 5, 3), dtype=np.float32)
    assert np.abs(client.deblur(batch) - _keras(served["model"], batch)).max() <= 1e-5


def test_server_errors_become_serving_errors(served):
    client = RestClient(served["url"], "kpac")
    with pytest.raises(ServingError, match=r"HTTP 400: .*PNG \(8 or 16-bit\) or JPEG") as info:
        client.deblur_encoded([b"definitely not an image"])
    assert info.value.status == 400
    with pytest.raises(ServingError, match=r"values in \[0, 1\]"):
        client.deblur(np.full((4, 4, 3), 255.0, np.float32))
    with pytest.raises(ServingError, match="Servable not found") as info:
        RestClient(served["url"], "other").status()
    assert info.value.status == 404
    with pytest.raises(ServingError, match="Servable not found"):
        RestClient(served["url"], "kpac", version=9).deblur_encoded([b"x"])


def test_unreachable_server_is_one_clear_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = RestClient(f"http://127.0.0.1:{port}", "kpac", timeout=5)
    with pytest.raises(ServingError, match="Cannot reach TF Serving") as info:
        client.status()
    assert info.value.status is None


def test_client_argument_checks():
    client = RestClient("http://127.0.0.1:1", "kpac")
    with pytest.raises(ValueError, match="at least one"):
        client.deblur_encoded([])
    with pytest.raises(ValueError, match="right and centre"):
        client.deblur_encoded([b"a"], right=[b"b"])
    with pytest.raises(ValueError, match="same number"):
        client.deblur_encoded([b"a"], right=[b"b"], centre=[b"c", b"d"])


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_serving") is not None,
                    reason="tensorflow-serving-api is installed")
def test_grpc_client_without_the_optional_package_says_what_to_install():
    with pytest.raises(ImportError, match="tensorflow-serving-api"):
        GrpcClient("localhost:8500")


def test_error_line_skips_tf_generic_headers():
    from kpac_tf.deploy.serving import _first_line

    tf_error = ("Graph execution error:\n\nDetected at node map/Substr defined at (most recent "
                "call last):\n<stack traces unavailable>\nInvalid PNG data, size 60\n\t "
                "[[{{node map/Substr}}]]")
    assert _first_line(tf_error) == "Invalid PNG data, size 60"
    assert _first_line("x\nassertion failed: [bad bytes]") == "assertion failed: [bad bytes]"
    assert _first_line("Servable not found for request") == "Servable not found for request"
    assert _first_line("  \n") == "(no detail)"


def test_the_client_spells_the_models_dual_pixel_views():
    from kpac_tf.deploy import serving
    from kpac_tf.model.builder import DUAL_PIXEL_VIEWS

    assert serving._VIEWS == DUAL_PIXEL_VIEWS
    assert ksignatures.input_names(build_kpac("kpac-dual").kpac_config) == DUAL_PIXEL_VIEWS


@pytest.fixture(scope="module")
def served_dual(tmp_path_factory):
    """The dual-pixel preset with seeded random weights, last conv scaled up so the views
    matter, exported and served."""
    root = tmp_path_factory.mktemp("serving_dual")
    keras.utils.set_random_seed(22)
    model = build_kpac("kpac-dual")
    last = model.get_layer("d2_2")
    last.kernel.assign(last.kernel.numpy() * 3)
    saved_model.export_saved_model(model, root, "dual")
    with ServingStub(root, "dual") as stub:
        yield {"model": model, "url": stub.url}


def test_dual_pixel_requests_over_the_wire(served_dual, rng):
    """left/right/centre reach the server under the names the export gives them, as PNG
    bytes and as JSON floats."""
    model = served_dual["model"]
    client = RestClient(served_dual["url"], "dual")
    left, right, centre = (rng.random((2, 12, 20, 3), dtype=np.float32) for _ in range(3))
    want = np.clip(np.asarray(model([left, right, centre], training=False)), 0.0, 1.0)
    swapped = np.clip(np.asarray(model([right, left, centre], training=False)), 0.0, 1.0)
    assert np.abs(want - swapped).max() > 0.02  # a mislabelled view would show
    np.testing.assert_allclose(client.deblur(left, right=right, centre=centre), want, atol=1e-5)
    np.testing.assert_allclose(client.deblur(left[0], right=right[0], centre=centre[0]), want[0], atol=1e-5)
    # 8-bit PNGs: the server decodes the same levels the reference gets.
    levels = [np.round(v * 255) / 255 for v in (left, right, centre)]
    want8 = np.round(np.clip(np.asarray(model(levels, training=False)), 0.0, 1.0) * 255)
    files = [[_png(view[i], 8) for i in range(2)] for view in (left, right, centre)]
    results = client.deblur_encoded(files[0], right=files[1], centre=files[2])
    assert len(results) == 2
    for result, expected in zip(results, want8):
        got = tf.io.decode_png(result).numpy().astype(np.int64)
        assert got.shape == (12, 20, 3) and np.abs(got - expected).max() <= 1
