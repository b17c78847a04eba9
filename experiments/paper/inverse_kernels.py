"""Reproduce the paper's inverse-kernel analysis (Sec. 3, Figs. 1, 2, 4; supp. Figs. 12-14).

A sharp image is blurred with a defocus (disc) or Gaussian kernel at scale s and
deblurred by convolution with Wiener inverse kernels (Eq. 9) obtained in different
ways: computed directly from the scale-s kernel, upsampled from the scale-1 inverse
kernel (Eq. 8 zero padding of the spectrum, or Lanczos as in Sec. 3.2), or dilated
from it (atrous, as KPAC's shared-weight convolutions do). Intermediate scales are
approximated by blending two scales (Eq. 5) with alpha = 0.5 or non-negative least
squares weights.

Writes ``<output_dir>/inverse_kernels.md`` (our numbers next to the paper's, with the
command that produced them) and PNG figures into ``<output_dir>/inverse_kernels/``.

Usage (from the repository root):

    python3 experiments/paper/inverse_kernels.py                      # astronaut, disc kernel
    python3 experiments/paper/inverse_kernels.py --kernel gaussian --base 1.0
    python3 experiments/paper/inverse_kernels.py --image photo.png --kernel file \\
        --kernel_file psf.npy
"""
from __future__ import annotations

import os
import shlex
import sys
import time

import numpy as np
from absl import flags
from scipy import signal

from kpac_tf.analysis import inverse_kernels as ik
from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "Sharp input image file (PNG/JPEG/TIFF...). "
                    "Overrides --sample.")
flags.DEFINE_string("sample", "astronaut", "scikit-image sample photo used when --image "
                    "is not given (e.g. astronaut, camera, coffee, chelsea).")
flags.DEFINE_integer("crop", 0, "Centre-crop the image to this side length (0: full image).")
flags.DEFINE_enum("kernel", "disc", ["disc", "gaussian", "file"], "Blur kernel type.")
flags.DEFINE_string("kernel_file", None, "Scale-1 blur kernel for --kernel=file: a 2-D .npy "
                    "array or a grayscale image; normalised to sum 1.")
flags.DEFINE_float("base", 2.0, "Scale-1 disc radius or Gaussian sigma, in pixels.")
flags.DEFINE_float("eps", 1e-2, "Wiener regularisation eps of Eq. 9.")
flags.DEFINE_integer("support", 41, "Odd support (taps per side) of the scale-1 inverse "
                     "kernel; scale s uses about s times as many.")
flags.DEFINE_enum("family", None, ["analytic", "lanczos", "fourier"],
                  "How the blur kernel at scale s is made from the scale-1 kernel: rendered "
                  "analytically at scale s, or upsampled (Lanczos / Eq. 8). Default: "
                  "analytic for disc/gaussian, lanczos for file.")
flags.DEFINE_list("scales", ["3", "4", "5"], "Integer scales for Fig. 14 (dilated vs "
                  "upsampled); Fig. 12 shows scales 1..max.")
flags.DEFINE_float("fig1_scale", 5.0, "Scale s of Fig. 1.")
flags.DEFINE_integer("fig4_scale", 2, "Integer scale of Fig. 4 (not stated in our reference).")
flags.DEFINE_list("fig2_triple", ["3", "3.5", "4"], "s1, target s, s2 of Fig. 2.")
flags.DEFINE_list("fig13_triples", ["3:3.4:4", "3:3.5:4", "3:3.6:4", "2:2.6:3", "1:1.7:2"],
                  "s1:s:s2 triples of Fig. 13 (s1 and s2 integers for the dilated rows).")
flags.DEFINE_integer("nnls_window", 9, "Odd window of the per-pixel NNLS weights.")
flags.DEFINE_float("min_ref", 1e-2, "Pixels whose reference value is below this are left "
                   "out of the accuracy ratio x_hat / x_s.")
flags.DEFINE_enum("boundary", "symmetric", ["symmetric", "reflect", "edge", "constant", "wrap"],
                  "Image padding used by every convolution (blur and deblur).")
flags.DEFINE_list("sweep_eps", ["0.1", "0.01", "0.001"], "eps values of the sensitivity "
                  "table (empty: no sweep).")
flags.DEFINE_bool("figures", True, "Write the PNG figures.")
flags.DEFINE_string("output_dir", "experiments/results", "Folder for the Markdown report; "
                    "figures go to its inverse_kernels/ subfolder.")

# ----------------------------------------------------------------------- inputs


