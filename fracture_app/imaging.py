"""Read an X-ray from a path or uploaded bytes into one grayscale float array, or say plainly why not.

Every failure leaves as ImageReadError with a message a clinician can act on; nothing else escapes.
The format is decided by content, never by file name: uploads are often renamed or mislabelled.
"""

from __future__ import annotations

import io
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom.dataset
import pydicom.uid
from PIL import Image, ImageOps
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from .config import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from .preprocess import at_most
from .errors import ImageReadError

# Pillow then refuses bombs itself at open time (it errors above twice this, warns above it);
# our own header check below refuses everything above the limit before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Wider than any real radiograph in the data sets (at most 7:1); beyond this it is a strip or a banner.
MAX_ASPECT_RATIO = 10
# Channel spread (on [0, 1]) above which a pixel counts as coloured; JPEG noise on grey stays below it.
COLOUR_SPREAD = 0.08
# The colour share is estimated on a grid of at least this many pixels (fewer only in smaller images), so
# its standard error stays under 0.3 percentage points while costing less than decoding the JPEG.
COLOUR_SAMPLE_PIXELS = 40_000
ROUGHNESS_SIDE = 256  # roughness is judged at this size, where a radiograph's own film grain has averaged out
# A truncated JPEG decodes with the missing part mid-grey; the reader cuts that fill off, because it is no part
# of the X-ray, and in FracAtlas all 56 such files are not fractured: kept, the grey band would teach a model a
# shortcut. FracAtlas has files missing up to half of the picture that training still reads; below 40% present
# (a file cut to a quarter) it is refused.
MAX_MISSING_FRACTION = 0.6
JPEG_FILL, JPEG_BLOCK, JPEG_BAND = 128, 8, 16  # libjpeg's fill value; a block's width; a block row's most rows

# Below this spread between the 1st and 99th percentile of brightness (on [0, 1]) a picture has almost no
# contrast. The least of the 4771 images in both data sets spreads 0.27 (benchmarks/reader_limits.py). With
# no more than BLANK_LEVELS shades in that band it is blank: nothing for a model to read, yet a model would
# still answer, so it is refused; with more (a 16-bit file whose content fills a narrow band) it is read, and
# the app says its brightness needs a display window.
BLANK_SPREAD = 0.05
BLANK_LEVELS = 32
# Below this spread (and above BLANK_SPREAD) a picture is read but is much duller, darker or paler than any X-ray in
# the two data sets, and the models can miss a fracture on it: the app says so.
LOW_CONTRAST_SPREAD = 0.25
LEAST_XRAY_SPREAD = 0.27  # the least contrast_spread of the 4771 images in both data sets

_MEGA = 1_000_000
_DICOM_INSTALL = {
    "JPEG 2000": "pylibjpeg and pylibjpeg-openjpeg (or GDCM)",
    "JPEG-LS": "pylibjpeg and pylibjpeg-libjpeg (or pyjpegls, or GDCM)",
    "JPEG": "pylibjpeg and pylibjpeg-libjpeg (or GDCM)",
    "RLE": "pylibjpeg and pylibjpeg-rle (or GDCM)",
}
_MAGIC = (  # (offset, bytes, format)
    (128, b"DICM", "DICOM"),  # first: a DICOM preamble may itself look like a TIFF
    (0, b"\xff\xd8\xff", "JPEG"), (0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"GIF87a", "GIF"), (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"II+\x00", "TIFF"), (0, b"MM\x00+", "TIFF"),
    (0, b"BM", "BMP"), (8, b"WEBP", "WEBP"), (4, b"jP  \r\n", "JPEG2000"), (0, b"\xff\x4f\xff\x51", "JPEG2000"),
)
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
    colour_fraction: float  # share of pixels with visible colour (RGB spread > COLOUR_SPREAD); 0.0 for grey
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
    sample, darkest, brightest = _brightness_band(xray.pixels)
    if brightest - darkest >= LOW_CONTRAST_SPREAD:
        return
    if brightest - darkest >= BLANK_SPREAD:
        xray.metadata["low_contrast"] = round(float(brightest - darkest), 4)
        return
    shades = np.unique(sample[(sample >= darkest) & (sample <= brightest)]).size
    if shades <= BLANK_LEVELS:
        raise ImageReadError("the picture is blank (almost every pixel has the same shade): nothing to read")
    xray.metadata["narrow_band"] = round(float(brightest - darkest), 4)


