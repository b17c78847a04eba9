"""The project's image decoder and encoder: files and bytes <-> float arrays in [0, 1].

Every command, ``tf.data`` pipeline and export reads and writes images through
:mod:`kpac_tf.images` so that 8-bit and 16-bit images, grayscale, alpha and broken files
are handled the same way everywhere. This module is its face; the per-format decoders
and encoders are in :mod:`kpac_tf.images.formats`, the graph-mode codecs in
:mod:`kpac_tf.images.tensors`.

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
  with ``read_image(..., max_pixels=...)``, by setting
  ``kpac_tf.images.codec.MAX_PIXELS``, or with the commands' ``--max_pixels``.

* Metadata (:mod:`kpac_tf.images.metadata`): the ICC profile, EXIF and XMP of a file
  are kept on ``ImageData.metadata``, with the EXIF orientation applied to the pixels
  and reset to 1; :func:`write_image` writes them back when given (JPEG, PNG, TIFF,
  HEIC, AVIF).

Formats: PNG, JPEG, TIFF (8/16-bit, float), BMP, GIF (first frame) and WebP; HEIC and
AVIF (8-bit) with the optional ``photo`` extra (``pip install "kpac_tf[photo]"``).
Results are written as PNG, JPEG, TIFF, HEIC or AVIF.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Union

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.files import atomic_write, error_line
from kpac_tf.images import metadata as imeta
from kpac_tf.images.formats import (INV_255, INV_65535, ImageError, decode_samples,
                                    encode_samples, image_size, is_size_failure,
                                    pillow_pixel_limit, require_plugin, sniff_format)
from kpac_tf.images.metadata import ImageMetadata

__all__ = [
    "ImageData",
    "ImageError",
    "ImageMetadata",
    "JPEG_SUBSAMPLINGS",
    "MAX_PIXELS",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "decode_image_bytes",
    "encode_image_bytes",
    "is_image_file",
    "quantize",
    "read_image",
    "to_unit_float",
    "write_image",
]
# ImageError (defined beside the decoders that raise it) and ImageMetadata are handed on
# from kpac_tf.images.formats and kpac_tf.images.metadata.

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions :func:`read_image` understands (lower case, with the dot); HEIC and
#: AVIF need the ``photo`` extra.
READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp",
                   ".heic", ".heif", ".avif")
#: File extensions :func:`write_image` can produce (HEIC and AVIF with the extra).
WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".avif")
#: Chroma subsamplings :func:`write_image` takes for JPEG (4:4:4 keeps all colour detail).
JPEG_SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")

#: Default pixel limit (width x height) of :func:`read_image` and
#: :func:`decode_image_bytes`: 250 megapixels, about 3 GB per float32 RGB copy.
#: Commands raise it with ``--max_pixels``.
MAX_PIXELS = 250_000_000

# ITU-R BT.601 luma weights, used when an RGB image is written as grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
        require_plugin(fmt, name, "reading")
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    size = image_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageError(_too_large_message(name, size, limit))
    try:
        with pillow_pixel_limit(limit):
            array, bit_depth, metadata, quality = decode_samples(data, fmt, name)
    except ImageError:
        raise
    except (tf.errors.OpError, OSError, ValueError, KeyError, IndexError, EOFError,
            SyntaxError, MemoryError) as e:
        if size is not None and is_size_failure(e):
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


def is_image_file(path: PathLike) -> bool:
    """True when ``path`` is a regular file with an extension :func:`read_image` reads."""
    path = os.fspath(path)
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in READ_EXTENSIONS


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
        require_plugin(fmt, name, "writing")
    if fmt in ("jpeg", "heic", "avif") and bit_depth == 16:
        logging.warning("%s: %s results are written with 8 bits per channel; writing 8-bit.",
                        name, fmt.upper())
        bit_depth = 8
    pixels = _to_integers(_prepare_pixels(name, rgb, grayscale, alpha), bit_depth)
    return encode_samples(pixels, fmt, name, metadata if metadata else None, jpeg_quality,
                          jpeg_subsampling)


def to_unit_float(samples: np.ndarray) -> np.ndarray:
    """uint8 / uint16 samples -> float32 in [0, 1] (v/255, v/65535, bit-identical to
    the graph decoders); float input is returned as float32 (a copy only if needed).
    Any layout; the result is C-contiguous."""
    if samples.dtype == np.uint8:
        return np.multiply(samples, INV_255, dtype=np.float32)
    if samples.dtype == np.uint16:
        return np.multiply(samples, INV_65535, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


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
    inverse = INV_255 if bit_depth == 8 else INV_65535
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = tf.cast(x, tf.float32)
        return tf.round(tf.clip_by_value(x, 0.0, 1.0) * levels) * inverse
    x = np.asarray(x, dtype=np.float32)
    return (np.round(np.clip(x, 0.0, 1.0) * levels) * inverse).astype(np.float32)


def _too_large_message(name: str, size: tuple[int, int], limit: int) -> str:
    width, height = size
    pixels = width * height
    return (
        f"{name}: image too large to read: {width}x{height} pixels ({pixels / 1e6:.1f} MP, "
        f"about {pixels * 12 / 2**30:.1f} GB per float32 RGB copy) is above the limit of "
        f"{limit:,} pixels; raise it with --max_pixels (max_pixels= in kpac_tf.read_image) "
        "on a machine with the memory."
    )


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


def _check_jpeg_options(name: str, quality, subsampling: str) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
            or not 1 <= int(quality) <= 100:
        raise ImageError(f"{name}: JPEG quality must be an integer from 1 to 100, got {quality!r}.")
    if subsampling not in JPEG_SUBSAMPLINGS:
        raise ImageError(f"{name}: JPEG chroma subsampling must be one of "
                         f"{', '.join(JPEG_SUBSAMPLINGS)}; got {subsampling!r}.")


def _write_image_file(path: str, folder: str, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as e:
        raise ImageError(f"{path}: cannot be written into {folder} ({e.strerror or e}).") from e
