"""LPIPS v0.1 (Zhang et al., CVPR 2018) in TensorFlow: AlexNet (default) or VGG16 trunk.

The distance between two images x, y in [0, 1] (NHWC or HWC, RGB) is computed as in
the reference PyTorch package `lpips` 0.1.4 with ``normalize=True``:

1. scale to [-1, 1] (2x - 1), then the package's scaling layer
   ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188) and scale
   (0.458, 0.448, 0.450);
2. run torchvision's AlexNet or VGG16 ``features`` trunk (ported to NHWC; torch's
   explicit zero padding and floor-mode max pooling are reproduced exactly) and take the
   ReLU outputs after AlexNet's five convs, or VGG16's relu1_2, relu2_2, relu3_3,
   relu4_3, relu5_3;
3. normalise each feature vector to unit length over channels (eps 1e-10);
4. squared difference, a bias-free 1x1 "linear" head per layer (the calibrated v0.1
   weights, shipped in ``kpac_tf/assets/lpips``), spatial mean, sum over layers.

The ImageNet trunk weights are not shipped and cannot be downloaded here: make the
file with ``python -m kpac_tf.tools.convert_lpips_backbone`` (which needs torch and
torchvision)
and pass it as ``LPIPS(net="alex", backbone_weights=path)``, or put it at
``$KPAC_TF_LPIPS_DIR/lpips_{net}_backbone.npz`` (default folder
``~/.cache/kpac_tf``). Without it the constructor raises :class:`LPIPSUnavailable`.

Backbone file layout (numpy ``.npz``, no pickled objects): ``net`` (a string array,
"alex" or "vgg"), and for each conv ``{name}.kernel`` [kh, kw, in, out] and
``{name}.bias`` [out] (names: conv1..conv5 for AlexNet, conv1_1..conv5_3 for VGG16).
Optional ``probe_x``, ``probe_y`` (float32 [N,H,W,3] in [0,1]) and ``probe_distance``
([N], computed by the PyTorch package at conversion): when present they are checked at
load time so a wrong or damaged file is refused.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np
import tensorflow as tf
from absl import logging

__all__ = [
    "LPIPS",
    "LPIPSUnavailable",
    "backbone_shapes",
    "default_backbone_path",
    "load_heads",
    "random_backbone",
    "min_image_size",
]

_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], np.float32)
_EPS = 1e-10
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # kpac_tf/
_ASSETS = os.path.join(_PACKAGE_DIR, "assets", "lpips")
_PROBE_RTOL = 1e-3
_PROBE_ATOL = 1e-5

WeightsSource = Union[str, os.PathLike, Mapping[str, np.ndarray]]


class LPIPSUnavailable(RuntimeError):
    """LPIPS cannot be computed (backbone weights missing, wrong or unusable)."""


@dataclass(frozen=True)
class _Conv:
    name: str
    size: int
    cin: int
    cout: int
    stride: int = 1
    pad: int = 1


@dataclass(frozen=True)
class _Pool:
    size: int
    stride: int


_TAP = "tap"  # take the ReLU output here as an LPIPS layer

# torchvision.models.alexnet().features up to the 5th ReLU (the last pool is unused).
_ALEX = (
    _Conv("conv1", 11, 3, 64, stride=4, pad=2), _TAP, _Pool(3, 2),
    _Conv("conv2", 5, 64, 192, pad=2), _TAP, _Pool(3, 2),
    _Conv("conv3", 3, 192, 384), _TAP,
    _Conv("conv4", 3, 384, 256), _TAP,
    _Conv("conv5", 3, 256, 256), _TAP,
)
# torchvision.models.vgg16().features up to relu5_3.
_VGG = (
    _Conv("conv1_1", 3, 3, 64), _Conv("conv1_2", 3, 64, 64), _TAP, _Pool(2, 2),
    _Conv("conv2_1", 3, 64, 128), _Conv("conv2_2", 3, 128, 128), _TAP, _Pool(2, 2),
    _Conv("conv3_1", 3, 128, 256), _Conv("conv3_2", 3, 256, 256),
    _Conv("conv3_3", 3, 256, 256), _TAP, _Pool(2, 2),
    _Conv("conv4_1", 3, 256, 512), _Conv("conv4_2", 3, 512, 512),
    _Conv("conv4_3", 3, 512, 512), _TAP, _Pool(2, 2),
    _Conv("conv5_1", 3, 512, 512), _Conv("conv5_2", 3, 512, 512),
    _Conv("conv5_3", 3, 512, 512), _TAP,
)
_NETS = {"alex": _ALEX, "vgg": _VGG}
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def _canonical(net: str) -> str:
    try:
        return _ALIASES[net.lower()]
    except KeyError:
        raise ValueError(f"Unknown LPIPS network {net!r}; use 'alex' or 'vgg'.") from None


def backbone_shapes(net: str = "alex") -> dict[str, tuple[int, ...]]:
    """Expected array shapes of a backbone file for ``net`` (kernels HWIO)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for op in _NETS[_canonical(net)]:
        if isinstance(op, _Conv):
            shapes[f"{op.name}.kernel"] = (op.size, op.size, op.cin, op.cout)
            shapes[f"{op.name}.bias"] = (op.cout,)
    return shapes


