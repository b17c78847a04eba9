"""The project's single image decoder and encoder.

Every command, ``tf.data`` pipeline and export goes through this module so that
8-bit and 16-bit images, grayscale, alpha and broken files are handled the same
way everywhere.

Conventions:

* Pixel arrays are float32, HWC, values in [0, 1]. Colour images are RGB;
  grayscale files are replicated to three channels (``ImageData.grayscale``
  remembers that the file was gray, so it can be written back as gray).
  :class:`ImageData` keeps the samples at their stored precision and converts
  on access (``.rgb``), so a whole photo is held at 3 or 6 bytes per pixel.
* 16-bit files keep their full precision (65536 levels); 8-bit files map
  ``v -> v / 255``.
* Every failure (missing file, folder, unknown or corrupt data, unsupported
  layout, an image above the pixel limit) raises :class:`ImageError`, a
  ``ValueError`` whose message is one sentence naming the file.
* Images above :data:`MAX_PIXELS` (width x height, read from the file's header
  before decoding) are refused as too large, never as corrupt: decoding one
  holds several float32 copies of it (12 bytes per pixel each). Raise the limit
  with ``read_image(..., max_pixels=...)``, by setting ``kpac_tf.io.MAX_PIXELS``,
  or with the commands' ``--max_pixels``.

* Metadata (:mod:`kpac_tf.image_metadata`): the ICC profile, EXIF and XMP of a file
  are kept on ``ImageData.metadata``, with the EXIF orientation applied to the pixels
  and reset to 1; :func:`write_image` writes them back when given (JPEG, PNG, TIFF,
  HEIC, AVIF).

Decoders by format: PNG and JPEG through TensorFlow (``tf.io.decode_png`` with
``dtype=uint16`` keeps 16 bits); TIFF through ``tifffile`` (8/16-bit, float);
BMP, GIF (first frame) and WebP through Pillow, because TensorFlow's BMP decoder
returns palette indices instead of colours for paletted BMPs; HEIC and AVIF (8-bit)
through Pillow with the optional ``photo`` extra (``pip install "kpac_tf[photo]"``:
``pillow-heif``, and a Pillow with AVIF support). Encoders: PNG through TensorFlow,
TIFF through ``tifffile``, JPEG, HEIC and AVIF through Pillow.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import tempfile
import warnings
from typing import BinaryIO, Callable, Optional, Union

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf import image_metadata as imeta
from kpac_tf.image_metadata import ImageMetadata

__all__ = [
    "ImageData",
    "ImageError",
    "ImageMetadata",
    "JPEG_SUBSAMPLINGS",
    "MAX_PIXELS",
    "READ_EXTENSIONS",
    "TENSOR_EXTENSIONS",
    "TENSOR_FORMATS",
    "WRITE_EXTENSIONS",
    "atomic_write",
    "current_umask",
    "decode_image_bytes",
    "decode_image_tensor",
    "encode_image_bytes",
    "encode_png_tensor",
    "encoded_image_size_tensor",
    "error_line",
    "estimate_jpeg_quality",
    "image_size",
    "is_image_file",
    "quantize",
    "read_image",
    "sniff_format",
    "to_unit_float",
    "write_image",
    "write_json",
]

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions :func:`read_image` understands (lower case, with the dot); HEIC and
#: AVIF need the ``photo`` extra.
READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp",
                   ".heic", ".heif", ".avif")
#: File extensions :func:`write_image` can produce (HEIC and AVIF with the extra).
WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".avif")
#: Chroma subsamplings :func:`write_image` takes for JPEG (4:4:4 keeps all colour detail).
JPEG_SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")
#: Quality of HEIC and AVIF results (1..100), written with 4:4:4 chroma.
HEIF_QUALITY = 90
#: Formats (:func:`sniff_format` names) that :func:`decode_image_tensor` decodes in a
#: graph (tf.data pipelines, SavedModel signatures), and their file extensions.
TENSOR_FORMATS = ("png", "jpeg", "bmp", "gif")
TENSOR_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

#: Default pixel limit (width x height) of :func:`read_image` and
#: :func:`decode_image_bytes`: 250 megapixels, about 3 GB per float32 RGB copy.
#: Commands raise it with ``--max_pixels``.
MAX_PIXELS = 250_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic + BigTIFF
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
# ISO base media file brands (the "ftyp" box) of HEIF images and of AVIF images.
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")
_PHOTO_EXTRA = 'pip install "kpac_tf[photo]"'

# Integer -> float scaling. Multiplying by the float32 reciprocal (rather than
# dividing) is what TensorFlow's graph does too, so the numpy and graph decoders
# give bit-identical floats; round(x * 255) recovers the integers exactly.
_INV_255 = np.float32(1.0 / 255.0)
_INV_65535 = np.float32(1.0 / 65535.0)

# ITU-R BT.601 luma weights, used when an RGB image is written as grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ImageError(ValueError):
    """An image could not be read or written; the message names the file."""


@dataclasses.dataclass
class ImageData:
    """A decoded image, kept at the precision stored in the file.

    The samples stay as they were decoded (uint8 or uint16 integers, or float32 in
    [0, 1] for float files), so a 96-megapixel 8-bit photo takes 3 bytes per pixel,
    not the 12 of a float32 copy. :attr:`rgb` and :attr:`alpha` convert on access.

    Attributes:
      pixels: HxWxC samples, C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA);
        uint8, uint16, or float32 in [0, 1].
      bit_depth: 8 or 16: the precision stored in the file (float TIFFs report 16).
      grayscale: True when the file stores one gray channel (plus optional alpha).
      format: "png", "jpeg", "tiff", "bmp", "gif", "webp", "heic" or "avif".
      metadata: the file's ICC profile, EXIF (orientation reset to 1: ``pixels`` are
        upright) and XMP; pass it to :func:`write_image` to keep them.
      jpeg_quality: a JPEG's quality 1..100 estimated from its luminance quantisation
        table against the IJG (libjpeg) tables; None for other formats.
    """

    pixels: np.ndarray
    bit_depth: int
    grayscale: bool
    format: str
    metadata: ImageMetadata = dataclasses.field(default_factory=ImageMetadata)
    jpeg_quality: Optional[int] = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)

    @property
    def stored_rgb(self) -> np.ndarray:
        """HxWx3 RGB at the stored precision (uint8/uint16, or float32 in [0, 1]);
        a read-only view without a copy (gray is broadcast to three channels)."""
        colour = self.pixels[:, :, :1] if self.grayscale else self.pixels[:, :, :3]
        return np.broadcast_to(colour, colour.shape[:2] + (3,))

    @property
    def rgb(self) -> np.ndarray:
        """float32 HxWx3 in [0, 1], a new array on every access (keep the result);
        gray files are replicated to three equal channels."""
        return to_unit_float(self.stored_rgb)

    @property
    def alpha(self) -> Optional[np.ndarray]:
        """float32 HxWx1 in [0, 1] (1 = opaque), or None without alpha."""
        if not self.has_alpha:
            return None
        channels = self.pixels.shape[2]
        return to_unit_float(self.pixels[:, :, channels - 1:channels])


def to_unit_float(samples: np.ndarray) -> np.ndarray:
    """uint8 / uint16 samples -> float32 in [0, 1] (v/255, v/65535, bit-identical to
    the graph decoders); float input is returned as float32 (a copy only if needed).
    Any layout; the result is C-contiguous."""
    if samples.dtype == np.uint8:
        return np.multiply(samples, _INV_255, dtype=np.float32)
    if samples.dtype == np.uint16:
        return np.multiply(samples, _INV_65535, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #
def is_image_file(path: PathLike) -> bool:
    """True when ``path`` is a regular file with an extension :func:`read_image` reads."""
    path = os.fspath(path)
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in READ_EXTENSIONS


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> ImageData:
    """Reads an image file (PNG, JPEG, TIFF, BMP, GIF first frame, WebP; HEIC and
    AVIF with the ``photo`` extra).

    The format is detected from the file's content, not its extension. 8-bit and
    16-bit data are kept exactly; the EXIF orientation is applied to the pixels (HEIC:
    by its decoder) and reset to 1 in ``metadata``, which keeps the file's ICC
    profile, EXIF and XMP.

    Args:
      path: file to read.
      max_pixels: refuse images with more pixels (width x height) than this,
        checked from the header before decoding; None: :data:`MAX_PIXELS`.

    Returns:
      An :class:`ImageData` with ``rgb`` float32 HxWx3 in [0, 1].

    Raises:
      ImageError: the file is missing, a folder, empty, not a decodable image,
        truncated or corrupt, has zero size or an unsupported channel layout, is
        larger than ``max_pixels``, or is HEIC/AVIF without the package to read it.
    """
    path = os.fspath(path)
    name = path
    if os.path.isdir(path):
        raise ImageError(f"{name}: is a folder, not an image file.")
    if not os.path.exists(path):
        raise ImageError(f"{name}: file not found.")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e.strerror or e}).") from e
    return decode_image_bytes(data, name, max_pixels=max_pixels)


def decode_image_bytes(data: bytes, name: str = "<bytes>",
                       max_pixels: Optional[int] = None) -> ImageData:
    """Decodes an encoded image held in memory; same rules as :func:`read_image`.

    Args:
      data: the encoded file content.
      name: what to call the data in error messages (usually its file name).
      max_pixels: pixel limit (width x height); None: :data:`MAX_PIXELS`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"{name}: expected encoded image bytes, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes), not an image.")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError(
            f"{name}: not a supported image (expected PNG, JPEG, TIFF, BMP, GIF, WebP, "
            "HEIC or AVIF data)."
        )
    if fmt in ("heic", "avif"):
        _require_pillow_plugin(fmt, name, "reading")
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    size = image_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageError(_too_large_message(name, size, limit))
    try:
        with _pillow_pixel_limit(limit):
            array, bit_depth, metadata, quality = _decode_by_format(data, fmt, name)
    except ImageError:
        raise
    except (tf.errors.OpError, OSError, ValueError, KeyError, IndexError, EOFError,
            SyntaxError, MemoryError) as e:
        if size is not None and _is_size_failure(e):
            width, height = size
            raise ImageError(
                f"{name}: image too large to decode ({width}x{height} pixels, "
                f"{width * height / 1e6:.1f} MP; the decoder said: {error_line(e)}), "
                "which says nothing against the file: split or downscale it, or use a "
                "machine with more memory."
            ) from e
        raise ImageError(
            f"{name}: not a decodable {fmt.upper()} image (truncated or corrupt)."
        ) from e
    if fmt != "heic":  # the HEIF decoder applies the image's own rotation and mirroring
        array = _apply_orientation(array, imeta.exif_orientation(metadata.exif))
    metadata = dataclasses.replace(metadata, exif=imeta.reset_orientation(metadata.exif))
    image = _to_image_data(array, bit_depth, fmt, name)
    image.metadata, image.jpeg_quality = metadata, quality
    return image


