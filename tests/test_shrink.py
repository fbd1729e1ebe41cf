"""`python -m training.shrink`: a scaled-down copy of a data set that split files and boxes still fit."""

import numpy as np
import pytest

from fracture_app import config
from fracture_app.imaging import read_image
from fracture_app.preprocess import PreprocessSpec, prepare
from training import datasets, shrink

from conftest import FRACATLAS_FIXTURES

SIZE = 96
JPEG_ROUNDING = 1 / 255  # quality 95 on an 8-bit copy: under one grey level on average (another interpolation: up to 2)


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    out = tmp_path_factory.mktemp("shrunk") / "fracatlas"
    assert shrink.main(["--data", str(FRACATLAS_FIXTURES), "--size", str(SIZE), "--out", str(out)]) == 0
    return out


def relative_files(root):
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def test_the_copy_keeps_every_file_name_and_the_box_files_byte_for_byte(shrunk):
    assert relative_files(shrunk) == relative_files(FRACATLAS_FIXTURES)
    for box_file in (FRACATLAS_FIXTURES / "annotations_yolo").rglob("*.txt"):
        copy = shrunk / box_file.relative_to(FRACATLAS_FIXTURES)
        assert copy.read_bytes() == box_file.read_bytes()


def test_prepared_at_that_size_the_copy_gives_what_the_original_gives(shrunk):
    spec = PreprocessSpec(size=SIZE)
    for original in sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg")):
        copied = read_image(shrunk / original.relative_to(FRACATLAS_FIXTURES)).pixels
        assert max(copied.shape) == SIZE
        difference = np.abs(prepare(copied, spec) - prepare(read_image(original).pixels, spec))
        assert difference.mean() < JPEG_ROUNDING, original.name


def test_training_finds_the_same_images_with_the_same_labels(shrunk):
    def names_and_labels(root):
        found = datasets.discover(root, config.BINARY_TASK)
        return sorted((sample.path.relative_to(root), sample.label) for sample in found.samples)

    assert names_and_labels(shrunk) == names_and_labels(FRACATLAS_FIXTURES)


def test_an_unreadable_image_is_left_out_and_listed(tmp_path, capsys):
    (tmp_path / "data" / "images" / "Fractured").mkdir(parents=True)
    (tmp_path / "data" / "images" / "Fractured" / "broken.jpg").write_bytes(b"not a picture")
    assert shrink.main(["--data", str(tmp_path / "data"), "--size", "64", "--out", str(tmp_path / "out")]) == 0
    assert "left out" in capsys.readouterr().err
    assert not (tmp_path / "out" / "images" / "Fractured" / "broken.jpg").exists()


def test_a_folder_that_is_not_empty_is_not_written_into(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        shrink.main(["--data", str(FRACATLAS_FIXTURES), "--size", "64", "--out", str(tmp_path / "out")])
    assert "not empty" in capsys.readouterr().err


def test_a_long_thin_image_keeps_the_shortest_side_the_reader_accepts(tmp_path):
    from PIL import Image

    (tmp_path / "data").mkdir()
    strip = (np.linspace(0, 255, 400)[None, :] * np.ones((50, 1))).astype(np.uint8)  # 8:1, as some Bone Break images
    Image.fromarray(strip).save(tmp_path / "data" / "strip.png")
    assert shrink.main(["--data", str(tmp_path / "data"), "--size", "64", "--out", str(tmp_path / "out")]) == 0
    copied = read_image(tmp_path / "out" / "strip.png").pixels
    assert min(copied.shape) == config.MIN_IMAGE_SIDE and copied.shape[1] < 400


def test_a_dicom_file_is_copied_as_a_smaller_picture_under_its_own_name(tmp_path):
    from conftest import make_dicom

    gradient = (np.linspace(0, 4095, 200)[None, :] * np.ones((120, 1))).astype(np.uint16)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scan.dcm").write_bytes(make_dicom(gradient))
    assert shrink.main(["--data", str(tmp_path / "data"), "--size", "64", "--out", str(tmp_path / "out")]) == 0
    copied = read_image(tmp_path / "out" / "scan.dcm")
    assert copied.pixels.shape == (38, 64) and copied.format == "PNG"


def test_a_lower_jpeg_quality_makes_a_smaller_copy_that_still_stays_close(shrunk, tmp_path):
    rougher = tmp_path / "rougher"
    assert shrink.main(["--data", str(FRACATLAS_FIXTURES), "--size", str(SIZE), "--out", str(rougher),
                        "--jpeg-quality", "60"]) == 0
    images = sorted(path.relative_to(shrunk) for path in (shrunk / "images").rglob("*.jpg"))
    assert sum((rougher / name).stat().st_size for name in images) < sum((shrunk / name).stat().st_size for name in images)
    for name in images:
        difference = np.abs(read_image(rougher / name).pixels - read_image(shrunk / name).pixels)
        assert 0 < difference.mean() < 4 * JPEG_ROUNDING, name


def test_a_jpeg_quality_out_of_range_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        shrink.main(["--data", str(FRACATLAS_FIXTURES), "--size", "64", "--out", str(tmp_path / "out"),
                     "--jpeg-quality", "0"])