def contrast_spread(pixels: np.ndarray) -> float:
    """The spread between the 1st and 99th percentile of brightness, on [0, 1]: what the contrast checks read."""
    _, darkest, brightest = _brightness_band(pixels)
    return float(brightest - darkest)


def _brightness_band(pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
    step = _grid_step(pixels)
    sample = pixels[::step, ::step]
    darkest, brightest = np.percentile(sample, [1, 99])
    return sample, float(darkest), float(brightest)


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
            data = path.read_bytes()
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
        raise ImageReadError(f"file too large: {n / 2**20:.0f} MB (limit {MAX_FILE_BYTES / 2**20:.0f} MB)")


def _decode(data: bytes, label: str) -> XRay:
    kind = _sniff(data)
    if kind == "DICOM":
        return _read_dicom(data, label, forced=False)
    if kind is not None:
        return _read_pillow(data, label, kind)
    for looks_like, message in _NOT_AN_IMAGE:
        if looks_like(data):
            raise ImageReadError(message)
    if _is_text(data):
        raise ImageReadError("not an image (text file)")
    # DICOM without the 128-byte preamble starts straight with a group 0002 or 0008 element.
    if data[:2] in (b"\x02\x00", b"\x08\x00"):
        return _read_dicom(data, label, forced=True)
    raise ImageReadError("unrecognised or corrupt image file")


def _sniff(b: bytes) -> str | None:
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


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            f"image too large: {width}×{height} pixels (limit {MAX_IMAGE_PIXELS // _MEGA} megapixels)")
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
    if truncated:
        # What LOAD_TRUNCATED_IMAGES does for JPEG, but for this file only: that flag is a process-wide
        # global, and FracAtlas has ~79 files without the end marker that decode fine with it.
        data += b"\xff\xd9"
    size = _header_size(data, kind)
    if size:  # cheap and exact where the header is simple; Pillow's own check below covers the rest
        _check_size(*size)
    try:
        im = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        mp = f"{int(pixels.group(1)) / _MEGA:.0f} megapixels" if pixels else "too many pixels"
        raise ImageReadError(f"image too large: {mp} (limit {MAX_IMAGE_PIXELS // _MEGA} megapixels)") from exc
    except Exception as exc:
        raise ImageReadError(f"unrecognised or corrupt image file (the {kind} header is damaged)") from exc
    _check_size(*im.size)
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
    # An MPO's later pictures are previews of the first; a TIFF's or GIF's may be other views.
    if im.format != "MPO" and getattr(im, "n_frames", 1) > 1:
        metadata["frames"] = im.n_frames
    if im.mode.startswith("I") and (values := np.asarray(im)).min() >= 0 and (bits := _used_bits(values)) != 16:
        metadata["brightness_bits"] = bits  # the values leave the container part-empty: how bright is a guess
    fmt = "JPEG" if im.format == "MPO" else (im.format or kind)  # before exif_transpose drops .format
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:
        pass  # an unreadable orientation tag should not cost the reading; show the image as stored
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
        return _finish(_scale_to_unit(arr)), 0.0
    # Channel by channel in float32: a 60-megapixel RGB upload must not cost gigabytes.
    colour = arr[..., :1] if im.mode == "LA" else arr[..., :3]
    grey = (_luma(colour) if colour.shape[-1] == 3 else colour[..., 0].astype(np.float32)) / np.float32(255)
    step = _grid_step(arr)
    sample = colour[::step, ::step].astype(np.float32) / 255
    if im.mode in ("RGBA", "LA"):  # composite over black, the background of a radiograph
        grey *= arr[..., -1] / np.float32(255)
        sample *= arr[::step, ::step, -1:] / np.float32(255)
    return _finish(grey), (_untinted_colour_share(sample) if colour.shape[-1] == 3 else 0.0)


