"""Damaged files: whatever the bytes, read_image either returns an XRay or raises ImageReadError, quickly."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fracture_app.errors import ImageReadError
from fracture_app.imaging import XRay, read_image

FIXTURES = Path(__file__).parent / "fixtures"
CASES_PER_FORMAT = 150
SECONDS_PER_CASE = 2.0  # generous for a loaded CI runner; a typical case takes a few milliseconds


def _grey() -> np.ndarray:
    with Image.open(FIXTURES / "fracatlas/images/Fractured/IMG0000044.jpg") as im:
        return np.asarray(im.convert("L").resize((96, 77)))  # small keeps hundreds of cases fast


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_grey()).save(buf, "PNG")
    return buf.getvalue()


def _dicom() -> bytes:
    grey = _grey()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.BodyPartExamined = "DX", "HAND"
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, 0, 2048, 4000
    ds.PixelData = (grey.astype("<u2") * 16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


pytestmark = pytest.mark.filterwarnings("ignore")  # pydicom and Pillow warn loudly about damaged files

SAMPLES = {
    "jpeg": (FIXTURES / "bone_break/Hairline Fracture/Train/1583770_jpg.rf.1c05699722629513ab254bef51e111e3.jpg"
             ).read_bytes(),
    "truncated-jpeg": (FIXTURES / "fracatlas/images/Non_fractured/IMG0004028.jpg").read_bytes(),
    "png": _png(),
    "dicom": _dicom(),
}


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip a few bits anywhere, headers included
        for pos in rng.integers(len(buf), size=rng.integers(1, 12)):
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncate
        del buf[int(rng.integers(1, len(buf))):]
    elif kind == 2:  # insert random bytes
        pos = int(rng.integers(len(buf)))
        buf[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 3:  # overwrite a run in the first kilobyte, where the headers live
        pos = int(rng.integers(min(len(buf), 1024)))
        run = rng.bytes(int(rng.integers(1, 16)))
        buf[pos:pos + len(run)] = run
    else:  # set a 16- or 32-bit field to an extreme value (sizes, lengths, counts)
        pos = int(rng.integers(len(buf) - 4))
        buf[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x7f\xff"])
    return bytes(buf)


def read_or_refuse(data: bytes) -> XRay | None:
    start = time.perf_counter()
    try:
        xray = read_image(data)
    except ImageReadError as exc:
        assert str(exc), "a refusal must say why"
        xray = None
    assert time.perf_counter() - start < SECONDS_PER_CASE
    if xray is not None:
        assert xray.pixels.ndim == 2 and xray.pixels.dtype == np.float32
        assert np.isfinite(xray.pixels).all() and 0.0 <= xray.pixels.min() and xray.pixels.max() <= 1.0
    return xray


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_mutated_files_never_raise_anything_else(name):
    rng = np.random.default_rng(sum(map(ord, name)))  # seeded: a failure reproduces
    assert read_or_refuse(SAMPLES[name]) is not None, "the original must read, or refusing everything would pass"
    for case in range(CASES_PER_FORMAT):
        data = mutate(SAMPLES[name], rng)
        try:
            read_or_refuse(data)
        except AssertionError:
            raise
        except BaseException as exc:  # noqa: BLE001 - report which case escaped
            pytest.fail(f"{name} case {case}: {type(exc).__name__}: {exc} escaped read_image")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00",
                               b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"\x08\x00", bytes(128) + b"DICM"]),
       body=st.binary(max_size=600))
def test_arbitrary_bytes_behind_a_magic_number(prefix, body):
    read_or_refuse(prefix + body)
