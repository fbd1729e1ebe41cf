"""Hostile input, many sessions at once, long use, privacy: the shared core holds up."""

import io
import os
import struct
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import psutil
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from fracture_app import config, predict
from fracture_app.cautions import cautions_for, looks_like_xray
from fracture_app.diagnosis import Diagnoser
from fracture_app.imaging import MAX_ASPECT_RATIO, read_image

from conftest import BONE_BREAK_FIXTURES, FRACATLAS_FIXTURES

PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # a colour photograph
XRAY = FRACATLAS_FIXTURES / "images" / "Fractured" / "IMG0000044.jpg"


@pytest.fixture(scope="module")
def diagnoser(tiny_models_dir):
    return Diagnoser.from_dir(tiny_models_dir)


@pytest.fixture(scope="module")
def shipped_diagnoser():
    """Many sessions and long use are checked on the models users get, not on the tiny test models."""
    return Diagnoser.from_dir(config.REPO_ROOT / "models")


def grey() -> np.ndarray:
    with Image.open(XRAY) as image:
        return np.asarray(image.convert("L"))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def dicom_bytes(pixels: np.ndarray | None, photometric: str = "MONOCHROME2") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.Modality, ds.BodyPartExamined = "DX", "HAND"
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if pixels is not None:
        stored = (pixels.astype(np.uint16) * 16)
        if photometric == "MONOCHROME1":
            stored = 4095 - stored
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = stored.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def png_bomb(side: int = 30000) -> bytes:
    """A few hundred kilobytes that claim side×side grey pixels (900 megapixels at 30000)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = zlib.compress(b"\x00" * (side + 1) * 64, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """Every kind of file the issue lists: those to refuse and those to diagnose."""
    folder = tmp_path_factory.mktemp("hostile")
    picture = grey()
    jpeg = XRAY.read_bytes()
    refuse = {
        "empty.jpg": b"",
        "random.jpg": np.random.default_rng(0).bytes(5000),
        "text.png": b"patient notes, not a picture\n" * 20,
        "document.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        "drawing.svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "quarter.jpg": jpeg[: len(jpeg) // 4],
        "bomb.png": png_bomb(),
        "no_pixels.dcm": dicom_bytes(None),
    }
    rgba = Image.fromarray(picture).convert("RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    diagnose = {
        "sixteen_bit.png": encoded(Image.fromarray(picture.astype(np.uint16) * 257), "PNG"),
        "rgba.png": encoded(rgba, "PNG"),
        "cmyk.jpg": encoded(Image.fromarray(picture).convert("CMYK"), "JPEG"),
        "palette.gif": encoded(Image.fromarray(picture).convert("P"), "GIF"),
        "scan.tiff": encoded(Image.fromarray(picture), "TIFF"),
        "scan.bmp": encoded(Image.fromarray(picture), "BMP"),
        "rotated.jpg": encoded(Image.fromarray(picture), "JPEG", exif=exif),
        "really_a_jpeg.png": jpeg,
        "réduction fracture.jpg": jpeg,
        "mono2.dcm": dicom_bytes(picture),
        "mono1.dcm": dicom_bytes(picture, "MONOCHROME1"),
        "DICOMDIR_less_file": dicom_bytes(picture),
    }
    for name, data in {**refuse, **diagnose}.items():
        (folder / name).write_bytes(data)
    return folder, set(refuse), set(diagnose)


def test_command_line_refuses_or_diagnoses_every_hostile_file(tiny_models_dir, hostile_folder, capsys):
    import csv

    folder, refuse, diagnose = hostile_folder
    # Folders are searched for image extensions (and extension-less DICOM); other files are named explicitly.
    explicit = [str(folder / name) for name in ("document.pdf", "drawing.svg")]
    code = predict.main(["--models", str(tiny_models_dir), "--no-progress", str(folder), *explicit])
    out = capsys.readouterr().out
    rows = {Path(row["path"]).name: row for row in csv.DictReader(io.StringIO(out))}
    assert code == 1 and set(rows) == refuse | diagnose
    for name in refuse:
        assert rows[name]["error"] and "Traceback" not in rows[name]["error"], name
    for name in diagnose:
        assert rows[name]["error"] == "" and rows[name]["fractured"] in ("true", "false"), (name, rows[name]["error"])
    # MONOCHROME1 is the same picture as MONOCHROME2, so the same answer.
    assert rows["mono1.dcm"]["fracture_probability"] == rows["mono2.dcm"]["fracture_probability"]


@pytest.mark.parametrize("shape", [(config.MIN_IMAGE_SIDE, config.MIN_IMAGE_SIDE),
                                   (config.MIN_IMAGE_SIDE, config.MIN_IMAGE_SIDE * MAX_ASPECT_RATIO)])
def test_the_smallest_and_narrowest_accepted_images_get_a_full_diagnosis(diagnoser, shape):
    """Just inside the reader's limits (test_imaging checks the refusals just outside them)."""
    ramp = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape).astype(np.uint8)  # not blank: blank is refused
    xray = read_image(encoded(Image.fromarray(ramp), "PNG"))
    diagnosis = diagnoser.diagnose(xray)
    assert diagnosis.verdict in ("Fractured", "Not fractured") and len(diagnosis.type_top) == 3
    assert {task: heat.shape for task, heat in diagnosis.heatmaps.items()} == {task: shape for task in config.TASKS}