def _used_bits(arr: np.ndarray) -> int:
    """The bits an unsigned image's values reach (at least 8): 12 for a 12-bit scan in a 16-bit container."""
    return max(8, int(arr.max()).bit_length()) if arr.size else 8


def _scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Unsigned integers by the bits their values reach (8 by 255, 12 in 16 by 4095); floats and signed by range.

    A 16-bit container often holds fewer real bits, and dividing by 65535 would leave such a scan near black.
    The guess can be wrong (a dark 16-bit picture), so the reader records it and the app says so.
    """
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0:
        return arr.astype(np.float32) / np.float32(2 ** _used_bits(arr) - 1)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size and arr.min() >= 0 and arr.max() <= 1:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / np.float32(hi - lo) if hi > lo else np.zeros(arr.shape, np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:  # ITU-R BT.601, as Pillow's "L"
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def _grid_step(arr: np.ndarray) -> int:
    """Every n-th pixel in each direction, so colour statistics look at about COLOUR_SAMPLE_PIXELS pixels."""
    return max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / COLOUR_SAMPLE_PIXELS)))


def roughness(pixels: np.ndarray) -> float:
    """How far neighbouring pixels differ, for the picture's own spread, on a copy at most 256 px long.

    About 0.05 for a radiograph (no image in either data set above 0.25; benchmarks/reader_limits.py), about
    1.1 for pixel-level random noise, where each pixel is as unlike its neighbour as any other pixel. Noise in
    coarser grains scores lower and may pass."""
    small = at_most(pixels, ROUGHNESS_SIDE).astype(np.float32)
    steps = np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()
    return float(steps / 2 / max(float(small.std()), 1e-6))


def colour_fraction(rgb: np.ndarray) -> float:
    """Share of pixels whose colour differs from a plain tint of their brightness by more than COLOUR_SPREAD.

    A radiograph is grey, or one tint of grey when photographed off a monitor; journal figures add small
    coloured arrows (a few % of pixels); a photograph is coloured almost everywhere. So each channel is
    first fitted as a linear function of brightness (removing any tint) and only what is left counts.
    """
    step = _grid_step(rgb)
    return _untinted_colour_share(rgb[::step, ::step, :3])


def _untinted_colour_share(rgb: np.ndarray) -> float:
    sample = rgb.reshape(-1, 3).astype(np.float32)
    if len(sample) == 0:
        return 0.0
    # Least squares of each channel on brightness, in closed form (one regressor plus an intercept).
    brightness = _luma(sample)
    centred = brightness - brightness.mean()
    variance = float(centred @ centred)
    slopes = (centred @ (sample - sample.mean(axis=0))) / variance if variance > 0 else np.zeros(3, np.float32)
    residual = sample - sample.mean(axis=0) - centred[:, None] * slopes
    return float(np.mean(np.ptp(residual, axis=1) > COLOUR_SPREAD))


def _finish(grey: np.ndarray) -> np.ndarray:
    grey = np.nan_to_num(np.asarray(grey, dtype=np.float32), nan=0.0)
    return np.ascontiguousarray(np.clip(grey, 0.0, 1.0))


# --- DICOM ---------------------------------------------------------------------------------------

_DICOM_KEYS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation", "ImageLaterality",
               "Laterality", "StudyDescription", "SeriesDescription", "Manufacturer", "PixelSpacing",
               "ImagerPixelSpacing", "BitsStored", "NumberOfFrames", "WindowCenter", "WindowWidth")
# Deliberately no Patient* or date fields: the metadata is shown and logged, identifiers must not be.


def _read_dicom(data: bytes, label: str, forced: bool) -> XRay:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=forced)
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    except Exception as exc:
        raise ImageReadError("unreadable DICOM file (corrupt or incomplete)") from exc
    if forced and not has_pixels and "SOPClassUID" not in ds and "Modality" not in ds:
        raise ImageReadError("unrecognised or corrupt image file")
    if not has_pixels:
        raise ImageReadError("DICOM without pixel data (a report or index file, not an image)")
    try:
        width, height = int(ds.Columns), int(ds.Rows)
    except Exception as exc:
        raise ImageReadError("unreadable DICOM file (image size missing)") from exc
    _check_size(width, height)

    file_meta = ds.file_meta if hasattr(ds, "file_meta") else pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" not in file_meta:  # files without a preamble usually lack the meta header
        file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if ds.original_encoding[0] is not False
                                       else pydicom.uid.ExplicitVRLittleEndian)
        ds.file_meta = file_meta
    syntax = file_meta.TransferSyntaxUID
    try:
        arr = pixel_array(ds, index=0)  # first frame only: no need to decode a whole cine loop
    except Exception as exc:
        if syntax.is_compressed:
            raise ImageReadError(_dicom_codec_message(syntax)) from exc
        raise ImageReadError("unreadable DICOM file (the pixel data is corrupt or incomplete)") from exc

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3:  # colour (pydicom has already turned YBR into RGB)
        rgb = _scale_to_unit(arr)
        pixels, colour = _finish(_luma(rgb)), colour_fraction(rgb)
    else:
        pixels, colour = _finish(_dicom_grey(arr, ds, photometric)), 0.0

    metadata = _dicom_metadata(ds)
    metadata["TransferSyntax"] = syntax.name
    try:
        if int(ds.get("NumberOfFrames") or 1) > 1:
            metadata["frames"] = int(ds.NumberOfFrames)
    except (TypeError, ValueError):
        pass  # a malformed count: the first frame was read all the same
    metadata["original_size"] = pixels.shape
    return XRay(pixels, label, "DICOM", colour, metadata)


def _dicom_metadata(ds) -> dict:
    metadata = {}
    for key in _DICOM_KEYS:
        try:
            value = ds.get(key)
            if value is not None and str(value).strip():
                metadata[key] = str(value).strip()
        except Exception:
            continue  # one malformed descriptive field must not cost the picture
    return metadata


def _dicom_grey(arr: np.ndarray, ds, photometric: str) -> np.ndarray:
    values = apply_modality_lut(arr, ds).astype(np.float64)
    windowed, lo, hi = values, float(values.min()), float(values.max())
    try:
        out_range = _voi_output_range(ds)
        if out_range is not None:
            # A VOI LUT is indexed by integers; a window works on the rescaled values directly.
            voi_input = np.rint(values).astype(np.int64) if _has_voi_lut(ds) else values
            windowed = np.asarray(apply_voi_lut(voi_input, ds), dtype=np.float64)
            lo, hi = out_range
            if windowed.min() == windowed.max() and values.min() != values.max():
                # A window that misses the data entirely would show a blank field; show the data instead.
                windowed, lo, hi = values, float(values.min()), float(values.max())
    except Exception:
        windowed, lo, hi = values, float(values.min()), float(values.max())  # a malformed window: ignore it
    grey = (windowed - lo) / (hi - lo) if hi > lo else np.zeros_like(windowed)
    grey = np.clip(grey, 0.0, 1.0)
    # MONOCHROME1 means "high values are dark"; inverting after the window keeps the window's meaning.
    return 1.0 - grey if photometric == "MONOCHROME1" else grey


def _has_voi_lut(ds) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _voi_output_range(ds) -> tuple[float, float] | None:
    """The range pydicom's VOI LUT or window maps into (its own rules), so we can scale it to [0, 1]."""
    if _has_voi_lut(ds):
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return (lo, hi) if hi > lo else (hi, lo)


def _dicom_codec_message(syntax) -> str:
    what = next((v for k, v in _DICOM_INSTALL.items() if k in syntax.name), "pylibjpeg with its plugins (or GDCM)")
    return f"install {what} to read this compressed DICOM ({syntax.name}), or export it uncompressed"
