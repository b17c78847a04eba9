"""The PNG figures of ``experiments/paper/inverse_kernels.py`` (paper Figs. 1, 2, 4, 12-14).

:func:`write_figures` takes the measured results (see ``inverse_kernels.run_experiments``)
and the run's settings (its flag values). Images are float HWC in [0, 1].
"""
from __future__ import annotations

import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from inverse_kernels_report import PAPER  # noqa: E402
from kpac_tf.analysis import inverse_kernels as ik  # noqa: E402


def _show(ax, image, title):
    ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _kernel(ax, kernel, title):
    v = np.abs(kernel).max()
    ax.imshow(kernel, cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _difference(fig, ax, a, b, title):
    """|a - b| (channel mean) as a heat map with a colour bar."""
    d = np.abs(a - b)
    d = d.mean(axis=-1) if d.ndim == 3 else d
    im = ax.imshow(d, cmap="magma")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046)


def _save(fig, folder, name):
    path = os.path.join(folder, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fig01(folder: str, x, r1, s: float, s1_label: str) -> str:
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.4))
    _show(axes[0], x, "sharp")
    _show(axes[1], r1["y"], f"blurred, s={s:g} ({r1['psnr_y']:.2f} dB)")
    _show(axes[2], r1["xa"], f"(a) inverse of k_s ({r1['psnr_a']:.2f} dB)")
    _show(axes[3], r1["xb"], f"(b) upsampled k_dag, {s1_label} ({r1['psnr_b']:.2f} dB)")
    _difference(fig, axes[4], r1["xa"], r1["xb"], f"|a - b| (PSNR {r1['psnr_ab']:.2f} dB)")
    return _save(fig, folder, "fig01_inverse_of_scaled_kernel.png")


def _fig02(folder: str, r2, min_ref: float) -> str:
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    _show(axes[0, 0], r2["xs"], "x_s: inverse at target scale")
    _show(axes[0, 1], r2["x1"], "x_s1")
    _show(axes[0, 2], r2["x2"], "x_s2")
    w = axes[0, 3].imshow(r2["w_pixel"][0], cmap="viridis")
    axes[0, 3].set_title("per-pixel NNLS weight of x_s1", fontsize=8)
    axes[0, 3].axis("off")
    fig.colorbar(w, ax=axes[0, 3], fraction=0.046)
    panels = ((axes[1, 0], "x_alpha", "alpha=0.5"), (axes[1, 1], "x_global", "global NNLS"),
              (axes[1, 2], "x_pixel", "per-pixel NNLS"))
    for ax, key, label in panels:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-dark pixels: NaN on purpose
            err = np.abs(1 - r2[key] / np.where(np.abs(r2["xs"]) < min_ref, np.nan, r2["xs"]))
            err = np.nanmean(err, axis=-1) if err.ndim == 3 else err
        m = ax.imshow(err, cmap="magma", vmin=0, vmax=0.3)
        acc = r2["acc_" + key.split("_")[1]]
        ax.set_title(f"|1 - x_hat/x_s|, {label}: acc {acc:.2f}%", fontsize=8)
        ax.axis("off")
    fig.colorbar(m, ax=axes[1, 2], fraction=0.046)
    _show(axes[1, 3], r2["x_pixel"], "x_hat (per-pixel NNLS)")
    return _save(fig, folder, "fig02_scale_blending.png")


def _fig04(folder: str, x, fam: ik.ScaledKernels, r4, fs: int) -> str:
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.4))
    _kernel(axes[0], fam.upsampled_inverse(fs, "lanczos"), f"Lanczos-upsampled k_dag, s={fs}")
    _kernel(axes[1], fam.dilated_inverse(fs), f"dilated k_dag, rate {fs}")
    _show(axes[2], r4["x_up"], f"upsampled ({ik.psnr(r4['x_up'], x):.2f} dB)")
    _show(axes[3], r4["x_dil"], f"dilated ({r4['dil_gt']:.2f} dB)")
    _difference(fig, axes[4], r4["x_dil"], r4["x_up"],
                f"|dilated - upsampled| (PSNR {r4['dil_up']:.2f} dB)")
    return _save(fig, folder, "fig04_dilated_vs_upsampled.png")


def _fig12(folder: str, gallery: list[dict]) -> str:
    n = len(gallery)
    fig, axes = plt.subplots(5, n, figsize=(2.6 * n, 11), squeeze=False)
    for j, row in enumerate(gallery):
        _kernel(axes[0, j], row["blur"], f"blur k, s={row['s']}")
        _kernel(axes[1, j], row["direct"], "inverse of k_s")
        _kernel(axes[2, j], row["lanczos"], "Lanczos-upsampled k_dag")
        _kernel(axes[3, j], row["dilated"], "dilated k_dag")
        c = row["direct"].shape[0] // 2
        axes[4, j].plot(np.arange(-c, c + 1), row["direct"][c], label="inverse of k_s")
        axes[4, j].plot(np.arange(-c, c + 1), row["lanczos"][c], "--", label="upsampled")
        axes[4, j].set_title("centre row", fontsize=8)
        axes[4, j].tick_params(labelsize=6)
    axes[4, 0].legend(fontsize=6)
    return _save(fig, folder, "fig12_kernel_gallery.png")


def _fig13(folder: str, r13: dict) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    labels = [f"({a:g}, {b:g}, {c:g})" for (a, b, c) in r13]
    pos = np.arange(len(labels))
    series = [("Eq. 5 ours", [r13[t]["eq5"]["acc_alpha"] for t in r13]),
              ("dilated Eq. 5 ours", [r13[t]["dil"]["acc_alpha"] for t in r13]),
              ("Eq. 5 paper", [PAPER["fig13"].get(t, (np.nan, np.nan))[0] for t in r13]),
              ("dilated Eq. 5 paper", [PAPER["fig13"].get(t, (np.nan, np.nan))[1] for t in r13])]
    for i, (name, vals) in enumerate(series):
        ax.bar(pos + (i - 1.5) * 0.2, vals, 0.2, label=name)
    ax.set_xticks(pos, labels)
    ax.set_ylabel("approximation accuracy (%)")
    lo = np.nanmin([v for _, vals in series for v in vals])
    ax.set_ylim(max(0, lo - 3), 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("(s1, s, s2): alpha = 0.5", fontsize=9)
    return _save(fig, folder, "fig13_blend_accuracy.png")


def _fig14(folder: str, r14: dict) -> str:
    fig, axes = plt.subplots(2, len(r14), figsize=(4 * len(r14), 7.5), squeeze=False)
    for j, (sc, r) in enumerate(r14.items()):
        _show(axes[0, j], r["x_dil"], f"dilated, s={sc} ({r['dil_gt']:.2f} dB)")
        _difference(fig, axes[1, j], r["x_dil"], r["x_up"],
                    f"|dilated - upsampled|: {r['dil_up']:.2f} dB")
    return _save(fig, folder, "fig14_dilated_vs_upsampled_scales.png")


def write_figures(folder: str, res: dict, cfg: dict) -> list[str]:
    """Writes the six figures into ``folder`` (created); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    r1 = res["fig1_rows"][res["main_row"]][1]
    s1_label = "Lanczos" if res["main_row"] else "zero padding"
    return [_fig01(folder, res["x"], r1, cfg["fig1_scale"], s1_label),
            _fig02(folder, res["r2"], cfg["min_ref"]),
            _fig04(folder, res["x"], res["fam"], res["r4"], cfg["fig4_scale"]),
            _fig12(folder, res["gallery"]),
            _fig13(folder, res["r13"]),
            _fig14(folder, res["r14"])]
