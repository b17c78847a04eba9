"""Tests for kpac_tf.images (the codec, its formats and the graph-mode codecs) and kpac_tf.files:
exact 8/16-bit round trips, layouts, errors, atomic writes."""
from __future__ import annotations

import io as pyio
import os

import numpy as np
import pytest
import tensorflow as tf
import tifffile
from PIL import Image

from kpac_tf.files import atomic_write, current_umask, error_line, write_json
from kpac_tf.images import codec
from kpac_tf.images.formats import image_size, sniff_format
from kpac_tf.images.tensors import (TENSOR_EXTENSIONS, TENSOR_FORMATS, decode_image_tensor,
                                    encode_png_tensor, encoded_image_size_tensor,
                                    is_16bit_png_tensor, is_jpeg_tensor, is_png_tensor)


def _random16(rng, shape) -> np.ndarray:
    values = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    values.flat[0] = 1  # a value that is not a multiple of 257
    values.flat[1] = 65535
    values.flat[2] = 0
    return values


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_round_trip_is_exact(tmp_path, rng, ext):
    values = _random16(rng, (19, 23, 3))
    path = tmp_path / f"img{ext}"
    codec.write_image(path, values / 65535.0, bit_depth=16)
    data = codec.read_image(path)
    assert data.bit_depth == 16 and not data.grayscale and data.alpha is None
    assert data.rgb.dtype == np.float32 and data.rgb.shape == (19, 23, 3)
    np.testing.assert_array_equal(np.round(data.rgb * 65535.0).astype(np.uint16), values)
    assert np.any(values % 257 != 0)  # really 16-bit content


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_8bit_round_trip_is_exact(tmp_path, rng, ext):
    values = rng.integers(0, 256, size=(17, 11, 3), dtype=np.uint8)
    path = tmp_path / f"img{ext}"
    codec.write_image(path, values / 255.0)
    data = codec.read_image(path)
    assert data.bit_depth == 8
    np.testing.assert_array_equal(np.round(data.rgb * 255.0).astype(np.uint8), values)
    np.testing.assert_array_equal(codec.quantize(data.rgb, 8), data.rgb)  # on the 8-bit grid


def test_16bit_png_written_by_tensorflow_reads_exactly(tmp_path, rng):
    values = _random16(rng, (8, 9, 3))
    path = tmp_path / "tf16.png"
    path.write_bytes(tf.io.encode_png(values).numpy())
    np.testing.assert_array_equal(
        np.round(codec.read_image(path).rgb * 65535).astype(np.uint16), values)


def test_writes_are_clipped_and_rounded(tmp_path):
    rgb = np.array([[[-0.5, 0.5, 1.7]]], np.float32)
    path = tmp_path / "clip.png"
    codec.write_image(path, rgb)
    np.testing.assert_array_equal(codec.read_image(path).rgb * 255, [[[0, 128, 255]]])


def test_jpeg_reads_and_16bit_request_falls_back_to_8bit(tmp_path, rng):
    smooth = np.linspace(0, 1, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3)
    path = tmp_path / "photo.jpg"
    codec.write_image(path, smooth, bit_depth=16)
    data = codec.read_image(path)
    assert data.format == "jpeg" and data.bit_depth == 8 and data.rgb.shape == (32, 48, 3)
    assert np.abs(data.rgb - smooth).mean() < 0.02


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(image).save(path, exif=exif, quality=95)
    data = codec.read_image(path)
    assert data.rgb.shape == (40, 20, 3)
    assert data.rgb[:15].mean() > 0.9 and data.rgb[25:].mean() < 0.1  # white on top


def test_gray_in_gray_out(tmp_path, rng):
    gray = _random16(rng, (12, 13))
    path = tmp_path / "gray.png"
    codec.write_image(path, np.repeat(gray[:, :, None] / 65535.0, 3, axis=2), bit_depth=16,
                      grayscale=True)
    encoded = path.read_bytes()
    assert encoded[25] == 0  # PNG colour type 0: grayscale
    data = codec.read_image(path)
    assert data.grayscale and data.bit_depth == 16
    np.testing.assert_array_equal(data.rgb[:, :, 0], data.rgb[:, :, 2])
    np.testing.assert_array_equal(np.round(data.rgb[:, :, 1] * 65535).astype(np.uint16), gray)
    out = tmp_path / "gray_copy.tif"
    codec.write_image(out, data.rgb, bit_depth=16, grayscale=data.grayscale)
    assert tifffile.imread(out).shape == (12, 13)


