"""A photographer's round trip: the ICC profile, EXIF (orientation reset to 1) and XMP of
JPEG, PNG, TIFF, WebP, HEIC and AVIF photos survive kpac-deblur and kpac-demo byte for
byte; --strip_metadata drops them; JPEG results use 4:4:4 chroma and --jpeg_quality."""
from __future__ import annotations

import importlib.util
import io as pyio
import struct
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image, ImageCms, JpegImagePlugin, features
from PIL.PngImagePlugin import PngInfo

from kpac_tf import build_kpac
from kpac_tf.cli import deblur, demo, runner
from kpac_tf.images import codec
from kpac_tf.images import metadata as imeta
from kpac_tf.images.formats import sniff_format
from kpac_tf.images.metadata import ImageMetadata
from kpac_tf.model.weights import save_weights

HAS_HEIC = importlib.util.find_spec("pillow_heif") is not None
HAS_AVIF = features.check("avif") or importlib.util.find_spec("pillow_avif") is not None
needs_heic = pytest.mark.skipif(not HAS_HEIC, reason="pillow-heif (the photo extra) not installed")
needs_avif = pytest.mark.skipif(not HAS_AVIF, reason="no AVIF support (the photo extra) installed")

XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
       b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF>'
       b'</x:xmpmeta><?xpacket end="w"?>')
STORED = (24, 36)  # height, width of the inputs as stored (displayed turned by EXIF 6)
# Display P3 primaries adapted to D50 (s15Fixed16), replacing sRGB's in the test profile.
P3_COLORANTS = {b"rXYZ": (0.5151, 0.2412, -0.0011), b"gXYZ": (0.2920, 0.6922, 0.0419),
                b"bXYZ": (0.1571, 0.0666, 0.7841)}


def wide_rgb_profile() -> bytes:
    """An RGB ICC profile that is not sRGB: ImageCms' sRGB with Display P3 colorants,
    described as "Wide RGB test" and without a profile ID."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[84:100] = bytes(16)  # profile ID: not computed
    (count,) = struct.unpack_from(">I", data, 128)
    for index in range(count):
        signature, offset, _ = struct.unpack_from(">4sII", data, 132 + 12 * index)
        if signature in P3_COLORANTS:
            values = [round(v * 65536) for v in P3_COLORANTS[signature]]
            struct.pack_into(">3i", data, offset + 8, *values)
    old, new = "sRGB built-in".encode("utf-16-be"), "Wide RGB test".encode("utf-16-be")
    assert data.count(old) == 1
    return bytes(data).replace(old, new)


def camera_exif(orientation: int = 6) -> bytes:
    """A camera's EXIF block (no "Exif" header): make, model, dates and orientation."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    exif[0x0132], exif[0x0112] = "2024:05:01 10:11:12", orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:11:12"  # DateTimeOriginal
    exif.get_ifd(0x8769)[0x829A] = (1, 250)  # ExposureTime
    return exif.tobytes()[6:]


ICC = wide_rgb_profile()
EXIF = camera_exif()
METADATA = ImageMetadata(icc_profile=ICC, exif=EXIF, xmp=XMP)


def exif_tags(exif: bytes) -> dict:
    """Pillow's reading of an EXIF block: first-IFD tags and the EXIF sub-IFD's."""
    parsed = Image.Exif()
    parsed.load(b"Exif\x00\x00" + exif)
    return {**{k: v for k, v in parsed.items() if k != 0x8769}, **parsed.get_ifd(0x8769)}


def _pixels(rng, channels: int = 3) -> np.ndarray:
    return (rng.random(STORED + (channels,)) * 255).astype(np.uint8)


def _pillow_save(path, pixels: np.ndarray, fmt: str, **options) -> None:
    Image.fromarray(pixels).save(path, fmt, icc_profile=ICC, exif=b"Exif\x00\x00" + EXIF,
                                 xmp=XMP, **options)


