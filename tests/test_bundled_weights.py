"""The weights that ship with the package: they load by preset name, carry a record of
how they were made, and really deblur the bundled held-out sample."""
from __future__ import annotations

import json

import pytest

from kpac_tf.cli.demo import sample_paths
from kpac_tf.evaluation import metrics
from kpac_tf.images.codec import read_image
from kpac_tf.inference import Deblurrer
from kpac_tf.model import weights

BUNDLED = weights.bundled_weights_path("kpac-3level")
pytestmark = pytest.mark.skipif(not BUNDLED.exists(), reason="no bundled kpac-3level weights")


def test_bundled_weights_have_a_training_record():
    record = json.loads(BUNDLED.with_name("kpac-3level.json").read_text())
    for key in ("command", "data", "steps", "wall_time_hours"):
        assert key in record


def test_bundled_weights_sharpen_the_held_out_sample():
    model = weights.load_model("kpac-3level")
    blurred_path, sharp_path = sample_paths("stereo_motorcycle")
    blurred, sharp = read_image(blurred_path).rgb, read_image(sharp_path).rgb
    result = Deblurrer(model).deblur(blurred)
    assert metrics.psnr(result, sharp) > metrics.psnr(blurred, sharp) + 0.5
    assert metrics.ssim(result, sharp) > metrics.ssim(blurred, sharp)