def test_rgba_alpha_is_kept(tmp_path, rng):
    rgb = rng.integers(0, 256, (9, 10, 3)) / 255.0
    alpha = rng.integers(0, 256, (9, 10, 1)) / 255.0
    for ext in (".png", ".tif"):
        path = tmp_path / f"rgba{ext}"
        codec.write_image(path, rgb, alpha=alpha)
        data = codec.read_image(path)
        assert data.alpha is not None and data.alpha.shape == (9, 10, 1)
        np.testing.assert_allclose(data.alpha, alpha, atol=1e-7)
        np.testing.assert_allclose(data.rgb, rgb, atol=1e-7)


def test_planar_and_float_tiff(tmp_path, rng):
    values = _random16(rng, (3, 10, 12))  # channel-first, stored as separate planes
    tifffile.imwrite(tmp_path / "planar.tif", values, photometric="rgb", planarconfig="separate")
    data = codec.read_image(tmp_path / "planar.tif")
    assert data.rgb.shape == (10, 12, 3) and data.bit_depth == 16
    np.testing.assert_array_equal(np.round(data.rgb * 65535).astype(np.uint16),
                                  np.moveaxis(values, 0, -1))
    floats = rng.uniform(-0.5, 1.5, (6, 7, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "float.tif", floats, photometric="rgb")
    np.testing.assert_array_equal(codec.read_image(tmp_path / "float.tif").rgb,
                                  np.clip(floats, 0, 1))


def test_gray_alpha_png(tmp_path):
    png = pyio.BytesIO()
    Image.fromarray(np.dstack([np.full((4, 5), 100, np.uint8),
                               np.full((4, 5), 50, np.uint8)]), mode="LA").save(png, "PNG")
    data = codec.decode_image_bytes(png.getvalue(), "la.png")
    assert data.grayscale and data.alpha is not None
    np.testing.assert_allclose(data.rgb, 100 / 255.0)
    np.testing.assert_allclose(data.alpha, 50 / 255.0)


def test_paletted_bmp_decodes_colours(tmp_path):
    image = np.zeros((6, 8, 3), np.uint8)
    image[:, :4] = (200, 30, 10)
    image[:, 4:] = (5, 60, 250)
    path = tmp_path / "palette.bmp"
    Image.fromarray(image).convert("P", palette=Image.ADAPTIVE, colors=4).save(path)
    data = codec.read_image(path)
    assert data.format == "bmp" and not data.grayscale
    np.testing.assert_allclose(data.rgb * 255, image, atol=1)


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((5, 6, 3), v, np.uint8)) for v in (40, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    data = codec.read_image(path)
    assert data.rgb.shape == (5, 6, 3)
    np.testing.assert_allclose(data.rgb, 40 / 255.0, atol=1 / 255.0)


def _png_bytes(rng, bit_depth=8) -> bytes:
    if bit_depth == 16:
        return tf.io.encode_png(_random16(rng, (32, 32, 3))).numpy()
    return tf.io.encode_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).numpy()


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_png_raises(tmp_path, rng, bit_depth, fraction):
    data = _png_bytes(rng, bit_depth)
    path = tmp_path / "cut.png"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(codec.ImageError, match="cut.png"):
        codec.read_image(path)


def test_png_without_iend_and_corrupt_png_raise(tmp_path, rng):
    data = _png_bytes(rng)
    (tmp_path / "noend.png").write_bytes(data[:-12])
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    for name in ("noend.png", "corrupt.png"):
        with pytest.raises(codec.ImageError, match=name):
            codec.read_image(tmp_path / name)


def test_truncated_jpeg_and_tiff_raise(tmp_path, rng):
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    jpeg = tf.io.encode_jpeg(image).numpy()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    tiff = pyio.BytesIO()
    tifffile.imwrite(tiff, image)
    (tmp_path / "cut.tif").write_bytes(tiff.getvalue()[:-100])
    for name in ("cut.jpg", "cut.tif"):
        with pytest.raises(codec.ImageError, match=name):
            codec.read_image(tmp_path / name)


