"""Shared test fixtures: the tiny real X-ray fixtures, tiny trained models, and the full data sets when present."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fracture_app import config

FIXTURES = Path(__file__).parent / "fixtures"
FRACATLAS_FIXTURES = FIXTURES / "fracatlas"
BONE_BREAK_FIXTURES = FIXTURES / "bone_break"
TINY_SIZE = 64


def make_dicom(stored: np.ndarray, *, photometric="MONOCHROME2", bits=12, syntax=ExplicitVRLittleEndian,
               pixels=True, preamble=True, **elements) -> bytes:
    """A minimal DX DICOM file around `stored` (rows, cols), (frames, rows, cols) or (rows, cols, 3)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "Doe^Jane", "SECRET-123"
    colour = stored.ndim == 3 and stored.shape[-1] == 3
    ds.Rows, ds.Columns = stored.shape[-3:-1] if colour else stored.shape[-2:]
    if stored.ndim == 3 and not colour:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    for key, value in elements.items():
        setattr(ds, key, value)
    if pixels:
        raw = stored.astype(np.uint8 if bits <= 8 else "<u2").tobytes()
        ds.PixelData = encapsulate([raw]) if syntax.is_compressed else raw
        ds["PixelData"].VR = "OB" if syntax.is_compressed or bits <= 8 else "OW"
    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:  # bare dataset, implicit VR, as some old modalities write it
        del ds.file_meta
        ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def xray_as_dicom(source: Path) -> bytes:
    """A real X-ray wrapped as an uncompressed 12-bit DX DICOM with a body part and a view."""
    grey = np.asarray(Image.open(source).convert("L"), dtype=np.uint16) * 16
    return make_dicom(grey, BodyPartExamined="HAND", ViewPosition="PA")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def fractured_xray_path() -> Path:
    return sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """Both models and the orientation model, trained for one epoch at 64 px on the shipped fixtures by the real
    training commands.

    Tests of the app, the command line and evaluation run on these: they are real models with real
    cards, just too small to be any good.
    """
    from training.orientation import main as train_orientation
    from training.train import main as train

    out = tmp_path_factory.mktemp("tiny_models")
    common = ["--img-size", str(TINY_SIZE), "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), *common]) == 0
    assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2", "--weights", "none",
                  *common]) == 0
    assert train_orientation(["--data", str(FRACATLAS_FIXTURES), "--img-size", str(TINY_SIZE), "--epochs", "1",
                              "--out", str(out)]) == 0
    # A one-epoch orientation model's guesses are noise: without a threshold it turns nothing, so that every other
    # test reads pictures as uploaded (tests/test_orientation.py turns them on purpose). Its card keeps the figures
    # measured at the threshold it was trained with; the Model card page shows them beside "never turns a picture".
    card = out / "orientation.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "threshold": None}))
    return out


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full data sets (FracAtlas, Bone Break), from the environment variable `.ci/run` sets."""
    value = os.environ.get(config.DATA_DIR_ENV)
    if not value:
        pytest.skip(f"full data sets not available: set {config.DATA_DIR_ENV} to the folder holding fracatlas/ and bone_break/")
    path = Path(value)
    if not (path / "fracatlas").is_dir() or not (path / "bone_break").is_dir():
        pytest.skip(f"{config.DATA_DIR_ENV}={value} does not hold fracatlas/ and bone_break/")
    return path


@pytest.fixture(scope="module")
def app_environment(tiny_models_dir):
    """Point the app at the tiny models and the fixture samples (read when a page runs, not at import)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FRACTURE_MODELS_DIR", str(tiny_models_dir))
    patch.setenv("FRACTURE_SAMPLES_DIR", str(FIXTURES))
    yield
    patch.undo()
