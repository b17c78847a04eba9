"""Tests for kpac_tf.evaluation.lpips: shipped heads, metric properties, error paths, torch parity."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickle
import sys

import numpy as np
import pytest

from kpac_tf.evaluation import lpips as L

_ROOT = os.path.join(os.path.dirname(__file__), "..")
_ASSETS = os.path.join(_ROOT, "kpac_tf", "assets", "lpips")


def _smooth_images(rng, n=2, h=64, w=80):
    yy, xx = np.mgrid[0:h, 0:w] / 64.0
    x = np.stack([np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 4) * yy
                                                             + rng.uniform(1, 4) * xx))
                            for _ in range(3)], -1) for _ in range(n)])
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def alex():
    return L.LPIPS("alex", backbone_weights=L.random_backbone("alex", seed=3))


def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_shipped_heads_match_conversion_manifest(net):
    with open(os.path.join(_ASSETS, "heads_manifest.json")) as fh:
        manifest = json.load(fh)[net]["heads"]
    heads = L.load_heads(net)
    assert [h.shape for h in heads] == [tuple(manifest[f"lin{k}"]["shape"]) for k in range(5)]
    for k, h in enumerate(heads):
        assert _digest(h) == manifest[f"lin{k}"]["sha256"]
        assert float(h.astype(np.float64).sum()) == pytest.approx(manifest[f"lin{k}"]["sum"])
        assert h.min() >= 0.0  # v0.1 heads are clamped non-negative in training
    model = L.LPIPS(net, backbone_weights=L.random_backbone(net))
    for got, want in zip(model.heads, heads):
        np.testing.assert_array_equal(got, want)
    assert os.path.isfile(os.path.join(_ASSETS, "LICENSE-lpips.txt"))


def test_metric_properties_with_random_backbone(alex, rng):
    x = _smooth_images(rng)
    noise = rng.normal(0, 1, x.shape).astype(np.float32)
    small = np.clip(x + 0.02 * noise, 0, 1)
    large = np.clip(x + 0.15 * noise, 0, 1)
    np.testing.assert_allclose(alex(x, x).numpy(), 0.0, atol=1e-7)
    d_small, d_large = alex(x, small).numpy(), alex(x, large).numpy()
    np.testing.assert_allclose(alex(small, x).numpy(), d_small, rtol=1e-5)
    assert np.all(d_small > 0)
    assert np.all(d_large > 2 * d_small)
    # HWC input gives the scalar of the matching batch entry; per-layer terms sum up.
    assert alex.distance(x[1], large[1]) == pytest.approx(float(d_large[1]), rel=1e-5)
    layers = [t.numpy() for t in alex.per_layer(x, large)]
    assert len(layers) == 5 and all(np.all(t >= 0) for t in layers)
    np.testing.assert_allclose(np.sum(layers, axis=0), d_large, rtol=1e-5)


def test_vgg_variant_runs_and_is_zero_on_identical(rng):
    model = L.LPIPS("vgg16", backbone_weights=L.random_backbone("vgg", seed=1))
    x = _smooth_images(rng, n=1, h=32, w=40)
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    assert model(x, x).numpy()[0] == pytest.approx(0.0, abs=1e-7)
    assert model(x, y).numpy()[0] > 0


def test_missing_and_wrong_backbone_files_raise_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("KPAC_TF_LPIPS_DIR", str(tmp_path))
    assert L.default_backbone_path("alex") == str(tmp_path / "lpips_alex_backbone.npz")
    with pytest.raises(L.LPIPSUnavailable, match="python -m kpac_tf.tools.convert_lpips_backbone"):
        L.LPIPS("alex")
    weights = L.random_backbone("alex")
    bad = dict(weights)
    bad["conv3.kernel"] = bad["conv3.kernel"][:, :, :10]
    np.savez(tmp_path / "bad.npz", net=np.array("alex"), **bad)
    with pytest.raises(L.LPIPSUnavailable, match="conv3.kernel"):
        L.LPIPS("alex", backbone_weights=tmp_path / "bad.npz")
    np.savez(tmp_path / "vgg_file.npz", net=np.array("vgg"), **L.random_backbone("vgg"))
    with pytest.raises(L.LPIPSUnavailable, match="vgg network"):
        L.LPIPS("alex", backbone_weights=tmp_path / "vgg_file.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(L.LPIPSUnavailable, match="Cannot read"):
        L.LPIPS("alex", backbone_weights=tmp_path / "junk.npz")


def test_probe_check_accepts_matching_and_refuses_wrong_file(tmp_path, rng):
    weights = L.random_backbone("alex", seed=5)
    x = _smooth_images(rng, n=2, h=40, w=48)
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    truth = L.LPIPS("alex", backbone_weights=weights)(x, y).numpy().astype(np.float64)
    np.savez(tmp_path / "good.npz", net=np.array("alex"), probe_x=x, probe_y=y,
             probe_distance=truth, **weights)
    L.LPIPS("alex", backbone_weights=tmp_path / "good.npz")  # verifies without raising
    other = L.random_backbone("alex", seed=6)
    np.savez(tmp_path / "wrong.npz", net=np.array("alex"), probe_x=x, probe_y=y,
             probe_distance=truth, **other)
    with pytest.raises(L.LPIPSUnavailable, match="reference distances"):
        L.LPIPS("alex", backbone_weights=tmp_path / "wrong.npz")


def test_input_checks(alex):
    assert L.min_image_size("alex") == 31 and L.min_image_size("vgg") == 16
    with pytest.raises(ValueError, match="at least 31x31"):
        alex(np.zeros((20, 40, 3), np.float32), np.zeros((20, 40, 3), np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        alex(np.zeros((40, 40, 3), np.float32), np.zeros((40, 48, 3), np.float32))
    with pytest.raises(ValueError, match="Unknown LPIPS network"):
        L.LPIPS("squeeze", backbone_weights={})


# ---------------------------------------------------------------- .pth heads reader
def _heads_converter():
    spec = importlib.util.spec_from_file_location(
        "convert_lpips_heads", os.path.join(_ROOT, "experiments", "assets", "convert_lpips_heads.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def test_heads_reader_refuses_arbitrary_globals():
    conv = _heads_converter()
    buf = io.BytesIO()
    for obj in (conv._LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    pickle.dump(os.getcwd, buf, protocol=2)  # a GLOBAL the reader must not resolve
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        conv.read_legacy_pth(buf.getvalue())


@pytest.mark.process
def test_heads_reader_matches_torch_legacy_save(tmp_path):
    torch = pytest.importorskip("torch")
    conv = _heads_converter()
    gen = torch.Generator().manual_seed(0)
    state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen)
             for k, c in enumerate((64, 192, 384, 256, 256))}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    heads = conv.convert(buf.getvalue(), "alex")
    for k in range(5):
        np.testing.assert_array_equal(heads[f"lin{k}"],
                                      state[f"lin{k}.model.1.weight"].numpy().reshape(-1))


# ---------------------------------------------------------------- PyTorch parity
def _reference_script():
    spec = importlib.util.spec_from_file_location(
        "lpips_reference", os.path.join(_ROOT, "experiments", "quality", "lpips_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.process
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_distances_stored_from_the_lpips_package(net):
    """Distances the PyPI ``lpips`` package computed once (experiments/quality/lpips_reference.py),
    with its own heads and a seeded random trunk, reproduced here without torch."""
    script = _reference_script()
    with np.load(os.path.join(_ROOT, "tests", "data", "lpips_reference.npz")) as ref:
        ref = {k: ref[k] for k in ref.files if k.startswith(net + "_")}
    weights = L.random_backbone(net, seed=int(ref[f"{net}_seed"]))
    # kpac_tf and the script draw the same trunk the package was given.
    assert script.backbone_digest(weights) == str(ref[f"{net}_backbone_sha256"])
    x = ref[f"{net}_x"].astype(np.float32) / np.float32(255)
    y = ref[f"{net}_y"].astype(np.float32) / np.float32(255)
    model = L.LPIPS(net, backbone_weights=weights)
    want = ref[f"{net}_distance"]
    assert want.shape == (2,) and np.all(want > 1e-3)
    np.testing.assert_allclose(model(x, y).numpy(), want, rtol=2e-4, atol=1e-7)
    layers = np.stack([t.numpy() for t in model.per_layer(x, y)])
    np.testing.assert_allclose(layers, ref[f"{net}_per_layer"], rtol=2e-4, atol=1e-7)


def _torch_lpips(torch, net, weights, heads, x, y):
    """LPIPS v0.1 written directly in PyTorch, torchvision's layer order and padding."""
    import torch.nn.functional as F

    def conv(h, name, stride=1, pad=1):
        w = torch.from_numpy(weights[f"{name}.kernel"]).permute(3, 2, 0, 1)
        return F.relu(F.conv2d(h, w, torch.from_numpy(weights[f"{name}.bias"]),
                               stride=stride, padding=pad))

    def trunk(img):
        h = torch.from_numpy(img).permute(0, 3, 1, 2) * 2 - 1
        h = (h - torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)) / torch.tensor(
            [.458, .448, .450]).view(1, 3, 1, 1)
        taps = []
        if net == "alex":
            h = conv(h, "conv1", 4, 2); taps.append(h); h = F.max_pool2d(h, 3, 2)  # noqa: E702
            h = conv(h, "conv2", 1, 2); taps.append(h); h = F.max_pool2d(h, 3, 2)  # noqa: E702
            for name in ("conv3", "conv4", "conv5"):
                h = conv(h, name)
                taps.append(h)
        else:
            for stage, n in enumerate((2, 2, 3, 3, 3), start=1):
                if stage > 1:
                    h = F.max_pool2d(h, 2, 2)
                for i in range(1, n + 1):
                    h = conv(h, f"conv{stage}_{i}")
                taps.append(h)
        return taps

    with torch.no_grad():
        total = 0
        for fx, fy, w in zip(trunk(x), trunk(y), heads):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((fx - fy) ** 2 * torch.from_numpy(w).view(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total.numpy()


@pytest.mark.parametrize("net,size", [("alex", (67, 93)), ("vgg", (36, 52))])
def test_matches_pytorch_reference_with_shared_random_weights(net, size, rng):
    torch = pytest.importorskip("torch")
    weights = L.random_backbone(net, seed=11)
    heads = L.load_heads(net)
    x = _smooth_images(rng, n=2, h=size[0], w=size[1])
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    want = _torch_lpips(torch, net, weights, heads, x, y)
    got = L.LPIPS(net, backbone_weights=weights)(x, y).numpy()
    assert np.all(want > 1e-4)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-7)
