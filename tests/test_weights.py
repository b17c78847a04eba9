"""Weights: parity with the authors' graphs, authors' npz import/export, own format,
mismatch messages and the pickle guard."""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest

from kpac_tf import build_kpac
from kpac_tf.model import weights
from tests.weights_helpers import DATA, recipe_arrays, write_authors_npz

VECTORS = {"kpac-2level": "2level", "kpac-3level": "3level", "kpac-dual": "dual"}


def _recipe_npz(model, path):
    shapes = [tuple(v.shape) for _, v in weights.weight_layout(model)]
    return write_authors_npz(path, recipe_arrays(shapes))


@pytest.mark.parametrize("preset", sorted(VECTORS))
def test_imported_weights_reproduce_the_authors_graph(preset, tmp_path):
    model = build_kpac(preset)
    weights.import_authors_npz(model, _recipe_npz(model, tmp_path / "w.npz"))
    vectors = np.load(DATA / f"authors_graph_{VECTORS[preset]}.npz")
    if preset == "kpac-dual":
        inputs = [(vectors[k] + 1) / 2 for k in ("left", "right", "centre")]
    else:
        inputs = (vectors["input"] + 1) / 2
    output = model(inputs).numpy() * 2 - 1  # back to the graph's [-1, 1] units
    assert np.abs(output - vectors["output"]).max() < 1e-4


def test_weight_layout_has_the_released_array_counts(preset_model):
    assert len(weights.weight_layout(preset_model("kpac-2level"))) == 58
    assert len(weights.weight_layout(preset_model("kpac-3level"))) == 66
    layout = weights.weight_layout(preset_model("kpac-dual"))
    assert len(layout) == 66 and tuple(layout[0][1].shape) == (5, 5, 6, 48)
    names = [name for name, _ in layout]
    assert names[16] == "block1/dc1/kernel" and tuple(layout[16][1].shape) == (5, 5, 96, 48)
    assert tuple(layout[58][1].shape) == (4, 4, 48, 96)  # d1 deconv: [k, k, out, in]


def test_authors_npz_round_trip(tmp_path, rng):
    model = build_kpac("kpac-2level")
    weights.export_authors_npz(model, tmp_path / "exported.npz")
    other = build_kpac("kpac-2level")
    weights.import_authors_npz(other, tmp_path / "exported.npz")
    for a, b in zip(weights.get_arrays(model), weights.get_arrays(other)):
        np.testing.assert_array_equal(a, b)
    # The exported file is what TensorLayer writes: one object array named params.
    with zipfile.ZipFile(tmp_path / "exported.npz") as archive:
        assert archive.namelist() == ["params.npy"]


def test_own_format_round_trip_and_load_model(tmp_path, rng):
    model = build_kpac("kpac-2level", num_blocks=1)
    path = weights.save_weights(model, tmp_path / "mine")
    assert path.name == "mine.weights.npz"
    restored = weights.load_model(path)
    assert restored.kpac_config == model.kpac_config
    image = rng.random((1, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(restored(image).numpy(), model(image).numpy())


def test_load_model_guesses_the_preset_of_an_authors_file(tmp_path):
    model = build_kpac("kpac-dual")
    path = _recipe_npz(model, tmp_path / "dual.npz")
    assert weights.load_model(path).kpac_config.dual_pixel


def test_mismatch_names_the_first_bad_array(tmp_path):
    three_level = _recipe_npz(build_kpac("kpac-3level"), tmp_path / "three.npz")
    with pytest.raises(weights.WeightsMismatchError) as error:
        weights.load_weights(build_kpac("kpac-2level"), three_level)
    message = str(error.value)
    assert "array 12 (block1/dc1/kernel)" in message
    assert "(3, 3, 96, 96)" in message and "(5, 5, 96, 48)" in message


def test_missing_arrays_are_reported(tmp_path):
    model = build_kpac("kpac-2level")
    arrays = weights.get_arrays(model)[:-2]
    path = write_authors_npz(tmp_path / "short.npz", arrays)
    before = weights.get_arrays(model)
    with pytest.raises(weights.WeightsMismatchError, match=r"holds 56 arrays, the model has 58: array 56 \(d2_2/kernel"):
        weights.load_weights(model, path)
    for a, b in zip(before, weights.get_arrays(model)):  # nothing was assigned
        np.testing.assert_array_equal(a, b)


def test_missing_file_and_missing_preset_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        weights.load_weights(build_kpac("kpac-2level"), tmp_path / "absent.npz")
    assert weights.bundled_presets() == ["kpac-3level"]
    for preset, authors_file in (("kpac-dual", "dual.npz"), ("kpac-2level", "single_2level.npz")):
        with pytest.raises(FileNotFoundError) as caught:
            weights.load_weights(build_kpac(preset), preset)
        message = str(caught.value)
        assert f"No weights are bundled for '{preset}': only kpac-3level ships weights." in message
        assert authors_file in message and f"kpac-train --preset={preset}" in message


def test_saved_weights_honour_the_umask(tmp_path):
    """Not mkstemp's private 0o600: the mode of any new file (0o666 less the umask)."""
    model = build_kpac("kpac-2level", num_blocks=1)
    for mask, mode in ((0o022, 0o644), (0o027, 0o640)):
        previous = os.umask(mask)
        try:
            own = weights.save_weights(model, tmp_path / f"own{mask:o}")
            authors = tmp_path / f"authors{mask:o}.npz"
            weights.export_authors_npz(model, authors)
        finally:
            os.umask(previous)
        assert own.stat().st_mode & 0o777 == mode and authors.stat().st_mode & 0o777 == mode


class _Exploit:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    header = {"descr": "|O", "fortran_order": False, "shape": (1,)}
    payload = pickle.dumps([_Exploit(marker)], protocol=2)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("params.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(payload)
    with pytest.raises(weights.UnsafeWeightsError, match="may only contain numpy arrays"):
        weights.import_authors_npz(build_kpac("kpac-2level"), path)
    assert not marker.exists()


def test_not_an_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not an npz file"):
        weights.read_authors_npz(path)
