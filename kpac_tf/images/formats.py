"""The image formats behind :mod:`kpac_tf.images.codec`: which format encoded bytes hold,
their size from the header, and one decoder and one encoder per format.

Decoders return the samples as the file stores them (uint8 or uint16, HxW or HxWxC with
C = 1..4; float32 in [0, 1] for float TIFFs) without the EXIF orientation applied; the
codec validates, orients and wraps them. Encoders take 8/16-bit HxWxC samples (C = 1:
gray, 2: gray + alpha, 3: RGB, 4: RGBA).

PNG and JPEG go through TensorFlow (``tf.io.decode_png`` with ``dtype=uint16`` keeps 16
bits); TIFF through ``tifffile`` (8/16-bit, float); BMP, GIF (first frame) and WebP
through Pillow, because TensorFlow's BMP decoder returns palette indices instead of
colours for paletted BMPs; HEIC and AVIF (8-bit) through Pillow with the optional
``photo`` extra (``pip install "kpac_tf[photo]"``: ``pillow-heif``, and a Pillow with
AVIF support). Encoders: PNG through TensorFlow, TIFF through ``tifffile``, JPEG, HEIC
and AVIF through Pillow.

Every failure raises :class:`ImageError` (a ``ValueError`` whose message is one sentence
naming the file); :mod:`kpac_tf.images.codec` hands it on as its own.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.files import error_line
from kpac_tf.images import metadata as imeta
from kpac_tf.images.metadata import ImageMetadata

__all__ = [
    "HEIF_QUALITY",
    "INV_255",
    "INV_65535",
    "ImageError",
    "JPEG_MAGIC",
    "PNG_MAGIC",
    "decode_samples",
    "encode_samples",
    "estimate_jpeg_quality",
    "image_size",
    "is_size_failure",
    "pillow_pixel_limit",
    "require_plugin",
    "sniff_format",
]

#: Quality of HEIC and AVIF results (1..100), written with 4:4:4 chroma.
HEIF_QUALITY = 90

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic + BigTIFF
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
# ISO base media file brands (the "ftyp" box) of HEIF images and of AVIF images.
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_PHOTO_EXTRA = 'pip install "kpac_tf[photo]"'

# Integer -> float scaling. Multiplying by the float32 reciprocal (rather than
# dividing) is what TensorFlow's graph does too, so the numpy and graph decoders
# give bit-identical floats; round(x * 255) recovers the integers exactly.
INV_255 = np.float32(1.0 / 255.0)
INV_65535 = np.float32(1.0 / 65535.0)


class ImageError(ValueError):
    """An image could not be read or written; the message names the file."""

# The IJG (libjpeg) luminance quantisation table at quality 50 (natural order).
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64)


def sniff_format(data: bytes) -> Optional[str]:
    """The format of encoded image bytes from their signature ("png", "jpeg", "tiff",
    "bmp", "gif", "webp", "heic", "avif"), or None; the first 12 bytes are enough
    except for HEIF files whose brand is generic ("mif1"), where the compatible brands
    of the ftyp box say which."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[:4] in _TIFF_MAGICS:
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:6] in _GIF_MAGICS:
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return _heif_kind(data)
    return None


