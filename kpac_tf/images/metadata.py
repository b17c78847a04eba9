"""Colour profile, EXIF and XMP of image files: read from a file, carried, written back.

:mod:`kpac_tf.images.codec` decodes and encodes the pixels; this module handles the metadata
around them, so that a deblurred photo keeps what its input said about itself.

* :class:`ImageMetadata` holds three blobs: the ICC profile (byte for byte), the EXIF
  block (TIFF-structured, starting ``II*\\0`` or ``MM\\0*``, without the ``Exif\\0\\0``
  header JPEG puts in front) and the XMP packet (UTF-8 XML).
* EXIF orientation: readers apply it to the pixels and reset the tag to 1 by patching
  its two value bytes, so the rest of the EXIF block stays byte for byte.
* JPEG, PNG, WebP, HEIC and AVIF carry EXIF as one block, copied unchanged. A TIFF
  stores EXIF as tags of the image itself: its EXIF block is built from the camera
  tags of its first page (make, model, date, ...) and their EXIF and GPS sub-IFDs, and
  written back as those tags; that round trip is byte for byte too.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib
from typing import Iterable, Optional

from absl import logging

__all__ = [
    "ImageMetadata",
    "add_png_metadata",
    "add_tiff_metadata",
    "exif_orientation",
    "exif_without_orientation",
    "from_pillow_info",
    "insert_jpeg_xmp",
    "normalize_exif",
    "png_metadata",
    "reset_orientation",
    "tiff_byte_order",
    "tiff_metadata",
]

_EXIF_HEADER = b"Exif\x00\x00"
_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_PNG_KEYWORD = b"XML:com.adobe.xmp"
_ORIENTATION = 0x0112
# Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
# UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
# Tags holding the offset of a sub-IFD: EXIF, GPS, interoperability.
_POINTER_TAGS = (0x8769, 0x8825, 0xA005)
# First-IFD tags that describe the photo rather than the pixel layout: what a TIFF's
# EXIF block is made of, and what is copied from an EXIF block into a TIFF.
# (Description, make, model, orientation, software, date, artist, host computer,
# copyright, the EXIF and GPS sub-IFDs.)
_CAMERA_TAGS = frozenset({0x010E, 0x010F, 0x0110, 0x0112, 0x0131, 0x0132, 0x013B, 0x013C,
                          0x8298, 0x8769, 0x8825})
_RESOLUTION_TAGS = frozenset({0x011A, 0x011B, 0x0128})  # x/y resolution, unit
_TIFF_ICC, _TIFF_XMP = 34675, 700


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    """What an image file says about itself beyond its pixels.

    Attributes:
      icc_profile: the ICC colour profile, byte for byte, or None.
      exif: the EXIF block, TIFF-structured (``II*\\0...`` or ``MM\\0*...``, no
        ``Exif\\0\\0`` header), or None. Read from a file, its orientation is 1 (or
        absent): the reader has turned the pixels upright.
      xmp: the XMP packet (UTF-8 XML bytes), or None.
    """

    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None
    xmp: Optional[bytes] = None

    def __bool__(self) -> bool:
        return bool(self.icc_profile or self.exif or self.xmp)

    def kinds(self) -> list[str]:
        """The names of the parts present, e.g. ["ICC", "EXIF"]."""
        parts = (("ICC", self.icc_profile), ("EXIF", self.exif), ("XMP", self.xmp))
        return [kind for kind, blob in parts if blob]


def _blob(value) -> Optional[bytes]:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return bytes(value)
    return None


# --------------------------------------------------------------------------- #
# EXIF blocks (TIFF structure)
# --------------------------------------------------------------------------- #
def normalize_exif(data) -> Optional[bytes]:
    """An EXIF block without the ``Exif\\0\\0`` header; None when empty or not EXIF."""
    data = _blob(data)
    if data is None:
        return None
    if data.startswith(_EXIF_HEADER):
        data = data[len(_EXIF_HEADER):]
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    return data


def _byte_order(exif: bytes) -> str:
    return "<" if exif[:2] == b"II" else ">"


def _orientation_field(exif: Optional[bytes]) -> Optional[int]:
    """Offset of the orientation value (a SHORT) in the first IFD, or None."""
    if not exif or len(exif) < 8:
        return None
    order = _byte_order(exif)
    try:
        (ifd,) = struct.unpack_from(order + "I", exif, 4)
        (count,) = struct.unpack_from(order + "H", exif, ifd)
        for index in range(count):
            entry = ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _ORIENTATION:
                return entry + 8 if kind == 3 and number == 1 else None
    except struct.error:
        return None
    return None


def exif_orientation(exif: Optional[bytes]) -> int:
    """The EXIF orientation (1..8) of a normalized EXIF block; 1 when absent or broken."""
    field = _orientation_field(exif)
    if field is None:
        return 1
    (value,) = struct.unpack_from(_byte_order(exif) + "H", exif, field)
    return value if 1 <= value <= 8 else 1


def reset_orientation(exif: Optional[bytes]) -> Optional[bytes]:
    """The EXIF block with its orientation set to 1 (upright); every other byte kept."""
    field = _orientation_field(exif)
    if field is None:
        return exif
    patched = bytearray(exif)
    struct.pack_into(_byte_order(exif) + "H", patched, field, 1)
    return bytes(patched)


def exif_without_orientation(exif: Optional[bytes]) -> Optional[bytes]:
    """The EXIF block with its orientation entry removed in place (the first IFD gets
    one entry fewer; every offset and every other value stays where it was)."""
    if _orientation_field(exif) is None:
        return exif
    order = _byte_order(exif)
    (ifd,) = struct.unpack_from(order + "I", exif, 4)
    (count,) = struct.unpack_from(order + "H", exif, ifd)
    entries = [exif[ifd + 2 + 12 * i: ifd + 14 + 12 * i] for i in range(count)]
    kept = [e for e in entries if struct.unpack_from(order + "H", e)[0] != _ORIENTATION]
    tail = exif[ifd + 2 + 12 * count: ifd + 6 + 12 * count]  # the next-IFD offset
    body = struct.pack(order + "H", len(kept)) + b"".join(kept) + tail + b"\x00" * 12
    return exif[:ifd] + body + exif[ifd + len(body):]


# An IFD entry: (tag, type, count, value bytes in the file's byte order), or for a
# sub-IFD pointer (tag, type, 1, list of the sub-IFD's entries).
_Entry = tuple


def _read_ifd(data: bytes, offset: int, order: str, depth: int = 0) -> tuple[list, int]:
    """The entries of the classic-TIFF IFD at ``offset`` and the next IFD's offset."""
    (count,) = struct.unpack_from(order + "H", data, offset)
    entries = []
    for index in range(count):
        tag, kind, number, field = struct.unpack_from(order + "HHI4s", data, offset + 2 + 12 * index)
        size = _TYPE_SIZES.get(kind, 0) * number
        if size == 0:
            continue
        if size <= 4:
            value = field[:size]
        else:
            (start,) = struct.unpack(order + "I", field)
            value = data[start:start + size]
            if len(value) != size:
                continue  # a value past the end of the data: dropped
        if tag in _POINTER_TAGS and kind in (4, 13) and number == 1 and depth < 3:
            (sub,) = struct.unpack(order + "I", value)
            try:
                entries.append((tag, 4, 1, _read_ifd(data, sub, order, depth + 1)[0]))
            except struct.error:
                pass
            continue
        entries.append((tag, kind, number, value))
    (next_ifd,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    return entries, next_ifd


def _write_ifd(entries: Iterable[_Entry], offset: int, order: str, next_ifd: int = 0) -> bytes:
    """An IFD (entries sorted by tag) placed at ``offset``, followed by its values
    longer than 4 bytes and its sub-IFDs, each at an even offset."""
    entries = sorted(entries, key=lambda e: e[0])
    end = offset + 2 + 12 * len(entries) + 4
    table, extra = [], bytearray()
    for tag, kind, number, value in entries:
        if isinstance(value, list):  # a sub-IFD
            where = end + len(extra)
            extra += _write_ifd(value, where, order)
            field = struct.pack(order + "I", where)
        elif len(value) <= 4:
            field = value.ljust(4, b"\x00")
        else:
            field = struct.pack(order + "I", end + len(extra))
            extra += value
        if len(extra) % 2:
            extra += b"\x00"
        table.append(struct.pack(order + "HHI", tag, kind, number) + field)
    head = struct.pack(order + "H", len(entries)) + b"".join(table)
    return head + struct.pack(order + "I", next_ifd) + bytes(extra)


def _exif_entries(exif: bytes) -> list:
    """The camera and resolution entries (with sub-IFDs) of an EXIF block's first IFD."""
    order = _byte_order(exif)
    (ifd,) = struct.unpack_from(order + "I", exif, 4)
    entries, _ = _read_ifd(exif, ifd, order)
    return [e for e in entries if e[0] in _CAMERA_TAGS or e[0] in _RESOLUTION_TAGS]


# --------------------------------------------------------------------------- #
# Pillow (JPEG, WebP, HEIC, AVIF, GIF, BMP)
# --------------------------------------------------------------------------- #
def from_pillow_info(info: dict, applist: Optional[list] = None) -> ImageMetadata:
    """Metadata from an opened Pillow image's ``info`` (and a JPEG's ``applist``, where
    Pillow versions before 11 leave the XMP packet)."""
    xmp = _blob(info.get("xmp"))
    for marker, payload in applist or ():
        if xmp is None and marker == "APP1" and payload.startswith(_XMP_JPEG_HEADER):
            xmp = _blob(payload[len(_XMP_JPEG_HEADER):])
    return ImageMetadata(icc_profile=_blob(info.get("icc_profile")),
                         exif=normalize_exif(info.get("exif")), xmp=xmp)


def insert_jpeg_xmp(jpeg: bytes, xmp: Optional[bytes], name: str = "<bytes>") -> bytes:
    """A JPEG with an XMP APP1 segment after its APP0/APP1 segments (JFIF, EXIF)."""
    if not xmp:
        return jpeg
    payload = _XMP_JPEG_HEADER + xmp
    if len(payload) + 2 > 0xFFFF:
        logging.warning("%s: XMP packet of %d bytes is too long for one JPEG segment; "
                        "not written.", name, len(xmp))
        return jpeg
    position = 2
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF and jpeg[position + 1] in (0xE0, 0xE1):
        position += 2 + int.from_bytes(jpeg[position + 2:position + 4], "big")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:position] + segment + jpeg[position:]


