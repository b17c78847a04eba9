"""python -m kpac_tf.tools.convert_lpips_backbone: write the LPIPS backbone (torchvision
AlexNet / VGG16 ImageNet weights) as a kpac_tf npz.

usage: python -m kpac_tf.tools.convert_lpips_backbone [--net=alex|vgg] [--out=FILE]
       [--state_dict=FILE]

kpac_tf ships only LPIPS's small linear heads; the ImageNet trunk must come from
torchvision. Run this once on a machine with torch, torchvision and network access
(it downloads torchvision's IMAGENET1K_V1 weights, the ones the `lpips` package uses),
or point --state_dict at a torchvision checkpoint file you already have:

    pip install torch torchvision lpips        # lpips is optional, see below
    python -m kpac_tf.tools.convert_lpips_backbone --net=alex --out=lpips_alex_backbone.npz

Then give the file to evaluation: ``kpac-eval ... --lpips_weights=lpips_alex_backbone.npz``
or place it at ``$KPAC_TF_LPIPS_DIR/lpips_alex_backbone.npz`` (default folder
``~/.cache/kpac_tf``).

Layout written (see :mod:`kpac_tf.evaluation.lpips`): ``net``; ``{conv}.kernel`` [kh, kw,
in, out] (torch's [out, in, kh, kw] transposed) and ``{conv}.bias``; plus probe images
``probe_x``, ``probe_y`` (float32 NHWC in [0, 1]) and their LPIPS distances
``probe_distance`` computed here in PyTorch. kpac_tf recomputes the probe at load time
and refuses a file that does not reproduce it. When the `lpips` package is installed
its own LPIPS is used for the probe (and checked against this tool's torch
computation); otherwise the torch computation with kpac_tf's shipped heads is stored.

Exit status: 0 written; 1 the lpips package disagrees with the torch computation; 2
nothing done (usage error, torch or torchvision missing).
"""
from __future__ import annotations

import numpy as np
from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_enum("net", "alex", ["alex", "vgg"], "LPIPS trunk.")
flags.DEFINE_string("out", None, "Output .npz (default lpips_{net}_backbone.npz).", allow_override=True)
flags.DEFINE_string("state_dict", None, "A local torchvision checkpoint instead of downloading.")

# torchvision `features` indices: convs, and the ReLU outputs LPIPS taps.
_LAYOUT = {
    "alex": {"convs": {0: "conv1", 3: "conv2", 6: "conv3", 8: "conv4", 10: "conv5"},
             "taps": (1, 4, 7, 9, 11)},
    "vgg": {"convs": {0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2",
                      10: "conv3_1", 12: "conv3_2", 14: "conv3_3",
                      17: "conv4_1", 19: "conv4_2", 21: "conv4_3",
                      24: "conv5_1", 26: "conv5_2", 28: "conv5_3"},
            "taps": (3, 8, 15, 22, 29)},
}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as error:
        raise runner.setup_error(f"this tool needs torch and torchvision ({error}): "
                                 "pip install torch torchvision.") from None
    runner.import_tensorflow()
    from kpac_tf.evaluation.lpips import load_heads

    out = FLAGS.out or f"lpips_{FLAGS.net}_backbone.npz"
    features = torchvision_features(FLAGS.net, FLAGS.state_dict)
    arrays = features_to_arrays(FLAGS.net, features)
    x, y = probe_images()
    reference = torch_lpips(FLAGS.net, features, load_heads(FLAGS.net), x, y)
    from_package = package_lpips(FLAGS.net, features, x, y)
    if from_package is not None:
        if not np.allclose(from_package, reference, rtol=1e-4, atol=1e-6):
            raise runner.CommandError(f"lpips package {from_package} disagrees with {reference}.",
                                      runner.EXIT_FAILED)
        reference = from_package
    np.savez(out, net=np.array(FLAGS.net), probe_x=x, probe_y=y,
             probe_distance=reference.astype(np.float64), **arrays)
    source = "lpips package" if from_package is not None else "torch reference"
    print(f"wrote {out}: {len(arrays)} arrays, probe distances {np.round(reference, 5).tolist()} "
          f"({source})")
    return runner.EXIT_OK


def torchvision_features(net: str, state_dict: str | None):
    """torchvision's pretrained `features` module (eval mode, CPU)."""
    import torch
    from torchvision import models

    if net == "alex":
        model = models.alexnet(weights=None if state_dict else "IMAGENET1K_V1")
    else:
        model = models.vgg16(weights=None if state_dict else "IMAGENET1K_V1")
    if state_dict:
        model.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
    return model.features.eval()


def features_to_arrays(net: str, features) -> dict[str, np.ndarray]:
    """The conv weights of a torchvision `features` module in kpac_tf's layout."""
    out: dict[str, np.ndarray] = {}
    for index, name in _LAYOUT[net]["convs"].items():
        conv = features[index]
        out[f"{name}.kernel"] = conv.weight.detach().cpu().numpy().transpose(2, 3, 1, 0).copy()
        out[f"{name}.bias"] = conv.bias.detach().cpu().numpy().copy()
    return out


def probe_images(seed: int = 0, n: int = 2, h: int = 64, w: int = 96):
    """Deterministic image pairs in [0, 1] (NHWC): smooth scenes and distorted copies."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    x = np.empty((n, h, w, 3), np.float32)
    for i in range(n):
        for c in range(3):
            f = rng.uniform(1, 8, size=2)
            x[i, :, :, c] = 0.5 + 0.4 * np.sin(2 * np.pi * (f[0] * yy + f[1] * xx) + rng.uniform(0, 6))
    y = np.clip(x + rng.normal(0, 0.05 * (1 + np.arange(n))[:, None, None, None], x.shape), 0, 1)
    return x, y.astype(np.float32)


def torch_lpips(net: str, features, heads: list[np.ndarray], x: np.ndarray, y: np.ndarray):
    """LPIPS v0.1 in PyTorch from a torchvision trunk and the five heads."""
    import torch

    shift = torch.tensor(_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(_SCALE).view(1, 3, 1, 1)

    def taps(img):
        h = (torch.from_numpy(img).permute(0, 3, 1, 2) * 2 - 1 - shift) / scale
        outs = []
        for i, layer in enumerate(features):
            h = layer(h)
            if i in _LAYOUT[net]["taps"]:
                outs.append(h)
            if i == _LAYOUT[net]["taps"][-1]:
                break
        return outs

    with torch.no_grad():
        total = 0
        for fx, fy, w in zip(taps(x), taps(y), heads):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = ((fx - fy) ** 2 * torch.from_numpy(w).view(1, -1, 1, 1)).sum(1)
            total = total + d.mean((1, 2))
    return total.numpy()


def package_lpips(net: str, features, x: np.ndarray, y: np.ndarray):
    """The `lpips` package's own distance with the given trunk, or None if not installed."""
    try:
        import lpips
        import torch
    except ImportError:
        return None
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    for name, module in model.net.named_modules():
        parts = name.split(".")
        if len(parts) == 2 and parts[0].startswith("slice") and hasattr(module, "weight"):
            src = features[int(parts[1])]
            module.weight.data.copy_(src.weight.data)
            module.bias.data.copy_(src.bias.data)
    with torch.no_grad():
        d = model(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y).permute(0, 3, 1, 2),
                  normalize=True)
    return d.reshape(-1).numpy()


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.convert_lpips_backbone``."""
    runner.run_command("python -m kpac_tf.tools.convert_lpips_backbone", main)


if __name__ == "__main__":
    run()