def test_photographs_and_synthetic_colour_pictures_are_flagged():
    assert not looks_like_xray(read_image(PHOTO))
    rng = np.random.default_rng(3)
    for _ in range(10):
        colour = rng.integers(0, 256, (64, 3), dtype=np.uint8)[rng.integers(0, 64, (128, 128))]
        assert not looks_like_xray(read_image(encoded(Image.fromarray(colour), "PNG")))


def test_noise_is_flagged_as_not_an_xray():
    rng = np.random.default_rng(5)
    for noise in (rng.integers(0, 256, (512, 512), dtype=np.uint8),
                  np.clip(rng.normal(128, 40, (900, 700)), 0, 255).astype(np.uint8)):
        xray = read_image(encoded(Image.fromarray(noise), "PNG"))
        assert not looks_like_xray(xray)
        assert "looks like noise" in cautions_for(xray)[0].text


def test_thresholded_dithered_and_posterised_copies_of_an_xray_get_no_verdict(diagnoser):
    """A model answers these confidently either way (a dithered copy of an X-ray it calls clear scored 0.99)."""
    original = Image.open(sorted(FRACATLAS_FIXTURES.rglob("*.jpg"))[0]).convert("L")
    assert looks_like_xray(read_image(encoded(original, "PNG")))
    dithered = diagnoser.diagnose(read_image(encoded(original.convert("1"), "PNG")))
    assert dithered.verdict == "No verdict" and dithered.heatmaps == {} and dithered.type_top == []
    assert diagnoser.diagnose(read_image(encoded(original, "PNG"))).heatmaps, "a readable X-ray keeps its heat maps"
    thresholded = original.point(lambda value: 255 * (value > 128))
    for copy, shades in ((original.convert("1"), 2), (thresholded.convert("1"), 2),
                         (original.quantize(16, dither=Image.Dither.NONE).convert("L"), 16)):
        xray = read_image(encoded(copy, "PNG"))
        caution = cautions_for(xray)[0]
        assert caution.kind == "not_xray" and f"only {shades} shades of grey" in caution.text
    assert looks_like_xray(read_image(encoded(original.quantize(64, dither=Image.Dither.NONE).convert("L"), "PNG")))


def test_a_dicom_whose_header_names_another_modality_gets_no_verdict():
    from conftest import make_dicom

    ramp = np.tile(np.linspace(0, 4000, 256), (256, 1)).astype(np.uint16)
    assert looks_like_xray(read_image(make_dicom(ramp)))  # DX
    caution = cautions_for(read_image(make_dicom(ramp, Modality="US")))[0]
    assert caution.kind == "not_xray" and "an ultrasound image (Modality US), not a radiograph" in caution.text


