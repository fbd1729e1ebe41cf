"""Read an X-ray from a path or uploaded bytes into one grayscale float array, or say plainly why not.

Every failure leaves as ImageReadError with a message a clinician can act on; nothing else escapes.
The format is decided by content, never by file name: uploads are often renamed or mislabelled.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .config import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from .errors import ImageReadError
from .pixels import (BLANK_LEVELS, BLANK_SPREAD, LOW_CONTRAST_SPREAD, brightness_band, clean_unit_range, grid_step,
                     luma, scale_to_unit, untinted_colour_share, used_bits)

# Pillow then refuses bombs itself at open time (it errors above twice this, warns above it);
# our own header check below refuses everything above the limit before any pixel is decoded. Its warning is
# silenced because such a file is refused right after opening, with a message of our own: a raw Python
# warning on the command line's stderr would only alarm. (Set once here: warning filters are process-wide.)
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Wider than any real radiograph in the data sets (at most 7:1); beyond this it is a strip or a banner.
MAX_ASPECT_RATIO = 10
# A truncated JPEG decodes with the missing part mid-grey; the reader cuts that fill off, because it is no part
# of the X-ray, and in FracAtlas all 56 such files are not fractured: kept, the grey band would teach a model a
# shortcut. FracAtlas has files missing up to half of the picture that training still reads; below 40% present
# (a file cut to a quarter) it is refused.
MAX_MISSING_FRACTION = 0.6
# Transparent parts are composited over black; from this share of the picture a reading says so.
TRANSPARENT_SHARE_TO_SAY = 0.01
JPEG_FILL, JPEG_BLOCK, JPEG_BAND = 128, 8, 16  # libjpeg's fill value; a block's width; a block row's most rows

_MEGA = 1_000_000
_MAGIC = (  # (offset, bytes, format)
    (128, b"DICM", "DICOM"),  # first: a DICOM preamble may itself look like a TIFF
    (0, b"\xff\xd8\xff", "JPEG"), (0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"GIF87a", "GIF"), (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"II+\x00", "TIFF"), (0, b"MM\x00+", "TIFF"),
    (0, b"BM", "BMP"), (8, b"WEBP", "WEBP"), (4, b"jP  \r\n", "JPEG2000"), (0, b"\xff\x4f\xff\x51", "JPEG2000"),
)
SNIFF_BYTES = max(offset + len(magic) for offset, magic, _ in _MAGIC)
_NOT_AN_IMAGE = (  # (test on the first bytes, message)
    (lambda b: b.startswith(b"%PDF"), "not an image (looks like a PDF document)"),
    (lambda b: b.startswith(b"PK\x03\x04"), "not an image (looks like a ZIP archive or Office document)"),
    (lambda b: b[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"),
     "HEIC/HEIF photos are not supported; export it as JPEG or PNG"),
    (lambda b: b"<svg" in b[:2048].lower(), "not an image (looks like an SVG drawing; export it as PNG)"),
    (lambda b: re.match(rb"\s*<(!doctype html|html)", b[:512].lower()) is not None,
     "not an image (looks like a web page)"),
)


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays field by field is ambiguous
class XRay:
    pixels: np.ndarray  # 2-D float32 in [0, 1], grayscale, orientation applied
    source: str  # file name or "upload"
    format: str  # "JPEG", "PNG", "BMP", "TIFF", "GIF", "WEBP", "DICOM", ...
    colour_fraction: float  # share of pixels with visible colour once any tint is removed (pixels.colour_fraction)
    metadata: dict = field(default_factory=dict)  # always "original_size": (height, width)


def read_image(source: str | os.PathLike | bytes, name: str | None = None) -> XRay:
    """Read a path or in-memory bytes (never written to disk) as an XRay, or raise ImageReadError."""
    try:
        data, label = _load_bytes(source, name)
        xray = _decode(data, label)
        _check_contrast(xray)
        return xray
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError("not enough memory to read this image") from exc
    except Exception as exc:  # anything from Pillow, pydicom or numpy on a malformed file
        raise ImageReadError("unrecognised or corrupt image file") from exc


def _check_contrast(xray: XRay) -> None:
    """Refuse a blank picture; note a faint one (metadata["narrow_band"]) or a dull one (metadata["low_contrast"])
    for the app to warn about."""
    sample, darkest, brightest = brightness_band(xray.pixels)
    if brightest - darkest >= LOW_CONTRAST_SPREAD:
        return
    if brightest - darkest >= BLANK_SPREAD:
        xray.metadata["low_contrast"] = round(float(brightest - darkest), 4)
        return
    shades = np.unique(sample[(sample >= darkest) & (sample <= brightest)]).size
    if shades <= BLANK_LEVELS:
        if xray.metadata.get("mostly_transparent"):
            raise ImageReadError("the picture is blank once its transparency is applied (transparent parts count as "
                                 "black, as in a radiograph): export it without transparency")
        raise ImageReadError("the picture is blank (almost every pixel has the same shade): nothing to read")
    xray.metadata["narrow_band"] = round(float(brightest - darkest), 4)


def _load_bytes(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), name or "upload"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or path.name
        try:
            if path.is_dir():
                raise ImageReadError(f"{label} is a folder, not an image file")
            _check_file_size(path.stat().st_size)  # before reading it into memory
            with path.open("rb") as file:
                # A pipe or a device (/dev/zero) reports no size: stop one byte past the limit.
                data = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise ImageReadError(f"file not found: {label}") from exc
        except OSError as exc:
            raise ImageReadError(f"could not read {label}: {exc.strerror or exc}") from exc
    else:
        raise ImageReadError(f"cannot read an image from a {type(source).__name__}")
    if not data:
        raise ImageReadError("empty file")
    _check_file_size(len(data))
    return data, str(label)


def _check_file_size(n: int) -> None:
    if n > MAX_FILE_BYTES:
        limit = f"{MAX_FILE_BYTES / 2**20:.0f} MB"
        if n == MAX_FILE_BYTES + 1:  # where reading stopped: the true size is unknown
            raise ImageReadError(f"file too large: more than the limit of {limit}")
        raise ImageReadError(f"file too large: {n / 2**20:.0f} MB (limit {limit})")


def _decode(data: bytes, label: str) -> XRay:
    kind = sniff_format(data)
    if kind == "DICOM":
        from .dicom_reader import read_dicom  # here, not above: pydicom loads only for a DICOM

        return read_dicom(data, label, forced=False)
    if kind is not None:
        return _read_pillow(data, label, kind)
    for looks_like, message in _NOT_AN_IMAGE:
        if looks_like(data):
            raise ImageReadError(message)
    if _is_text(data):
        raise ImageReadError("not an image (text file)")
    # DICOM without the 128-byte preamble starts straight with a group 0002 or 0008 element.
    if data[:2] in (b"\x02\x00", b"\x08\x00"):
        from .dicom_reader import read_dicom

        return read_dicom(data, label, forced=True)
    raise ImageReadError("unrecognised or corrupt image file")


def sniff_format(b: bytes) -> str | None:
    """The format its first bytes (SNIFF_BYTES are enough) name, or None."""
    return next((kind for offset, magic, kind in _MAGIC if b[offset:offset + len(magic)] == magic), None)


def _is_text(b: bytes) -> bool:
    sample = b[:4096]
    if b"\x00" in sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # a multi-byte character cut by the sample is still text
            return False
        text = sample[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return bool(text) and printable >= 0.95 * len(text)


def check_dimensions(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            f"image too large: {width}×{height} pixels, {width * height / _MEGA:.0f} megapixels "
            f"(limit {MAX_IMAGE_PIXELS // _MEGA} megapixels)")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageReadError(
            f"too small to read: {width}×{height} pixels (at least {MIN_IMAGE_SIDE} on each side)")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageReadError(f"unusual shape for an X-ray: {width}×{height} pixels (a strip, not a picture)")


def _header_size(b: bytes, kind: str) -> tuple[int, int] | None:
    """Width and height straight from the header, so a bomb is refused before Pillow parses it."""
    size = None
    if kind == "PNG" and b[12:16] == b"IHDR" and len(b) >= 24:
        size = struct.unpack(">II", b[16:24])
    elif kind == "GIF" and len(b) >= 10:
        size = struct.unpack("<HH", b[6:10])
    elif kind == "BMP" and len(b) >= 26 and struct.unpack("<I", b[14:18])[0] >= 40:
        size = tuple(abs(v) for v in struct.unpack("<ii", b[18:26]))
    return size if size and min(size) > 0 else None  # zero means a broken header: let Pillow say so


def _read_pillow(data: bytes, label: str, kind: str) -> XRay:
    truncated = kind == "JPEG" and not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    # Phones append data after the end marker: a file is cut short only if no end marker follows its last scan.
    scans_cut_short = truncated and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")
    if truncated:
        # What LOAD_TRUNCATED_IMAGES does for JPEG, but for this file only: that flag is a process-wide
        # global, and FracAtlas has ~79 files without the end marker that decode fine with it.
        data += b"\xff\xd9"
    size = _header_size(data, kind)
    if size:  # cheap and exact where the header is simple; Pillow's own check below covers the rest
        check_dimensions(*size)
    try:
        im = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        mp = f"{int(pixels.group(1)) / _MEGA:.0f} megapixels" if pixels else "too many pixels"
        raise ImageReadError(f"image too large: {mp} (limit {MAX_IMAGE_PIXELS // _MEGA} megapixels)") from exc
    except Exception as exc:
        raise ImageReadError(f"unrecognised or corrupt image file (the {kind} header is damaged)") from exc
    check_dimensions(*im.size)
    try:
        im.load()
    except Exception as exc:
        raise ImageReadError(f"unrecognised or corrupt image file (the {kind} data could not be decoded)") from exc

    metadata: dict = {}
    # Phones append data after the end marker; only rows the decoder had to fill make a file incomplete.
    missing = _missing_rows(im) if truncated else 0
    if missing > MAX_MISSING_FRACTION * im.height:
        raise ImageReadError(
            f"incomplete image file: only {100 * (1 - missing / im.height):.0f}% of the picture "
            "is in the file (cut off while copying or uploading?)")
    if missing:
        metadata["missing_fraction"] = round(missing / im.height, 3)  # the app warns
        im = im.crop((0, 0, im.width, im.height - missing))
    elif scans_cut_short and (im.info.get("progressive") or im.info.get("progression")):
        # A progressive JPEG sends the whole picture coarse first: cut short, it lacks detail, not rows.
        metadata["missing_detail"] = True
    # An MPO's later pictures are previews of the first; a TIFF's or GIF's may be other views.
    if im.format != "MPO" and getattr(im, "n_frames", 1) > 1:
        metadata["frames"] = im.n_frames
    if im.mode.startswith("I") and (values := np.asarray(im)).min() >= 0 and (bits := used_bits(values)) != 16:
        metadata["brightness_bits"] = bits  # the values leave the container part-empty: how bright is a guess
    fmt = "JPEG" if im.format == "MPO" else (im.format or kind)  # before exif_transpose drops .format
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass  # an unreadable orientation tag should not cost the reading; show the image as stored
    # Only where _to_grey blends the picture with its transparency (a colour key on L or RGB it ignores).
    if "A" in im.getbands() or "a" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
        alpha = np.asarray((im if "A" in im.getbands() else im.convert("RGBA")).getchannel("A"))
        step = grid_step(alpha)
        hidden = float(np.mean(alpha[::step, ::step] < 128))
        if hidden >= TRANSPARENT_SHARE_TO_SAY:  # shown black, as unseen as a missing part (diagnosis cautions)
            metadata["transparent_fraction"] = round(hidden, 4)
        if hidden > 0.5:
            metadata["mostly_transparent"] = True  # only said where the picture turns out blank
    pixels, colour = _to_grey(im)
    metadata["original_size"] = pixels.shape
    return XRay(pixels, label, fmt, colour, metadata)


def _missing_rows(im: Image.Image) -> int:
    """Rows at the bottom that libjpeg filled with mid-grey because the data ran out.

    Below the last decoded block row every row is grey; in that block row (up to JPEG_BAND rows, with
    chroma subsampling) decoding stopped part-way, so its rows are grey only from some block to the right
    edge: those count when their last block's width is exactly mid-grey. (CMYK files fill otherwise and
    are not detected.)
    """
    arr = np.asarray(im)
    rows = arr.reshape(arr.shape[0], -1)
    whole = _trailing(np.all(rows == JPEG_FILL, axis=1))
    right_edge = arr[: arr.shape[0] - whole, -JPEG_BLOCK:].reshape(arr.shape[0] - whole, -1)
    return whole + min(JPEG_BAND, _trailing(np.all(right_edge == JPEG_FILL, axis=1)))


def _trailing(flags: np.ndarray) -> int:
    """How many of the last entries are all True."""
    return len(flags) if flags.all() else int(np.argmin(flags[::-1]))


def _to_grey(im: Image.Image) -> tuple[np.ndarray, float]:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("PA", "RGBa", "La"):
        im = im.convert("LA" if im.mode == "La" else "RGBA")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    arr = np.asarray(im)
    if im.mode not in ("RGB", "RGBA", "LA"):
        if arr.ndim != 2:
            raise ImageReadError(f"unsupported kind of image ({im.mode})")
        return clean_unit_range(scale_to_unit(arr)), 0.0
    # Channel by channel in float32: a 60-megapixel RGB upload must not cost gigabytes.
    colour = arr[..., :1] if im.mode == "LA" else arr[..., :3]
    grey = (luma(colour) if colour.shape[-1] == 3 else colour[..., 0].astype(np.float32)) / np.float32(255)
    step = grid_step(arr)
    sample = colour[::step, ::step].astype(np.float32) / 255
    if im.mode in ("RGBA", "LA"):  # composite over black, the background of a radiograph
        grey *= arr[..., -1] / np.float32(255)
        sample *= arr[::step, ::step, -1:] / np.float32(255)
    return clean_unit_range(grey), (untinted_colour_share(sample) if colour.shape[-1] == 3 else 0.0)