def _write_inputs(folder, rng) -> dict[str, str]:
    """One photo per case, each with ICC, EXIF (orientation 6) and XMP; name -> file."""
    folder.mkdir()
    files = {"jpeg": "camera.jpg", "png8": "shot.png", "png16": "scan16.png",
             "tiff16": "scan16.tif", "tiff8_alpha": "cutout.tif", "webp": "web.webp"}
    _pillow_save(folder / files["jpeg"], _pixels(rng), "JPEG", quality=92, subsampling="4:2:0")
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode("utf-8"))
    Image.fromarray(_pixels(rng)).save(folder / files["png8"], "PNG", icc_profile=ICC,
                                       exif=b"Exif\x00\x00" + EXIF, pnginfo=info)
    rgb16 = rng.random(STORED + (3,)).astype(np.float32)
    codec.write_image(folder / files["png16"], rgb16, bit_depth=16, metadata=METADATA)
    codec.write_image(folder / files["tiff16"], rgb16, bit_depth=16, metadata=METADATA)
    codec.write_image(folder / files["tiff8_alpha"], rgb16, alpha=rgb16[..., :1],
                      metadata=METADATA)
    _pillow_save(folder / files["webp"], _pixels(rng), "WEBP", lossless=True)
    if HAS_HEIC:
        codec.write_image(folder / "iphone.heic", _pixels(rng) / 255.0, metadata=METADATA)
        files["heic"] = "iphone.heic"
    if HAS_AVIF:
        _pillow_save(folder / "web.avif", _pixels(rng, 4), "AVIF", quality=90)
        files["avif_alpha"] = "web.avif"
    return files


def _run(argv) -> int:
    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-deblur", *argv])
    return runner.call_main("kpac-deblur", deblur.main, remaining)


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    """Inputs of every format, deblurred twice with a small random model: with the
    defaults (out/) and with --strip_metadata --jpeg_quality=keep (plain/)."""
    import keras

    root = tmp_path_factory.mktemp("trip")
    keras.utils.set_random_seed(0)
    weights = save_weights(build_kpac("kpac-2level", num_blocks=1), root / "tiny")
    files = _write_inputs(root / "in", np.random.default_rng(7))
    statuses = [_run([f"--weights={weights}", f"--output_dir={root / out}", *options,
                      str(root / "in")])
                for out, options in (("out", []),
                                     ("plain", ["--strip_metadata", "--jpeg_quality=keep"]))]
    flags.FLAGS.unparse_flags()
    return {"root": root, "files": files, "statuses": statuses, "weights": weights}


def _result(trip, case: str, folder: str = "out"):
    name = trip["files"][case]
    stem, ext = name.rsplit(".", 1)
    ext = "png" if ext == "webp" else ext
    return trip["root"] / folder / f"{stem}_deblurred.{ext}", trip["root"] / "in" / name


CASES = ["jpeg", "png8", "png16", "tiff16", "tiff8_alpha", "webp",
         pytest.param("heic", marks=needs_heic), pytest.param("avif_alpha", marks=needs_avif)]


def test_profile_and_exif_are_real():
    profile = ImageCms.ImageCmsProfile(pyio.BytesIO(ICC))
    assert ImageCms.getProfileDescription(profile).strip() == "Wide RGB test"
    assert ICC != ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tags = exif_tags(EXIF)
    assert tags[0x010F] == "Canon" and tags[0x0110] == "Canon EOS R5"
    assert tags[0x0112] == 6 and tags[0x9003] == "2024:05:01 10:11:12"


def test_every_input_deblurred(trip):
    assert trip["statuses"] == [0, 0]
    assert sorted(p.name for p in (trip["root"] / "out").iterdir()) == sorted(
        str(_result(trip, case)[0].name) for case in trip["files"])