def load_image() -> tuple[np.ndarray, str]:
    """The sharp image, float64 HWC in [0, 1], and a description of where it came from."""
    if FLAGS.image:
        from kpac_tf.images import codec as kio  # imported lazily: it loads TensorFlow

        image, source = kio.read_image(FLAGS.image).rgb, f"file `{os.path.basename(FLAGS.image)}`"
    else:
        from skimage import data

        loader = getattr(data, FLAGS.sample, None)
        if loader is None or not callable(loader):
            raise runner.usage_error(f"--sample {FLAGS.sample!r} is not a scikit-image sample; "
                                     "try astronaut, camera, coffee or chelsea.")
        image = loader()
        if isinstance(image, tuple):  # e.g. stereo_motorcycle: (left, right, disparity)
            image = image[0]
        if image.dtype == np.uint8:
            image = image / 255.0
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[..., :3]
        source = f"scikit-image sample `{FLAGS.sample}`"
    image = np.asarray(image, dtype=np.float64)
    if FLAGS.crop:
        h, w = image.shape[:2]
        c = min(FLAGS.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        image = image[top:top + c, left:left + c]
    return image, f"{source}, {image.shape[1]}x{image.shape[0]}"


def load_file_kernel(path: str) -> np.ndarray:
    """A scale-1 kernel from .npy or an image file, odd-sized, sum 1."""
    if path.endswith(".npy"):
        kernel = np.load(path, allow_pickle=False)
    else:
        from kpac_tf.images import codec as kio

        kernel = kio.read_image(path).rgb.mean(axis=2)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise runner.usage_error("--kernel_file must hold a 2-D kernel.")
    h, w = kernel.shape
    return ik.normalize_kernel(ik.center_pad(kernel, ik.odd_size(max(h, w))))


def make_family(kind: str, base: float, eps: float, family: str) -> ik.ScaledKernels:
    """The kernel family of the run: ``kind`` at scale-1 size ``base`` (radius/sigma)."""
    if kind == "file":
        if family == "analytic":
            raise runner.usage_error("--family analytic needs --kernel disc or gaussian.")
        base_kernel = load_file_kernel(FLAGS.kernel_file)
        return ik.ScaledKernels(base_kernel, eps, max(FLAGS.support, base_kernel.shape[0]), family)
    if family == "analytic":
        return ik.ScaledKernels.analytic(kind, base, eps, FLAGS.support)
    base_kernel = ik.make_kernel(kind, 1.0, base)
    return ik.ScaledKernels(base_kernel, eps, FLAGS.support, family)


# -------------------------------------------------------------------- experiments


def blur(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return ik.convolve(x, kernel, boundary=FLAGS.boundary)


deblur = blur  # deblurring is a convolution with an inverse kernel


def fig1(x: np.ndarray, fam: ik.ScaledKernels, s: float, method: str) -> dict:
    """Direct inverse of the scale-s kernel (a) vs upsampled scale-1 inverse (b)."""
    y = blur(x, fam.blur(s))
    xa = deblur(y, fam.inverse(s))
    xb = deblur(y, fam.upsampled_inverse(s, method))
    return {"y": y, "xa": xa, "xb": xb, "psnr_y": ik.psnr(y, x), "psnr_a": ik.psnr(xa, x),
            "psnr_b": ik.psnr(xb, x), "psnr_ab": ik.psnr(xa, xb)}


def blend_experiment(x: np.ndarray, fam: ik.ScaledKernels, s1: float, st: float, s2: float,
                     dilated: bool = False, per_pixel: bool = True) -> dict:
    """Eq. 5: approximate the result at scale st from the results at s1 and s2."""
    y = blur(x, fam.blur(st))
    xs = deblur(y, fam.inverse(st))
    if dilated:
        x1, x2 = deblur(y, fam.dilated_inverse(int(s1))), deblur(y, fam.dilated_inverse(int(s2)))
    else:
        x1, x2 = deblur(y, fam.inverse(s1)), deblur(y, fam.inverse(s2))
    acc = lambda xh: 100.0 * ik.approximation_accuracy(xh, xs, FLAGS.min_ref)  # noqa: E731
    out = {"xs": xs, "x1": x1, "x2": x2, "x_alpha": ik.blend(x1, x2, 0.5)}
    out["w_global"] = ik.nnls_weights([x1, x2], xs, mode="global")
    out["x_global"] = ik.combine([x1, x2], out["w_global"])
    out["acc_alpha"], out["acc_global"] = acc(out["x_alpha"]), acc(out["x_global"])
    out["psnr_alpha"] = ik.psnr(out["x_alpha"], xs)
    if per_pixel:
        out["w_pixel"] = ik.nnls_weights([x1, x2], xs, mode="pixel", window=FLAGS.nnls_window)
        out["x_pixel"] = ik.combine([x1, x2], out["w_pixel"])
        out["acc_pixel"] = acc(out["x_pixel"])
    return out


def dilation_experiment(x: np.ndarray, fam: ik.ScaledKernels, s: int) -> dict:
    """Dilated scale-1 inverse vs Lanczos-upsampled one vs the direct inverse at scale s."""
    y = blur(x, fam.blur(s))
    x_dil = deblur(y, fam.dilated_inverse(s))
    x_up = deblur(y, fam.upsampled_inverse(s, "lanczos"))
    x_dir = deblur(y, fam.inverse(s))
    return {"y": y, "x_dil": x_dil, "x_up": x_up, "x_dir": x_dir,
            "dil_up": ik.psnr(x_dil, x_up), "dil_dir": ik.psnr(x_dil, x_dir),
            "up_dir": ik.psnr(x_up, x_dir), "dil_gt": ik.psnr(x_dil, x), "dir_gt": ik.psnr(x_dir, x)}


def effective_error(blur_kernel: np.ndarray, inverse: np.ndarray, reference: np.ndarray) -> float:
    """L2 norm of ``k_s * (inverse - reference)``: how differently two inverse kernels
    restore an image blurred by ``k_s`` (relative to the unit-norm identity kernel)."""
    size = max(inverse.shape[0], reference.shape[0])
    diff = ik.center_pad(inverse, size) - ik.center_pad(reference, size)
    return float(np.linalg.norm(signal.fftconvolve(blur_kernel, diff, mode="full")))


def kernel_gallery(fam: ik.ScaledKernels, scales: list[int]) -> list[dict]:
    """Per scale: the kernels, the Eq. 10 residual of zero-padding upsampling and the
    effective-kernel errors of the Lanczos-upsampled and dilated inverses."""
    fourier = ik.ScaledKernels(fam.base_kernel, fam.eps, fam.support, "fourier")
    rows = []
    for s in scales:
        inv_of_up = fourier.inverse(s)
        up_of_inv = fourier.upsampled_inverse(s, "fourier")
        k_s = fam.blur(s)
        direct = fam.inverse(s)
        lanczos, dilated = fam.upsampled_inverse(s, "lanczos"), fam.dilated_inverse(s)
        size = max(direct.shape[0], lanczos.shape[0])
        rows.append({
            "s": s, "blur": k_s, "direct": ik.center_pad(direct, size),
            "lanczos": ik.center_pad(lanczos, size), "dilated": dilated,
            "eq10": float(np.abs(inv_of_up - up_of_inv).max() / np.abs(inv_of_up).max()),
            "eff_lanczos": effective_error(k_s, lanczos, direct),
            "eff_dilated": effective_error(k_s, dilated, direct),
        })
    return rows


def parse_triple(parts: list[str]) -> tuple[float, float, float]:
    """(s1, s, s2) from three strings; requires s1 < s < s2."""
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not values[0] < values[1] < values[2]:
        raise runner.usage_error(f"Scale triple {parts} must be three numbers s1 < s < s2.")
    return values[0], values[1], values[2]


# ------------------------------------------------------------------------- runs


def sweep(x: np.ndarray, family: str) -> list[tuple]:
    """Headline numbers for several eps (and both analytic kernels)."""
    kinds = ["disc", "gaussian"] if FLAGS.kernel != "file" else ["file"]
    rows = []
    st = parse_triple(FLAGS.fig2_triple)
    for kind in kinds:
        base = FLAGS.base
        if kind != FLAGS.kernel:  # the other analytic kernel at a comparable size
            base = FLAGS.base / 2 if kind == "gaussian" else FLAGS.base * 2
        for eps in [float(e) for e in FLAGS.sweep_eps]:
            fam = make_family(kind, base, eps, family)
            lanczos = make_family(kind, base, eps, "lanczos")
            r1 = fig1(x, lanczos, FLAGS.fig1_scale, "lanczos")
            r2 = blend_experiment(x, fam, *st, per_pixel=False)
            r14 = [dilation_experiment(x, fam, int(s))["dil_up"] for s in FLAGS.scales]
            rows.append((kind, base, eps, r1["psnr_a"], r1["psnr_ab"],
                         r2["acc_alpha"], r2["acc_global"], min(r14)))
            print(f"sweep {kind} eps={eps:g} done")
    return rows


def _settings() -> tuple[str, list[int], list[tuple], tuple[float, float, float]]:
    """(kernel family, Fig. 14 scales, Fig. 13 triples, Fig. 2 triple) from the flags;
    a usage error when they do not fit together."""
    family = FLAGS.family or ("lanczos" if FLAGS.kernel == "file" else "analytic")
    if FLAGS.kernel == "file" and not FLAGS.kernel_file:
        raise runner.usage_error("--kernel file needs --kernel_file (a .npy array or image).")
    if FLAGS.support % 2 == 0:
        raise runner.usage_error("--support must be odd.")
    scales = [int(float(s)) for s in FLAGS.scales]
    if any(float(s) != int(float(s)) or int(float(s)) < 1 for s in FLAGS.scales):
        raise runner.usage_error("--scales must be positive integers (dilation rates).")
    triples = [parse_triple(t.split(":")) for t in FLAGS.fig13_triples]
    triple = parse_triple(FLAGS.fig2_triple)
    if family == "fourier":
        used = [FLAGS.fig1_scale, *triple, FLAGS.fig4_scale] + scales
        used += [v for t in triples for v in t]
        bad = [v for v in used if abs(v * FLAGS.support - round(v * FLAGS.support)) > 1e-6]
        if bad:
            raise runner.usage_error(f"--family fourier needs every scale times --support to be an "
                                     f"integer, but {bad} fail with --support {FLAGS.support}; "
                                     "choose other scales or another --family.")
    return family, scales, triples, triple


def _fig1_rows(x: np.ndarray, fam: ik.ScaledKernels, family: str) -> list[tuple[str, dict]]:
    """Fig. 1 under three constructions of the scale-s kernel (the last only if analytic)."""
    fourier = ik.ScaledKernels(fam.base_kernel, FLAGS.eps, fam.support, "fourier")
    lanczos = ik.ScaledKernels(fam.base_kernel, FLAGS.eps, fam.support, "lanczos")
    rows = [("Eq. 8 zero padding: k_s and k_dag both upsampled by spectrum padding",
             fig1(x, fourier, FLAGS.fig1_scale, "fourier")),
            ("Lanczos (Sec. 3.2): k_s and k_dag both upsampled with Lanczos-3",
             fig1(x, lanczos, FLAGS.fig1_scale, "lanczos"))]
    if family == "analytic":
        rows.append((f"{FLAGS.kernel} rendered at scale s; k_dag upsampled with Lanczos-3",
                     fig1(x, fam, FLAGS.fig1_scale, "lanczos")))
    return rows


def run_experiments(x: np.ndarray, fam: ik.ScaledKernels, family: str, scales: list[int],
                    triples: list[tuple], triple: tuple[float, float, float]) -> dict:
    """Every figure's numbers for the image ``x`` (float64 HWC in [0, 1])."""
    start = time.time()
    res = {"x": x, "fam": fam, "family": family, "scales": scales, "triple": triple,
           "fig1_rows": _fig1_rows(x, fam, family),
           "main_row": {"fourier": 0, "lanczos": 1, "analytic": 2}[family]}
    print(f"Fig. 1 done ({time.time() - start:.1f} s)")
    res["r2"] = blend_experiment(x, fam, *triple)
    res["r4"] = dilation_experiment(x, fam, FLAGS.fig4_scale)
    res["gallery"] = kernel_gallery(fam, list(range(1, max(scales) + 1)))
    res["r13"] = {}
    for t in triples:
        res["r13"][t] = {"eq5": blend_experiment(x, fam, *t, per_pixel=False)}
        if float(t[0]).is_integer() and float(t[2]).is_integer():
            res["r13"][t]["dil"] = blend_experiment(x, fam, *t, dilated=True, per_pixel=False)
    res["r14"] = {s: dilation_experiment(x, fam, s) for s in scales}
    print(f"Figs. 2-14 done ({time.time() - start:.1f} s)")
    res["sweep_rows"] = sweep(x, family) if FLAGS.sweep_eps else []
    return res


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    start = time.time()
    family, scales, triples, triple = _settings()
    x, source = load_image()
    print(f"image: {source}")
    res = run_experiments(x, make_family(FLAGS.kernel, FLAGS.base, FLAGS.eps, family), family,
                          scales, triples, triple)
    settings = FLAGS.flag_values_dict()
    res["figures"] = []
    if FLAGS.figures:
        from inverse_kernels_figures import write_figures

        res["figures"] = write_figures(os.path.join(FLAGS.output_dir, "inverse_kernels"), res,
                                       settings)
    res["elapsed"] = time.time() - start
    res["source"] = source
    res["command"] = "python3 experiments/paper/inverse_kernels.py" + "".join(
        " " + shlex.quote(a) for a in sys.argv[1:])
    from inverse_kernels_report import render_report
    from kpac_tf import files as kio

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    report = os.path.join(FLAGS.output_dir, "inverse_kernels.md")
    kio.atomic_write(report, render_report(res, settings))
    print(f"wrote {report} ({res['elapsed']:.0f} s)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("inverse_kernels.py", main)