def image_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from an encoded image's header without decoding its pixels.

    PNG from its IHDR, JPEG from its frame header, TIFF from its first page, BMP,
    GIF and WebP through Pillow's header parser. None when the header cannot be
    read (the decoder then reports the problem) or the format is unknown.
    """
    data = bytes(data)
    fmt = sniff_format(data)
    try:
        if fmt == "png":
            if len(data) < 24 or data[12:16] != b"IHDR":
                return None
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if fmt == "jpeg":
            height, width, _ = (int(v) for v in tf.io.extract_jpeg_shape(data).numpy())
            return width, height
        if fmt == "tiff":
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        if fmt is not None:
            from PIL import Image

            with pillow_pixel_limit(2**62), Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - a broken header is the decoder's to report
        return None
    return None


def estimate_jpeg_quality(luminance_table) -> Optional[int]:
    """The IJG quality (1..100) whose luminance table is closest to ``luminance_table``
    (64 values, any order): exact for files written by libjpeg-based encoders, an
    estimate for others (cameras use their own tables); None for other table sizes."""
    table = np.sort(np.asarray(luminance_table, np.int64).ravel())
    if table.size != 64:
        return None
    errors = []
    for quality in range(1, 101):
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality
        ijg = np.sort(np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255))
        errors.append(int(np.abs(ijg - table).sum()))
    return 1 + int(np.argmin(errors))


def decode_samples(data: bytes, fmt: str, name: str
                   ) -> tuple[np.ndarray, int, ImageMetadata, Optional[int]]:
    """(stored samples, bit depth, metadata, estimated JPEG quality or None) of encoded
    ``data`` in format ``fmt`` (a :func:`sniff_format` name); ``name`` is for messages.
    The samples are not yet oriented (HEIC: oriented by its decoder)."""
    if fmt == "png":
        return (*_decode_png(data, name), imeta.png_metadata(data, name), None)
    if fmt == "jpeg":
        return (_decode_jpeg(data), 8, *_jpeg_header(data, name))
    if fmt == "tiff":
        return (*_decode_tiff(data, name), imeta.tiff_metadata(data, name), None)
    return (*_decode_pillow(data, name), None)


def encode_samples(pixels: np.ndarray, fmt: str, name: str, metadata: Optional[ImageMetadata],
                   jpeg_quality: int = 95, jpeg_subsampling: str = "4:4:4") -> bytes:
    """Encodes checked 8/16-bit HxWxC samples as ``fmt`` ("png", "tiff", "jpeg", "heic" or
    "avif"; JPEG, HEIC and AVIF take 8-bit samples only) with the metadata, if any."""
    if fmt == "png":
        return imeta.add_png_metadata(tf.io.encode_png(pixels, compression=-1).numpy(), metadata)
    if fmt == "tiff":
        return _encode_tiff(pixels, name, metadata)
    if fmt == "jpeg":
        return _encode_jpeg(pixels, name, int(jpeg_quality), jpeg_subsampling, metadata)
    return _encode_heif(pixels, fmt, name, metadata)


def require_plugin(fmt: str, name: str, action: str) -> None:
    """Registers Pillow's HEIC or AVIF plugin; ImageError naming what to install if none."""
    from PIL import features

    if fmt == "heic":
        try:
            import pillow_heif
        except ImportError:
            raise ImageError(f"{name}: {action} HEIC needs the pillow-heif package: "
                             f"{_PHOTO_EXTRA}.") from None
        pillow_heif.register_heif_opener()
        return
    if features.check("avif"):
        return
    try:
        import pillow_avif  # noqa: F401 - registers the AVIF plugin on import
    except ImportError:
        raise ImageError(f"{name}: {action} AVIF needs Pillow 11.3 or later with AVIF "
                         f"support, or the pillow-avif-plugin package: {_PHOTO_EXTRA}.") from None


@contextlib.contextmanager
def pillow_pixel_limit(limit: int) -> Iterator[None]:
    """Pillow's decompression-bomb guard follows ``limit`` (ours is checked first)."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max(int(limit), previous or 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def is_size_failure(error: BaseException) -> bool:
    """True when a decoder gave up because of the image size or memory, not bad data."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return "too large" in text or "decompression bomb" in text or "out of memory" in text


