"""Image codecs for graphs (``tf.data`` pipelines, SavedModel signatures): encoded
bytes as scalar ``tf.string`` tensors in, float32 HxWxC tensors in [0, 1] out, and back.

PNG and JPEG values are bit-identical to :func:`kpac_tf.images.codec.read_image`; 16-bit
PNGs keep 16 bits. Not supported in graph mode: TIFF, WebP, EXIF orientation and
paletted BMPs (use :func:`kpac_tf.images.codec.read_image`).
"""
from __future__ import annotations

import tensorflow as tf

from kpac_tf.images.formats import INV_255, INV_65535, JPEG_MAGIC, PNG_MAGIC

__all__ = [
    "TENSOR_EXTENSIONS",
    "TENSOR_FORMATS",
    "decode_image_tensor",
    "encode_png_tensor",
    "encoded_image_size_tensor",
    "is_16bit_png_tensor",
    "is_jpeg_tensor",
    "is_png_tensor",
]

#: Formats (:func:`kpac_tf.images.formats.sniff_format` names) that
#: :func:`decode_image_tensor` decodes in a graph, and their file extensions.
TENSOR_FORMATS = ("png", "jpeg", "bmp", "gif")
TENSOR_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def decode_image_tensor(encoded: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decodes an encoded PNG/JPEG/BMP/GIF string tensor inside a graph.

    16-bit PNGs (bit depth read from the PNG header) are decoded as uint16, so
    their precision survives; PNG and JPEG values are bit-identical to
    :func:`kpac_tf.images.codec.read_image`. JPEG, BMP and GIF go through
    ``tf.io.decode_image`` as 8-bit. Not supported in graph mode: TIFF, WebP, EXIF
    orientation and paletted BMPs (use :func:`kpac_tf.images.codec.read_image`).

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
        return tf.cast(image, tf.float32) * INV_65535

    def _png8() -> tf.Tensor:
        image = tf.io.decode_png(encoded, channels=channels, dtype=tf.uint8)
        return tf.cast(image, tf.float32) * INV_255

    def _other() -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                   expand_animations=False)
        return tf.cast(image, tf.float32) * INV_255

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


def is_png_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor starts with the PNG signature (any length)."""
    return tf.equal(_header_tensor(encoded, len(PNG_MAGIC)), PNG_MAGIC)


def is_jpeg_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor starts with the JPEG marker (any length)."""
    return tf.equal(_header_tensor(encoded, len(JPEG_MAGIC)), JPEG_MAGIC)


def is_16bit_png_tensor(encoded: tf.Tensor) -> tf.Tensor:
    """True if a scalar string tensor is a PNG whose IHDR bit depth is 16 (any length)."""
    bit_depth = tf.strings.substr(_header_tensor(encoded, 25), 24, 1)  # IHDR bit depth
    return tf.logical_and(is_png_tensor(encoded), tf.equal(bit_depth, b"\x10"))


def _header_tensor(encoded: tf.Tensor, size: int) -> tf.Tensor:
    """The first ``size`` bytes of a scalar string tensor, zero-padded when shorter.

    ``tf.strings.substr`` fails on a start position past the end, so header bytes
    are always read from this fixed-size copy: a short or truncated file then
    reaches the decoder's (or the caller's) own error instead of an out-of-range one.
    """
    head = tf.strings.substr(encoded, 0, size)  # position 0 is valid for any length
    return tf.strings.substr(tf.strings.join([head, b"\0" * size]), 0, size)