def _decode_by_format(data: bytes, fmt: str, name: str
                      ) -> tuple[np.ndarray, int, ImageMetadata, Optional[int]]:
    """(stored samples, bit depth, metadata, estimated JPEG quality or None)."""
    if fmt == "png":
        return (*_decode_png(data, name), imeta.png_metadata(data, name), None)
    if fmt == "jpeg":
        return (_decode_jpeg(data), 8, *_jpeg_header(data, name))
    if fmt == "tiff":
        return (*_decode_tiff(data, name), imeta.tiff_metadata(data, name), None)
    return (*_decode_pillow(data, name), None)


def _require_pillow_plugin(fmt: str, name: str, action: str) -> None:
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


def _too_large_message(name: str, size: tuple[int, int], limit: int) -> str:
    width, height = size
    pixels = width * height
    return (
        f"{name}: image too large to read: {width}x{height} pixels ({pixels / 1e6:.1f} MP, "
        f"about {pixels * 12 / 2**30:.1f} GB per float32 RGB copy) is above the limit of "
        f"{limit:,} pixels; raise it with --max_pixels (max_pixels= in kpac_tf.io.read_image) "
        "on a machine with the memory."
    )


def _is_size_failure(error: BaseException) -> bool:
    """True when a decoder gave up because of the image size or memory, not bad data."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return "too large" in text or "decompression bomb" in text or "out of memory" in text


def error_line(error: BaseException) -> str:
    """The first line of an error's message, for one-sentence messages: TensorFlow's
    "{{function_node ...}}" prefix and " [Op:...]" suffix and a final period dropped."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(text))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    return line.split(" [Op:", 1)[0].rstrip(" .")


@contextlib.contextmanager
def _pillow_pixel_limit(limit: int):
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

            with _pillow_pixel_limit(2**62), Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - a broken header is the decoder's to report
        return None
    return None


def sniff_format(data: bytes) -> Optional[str]:
    """The format of encoded image bytes from their signature ("png", "jpeg", "tiff",
    "bmp", "gif", "webp", "heic", "avif"), or None; the first 12 bytes are enough
    except for HEIF files whose brand is generic ("mif1"), where the compatible brands
    of the ftyp box say which."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
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


# The IJG (libjpeg) luminance quantisation table at quality 50 (natural order).
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64)


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


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turns stored pixels into display orientation (EXIF tag 0x0112)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    if orientation in ops:
        return np.ascontiguousarray(ops[orientation](array))
    return array


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
        if _is_size_failure(e):
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


def _to_image_data(array: np.ndarray, bit_depth: int, fmt: str, name: str) -> ImageData:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageError(f"{name}: unsupported image layout with shape {tuple(array.shape)}.")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ImageError(f"{name}: zero-size image ({width}x{height}).")
    if channels not in (1, 2, 3, 4):
        raise ImageError(
            f"{name}: unsupported channel count {channels} "
            "(expected gray, gray+alpha, RGB or RGBA)."
        )
    if array.dtype not in (np.uint8, np.uint16):
        array = array.astype(np.float32, copy=False)
    return ImageData(pixels=array, bit_depth=int(bit_depth), grayscale=channels in (1, 2),
                     format=fmt)


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
def quantize(x, bit_depth: int):
    """Rounds values to the 8-bit or 16-bit grid; the result stays float in [0, 1].

    Works on numpy arrays (returns float32) and on tensors (returns float32 tensor,
    usable inside ``tf.data`` and ``tf.function``). The grid values are exactly
    those :func:`read_image` returns, so quantising decoded data is a no-op.

    Args:
      x: values in [0, 1] (clipped first).
      bit_depth: 8 or 16.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    levels = np.float32(255.0 if bit_depth == 8 else 65535.0)
    inverse = _INV_255 if bit_depth == 8 else _INV_65535
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = tf.cast(x, tf.float32)
        return tf.round(tf.clip_by_value(x, 0.0, 1.0) * levels) * inverse
    x = np.asarray(x, dtype=np.float32)
    return (np.round(np.clip(x, 0.0, 1.0) * levels) * inverse).astype(np.float32)


# Rows converted at a time when writing: the float64 rounding temporaries then stay
# small instead of costing 24 bytes per pixel of the whole image each.
_CHUNK_ROWS = 256


def _to_integers(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """HxWxC floats in [0, 1] (clipped) -> uint8/uint16, rounded in float64 row bands."""
    levels = 255.0 if bit_depth == 8 else 65535.0
    out = np.empty(values.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for top in range(0, values.shape[0], _CHUNK_ROWS):
        band = slice(top, top + _CHUNK_ROWS)
        out[band] = np.round(np.clip(values[band].astype(np.float64), 0.0, 1.0) * levels)
    return out


def _all_finite(values: np.ndarray) -> bool:
    return all(np.isfinite(values[top:top + _CHUNK_ROWS]).all()
               for top in range(0, values.shape[0], _CHUNK_ROWS))


def _prepare_pixels(name: str, rgb, grayscale: bool, alpha) -> np.ndarray:
    """Validates the inputs of write_image and stacks them to HxWxC floats."""
    try:
        rgb = np.asarray(rgb, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ImageError(f"{name}: image data is not a numeric array.") from e
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3):
        raise ImageError(
            f"{name}: expected an HxWx3 (or HxW gray) array, got shape {tuple(rgb.shape)}.")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{name}: cannot write a zero-size image {tuple(rgb.shape)}.")
    if not _all_finite(rgb):
        raise ImageError(f"{name}: image data contains NaN or infinite values.")
    if grayscale:
        gray = rgb if rgb.shape[2] == 1 else (
            rgb[:, :, :1] if np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
            and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
            else np.tensordot(rgb, _LUMA, axes=([2], [0]))[:, :, None])
        pixels = gray
    else:
        pixels = rgb if rgb.shape[2] == 3 else np.repeat(rgb, 3, axis=2)
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.float32)
        if alpha.ndim == 2:
            alpha = alpha[:, :, None]
        if alpha.shape != pixels.shape[:2] + (1,):
            raise ImageError(
                f"{name}: alpha shape {tuple(alpha.shape)} does not match the image "
                f"{pixels.shape[0]}x{pixels.shape[1]}.")
        if not np.all(np.isfinite(alpha)):
            raise ImageError(f"{name}: alpha contains NaN or infinite values.")
        pixels = np.concatenate([pixels, alpha], axis=2)
    return pixels


def encode_image_bytes(rgb, ext: str, *, bit_depth: int = 8, grayscale: bool = False,
                       alpha=None, name: str = "<bytes>", jpeg_quality: int = 95,
                       metadata: Optional[ImageMetadata] = None,
                       jpeg_subsampling: str = "4:4:4") -> bytes:
    """Encodes an image to bytes (the part of :func:`write_image` before the file).

    Args:
      rgb: float HxWx3 (or HxW gray) in [0, 1]; values are clipped and rounded.
      ext: ".png", ".jpg"/".jpeg", ".tif"/".tiff", ".heic"/".heif" or ".avif".
      bit_depth: 8 or 16 (JPEG, HEIC and AVIF are written 8-bit; asking for 16 logs
        a warning).
      grayscale: store one gray channel (BT.601 luma unless the channels are equal).
      alpha: optional float HxW or HxWx1 in [0, 1] (not stored in JPEG).
      name: file name for messages.
      jpeg_quality: JPEG quality 1..100.
      metadata: ICC profile, EXIF and XMP to store (None: none). Written as given, so
        its EXIF orientation should be 1 (what :func:`read_image` returns).
      jpeg_subsampling: JPEG chroma subsampling, one of :data:`JPEG_SUBSAMPLINGS`.
    """
    ext = ext.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ImageError(
            f"{name}: unsupported output extension '{ext or '(none)'}' "
            "(use .png, .jpg, .tif, .heic or .avif).")
    if bit_depth not in (8, 16):
        raise ImageError(f"{name}: bit_depth must be 8 or 16, got {bit_depth}.")
    fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
           ".heic": "heic", ".heif": "heic", ".avif": "avif"}.get(ext, "png")
    if fmt == "jpeg":
        _check_jpeg_options(name, jpeg_quality, jpeg_subsampling)
        if alpha is not None:
            logging.warning("%s: JPEG has no alpha channel; alpha dropped.", name)
            alpha = None
    if fmt in ("heic", "avif"):
        _require_pillow_plugin(fmt, name, "writing")
    if fmt in ("jpeg", "heic", "avif") and bit_depth == 16:
        logging.warning("%s: %s results are written with 8 bits per channel; writing 8-bit.",
                        name, fmt.upper())
        bit_depth = 8
    pixels = _to_integers(_prepare_pixels(name, rgb, grayscale, alpha), bit_depth)
    metadata = metadata if metadata else None
    if fmt == "png":
        return imeta.add_png_metadata(tf.io.encode_png(pixels, compression=-1).numpy(), metadata)
    if fmt == "tiff":
        return _encode_tiff(pixels, name, metadata)
    if fmt == "jpeg":
        return _encode_jpeg(pixels, name, int(jpeg_quality), jpeg_subsampling, metadata)
    return _encode_heif(pixels, fmt, name, metadata)


def _check_jpeg_options(name: str, quality, subsampling: str) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= int(quality) <= 100:
        raise ImageError(f"{name}: JPEG quality must be an integer from 1 to 100, got {quality!r}.")
    if subsampling not in JPEG_SUBSAMPLINGS:
        raise ImageError(f"{name}: JPEG chroma subsampling must be one of "
                         f"{', '.join(JPEG_SUBSAMPLINGS)}; got {subsampling!r}.")


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


def write_image(path: PathLike, rgb, *, bit_depth: int = 8, grayscale: bool = False,
                alpha=None, metadata: Optional[ImageMetadata] = None,
                jpeg_quality: int = 95, jpeg_subsampling: str = "4:4:4") -> None:
    """Writes an image atomically (PNG 8/16-bit, JPEG 8-bit, TIFF 8/16-bit; HEIC and
    AVIF 8-bit with the ``photo`` extra).

    The data is written to a temporary file in the destination folder, then moved
    over ``path`` with ``os.replace``, so a partial file never exists under
    ``path``; the temporary file is removed if anything fails. The folder must
    exist.

    Args:
      path: destination; the extension picks the format (.png, .jpg/.jpeg,
        .tif/.tiff, .heic/.heif, .avif).
      rgb: float HxWx3 (or HxW gray) in [0, 1]; values are clipped and rounded.
      bit_depth: 8 or 16 (JPEG, HEIC and AVIF write 8 with a warning).
      grayscale: store a single gray channel.
      alpha: optional float HxW or HxWx1 in [0, 1] (PNG, TIFF, HEIC, AVIF).
      metadata: ICC profile, EXIF and XMP to store, e.g. ``read_image(src).metadata``;
        None (the default) stores none.
      jpeg_quality: JPEG quality 1..100 (default 95).
      jpeg_subsampling: JPEG chroma subsampling, "4:4:4" (default: full colour
        detail), "4:2:2" or "4:2:0".

    Raises:
      ImageError: bad extension, bit depth, JPEG option, shapes or values; HEIC/AVIF
        without the package to write it; or the file cannot be written.
    """
    path = os.fspath(path)
    name = path
    if os.path.isdir(path):
        raise ImageError(f"{name}: is a folder; give a file name ending in .png, .jpg or .tif.")
    folder = os.path.dirname(os.path.abspath(path))
    ext = os.path.splitext(path)[1]
    data = encode_image_bytes(rgb, ext, bit_depth=bit_depth, grayscale=grayscale,
                              alpha=alpha, name=name, jpeg_quality=jpeg_quality,
                              metadata=metadata, jpeg_subsampling=jpeg_subsampling)
    if not os.path.isdir(folder):
        raise ImageError(f"{name}: the folder {folder} does not exist; create it first.")
    _write_image_file(path, folder, data)


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it where possible)."""
    try:
        with open("/proc/self/status", "r", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: Union[bytes, str, Callable[[BinaryIO], None]]) -> None:
    """Writes a file so that it is either complete or absent: the data goes to a
    temporary file in the destination folder (which must exist), is flushed to disk
    and moved over ``path`` with ``os.replace``; the temporary file is removed if
    anything fails. The file gets the mode of any new file (0o666 less the umask).

    Paths with a scheme (``gs://...``) go through ``tf.io.gfile``: written to
    ``path + ".tmp"``, then renamed over ``path``.

    Args:
      path: destination file.
      data: bytes, text (written as UTF-8), or a function that writes into the open
        binary stream (e.g. ``lambda f: np.savez(f, **arrays)``).

    Raises:
      OSError: the folder is missing or the file cannot be written.
    """
    path = os.fspath(path)
    if "://" in path:
        _atomic_write_gfile(path, data)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_data(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_data(stream: BinaryIO, data) -> None:
    if callable(data):
        data(stream)
    else:
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)


def _atomic_write_gfile(path: str, data) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as stream:
        _write_data(stream, data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: PathLike, payload, *, indent: int = 1) -> None:
    """Writes ``payload`` as JSON (keys sorted) with :func:`atomic_write`."""
    atomic_write(path, json.dumps(payload, indent=indent, sort_keys=True))


def _write_image_file(path: str, folder: str, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as e:
        raise ImageError(f"{path}: cannot be written into {folder} ({e.strerror or e}).") from e


# --------------------------------------------------------------------------- #
# Graph-mode helpers (tf.data, SavedModel)
# --------------------------------------------------------------------------- #
def _header_tensor(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """The first ``size`` bytes of a scalar string tensor, zero-padded when shorter.

    ``tf.strings.substr`` fails on a start position past the end, so header bytes
    are always read from this fixed-size copy: a short or truncated file then
    reaches the decoder's (or the caller's) own error instead of an out-of-range one.
    """
    head = tf.strings.substr(encoded, 0, size)  # position 0 is valid for any length
    return tf.strings.substr(tf.strings.join([head, b"\0" * size]), 0, size)


def is_png_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor starts with the PNG signature (any length)."""
    return tf.equal(_header_tensor(encoded, len(_PNG_MAGIC)), _PNG_MAGIC)