def test_bad_inputs_raise_image_error_naming_the_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image")
    (tmp_path / "folder.png").mkdir()
    header = bytearray(_png_bytes(np.random.default_rng(0)))
    header[16:24] = b"\x00\x00\x00\x00\x00\x00\x00\x00"  # width = height = 0
    (tmp_path / "zero.png").write_bytes(bytes(header))
    tiff = pyio.BytesIO()
    tifffile.imwrite(tiff, np.zeros((4, 4, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    (tmp_path / "five.tif").write_bytes(tiff.getvalue())
    cases = {
        "empty.png": "empty",
        "notes.png": "not a supported image",
        "folder.png": "folder",
        "missing.png": "not found",
        "zero.png": "zero-size",
        "five.tif": "channel count",
    }
    for name, words in cases.items():
        with pytest.raises(codec.ImageError) as info:
            codec.read_image(tmp_path / name)
        message = str(info.value)
        assert name in message and words in message
        assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert issubclass(codec.ImageError, ValueError)


def test_write_rejects_bad_extension_and_shapes(tmp_path):
    with pytest.raises(codec.ImageError, match=r"out\.bmp.*extension"):
        codec.write_image(tmp_path / "out.bmp", np.zeros((2, 2, 3)))
    with pytest.raises(codec.ImageError, match="out.png"):
        codec.write_image(tmp_path / "out.png", np.zeros((2, 2, 5)))
    with pytest.raises(codec.ImageError, match="NaN"):
        codec.write_image(tmp_path / "out.png", np.full((2, 2, 3), np.nan))
    with pytest.raises(codec.ImageError, match="does not exist"):
        codec.write_image(tmp_path / "nope" / "out.png", np.zeros((2, 2, 3)))
    assert os.listdir(tmp_path) == []


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "result.png"
    codec.write_image(target, np.full((4, 4, 3), 0.25))
    assert sorted(os.listdir(tmp_path)) == ["result.png"]
    before = target.read_bytes()

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(codec.ImageError, match="result.png"):
        codec.write_image(target, np.full((4, 4, 3), 0.75))
    with pytest.raises(codec.ImageError, match="new.png"):
        codec.write_image(tmp_path / "new.png", np.full((4, 4, 3), 0.75))
    assert sorted(os.listdir(tmp_path)) == ["result.png"]  # no temp file, no new.png
    assert target.read_bytes() == before  # the old file is untouched


def test_written_file_gets_normal_permissions(tmp_path):
    path = tmp_path / "perm.png"
    codec.write_image(path, np.zeros((2, 2, 3)))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_graph_decoder_equals_read_image(tmp_path, rng, bit_depth):
    path = tmp_path / "g.png"
    values = _random16(rng, (14, 15, 3)) / 65535.0
    codec.write_image(path, values, bit_depth=bit_depth)
    expected = codec.read_image(path).rgb

    @tf.function
    def decode(encoded):
        return decode_image_tensor(encoded)

    got = decode(tf.constant(path.read_bytes())).numpy()
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, codec.quantize(values, bit_depth))

    jpeg = tmp_path / "g.jpg"
    codec.write_image(jpeg, values)
    np.testing.assert_array_equal(decode(tf.constant(jpeg.read_bytes())).numpy(),
                                  codec.read_image(jpeg).rgb)


def test_graph_header_checks_never_fail_on_short_strings(tmp_path, rng):
    png8, png16, jpeg = (tmp_path / "h8.png", tmp_path / "h16.png", tmp_path / "h.jpg")
    codec.write_image(png8, rng.random((5, 6, 3)), bit_depth=8)
    codec.write_image(png16, rng.random((5, 6, 3)), bit_depth=16)
    codec.write_image(jpeg, rng.random((5, 6, 3)))
    full16 = png16.read_bytes()

    @tf.function
    def header(encoded):
        return (is_png_tensor(encoded), is_jpeg_tensor(encoded),
                is_16bit_png_tensor(encoded))

    cases = {  # bytes: (PNG, JPEG, 16-bit PNG)
        b"": (False, False, False),
        b"\xff": (False, False, False),
        full16[:8]: (True, False, False),
        full16[:24]: (True, False, False),
        full16[:25]: (True, False, True),
        png8.read_bytes(): (True, False, False),
        full16: (True, False, True),
        jpeg.read_bytes(): (False, True, False),
        b"\x00" * 24 + b"\x10": (False, False, False),
    }
    for data, expected in cases.items():
        assert tuple(bool(flag) for flag in header(tf.constant(data))) == expected, data[:30]


def test_graph_decoder_gray_png_gives_three_channels(tmp_path, rng):
    path = tmp_path / "gray.png"
    codec.write_image(path, rng.random((6, 7, 3)), bit_depth=16, grayscale=True)
    got = decode_image_tensor(tf.constant(path.read_bytes()), channels=3).numpy()
    np.testing.assert_array_equal(got, codec.read_image(path).rgb)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_encode_png_tensor_round_trip(rng, bit_depth):
    values = codec.quantize(rng.random((10, 12, 3)).astype(np.float32), bit_depth)
    encoded = encode_png_tensor(tf.constant(values), bit_depth)
    data = codec.decode_image_bytes(encoded.numpy(), "tensor.png")
    assert data.bit_depth == bit_depth
    np.testing.assert_array_equal(data.rgb, values)


def test_quantize_numpy_and_tensor_agree(rng):
    x = rng.uniform(-0.2, 1.2, (50,)).astype(np.float32)
    for bits, levels in ((8, 255), (16, 65535)):
        q = codec.quantize(x, bits)
        assert q.dtype == np.float32 and q.min() >= 0 and q.max() <= 1
        np.testing.assert_allclose(q * levels, np.round(q * levels), atol=1e-3)
        assert np.abs(q - np.clip(x, 0, 1)).max() <= 0.5 / levels + 1e-7
        np.testing.assert_array_equal(codec.quantize(tf.constant(x), bits).numpy(), q)
    with pytest.raises(ValueError):
        codec.quantize(x, 12)


# --------------------------------------------------------------------------- #
# The pixel limit
# --------------------------------------------------------------------------- #
def _black_png(width: int, height: int) -> bytes:
    """A valid 8-bit gray PNG of any size, compressed row by row (never held decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    compressor = zlib.compressobj(1)
    row = bytes(1 + width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def _one_sentence(message: str) -> bool:
    return message.count(". ") == 0 and message.endswith(".")


def test_a_valid_30000x30000_png_is_too_large_never_corrupt(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_black_png(30000, 30000))
    assert image_size(path.read_bytes()) == (30000, 30000)
    with pytest.raises(codec.ImageError) as info:
        codec.read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: image too large to read: 30000x30000 pixels (900.0 MP")
    assert f"limit of {codec.MAX_PIXELS:,} pixels" in message and "--max_pixels" in message
    assert "corrupt" not in message and _one_sentence(message)
    # Above TensorFlow's own PNG limit, a raised limit still never says "corrupt".
    with pytest.raises(codec.ImageError) as info:
        codec.read_image(path, max_pixels=10**10)
    message = str(info.value)
    assert "image too large to decode (30000x30000 pixels" in message, message
    assert "corrupt" not in message and _one_sentence(message)


def _small_files(tmp_path, rng) -> dict:
    image = rng.random((30, 40, 3))
    files = {}
    for ext in (".png", ".jpg", ".tif"):
        files[ext] = tmp_path / f"photo{ext}"
        codec.write_image(files[ext], image)
    for ext, fmt in ((".bmp", "BMP"), (".webp", "WEBP"), (".gif", "GIF")):
        files[ext] = tmp_path / f"photo{ext}"
        Image.fromarray((image * 255).astype(np.uint8)).save(files[ext], format=fmt)
    return files


def test_pixel_limit_applies_to_every_format(tmp_path, rng, monkeypatch):
    for ext, path in _small_files(tmp_path, rng).items():
        assert image_size(path.read_bytes()) == (40, 30), ext
        assert codec.read_image(path, max_pixels=1200).rgb.shape == (30, 40, 3), ext
        with pytest.raises(codec.ImageError) as info:
            codec.read_image(path, max_pixels=1199)
        message = str(info.value)
        assert message.startswith(f"{path}: image too large to read: 40x30 pixels"), message
        assert "limit of 1,199 pixels" in message and "--max_pixels" in message
        assert _one_sentence(message)
    monkeypatch.setattr(codec, "MAX_PIXELS", 1000)  # the module default follows the constant
    with pytest.raises(codec.ImageError, match="limit of 1,000 pixels"):
        codec.read_image(tmp_path / "photo.png")
    assert image_size(b"not an image") is None
    assert image_size(b"\x89PNG\r\n\x1a\n") is None  # header cut short


def test_graph_size_reader_matches_the_files(tmp_path, rng):
    files = _small_files(tmp_path, rng)
    for ext in (".png", ".jpg"):
        height, width = encoded_image_size_tensor(tf.constant(files[ext].read_bytes()))
        assert (int(height), int(width)) == (30, 40), ext
    height, width = encoded_image_size_tensor(tf.constant(_black_png(70000, 3)))
    assert (int(height), int(width)) == (3, 70000)


def test_atomic_write_takes_bytes_text_or_a_writer_and_json(tmp_path):
    atomic_write(tmp_path / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.txt", "défocus")
    atomic_write(tmp_path / "c.npy", lambda stream: np.save(stream, np.arange(3)))
    write_json(tmp_path / "d.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "défocus"
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), np.arange(3))
    assert (tmp_path / "d.json").read_text() == '{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}'
    umask = current_umask()
    assert all(os.stat(p).st_mode & 0o777 == 0o666 & ~umask for p in tmp_path.iterdir())

    def broken(stream):
        stream.write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", broken)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"  # untouched, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.npy", "d.json"]
    with pytest.raises(OSError):
        atomic_write(tmp_path / "missing" / "e.json", "{}")


def test_format_sniffing_and_the_graph_decoder_formats(tmp_path, rng):
    files = _small_files(tmp_path, rng)
    assert sniff_format(files[".png"].read_bytes()) == "png"
    assert sniff_format(files[".jpg"].read_bytes()[:12]) == "jpeg"
    assert sniff_format(b"GIF89a......") == "gif" and sniff_format(b"nothing") is None
    assert set(TENSOR_EXTENSIONS) <= set(codec.READ_EXTENSIONS)
    assert set(TENSOR_FORMATS) == {"png", "jpeg", "bmp", "gif"}


def test_error_line_is_one_clean_line():
    tf_error = ValueError("{{function_node __wrapped__DecodePng_device_/job:localhost}} "
                          "Invalid PNG data, size 60 [Op:DecodePng] name:\nmore detail")
    assert error_line(tf_error) == "Invalid PNG data, size 60"
    assert error_line(ValueError("\n  first.\nsecond")) == "first"
    assert error_line(KeyError()) == "KeyError"


@pytest.mark.parametrize("bit_depth,dtype,channels", [(8, np.uint8, 3), (16, np.uint16, 3),
                                                      (8, np.uint8, 1), (16, np.uint16, 4)])
def test_samples_stay_at_the_stored_precision(tmp_path, rng, bit_depth, dtype, channels):
    """A read image holds its file's integers (3 or 6 bytes per RGB pixel, not 12);
    rgb/alpha convert on access to the float32 [0, 1] values."""
    levels = 255 if bit_depth == 8 else 65535
    stored = rng.integers(0, levels + 1, (9, 7, channels)).astype(dtype)
    path = tmp_path / "a.png"
    path.write_bytes(tf.io.encode_png(stored).numpy())
    image = codec.read_image(path)
    assert image.pixels.dtype == dtype and image.pixels.shape == (9, 7, channels)
    expected = np.repeat(stored, 3, axis=2) if channels == 1 else stored[:, :, :3]
    np.testing.assert_array_equal(image.stored_rgb, expected)
    # The reader multiplies by the float32 reciprocal, as the graph decoders do.
    np.testing.assert_array_equal(image.rgb, expected.astype(np.float32) * np.float32(1 / levels))
    assert image.rgb.dtype == np.float32 and image.rgb.flags["C_CONTIGUOUS"]
    if channels == 4:
        np.testing.assert_allclose(image.alpha[..., 0], stored[..., 3] / levels, atol=1e-7)
    else:
        assert image.alpha is None
