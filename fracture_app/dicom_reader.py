"""Read a DICOM file's first frame as an XRay: modality and VOI windows applied, MONOCHROME1 inverted, colour
(ultrasound, photographs) kept for the colour check, and the descriptive header fields shown beside a reading.

`imaging.read_image` sends a file here when its content says DICOM; nothing else calls it.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pydicom.dataset
import pydicom.uid
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from .errors import ImageReadError
from .imaging import XRay, check_dimensions
from .pixels import clean_unit_range, colour_fraction, luma, scale_to_unit

_DICOM_INSTALL = {
    "JPEG 2000": "pylibjpeg and pylibjpeg-openjpeg (or GDCM)",
    "JPEG-LS": "pylibjpeg and pylibjpeg-libjpeg (or pyjpegls, or GDCM)",
    "JPEG": "pylibjpeg and pylibjpeg-libjpeg (or GDCM)",
    "RLE": "pylibjpeg and pylibjpeg-rle (or GDCM)",
}
_DICOM_KEYS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation", "ImageLaterality",
               "Laterality", "StudyDescription", "SeriesDescription", "Manufacturer", "PixelSpacing",
               "ImagerPixelSpacing", "BitsStored", "NumberOfFrames", "WindowCenter", "WindowWidth")
# Deliberately no Patient* or date fields: the metadata is shown and logged, identifiers must not be.


def read_dicom(data: bytes, label: str, forced: bool) -> XRay:
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
    check_dimensions(width, height)

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
    window_used = True  # colour has no display window to miss
    if arr.ndim == 3:  # colour (pydicom has already turned YBR into RGB)
        rgb = scale_to_unit(arr)
        pixels, colour = clean_unit_range(luma(rgb)), colour_fraction(rgb)
    else:
        grey, window_used = _dicom_grey(arr, ds, photometric)
        pixels, colour = clean_unit_range(grey), 0.0

    metadata = _dicom_metadata(ds)
    if not window_used:
        metadata["no_display_window"] = True  # the contrast is a guess: the app says so
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


def _dicom_grey(arr: np.ndarray, ds, photometric: str) -> tuple[np.ndarray, bool]:
    """The picture in [0, 1], and whether the file's own display window (or VOI LUT) set its contrast; where it
    has none that can be used, its values are spread from the darkest to the brightest."""
    values = apply_modality_lut(arr, ds).astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():  # float pixel data with NaN or infinite rows: shown as the darkest real value
        values = np.where(finite, values, values[finite].min() if finite.any() else 0.0)
    windowed, lo, hi = values, float(values.min()), float(values.max())
    window_used = False
    try:
        out_range = _voi_output_range(ds)
        if out_range is not None:
            # A VOI LUT is indexed by integers; a window works on the rescaled values directly.
            table = _voi_lut_table(ds)
            if table is not None:
                windowed = _looked_up(values, table, first=int(ds.VOILUTSequence[0].LUTDescriptor[1]))
            else:
                voi_input = np.rint(values).astype(np.int64) if _has_voi_lut(ds) else values
                windowed = np.asarray(apply_voi_lut(voi_input, ds), dtype=np.float64)
            lo, hi = out_range
            window_used = True
            if windowed.min() == windowed.max() and values.min() != values.max():
                # A window that misses the data entirely would show a blank field; show the data instead.
                windowed, lo, hi = values, float(values.min()), float(values.max())
                window_used = False
    except Exception:
        windowed, lo, hi = values, float(values.min()), float(values.max())  # a malformed window: ignore it
        window_used = False
    grey = (windowed - lo) / (hi - lo) if hi > lo else np.zeros_like(windowed)
    grey = np.clip(grey, 0.0, 1.0)
    # MONOCHROME1 means "high values are dark"; inverting after the window keeps the window's meaning.
    return (1.0 - grey if photometric == "MONOCHROME1" else grey), window_used


def _has_voi_lut(ds) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _voi_lut_table(ds) -> np.ndarray | None:
    """The VOI LUT's entries, or None where the table is malformed (pydicom then has its go).

    Looked up here, not by pydicom: pydicom 3.0 wraps the indices of a table whose entries are 8-bit at 256, which
    turns a 12-bit radiograph with such a table into a saw-tooth the reader took for noise."""
    if not _has_voi_lut(ds):
        return None
    item = ds.VOILUTSequence[0]
    entries = int(item.LUTDescriptor[0]) or 2**16  # 0 means 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):  # OW, as implicit-VR files always hold it: 16-bit words
        order = "<" if ds.file_meta.TransferSyntaxUID.is_little_endian else ">"
        if len(data) >= 2 * entries:
            return np.frombuffer(data, dtype=f"{order}u2", count=entries).astype(np.float64)
        return np.frombuffer(data, dtype=np.uint8, count=entries).astype(np.float64) if len(data) >= entries else None
    values = np.atleast_1d(np.asarray(data, dtype=np.float64))
    return values if values.ndim == 1 and len(values) >= entries else None


def _looked_up(values: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    """Each value's table entry: values below the first mapped value take the first entry, above the last the last."""
    return table[np.clip(np.rint(values).astype(np.int64) - first, 0, len(table) - 1)]


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