def is_jpeg_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor starts with the JPEG marker (any length)."""
    return tf.equal(_header_tensor(encoded, len(_JPEG_MAGIC)), _JPEG_MAGIC)


def is_16bit_png_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor is a PNG whose IHDR bit depth is 16 (any length)."""
    bit_depth = tf.strings.substr(_header_tensor(encoded, 25), 24, 1)  # IHDR bit depth
    return tf.logical_and(is_png_tensor(encoded), tf.equal(bit_depth, b"\x10"))


def encoded_image_size_tensor(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(height, width) as int64 scalar tensors, read from a PNG's IHDR or a JPEG's frame
    header without decoding the pixels (graph mode).

    Call it on PNG or JPEG data only (check with :func:`is_png_tensor` and
    :func:`is_jpeg_tensor` first): other bytes are read as JPEG, and TensorFlow's JPEG
    header reader fails on them.
    """
    encoded = tf.convert_to_tensor(encoded, dtype=tf.string)

    def _png() -> tf.Tensor:
        fields = tf.strings.substr(_header_tensor(encoded, 24), 16, 8)  # IHDR width, height
        digits = tf.cast(tf.io.decode_raw(fields, tf.uint8), tf.int64)
        weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
        width = tf.reduce_sum(digits[:4] * weights)
        height = tf.reduce_sum(digits[4:] * weights)
        return tf.stack([height, width])

    def _jpeg() -> tf.Tensor:
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    size = tf.cond(is_png_tensor(encoded), _png, _jpeg)
    return size[0], size[1]


def decode_image_tensor(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decodes an encoded PNG/JPEG/BMP/GIF string tensor inside a graph.

    16-bit PNGs (bit depth read from the PNG header) are decoded as uint16, so
    their precision survives; PNG and JPEG values are bit-identical to
    :func:`read_image`. JPEG, BMP and GIF go through ``tf.io.decode_image`` as
    8-bit. Not supported in graph mode: TIFF, WebP, EXIF orientation and
    paletted BMPs (use :func:`read_image`).

    Args:
      encoded: scalar tf.string tensor with the file content.
      channels: 1, 3 or 4 output channels (gray is replicated, alpha dropped or
        added as opaque, like the TF decoders do).

    Returns:
      float32 tensor HxWxC with values in [0, 1].
    """
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, got {channels}.")
    encoded = tf.convert_to_tensor(encoded, dtype=tf.string)
    is_png = is_png_tensor(encoded)
    is_16bit = is_16bit_png_tensor(encoded)

    def _png16() -> tf.Tensor:
        image = tf.io.decode_png(encoded, channels=channels, dtype=tf.uint16)
        return tf.cast(image, tf.float32) * _INV_65535

    def _png8() -> tf.Tensor:
        image = tf.io.decode_png(encoded, channels=channels, dtype=tf.uint8)
        return tf.cast(image, tf.float32) * _INV_255

    def _other() -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                   expand_animations=False)
        return tf.cast(image, tf.float32) * _INV_255

    image = tf.cond(is_png, lambda: tf.cond(is_16bit, _png16, _png8), _other)
    image.set_shape([None, None, channels])
    return image


def encode_png_tensor(image01: tf.Tensor, bit_depth: int = 8) -> tf.Tensor:
    """Encodes a float HxWxC tensor in [0, 1] to a PNG string tensor (graph mode).

    Args:
      image01: float tensor HxWxC (C = 1, 2, 3 or 4) in [0, 1]; clipped and rounded.
      bit_depth: 8 or 16 (Python int).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    levels = 255.0 if bit_depth == 8 else 65535.0
    image = tf.clip_by_value(tf.cast(image01, tf.float32), 0.0, 1.0)
    image = tf.cast(tf.round(image * levels), tf.uint8 if bit_depth == 8 else tf.uint16)
    return tf.io.encode_png(image)