# --------------------------------------------------------------------------- #
# PNG
# --------------------------------------------------------------------------- #
def _png_chunks(data: bytes):
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        yield kind, data[position + 8:position + 8 + length]
        if kind == b"IEND":
            return
        position += 12 + length


def png_metadata(data: bytes, name: str = "<bytes>") -> ImageMetadata:
    """ICC (iCCP), EXIF (eXIf) and XMP (iTXt ``XML:com.adobe.xmp``) chunks of a PNG."""
    icc = exif = xmp = None
    try:
        for kind, body in _png_chunks(data):
            if kind == b"iCCP" and icc is None:
                icc = _blob(zlib.decompress(body[body.index(b"\x00") + 2:]))
            elif kind == b"eXIf" and exif is None:
                exif = normalize_exif(body)
            elif kind == b"iTXt" and xmp is None and body.startswith(_XMP_PNG_KEYWORD + b"\x00"):
                rest = body[len(_XMP_PNG_KEYWORD) + 1:]
                compressed, text = rest[0], rest[2:]
                text = text[text.index(b"\x00") + 1:]  # language tag
                text = text[text.index(b"\x00") + 1:]  # translated keyword
                xmp = _blob(zlib.decompress(text) if compressed else text)
    except (ValueError, IndexError, zlib.error) as error:
        logging.warning("%s: PNG metadata chunk unreadable (%s); ignored.", name, error)
    return ImageMetadata(icc_profile=icc, exif=exif, xmp=xmp)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def add_png_metadata(png: bytes, metadata: Optional[ImageMetadata]) -> bytes:
    """A PNG with iCCP, eXIf and iTXt (XMP) chunks inserted after its IHDR."""
    if not metadata:
        return png
    chunks = b""
    if metadata.icc_profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc_profile))
    if metadata.exif:
        chunks += _png_chunk(b"eXIf", metadata.exif)
    if metadata.xmp:
        chunks += _png_chunk(b"iTXt", _XMP_PNG_KEYWORD + b"\x00\x00\x00\x00\x00" + metadata.xmp)
    after_ihdr = 8 + 12 + int.from_bytes(png[8:12], "big")
    return png[:after_ihdr] + chunks + png[after_ihdr:]


