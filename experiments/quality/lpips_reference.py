"""Reference LPIPS distances from the `lpips` package, for a parity test without torch.

kpac_tf's LPIPS (kpac_tf/evaluation/lpips.py) is a TensorFlow port. This script computes, once, the
distances the reference PyTorch package ``lpips`` 0.1.4 gives for a few small image
pairs, with its own shipped v0.1 linear heads and a seeded random backbone (the ImageNet
trunk cannot be shipped), and writes them with the inputs to
``tests/data/lpips_reference.npz``. ``tests/test_lpips.py`` recomputes them with
kpac_tf and compares, with no torch installed.

Run it in an environment with torch and lpips (not needed by kpac_tf itself):

    python3 -m venv lpips_env && lpips_env/bin/pip install torch lpips
    lpips_env/bin/python experiments/quality/lpips_reference.py

The script needs only numpy, torch and lpips (no TensorFlow): the backbone is drawn by
:func:`reference_backbone`, the same He initialisation as
``kpac_tf.evaluation.lpips.random_backbone(net, seed)``, and a digest of it is stored so the test
can check both draw the same weights. For that reason it parses its one flag with
argparse instead of kpac_tf's command runner: it runs where kpac_tf and absl are not
installed.

Layout written (numpy ``.npz``, no pickled objects), for each net in ("alex", "vgg"):
``{net}_x``, ``{net}_y`` (uint8 [N,H,W,3]; the images are these / 255 in float32),
``{net}_seed`` (the backbone seed), ``{net}_backbone_sha256`` (digest of the backbone,
see :func:`backbone_digest`), ``{net}_distance`` (float64 [N]) and
``{net}_per_layer`` (float64 [5, N], the package's ``retPerLayer`` terms); plus
``lpips_version`` and ``torch_version``.
"""
from __future__ import annotations

import argparse
import hashlib
import os

import numpy as np

_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_OUT = os.path.join(_ROOT, "tests", "data", "lpips_reference.npz")

#: Conv layers of each trunk in order: (name, kernel size, in, out) as in kpac_tf.evaluation.lpips.
CONVS = {
    "alex": [("conv1", 11, 3, 64), ("conv2", 5, 64, 192), ("conv3", 3, 192, 384),
             ("conv4", 3, 384, 256), ("conv5", 3, 256, 256)],
    "vgg": [("conv1_1", 3, 3, 64), ("conv1_2", 3, 64, 64),
            ("conv2_1", 3, 64, 128), ("conv2_2", 3, 128, 128),
            ("conv3_1", 3, 128, 256), ("conv3_2", 3, 256, 256), ("conv3_3", 3, 256, 256),
            ("conv4_1", 3, 256, 512), ("conv4_2", 3, 512, 512), ("conv4_3", 3, 512, 512),
            ("conv5_1", 3, 512, 512), ("conv5_2", 3, 512, 512), ("conv5_3", 3, 512, 512)],
}
#: Image size (H, W) per net: odd sizes exercise torch's floor-mode pooling.
SIZES = {"alex": (67, 93), "vgg": (36, 52)}
SEEDS = {"alex": 11, "vgg": 12}


def reference_backbone(net: str, seed: int) -> dict[str, np.ndarray]:
    """He-initialised trunk weights, kernels HWIO: the draw of
    ``kpac_tf.evaluation.lpips.random_backbone(net, seed)`` (kernel then bias, layer by layer)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, size, cin, cout in CONVS[net]:
        fan_in = size * size * cin
        out[f"{name}.kernel"] = rng.normal(0, np.sqrt(2.0 / fan_in),
                                           (size, size, cin, cout)).astype(np.float32)
        out[f"{name}.bias"] = rng.normal(0, 0.01, (cout,)).astype(np.float32)
    return out


def backbone_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays in sorted name order (little-endian float32 bytes)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name], dtype="<f4").tobytes())
    return digest.hexdigest()


def reference_images(net: str, seed: int = 0, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Smooth scenes and distorted copies (noise, then a shift), 8-bit NHWC."""
    rng = np.random.default_rng(seed)
    h, w = SIZES[net]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x = np.empty((n, h, w, 3), np.float64)
    for i in range(n):
        for c in range(3):
            f = rng.uniform(1, 6, size=2)
            x[i, :, :, c] = 0.5 + 0.4 * np.sin(2 * np.pi * (f[0] * yy + f[1] * xx) + rng.uniform(0, 6))
    y = x + rng.normal(0, 0.04, x.shape) * (1 + np.arange(n))[:, None, None, None]
    y[1] = np.roll(y[1], 1, axis=1)
    to_u8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return to_u8(x), to_u8(y)


def import_torchvision_models() -> None:
    """Import torchvision's model definitions, which lpips builds its trunks from.

    A CUDA build of torchvision beside a CPU-only torch fails in ``import torchvision``
    while registering its compiled detection ops, which LPIPS never uses. Then the
    package is set up without its ``__init__`` and only its pure-Python ``models``
    (AlexNet, VGG16: the real layer definitions) is imported.
    """
    import importlib.util
    import sys
    import types

    try:
        import torchvision  # noqa: F401
        return
    except (OSError, RuntimeError):
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["torchvision"] = package
    import torchvision.models

    package.models = torchvision.models


def package_distances(net: str, weights: dict[str, np.ndarray], x: np.ndarray,
                      y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lpips package's distance [N] and per-layer terms [5, N] for float32 NHWC
    images in [0, 1], with its own v0.1 heads and the given trunk."""
    import lpips
    import torch

    model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False).eval()
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(CONVS[net]), (net, len(convs))
    for module, (name, *_shape) in zip(convs, CONVS[net]):
        module.weight.data.copy_(torch.from_numpy(weights[f"{name}.kernel"].transpose(3, 2, 0, 1).copy()))
        module.bias.data.copy_(torch.from_numpy(weights[f"{name}.bias"]))
    to_torch = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    with torch.no_grad():
        total, layers = model(to_torch(x), to_torch(y), retPerLayer=True, normalize=True)
    per_layer = np.stack([t.reshape(-1).double().numpy() for t in layers])
    return total.reshape(-1).double().numpy(), per_layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output .npz")
    args = parser.parse_args()

    from importlib import metadata

    import torch

    import_torchvision_models()
    torch.set_num_threads(1)
    arrays: dict[str, np.ndarray] = {"lpips_version": np.array(metadata.version("lpips")),
                                     "torch_version": np.array(torch.__version__)}
    for net in ("alex", "vgg"):
        weights = reference_backbone(net, SEEDS[net])
        x8, y8 = reference_images(net)
        x = x8.astype(np.float32) / np.float32(255)
        y = y8.astype(np.float32) / np.float32(255)
        distance, per_layer = package_distances(net, weights, x, y)
        np.testing.assert_allclose(per_layer.sum(0), distance, rtol=1e-5)
        arrays.update({f"{net}_x": x8, f"{net}_y": y8, f"{net}_seed": np.array(SEEDS[net]),
                       f"{net}_backbone_sha256": np.array(backbone_digest(weights)),
                       f"{net}_distance": distance, f"{net}_per_layer": per_layer})
        print(f"{net}: distances {np.round(distance, 6).tolist()}")
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