def min_image_size(net: str = "alex") -> int:
    """The smallest height/width the trunk accepts (every tapped map at least 1x1)."""
    net = _canonical(net)
    for size in range(1, 512):
        s = size
        ok = True
        for op in _NETS[net]:
            if isinstance(op, _Conv):
                s = (s + 2 * op.pad - op.size) // op.stride + 1
            elif isinstance(op, _Pool):
                s = (s - op.size) // op.stride + 1
            if s < 1:
                ok = False
                break
        if ok:
            return size
    raise AssertionError("unreachable")


def random_backbone(net: str = "alex", seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised backbone weights (for tests: LPIPS semantics without ImageNet)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in backbone_shapes(net).items():
        if name.endswith(".kernel"):
            fan_in = shape[0] * shape[1] * shape[2]
            out[name] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        else:
            out[name] = rng.normal(0, 0.01, shape).astype(np.float32)
    return out


def default_backbone_path(net: str = "alex") -> str:
    """Where LPIPS looks for the backbone file when none is given."""
    folder = os.environ.get("KPAC_TF_LPIPS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "kpac_tf")
    return os.path.join(folder, f"lpips_{_canonical(net)}_backbone.npz")


def load_heads(net: str = "alex", source: WeightsSource | None = None) -> list[np.ndarray]:
    """The five v0.1 linear heads, each float32 [C] (default: the shipped weights)."""
    net = _canonical(net)
    if source is None:
        source = os.path.join(_ASSETS, f"{net}.npz")
    arrays = _read_arrays(source)
    channels = [op.cout for i, op in enumerate(_NETS[net])
                if isinstance(op, _Conv) and _NETS[net][i + 1] == _TAP]
    heads = []
    for k, c in enumerate(channels):
        w = np.asarray(arrays[f"lin{k}"], np.float32).reshape(-1)
        if w.shape != (c,):
            raise ValueError(f"LPIPS head lin{k} for {net} has {w.size} weights, expected {c}.")
        heads.append(w)
    return heads


def _read_arrays(source: WeightsSource) -> Mapping[str, np.ndarray]:
    if isinstance(source, Mapping):
        return source
    with np.load(os.fspath(source), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class LPIPS(tf.Module):
    """Learned perceptual distance, LPIPS v0.1; lower is more similar.

    Args:
      net: "alex" (default, the published DPDD choice) or "vgg".
      backbone_weights: path to the backbone ``.npz`` (see the module docstring), or a
        mapping of arrays in that layout; None looks in :func:`default_backbone_path`.
      heads: override for the linear heads (path or mapping with lin0..lin4); None uses
        the shipped v0.1 weights.
      verify: check the file's probe images against its stored reference distances.

    Raises:
      LPIPSUnavailable: the backbone file is missing, malformed, or fails its probe.

    Calling the object with two NHWC (or HWC) float batches in [0, 1] returns the
    distances, float32 [N] (a scalar tensor for HWC input).
    """

    def __init__(self, net: str = "alex", backbone_weights: WeightsSource | None = None,
                 heads: WeightsSource | None = None, verify: bool = True):
        super().__init__(name=f"lpips_{_canonical(net)}")
        self.net = _canonical(net)
        arrays = self._load_backbone(backbone_weights)
        self._ops = _NETS[self.net]
        self._kernels: dict[str, tf.Variable] = {}
        self._biases: dict[str, tf.Variable] = {}
        for op in self._ops:
            if isinstance(op, _Conv):
                self._kernels[op.name] = tf.Variable(
                    arrays[f"{op.name}.kernel"], trainable=False, name=f"{op.name}_kernel")
                self._biases[op.name] = tf.Variable(
                    arrays[f"{op.name}.bias"], trainable=False, name=f"{op.name}_bias")
        self._heads = [tf.Variable(h, trainable=False, name=f"lin{k}")
                       for k, h in enumerate(load_heads(self.net, heads))]
        self._min_size = min_image_size(self.net)
        self._forward = tf.function(
            self._distance_nhwc,
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)] * 2)
        if verify and "probe_x" in arrays:
            self._verify_probe(arrays)

    # ------------------------------------------------------------------ loading
    def _load_backbone(self, source: WeightsSource | None) -> Mapping[str, np.ndarray]:
        if source is None:
            source = default_backbone_path(self.net)
        if not isinstance(source, Mapping) and not os.path.isfile(os.fspath(source)):
            raise LPIPSUnavailable(
                f"LPIPS ({self.net}) needs its ImageNet backbone weights and {os.fspath(source)!r} "
                "does not exist: make the file with python -m kpac_tf.tools.convert_lpips_backbone "
                "on a machine with torch and torchvision, then put it there or pass its path "
                "(kpac-eval --lpips_weights).")
        try:
            arrays = _read_arrays(source)
        except (OSError, ValueError) as err:
            raise LPIPSUnavailable(
                f"Cannot read the LPIPS backbone file {os.fspath(source)!r} ({err}); "
                "recreate it with python -m kpac_tf.tools.convert_lpips_backbone.") from err
        if "net" in arrays and str(np.asarray(arrays["net"])) != self.net:
            raise LPIPSUnavailable(
                f"The LPIPS backbone file holds the {np.asarray(arrays['net'])} network, "
                f"not {self.net}; pass the matching file or change the network.")
        for name, shape in backbone_shapes(self.net).items():
            if name not in arrays or tuple(np.shape(arrays[name])) != shape:
                got = None if name not in arrays else tuple(np.shape(arrays[name]))
                raise LPIPSUnavailable(
                    f"The LPIPS backbone file has {name} {got}, expected {shape}; "
                    "recreate it with python -m kpac_tf.tools.convert_lpips_backbone.")
        return {k: np.asarray(v, np.float32) if k != "net" else v for k, v in arrays.items()}

    def _verify_probe(self, arrays: Mapping[str, np.ndarray]) -> None:
        got = self(arrays["probe_x"], arrays["probe_y"]).numpy()
        want = np.asarray(arrays["probe_distance"], np.float64).reshape(-1)
        if got.shape != want.shape or not np.allclose(got, want, rtol=_PROBE_RTOL,
                                                      atol=_PROBE_ATOL):
            raise LPIPSUnavailable(
                f"The LPIPS backbone file does not reproduce its reference distances "
                f"(got {np.round(got, 5).tolist()}, stored {np.round(want, 5).tolist()}); "
                "recreate it with python -m kpac_tf.tools.convert_lpips_backbone.")
        logging.info("LPIPS %s backbone verified on %d probe pairs (max abs diff %.2e).",
                     self.net, got.size, float(np.max(np.abs(got - want))))

    # ------------------------------------------------------------------ forward
    def features(self, x: tf.Tensor) -> list[tf.Tensor]:
        """The five tapped ReLU maps (NHWC) of the trunk for ``x`` in [0, 1] NHWC."""
        h = (x * 2.0 - 1.0 - _SHIFT) / _SCALE
        taps = []
        for op in self._ops:
            if isinstance(op, _Conv):
                if op.pad:
                    h = tf.pad(h, [[0, 0], [op.pad, op.pad], [op.pad, op.pad], [0, 0]])
                h = tf.nn.conv2d(h, self._kernels[op.name], strides=op.stride, padding="VALID")
                h = tf.nn.relu(tf.nn.bias_add(h, self._biases[op.name]))
            elif isinstance(op, _Pool):
                h = tf.nn.max_pool2d(h, op.size, op.stride, padding="VALID")
            else:
                taps.append(h)
        return taps

    def _distance_nhwc(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.add_n(self._layer_distances(x, y))

    def _layer_distances(self, x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
        n = tf.shape(x)[0]
        feats = self.features(tf.concat([x, y], axis=0))
        layers = []
        for f, w in zip(feats, self._heads):
            f = f / (tf.sqrt(tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)) + _EPS)
            diff = tf.square(f[:n] - f[n:])
            layers.append(tf.reduce_mean(tf.tensordot(diff, w, axes=[[3], [0]]), axis=[1, 2]))
        return layers

    def __call__(self, x, y) -> tf.Tensor:
        """LPIPS distance of two float images/batches in [0, 1] (HWC or NHWC, RGB)."""
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.convert_to_tensor(y, tf.float32)
        single = x.shape.rank == 3
        if single:
            x, y = x[None], y[None]
        if x.shape.rank != 4 or x.shape[-1] != 3:
            raise ValueError(f"LPIPS takes RGB images HWC or NHWC, got shape {x.shape}.")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {x.shape} vs {y.shape}.")
        if min(x.shape[1], x.shape[2]) < self._min_size:
            raise ValueError(
                f"LPIPS ({self.net}) needs images of at least {self._min_size}x{self._min_size} "
                f"pixels, got {x.shape[1]}x{x.shape[2]}.")
        d = self._forward(x, y)
        return d[0] if single else d

    def per_layer(self, x, y) -> list[tf.Tensor]:
        """The five per-layer contributions (each float32 [N]) whose sum is the distance."""
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.convert_to_tensor(y, tf.float32)
        if x.shape.rank == 3:
            x, y = x[None], y[None]
        return self._layer_distances(x, y)

    def distance(self, pred: np.ndarray, target: np.ndarray) -> float:
        """LPIPS of one HWC pair in [0, 1] as a Python float."""
        return float(self(pred, target).numpy())

    @property
    def heads(self) -> Sequence[np.ndarray]:
        """The loaded linear heads as numpy arrays (float32 [C] each)."""
        return [h.numpy() for h in self._heads]