# --------------------------------------------------------------------------- #
# Per-format decoders and encoders
# --------------------------------------------------------------------------- #
def _heif_kind(data: bytes) -> Optional[str]:
    """"avif" or "heic" from an ISO base media file's ftyp box, or None."""
    size = int.from_bytes(data[:4], "big")
    box = data[8:min(max(size, 16), 256)]
    brands = [box[i:i + 4] for i in range(0, len(box) - 3, 4) if i != 4]  # skip the version
    if brands and brands[0] in _AVIF_BRANDS:
        return "avif"
    if brands and brands[0] in _HEIC_BRANDS[:-2]:
        return "heic"
    if any(brand in _AVIF_BRANDS for brand in brands):
        return "avif"
    if any(brand in _HEIC_BRANDS for brand in brands):
        return "heic"
    return None


def _decode_png(data: bytes, name: str) -> tuple[np.ndarray, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageError(f"{name}: not a decodable PNG image (truncated or corrupt header).")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: zero-size image ({width}x{height}).")
    bit_depth = 16 if data[24] == 16 else 8
    # TensorFlow's PNG decoder fails on truncated data, missing IEND and CRC errors.
    array = tf.io.decode_png(data, channels=0,
                             dtype=tf.uint16 if bit_depth == 16 else tf.uint8).numpy()
    return array, bit_depth


def _decode_jpeg(data: bytes) -> np.ndarray:
    """Stored (not yet oriented) samples; decode_jpeg fails on truncated data
    ("Premature end of JPEG data")."""
    return tf.io.decode_jpeg(data, channels=0).numpy()


def _jpeg_header(data: bytes, name: str) -> tuple[ImageMetadata, Optional[int]]:
    """A JPEG's metadata and estimated quality, from its header (no pixels decoded)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            metadata = imeta.from_pillow_info(im.info, getattr(im, "applist", None))
            tables = getattr(im, "quantization", None) or {}
        quality = estimate_jpeg_quality(tables[0]) if 0 in tables else None
        return metadata, quality
    except Exception as e:  # noqa: BLE001 - broken metadata must not break decoding
        logging.warning("%s: JPEG header unreadable (%s); metadata dropped.", name,
                        error_line(e))
        return ImageMetadata(), None


def _decode_tiff(data: bytes, name: str) -> tuple[np.ndarray, int]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if not tif.pages:
                raise ImageError(f"{name}: TIFF file contains no image.")
            page = tif.pages[0]
            if int(getattr(page, "photometric", 1)) == 5:  # SEPARATED (CMYK)
                raise ImageError(f"{name}: CMYK TIFF is not supported; save it as RGB.")
            array = page.asarray()
            planar_separate = int(getattr(page, "planarconfig", 1)) == 2
    except KeyError as e:
        if "imagecodecs" in str(e):
            return _decode_pillow(data, name, hint=(
                f"{name}: this TIFF compression needs the imagecodecs package "
                "(pip install imagecodecs), or save the file uncompressed."))[:2]
        raise
    if array.ndim == 3 and planar_separate and array.shape[0] <= 4 < array.shape[-1]:
        array = np.moveaxis(array, 0, -1)
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return array.astype(np.uint8) * (255 if array.dtype == np.bool_ else 1), 8
    if array.dtype == np.uint16:
        return array, 16
    if array.dtype in (np.float16, np.float32, np.float64):
        if not np.all(np.isfinite(array)):
            raise ImageError(f"{name}: TIFF holds NaN or infinite values.")
        return np.clip(array.astype(np.float32), 0.0, 1.0), 16
    raise ImageError(
        f"{name}: unsupported TIFF sample type {array.dtype} (use 8-bit, 16-bit or float)."
    )


def _decode_pillow(data: bytes, name: str, hint: Optional[str] = None
                   ) -> tuple[np.ndarray, int, ImageMetadata]:
    """(stored samples, bit depth, metadata) of a file Pillow decodes."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            im.load()
            metadata = imeta.from_pillow_info(im.info)
            return (*_pillow_samples(im, name), metadata)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on bad data
        if is_size_failure(e):
            raise
        if hint is not None:
            raise ImageError(hint) from e
        raise ImageError(f"{name}: not a decodable image (truncated or corrupt).") from e


def _pillow_samples(im, name: str) -> tuple[np.ndarray, int]:
    """(samples, bit depth) of a loaded Pillow image, palettes and CMYK as RGB(A)."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA")
                        else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im, dtype=np.uint16), 16
    elif mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"{name}: unsupported 32-bit integer image.")
        return arr.astype(np.uint16), 16
    elif mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0), 16
    elif mode == "CMYK" or mode == "YCbCr" or mode == "LAB" or mode == "HSV":
        im = im.convert("RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA")
    return np.asarray(im, dtype=np.uint8), 8


def _pillow_image(pixels: np.ndarray):
    """A Pillow image of 8-bit HxWxC samples (C = 1, 2, 3, 4: L, LA, RGB, RGBA)."""
    from PIL import Image

    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)


def _pillow_exif(exif: Optional[bytes], name: str) -> bytes:
    """The EXIF block with the header Pillow's JPEG/HEIC/AVIF writers expect; b"" when
    absent or too long for a JPEG segment (with a warning)."""
    if not exif:
        return b""
    if len(exif) + 8 > 0xFFFF:
        logging.warning("%s: EXIF block of %d bytes is too long for one segment; not written.",
                        name, len(exif))
        return b""
    return b"Exif\x00\x00" + exif


def _encode_jpeg(pixels: np.ndarray, name: str, quality: int, subsampling: str,
                 metadata: Optional[ImageMetadata]) -> bytes:
    """8-bit HxWx1/3 samples -> JPEG through Pillow (libjpeg), with the metadata."""
    buffer = io.BytesIO()
    options = {"quality": quality, "subsampling": subsampling}
    if metadata:
        options.update(icc_profile=metadata.icc_profile or None,
                       exif=_pillow_exif(metadata.exif, name))
    _pillow_image(pixels).save(buffer, "JPEG", **options)
    return imeta.insert_jpeg_xmp(buffer.getvalue(), metadata.xmp if metadata else None, name)


def _encode_heif(pixels: np.ndarray, fmt: str, name: str,
                 metadata: Optional[ImageMetadata]) -> bytes:
    """8-bit samples -> HEIC (pillow-heif) or AVIF (Pillow) at :data:`HEIF_QUALITY`,
    4:4:4 chroma, with the metadata. AVIF stores the orientation outside EXIF (Pillow
    moves it there, re-encoding the EXIF block), so an upright image's EXIF goes into
    AVIF without its orientation entry and otherwise unchanged."""
    buffer = io.BytesIO()
    if fmt == "heic":
        options = {"quality": HEIF_QUALITY, "chroma": 444}
    else:
        options = {"quality": HEIF_QUALITY, "subsampling": "4:4:4"}
    if metadata:
        exif = metadata.exif
        if fmt == "avif" and imeta.exif_orientation(exif) == 1:
            exif = imeta.exif_without_orientation(exif)
        options.update(icc_profile=metadata.icc_profile or None,
                       exif=_pillow_exif(exif, name) or None, xmp=metadata.xmp or None)
        options = {key: value for key, value in options.items() if value is not None}
    _pillow_image(pixels).save(buffer, "HEIF" if fmt == "heic" else "AVIF", **options)
    return buffer.getvalue()


def _encode_tiff(pixels: np.ndarray, name: str, metadata: Optional[ImageMetadata]) -> bytes:
    """8/16-bit samples -> zlib-compressed TIFF (tifffile), with the metadata as tags."""
    import tifffile

    buffer = io.BytesIO()
    channels = pixels.shape[2]
    kwargs = {"photometric": "minisblack" if channels <= 2 else "rgb",
              "compression": "zlib", "metadata": None, "software": False,
              "byteorder": imeta.tiff_byte_order(metadata)}
    if channels in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    tifffile.imwrite(buffer, pixels if channels > 1 else pixels[:, :, 0], **kwargs)
    return imeta.add_tiff_metadata(buffer.getvalue(), metadata, name)