def test_real_xrays_are_not_flagged():
    xrays = sorted(FRACATLAS_FIXTURES.rglob("*.jpg")) + sorted(BONE_BREAK_FIXTURES.rglob("*.jpg"))
    flagged = [p.name for p in xrays if not looks_like_xray(read_image(p))]
    assert len(flagged) <= 1, flagged


def test_eight_sessions_at_once_get_exactly_the_single_session_answers(shipped_diagnoser):
    paths = sorted(FRACATLAS_FIXTURES.rglob("*.jpg"))[:10]

    def session():
        results = []
        for path in paths:
            diagnosis = shipped_diagnoser.diagnose(read_image(path.read_bytes()))
            results.append((diagnosis.fracture_probability, tuple(diagnosis.type_probabilities.items()),
                            diagnosis.heatmaps["binary"].sum()))
        return results

    alone = session()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda _: session(), range(8)))
    for results in together:
        assert results == alone


def test_two_hundred_diagnoses_do_not_grow_memory(shipped_diagnoser):
    data = XRAY.read_bytes()
    process = psutil.Process()
    for _ in range(20):  # warm-up: traced graphs, allocator pools
        shipped_diagnoser.diagnose(read_image(data))
    before = process.memory_info().rss
    for _ in range(200):
        shipped_diagnoser.diagnose(read_image(data))
    grown = (process.memory_info().rss - before) / 1e6
    print(f"resident memory grew {grown:.1f} MB over 200 diagnoses")
    assert grown < 100


def test_a_diagnosis_writes_no_file(diagnoser):
    """Uploads stay in memory: an audit hook sees every file opened for writing during a diagnosis."""
    data = XRAY.read_bytes()
    diagnoser.diagnose(read_image(data))  # warm-up outside the watch
    written, watching = [], threading.Event()

    def hook(event, args):
        if watching.is_set() and event == "open" and len(args) > 1:
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            ):
                written.append(args[0])

    sys.addaudithook(hook)
    watching.set()
    try:
        for _ in range(3):
            diagnoser.diagnose(read_image(data, name="upload.jpg"))
    finally:
        watching.clear()
    assert written == []


def test_not_an_xray_flag_rates_on_the_test_splits(full_data_dir):
    """Measured, then printed: how often real test-split X-rays are flagged, and how often colour pictures are."""
    from fracture_app import config
    from fracture_app.models import artifact_paths
    from training.datasets import read_manifest

    xray_paths = []
    for task, folder in ((config.BINARY_TASK, "fracatlas"), (config.TYPE_TASK, "bone_break")):
        manifest = artifact_paths(config.REPO_ROOT / "models", task)["manifest"]
        xray_paths += [s.path for s in read_manifest(manifest, full_data_dir / folder) if s.split == "test"]
    flagged = sum(not looks_like_xray(read_image(path)) for path in xray_paths)
    rng = np.random.default_rng(11)
    colour_pictures = [PHOTO.read_bytes(), (PHOTO.parent / "Minduka_Present_Blue_Pack.png").read_bytes()]
    for _ in range(48):
        palette = rng.integers(0, 256, (rng.integers(8, 64), 3), dtype=np.uint8)
        blocks = rng.integers(0, len(palette), (rng.integers(4, 32), rng.integers(4, 32)))
        picture = np.kron(palette[blocks], np.ones((8, 8, 1), np.uint8))
        colour_pictures.append(encoded(Image.fromarray(picture), "PNG"))
    caught = sum(not looks_like_xray(read_image(data)) for data in colour_pictures)
    noise = [encoded(Image.fromarray(rng.integers(0, 256, (rng.integers(64, 900), rng.integers(64, 900)),
                                                  dtype=np.uint8)), "PNG") for _ in range(16)]
    caught_noise = sum(not looks_like_xray(read_image(data)) for data in noise)
    print(f"flagged {flagged}/{len(xray_paths)} real test-split X-rays; caught {caught}/{len(colour_pictures)} colour "
          f"pictures and {caught_noise}/{len(noise)} grey noise pictures")
    assert flagged / len(xray_paths) <= 0.02
    assert caught / len(colour_pictures) >= 0.95 and caught_noise == len(noise)