# --------------------------------------------------------------------------- #
# TIFF
# --------------------------------------------------------------------------- #
def _is_tifffile_default(entry: _Entry) -> bool:
    """tifffile's own description (the array shape as JSON) and software name."""
    tag, _, _, value = entry
    return ((tag == 0x010E and value.startswith(b'{"shape"'))
            or (tag == 0x0131 and value.rstrip(b"\x00") == b"tifffile.py"))


def tiff_metadata(data: bytes, name: str = "<bytes>") -> ImageMetadata:
    """ICC profile, XMP and an EXIF block from a classic TIFF's first page.

    The EXIF block is a little TIFF structure in the file's byte order holding the
    page's camera tags (with resolution) and its EXIF and GPS sub-IFDs; None when
    the page has no camera tags. BigTIFF files give no metadata.
    """
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return ImageMetadata()
    order = _byte_order(data)
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        entries, _ = _read_ifd(data, ifd, order)
    except (struct.error, ValueError, IndexError) as error:
        logging.warning("%s: TIFF tags unreadable (%s); metadata dropped.", name, error)
        return ImageMetadata()
    found = {entry[0]: entry for entry in entries}
    camera = [e for e in entries if e[0] in _CAMERA_TAGS and not _is_tifffile_default(e)]
    exif = None
    if camera:
        camera += [e for e in entries if e[0] in _RESOLUTION_TAGS]
        exif = data[:4] + struct.pack(order + "I", 8) + _write_ifd(camera, 8, order)
    icc, xmp = found.get(_TIFF_ICC), found.get(_TIFF_XMP)
    return ImageMetadata(icc_profile=_blob(icc[3]) if icc else None, exif=exif,
                         xmp=_blob(xmp[3]) if xmp else None)


