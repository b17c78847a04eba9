"""kpac_tf.data.soft_scenes and the soft-content benchmark's scores: scenes that are soft
by nature, deterministic, with the structure they claim, scored on tiny models."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from kpac_tf.data import soft_scenes
from kpac_tf.data.render import radius_from_depth
from kpac_tf.images.colour import luma, srgb_to_linear

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "quality"))

import soft_content_scores  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def small_scenes() -> list:
    return soft_scenes.soft_scenes(size=SIZE, variants=2)


def test_every_kind_gives_float32_hwc_images_in_unit_range(small_scenes):
    assert [s.kind for s in small_scenes] == [k for k in soft_scenes.SCENE_KINDS for _ in range(2)]
    for scene in small_scenes:
        assert scene.image.dtype == np.float32 and scene.image.shape == (SIZE, SIZE, 3)
        assert np.isfinite(scene.image).all()
        assert scene.image.min() >= 0.0 and scene.image.max() <= 1.0
        assert scene.context.shape == (SIZE, SIZE) and scene.context.dtype == bool
        assert scene.image.std() > 0.05, scene.name


def test_scenes_are_deterministic_per_seed():
    first = soft_scenes.make_scene("facade", 1, size=SIZE, seed=3)
    again = soft_scenes.make_scene("facade", 1, size=SIZE, seed=3)
    other = soft_scenes.make_scene("facade", 1, size=SIZE, seed=4)
    np.testing.assert_array_equal(first.image, again.image)
    assert np.abs(first.image - other.image).max() > 0.1
    assert soft_scenes.make_scene("sky", 0, size=SIZE).name == "sky-0"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown scene kind"):
        soft_scenes.make_scene("clouds", 0)
    with pytest.raises(ValueError, match="variant"):
        soft_scenes.make_scene("sky", 4, variants=4)


def _high_pass_rms(image: np.ndarray, mask: np.ndarray) -> float:
    gray = luma(image)
    return float(np.sqrt(np.mean((gray - ndimage.gaussian_filter(gray, 1.0))[mask] ** 2)))


def test_the_context_is_sharp_and_the_rest_is_smooth():
    for kind in soft_scenes.SCENE_KINDS:
        scene = soft_scenes.make_scene(kind, 1, size=160)
        context = _high_pass_rms(scene.image, scene.context)
        assert context > 0.02, (scene.name, context)
        if (~scene.context).mean() > 0.2:
            assert _high_pass_rms(scene.image, ~scene.context) < context / 3, scene.name


def test_mottled_blotches_grow_with_the_variant_and_stay_off_the_context():
    stds = []
    for variant in range(4):
        scene = soft_scenes.make_scene("mottled", variant, size=160)
        assert scene.info["blotch_scale"] == pytest.approx(np.geomspace(2.0, 10.0, 4)[variant])
        paint = ~scene.context
        assert paint.mean() > 0.4
        stds.append(float(luma(scene.image)[paint].std()))
    # Soft blotches of a few percent, not flat paint and not a texture.
    assert all(0.005 < s < 0.08 for s in stds), stds


def _slope_width(u: np.ndarray, fraction: np.ndarray) -> float:
    """Width (px) of a linear 0-to-1 ramp from the slope of its middle part."""
    middle = (fraction > 0.3) & (fraction < 0.7)
    slope = np.polyfit(u[middle], fraction[middle], 1)[0]
    return 1.0 / abs(slope)


@pytest.mark.parametrize("variant", range(4))
def test_shadow_penumbrae_have_the_asked_widths_and_darkness(variant):
    scene = soft_scenes.make_scene("shadow", variant, size=320, variants=4)
    info = scene.info
    edge_width, bar_width = info["penumbra"]
    assert (edge_width, bar_width) == soft_scenes.penumbra_widths(4)[variant]
    assert 0.35 <= info["darkness"] <= 0.75
    centres = np.arange(320) + 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    u = (x - 160) * math.cos(info["angle"]) + (y - 160) * math.sin(info["angle"])
    fraction = (1.0 - scene.shading) / info["darkness"]  # 0 lit, 1 in full shadow
    bar_start, bar_end = info["bar"]
    edge = u > bar_end + bar_width / 2 + 1
    rising = u < (bar_start + bar_end) / 2
    assert _slope_width(u[edge], fraction[edge]) == pytest.approx(edge_width, rel=0.05)
    assert _slope_width(u[rising], fraction[rising]) == pytest.approx(bar_width, rel=0.05)
    assert fraction.max() == pytest.approx(1.0, abs=0.01)
    if variant % 2 == 0:  # textured across the frame: the image is as much darker
        light = luma(srgb_to_linear(scene.image))
        dark_mean = light[u > info["edge_at"] + edge_width / 2 + 2].mean()
        lit_mean = light[(fraction < 0.001)].mean()
        assert dark_mean / lit_mean == pytest.approx(1.0 - info["darkness"], abs=0.08)


def test_soft_grounds_have_no_context_no_hard_edge_and_a_grain_that_grows():
    grounds = soft_scenes.ground_scenes(size=96, seed=3, variants=3)
    assert [g.name for g in grounds] == ["ground-0", "ground-1", "ground-2"]
    sigmas = [g.info["grain_sigma"] for g in grounds]
    assert sigmas[0] == soft_scenes.GROUND_GRAIN[0] and sigmas[-1] == pytest.approx(soft_scenes.GROUND_GRAIN[1])
    correlations = []
    for ground in grounds:
        assert not ground.context.any() and ground.kind == "ground"
        gray = ground.image.mean(axis=2)
        assert np.abs(np.diff(gray, axis=1)).max() < 0.4 * np.ptp(gray)  # edges span 2-6 px
        centred = gray[:20, :] - gray[:20, :].mean()  # a band of the ground
        correlations.append(np.mean(centred[:, 1:] * centred[:, :-1]) / np.mean(centred ** 2))
    assert correlations == sorted(correlations)  # coarser grain, smoother ground
    again = soft_scenes.ground_scenes(size=96, seed=3, variants=3)
    np.testing.assert_array_equal(grounds[1].image, again[1].image)


def test_ramps_are_monotonic_with_the_asked_width_and_no_context():
    ramps = soft_scenes.ramp_scenes(size=128)
    assert len(ramps) == len(soft_scenes.RAMP_WIDTHS) * len(soft_scenes.RAMP_CONTRASTS)
    for ramp in ramps:
        assert not ramp.context.any()
        row = ramp.image[0, :, 0]
        np.testing.assert_array_equal(ramp.image, np.broadcast_to(row[None, :, None], ramp.image.shape))
        assert np.all(np.diff(row) >= 0)
        low, high = ramp.info["levels"]
        assert row[0] == pytest.approx(low, abs=1e-4) and row[-1] == pytest.approx(high, abs=1e-4)
        between = np.count_nonzero((row > low + 1e-3) & (row < high - 1e-3))
        assert abs(between - ramp.info["width"]) <= 1, ramp.name


def test_defocus_plans_keep_one_half_in_focus():
    layouts = set()
    for seed in range(12):
        plan = soft_scenes.defocus_plan(64, seed)
        again = soft_scenes.defocus_plan(64, seed)
        np.testing.assert_array_equal(plan.depth, again.depth)
        radius = radius_from_depth(plan.depth, plan.focus, plan.max_radius)
        assert 6.0 <= plan.max_radius <= 8.0
        assert radius.max() == pytest.approx(plan.max_radius, rel=1e-5)
        assert 0.5 <= (radius < 1.0).mean() <= 0.6
        assert plan.depth.min() >= 0.0 and plan.depth.max() <= 1.0
        layouts.add(plan.layout)
    assert layouts == {"slant", "step-behind", "step-front"}


# --------------------------------------------------------------------------- #
# The benchmark's scores
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def benchmark():
    return soft_content_scores.build_benchmark(
        size=64, variants=1, max_side=64, labeller=lambda name: "bokeh" if name == "coffee" else "sharp")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> dict[str, str]:
    """A tiny untrained model's weights file, and the same model with its last conv
    zeroed, which returns its input exactly (the residual alone)."""
    from kpac_tf import build_kpac
    from kpac_tf.model import weights as kweights

    folder = tmp_path_factory.mktemp("weights")
    model = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    paths = {"random": str(kweights.save_weights(model, folder / "random.weights.npz"))}
    arrays = kweights.get_arrays(model)
    arrays[-1], arrays[-2] = np.zeros_like(arrays[-1]), np.zeros_like(arrays[-2])
    kweights.set_arrays(model, arrays, "test")
    paths["identity"] = str(kweights.save_weights(model, folder / "identity.weights.npz"))
    return paths


def test_the_benchmark_holds_every_set(benchmark):
    assert len(benchmark.scenes) == len(benchmark.defocused) == len(soft_scenes.SCENE_KINDS)
    assert len(benchmark.ramps) == 8 and len(benchmark.photos) == 5
    assert [g.name for g in benchmark.grounds] == ["ground-0"]
    for item in benchmark.scenes + benchmark.grounds + benchmark.photos + benchmark.defocused:
        assert max(item.image.shape[:2]) <= 64
        np.testing.assert_allclose(item.image * 255, np.round(item.image * 255), atol=1e-3)  # 8-bit
    assert {p.group for p in benchmark.photos} == {"sharp", "bokeh"}


def test_scores_are_finite_and_follow_the_model(benchmark, tiny_weights):
    random = soft_content_scores.score_weights(tiny_weights["random"], benchmark, keep_images=True)
    identity = soft_content_scores.score_weights(tiny_weights["identity"], benchmark, keep_images=False)
    sharp = random.summary["sharp"]
    assert set(sharp["kinds"]) == set(soft_scenes.SCENE_KINDS)
    assert all(math.isfinite(s["mean"]) and s["worst"] <= s["mean"] for s in sharp["kinds"].values())
    part = random.summary["partial_defocus"]["all"]
    assert math.isfinite(part["in_focus_gain"]) and math.isfinite(part["defocused_gain"])
    assert set(random.summary["natural"]) == {"sharp", "bokeh"}
    assert random.summary["precision"] == "float32"
    # The identity-like model gives every input back: inf dB, no gain anywhere.
    assert math.isinf(identity.summary["sharp"]["all"]["mean"])
    assert identity.summary["partial_defocus"]["all"]["in_focus_gain"] == 0.0
    assert identity.worst == []
    assert math.isinf(identity.summary["grounds"]["all"]["mean"])
    assert math.isfinite(random.summary["grounds"]["scenes"]["ground-0"])
    groups = {(w.set, w.group) for w in random.worst}
    assert ("sharp", "facade") in groups and ("partial_defocus", "sky") in groups
    assert all(np.concatenate(w.panels, axis=1).shape == (64, 192, 3) for w in random.worst
               if w.set != "natural")
    lines = "\n".join(soft_content_scores.markdown({"random": random.summary,
                                                    "identity": identity.summary}))
    assert f"| identity | **all** | {len(soft_scenes.SCENE_KINDS)} | inf | inf |" in lines
    assert "ambiguous by nature" in lines
    assert "| identity | inf | inf | inf |" in lines  # the soft grounds' row


def test_a_runs_curve_scores_each_checkpoint_once_and_keeps_the_steps_it_lost(benchmark, tmp_path,
                                                                               monkeypatch):
    """checkpoint_curve: every checkpoint (or every N-th step) scored once, its figures
    kept in RUN/soft_content_curve.json, so steps whose checkpoints the run deleted stay."""
    import types

    scored = []

    def fake_score(weights, bench, keep_images=True):
        scored.append(Path(weights).name)
        return types.SimpleNamespace(summary={"sharp": {"all": {"mean": float(len(scored))}}})

    monkeypatch.setattr(soft_content_scores, "score_weights", fake_score)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (100, 200, 300, 400):
        (run / "checkpoints" / f"ckpt-{step}.index").write_text("")
    (run / "checkpoints" / "ckpt-final.index").write_text("")  # not a step: skipped
    curve = soft_content_scores.checkpoint_curve(run, benchmark, every=200)
    assert scored == ["ckpt-200", "ckpt-400"] and list(curve) == [200, 400]
    (run / "checkpoints" / "ckpt-200.index").unlink()  # the run keeps only its last few
    (run / "checkpoints" / "ckpt-500.index").write_text("")
    curve = soft_content_scores.checkpoint_curve(run, benchmark)
    assert scored == ["ckpt-200", "ckpt-400", "ckpt-100", "ckpt-300", "ckpt-500"]
    assert list(curve) == [100, 200, 300, 400, 500]
    assert curve[200]["sharp"]["all"]["mean"] == 1.0  # kept from the first pass
    other = types.SimpleNamespace(settings=dict(benchmark.settings, size=32))
    soft_content_scores.checkpoint_curve(run, other)  # other settings: scored again
    assert len(scored) == 9