@pytest.mark.parametrize("case", CASES)
def test_metadata_survives_byte_for_byte(trip, case):
    result_path, input_path = _result(trip, case)
    source, result = codec.read_image(input_path), codec.read_image(result_path)
    assert result.format == ("png" if case == "webp" else source.format)
    # Upright pixels: the stored 24x36 turned by EXIF 6 (HEIC: by its writer).
    assert result.pixels.shape[:2] == (STORED[1], STORED[0])
    assert result.bit_depth == source.bit_depth and result.has_alpha == source.has_alpha
    assert result.metadata.icc_profile == ICC
    assert result.metadata.xmp == XMP
    want = imeta.reset_orientation(EXIF)
    if case.startswith("tiff"):  # EXIF is tags of the TIFF: its block is rebuilt
        want = source.metadata.exif
    if case == "avif_alpha":  # AVIF keeps orientation outside EXIF
        want = imeta.exif_without_orientation(source.metadata.exif)
    assert result.metadata.exif == want
    tags = exif_tags(result.metadata.exif)
    assert tags.get(0x0112, 1) == 1
    assert {k: tags[k] for k in (0x010F, 0x0110, 0x0132, 0x9003, 0x829A)} == {
        k: exif_tags(EXIF)[k] for k in (0x010F, 0x0110, 0x0132, 0x9003, 0x829A)}


@pytest.mark.parametrize("case", [c for c in CASES if c not in ("png16", "tiff16", "tiff8_alpha")])
def test_other_readers_see_the_metadata(trip, case):
    """Pillow (and pillow-heif) find the profile, EXIF and XMP in the results."""
    if case == "heic":
        __import__("pillow_heif").register_heif_opener()
    result_path, _ = _result(trip, case)
    with Image.open(result_path) as im:
        assert im.info["icc_profile"] == ICC
        assert im.getexif().get(0x010F) == "Canon" and im.getexif().get(0x0112, 1) == 1
        xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
        assert (xmp.encode() if isinstance(xmp, str) else xmp) == XMP


def test_tiff_tags_hold_the_metadata(trip):
    import tifffile

    with tifffile.TiffFile(_result(trip, "tiff16")[0]) as tif:
        tags = tif.pages[0].tags
        assert tags["InterColorProfile"].value == ICC and bytes(tags["XMP"].value) == XMP
        assert tags["Make"].value == "Canon" and tags["Orientation"].value == 1
        assert tags["ExifTag"].value["DateTimeOriginal"] == "2024:05:01 10:11:12"
        assert tif.pages[0].dtype == np.uint16


@pytest.mark.parametrize("case", CASES)
def test_strip_metadata_drops_everything(trip, case):
    result = codec.read_image(_result(trip, case, "plain")[0])
    assert not result.metadata and result.metadata == ImageMetadata()


def test_jpeg_is_4_4_4_at_the_asked_quality(trip):
    with Image.open(_result(trip, "jpeg")[1]) as source:
        assert JpegImagePlugin.get_sampling(source) == 2  # the camera's 4:2:0
    with Image.open(_result(trip, "jpeg")[0]) as result:
        assert JpegImagePlugin.get_sampling(result) == 0  # 4:4:4
    assert codec.read_image(_result(trip, "jpeg")[1]).jpeg_quality == 92
    assert codec.read_image(_result(trip, "jpeg")[0]).jpeg_quality == 95  # the default
    kept = _result(trip, "jpeg", "plain")[0]
    assert codec.read_image(kept).jpeg_quality == 92  # --jpeg_quality=keep
    with Image.open(kept) as result:
        assert JpegImagePlugin.get_sampling(result) == 0


def test_jpeg_options_of_write_image(tmp_path, rng):
    rgb = rng.random((16, 24, 3)).astype(np.float32)
    for quality, subsampling, sampling in ((40, "4:2:0", 2), (75, "4:2:2", 1), (100, "4:4:4", 0)):
        path = tmp_path / f"q{quality}.jpg"
        codec.write_image(path, rgb, jpeg_quality=quality, jpeg_subsampling=subsampling)
        with Image.open(path) as im:
            assert JpegImagePlugin.get_sampling(im) == sampling
        assert codec.read_image(path).jpeg_quality == quality
    for bad in ({"jpeg_quality": 0}, {"jpeg_quality": 101}, {"jpeg_subsampling": "4:1:1"}):
        with pytest.raises(codec.ImageError, match="JPEG"):
            codec.write_image(tmp_path / "bad.jpg", rgb, **bad)
    assert not (tmp_path / "bad.jpg").exists()