def tiff_byte_order(metadata: Optional[ImageMetadata]) -> str:
    """The byte order to write a TIFF in: the EXIF block's, so its values copy as they are."""
    return _byte_order(metadata.exif) if metadata and metadata.exif else "<"


def add_tiff_metadata(tiff: bytes, metadata: Optional[ImageMetadata],
                      name: str = "<bytes>") -> bytes:
    """A classic TIFF with the metadata's ICC profile, XMP and EXIF camera tags added
    to its first page; written in the EXIF block's byte order (see
    :func:`tiff_byte_order`), or the EXIF part is skipped with a warning.

    The page's IFD is rewritten at the end of the file (the pixel data stays in
    place); the EXIF block's camera and resolution tags replace the page's.
    """
    if not metadata:
        return tiff
    extra = sum(len(blob or b"") for blob in (metadata.icc_profile, metadata.exif, metadata.xmp))
    if tiff[:4] not in (b"II*\x00", b"MM\x00*") or len(tiff) + extra + 65536 >= 2**32:
        logging.warning("%s: TIFF of 4 GB or more: colour profile, EXIF and XMP not written.",
                        name)
        return tiff
    order = _byte_order(tiff)
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    entries, next_ifd = _read_ifd(tiff, ifd, order)
    tags = {entry[0]: entry for entry in entries}
    if metadata.exif:
        if _byte_order(metadata.exif) != order:
            logging.warning("%s: EXIF block in the other byte order than the TIFF; EXIF not "
                            "written.", name)
        else:
            try:
                tags.update((entry[0], entry) for entry in _exif_entries(metadata.exif))
            except (struct.error, ValueError, IndexError) as error:
                logging.warning("%s: EXIF block unreadable (%s); EXIF not written.", name, error)
    if metadata.icc_profile:
        tags[_TIFF_ICC] = (_TIFF_ICC, 7, len(metadata.icc_profile), metadata.icc_profile)
    if metadata.xmp:
        tags[_TIFF_XMP] = (_TIFF_XMP, 1, len(metadata.xmp), metadata.xmp)
    start = len(tiff) + len(tiff) % 2
    page = _write_ifd(tags.values(), start, order, next_ifd)
    return tiff[:4] + struct.pack(order + "I", start) + tiff[8:] + b"\x00" * (len(tiff) % 2) + page