def test_bad_jpeg_quality_flag_is_one_usage_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        runner._parse(deblur, ["kpac-deblur", "--jpeg_quality=best", str(tmp_path)])
    assert stop.value.code == runner.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == ["kpac-deblur: error: flag --jpeg_quality=best: --jpeg_quality must be "
                      "an integer from 1 to 100 or keep."]
    flags.FLAGS.unparse_flags()


def test_orientation_reset_touches_two_bytes_only():
    reset = imeta.reset_orientation(EXIF)
    assert len(reset) == len(EXIF) and imeta.exif_orientation(reset) == 1
    assert sum(a != b for a, b in zip(reset, EXIF)) == 1  # 6 -> 1 in the low byte
    removed = imeta.exif_without_orientation(EXIF)
    assert len(removed) == len(EXIF) and 0x0112 not in exif_tags(removed)
    assert exif_tags(removed)[0x9003] == "2024:05:01 10:11:12"
    assert imeta.normalize_exif(b"Exif\x00\x00" + EXIF) == EXIF
    assert imeta.normalize_exif(b"junk") is None


def test_heif_brands_are_sniffed():
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
        return struct.pack(">I", len(body) + 4) + body

    assert sniff_format(ftyp(b"heic", b"mif1", b"heic")) == "heic"
    assert sniff_format(ftyp(b"avif", b"mif1", b"avif")) == "avif"
    assert sniff_format(ftyp(b"mif1", b"mif1", b"avif")) == "avif"
    assert sniff_format(ftyp(b"mif1", b"mif1", b"heic")) == "heic"
    assert sniff_format(ftyp(b"isom", b"mp41")) is None


def test_without_the_extra_one_line_names_the_package(trip, monkeypatch, capsys):
    heic = trip["root"] / "fake.heic"
    heic.write_bytes(struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails as if absent
    with pytest.raises(codec.ImageError, match=r'pillow-heif package: pip install "kpac_tf\[photo\]"'):
        codec.read_image(heic)
    with pytest.raises(codec.ImageError, match="writing HEIC needs the pillow-heif"):
        codec.write_image(trip["root"] / "x.heic", np.zeros((4, 4, 3)))
    monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else True)
    monkeypatch.setitem(sys.modules, "pillow_avif", None)
    with pytest.raises(codec.ImageError, match=r"reading AVIF needs Pillow 11.3 .*pillow-avif-plugin"):
        codec.decode_image_bytes(struct.pack(">I", 20) + b"ftypavif\x00\x00\x00\x00avif", "x.avif")
    status = _run([f"--weights={trip['weights']}", f"--output_dir={trip['root'] / 'none'}",
                   str(heic)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 1 and errors == [
        f'kpac-deblur: error: {heic}: reading HEIC needs the pillow-heif package: '
        'pip install "kpac_tf[photo]".']
    flags.FLAGS.unparse_flags()


def test_demo_photo_keeps_the_metadata(trip):
    source = trip["root"] / "in" / trip["files"]["jpeg"]
    out = trip["root"] / "demo"
    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-demo", f"--weights={trip['weights']}", f"--output_dir={out}",
                             str(source)])
    assert runner.call_main("kpac-demo", demo.main, remaining) == 0
    flags.FLAGS.unparse_flags()
    result = codec.read_image(out / "camera_deblurred.png")
    assert result.metadata == ImageMetadata(ICC, imeta.reset_orientation(EXIF), XMP)
    assert result.pixels.shape[:2] == (STORED[1], STORED[0])
