"""The pointing game's hit test and the Grad-CAM layer candidates."""

import numpy as np

from fracture_app import config
from fracture_app.models import load_model
from fracture_app.models import artifact_paths
from fracture_app.gradcam import heatmap_on_image
from fracture_app.data_layout import fracture_boxes, has_fracture_boxes
from training.localisation import candidate_layers, peak_in_a_box

from conftest import FRACATLAS_FIXTURES


def test_an_image_the_reader_turns_by_its_exif_orientation_has_no_boxes(tmp_path):
    """Its boxes are drawn on the pixels as stored, which the reader turns: they would land elsewhere."""
    from PIL import Image

    fractured = FRACATLAS_FIXTURES / "images" / "Fractured" / "IMG0000092.jpg"
    (tmp_path / "annotations_yolo").mkdir()
    (tmp_path / "annotations_yolo" / "IMG0000092.txt").write_bytes(
        (FRACATLAS_FIXTURES / "annotations_yolo" / "IMG0000092.txt").read_bytes())
    picture = Image.open(fractured)
    for orientation, boxed in ((1, True), (3, False), (6, False)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        picture.save(tmp_path / "IMG0000092.jpg", exif=exif)
        assert bool(fracture_boxes(tmp_path, tmp_path / "IMG0000092.jpg")) == boxed, orientation


def test_boxes_are_read_from_this_projects_folder_or_as_fracatlas_publishes_them(tmp_path):
    fractured = FRACATLAS_FIXTURES / "images" / "Fractured" / "IMG0000092.jpg"
    expected = fracture_boxes(FRACATLAS_FIXTURES, fractured)
    assert expected and not has_fracture_boxes(tmp_path) and fracture_boxes(tmp_path, fractured) == []
    (tmp_path / "Annotations" / "YOLO").mkdir(parents=True)
    (tmp_path / "Annotations" / "YOLO" / "IMG0000092.txt").write_bytes(
        (FRACATLAS_FIXTURES / "annotations_yolo" / "IMG0000092.txt").read_bytes())
    assert has_fracture_boxes(tmp_path) and fracture_boxes(tmp_path, fractured) == expected


def heat_with_peak(shape, row, column):
    heat = np.zeros(shape, np.float32)
    heat[row, column] = 1.0
    return heat


def test_a_peak_inside_a_box_is_a_hit_and_one_outside_is_not():
    heat = heat_with_peak((8, 8), row=2, column=1)  # on a square image: x 1.5/8, y 2.5/8
    square = (400, 400)
    assert peak_in_a_box(heat, square, 64, [(0.19, 0.31, 0.04, 0.04)])
    assert not peak_in_a_box(heat, square, 64, [(0.75, 0.30, 0.10, 0.10)])
    assert peak_in_a_box(heat, square, 64, [(0.75, 0.30, 0.10, 0.10), (0.19, 0.31, 0.04, 0.04)]), "any box counts"
    assert not peak_in_a_box(heat, square, 64, [])


def test_the_peak_is_placed_through_the_letterbox():
    wide = (100, 200)  # letterboxed into 64: the image fills rows 16..47, so map row 2 (y 2.5/8) is image y 0.125
    assert peak_in_a_box(heat_with_peak((8, 8), row=2, column=4), wide, 64, [(0.5625, 0.125, 0.06, 0.06)])
    assert not peak_in_a_box(heat_with_peak((8, 8), row=2, column=4), wide, 64, [(0.5625, 0.3125, 0.06, 0.06)])


def test_the_peak_is_read_before_the_map_is_clipped_for_display():
    """Upsampled, two clusters of hot cells both pass 1; clipped, the first in reading order would pass for the peak."""
    heat = np.zeros((8, 8), np.float32)
    heat[1:3, 1:3], heat[5:7, 5:7] = 0.9, 1.0
    image_shape = (256, 256)
    clipped = heatmap_on_image(heat, image_shape, 64)
    assert clipped[64, 64] == 1.0 and clipped[192, 192] == 1.0, "both clusters reach 1 once clipped"
    assert np.unravel_index(np.argmax(clipped), clipped.shape)[0] < 128, "so the cooler one would be the peak"
    assert peak_in_a_box(heat, image_shape, 64, [(6 / 8, 6 / 8, 0.2, 0.2)])
    assert not peak_in_a_box(heat, image_shape, 64, [(2 / 8, 2 / 8, 0.2, 0.2)])


def test_fracture_boxes_are_read_from_the_yolo_annotations():
    fractured = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))
    boxes = [fracture_boxes(FRACATLAS_FIXTURES, path) for path in fractured]
    assert any(boxes), "the fixtures include annotated fractures"
    for x, y, width, height in (box for image_boxes in boxes for box in image_boxes):
        assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < width <= 1 and 0 < height <= 1
    assert fracture_boxes(FRACATLAS_FIXTURES, FRACATLAS_FIXTURES / "images" / "Non_fractured" / "none.jpg") == []


def test_a_truncated_files_boxes_are_left_out_where_the_reader_cut_it_short(tmp_path):
    """A user's data set may box a truncated file; its boxes are fractions of the picture as stored, so
    on the picture the reader cuts short they would land lower than drawn: neither training nor the
    pointing game uses them."""
    import shutil

    from fracture_app.preprocess import PreprocessSpec
    from training import datasets
    from training.box_supervision import box_masks
    from training.localisation import boxed_images
    from training.pipeline import load_images

    truncated, whole = "IMG0004028", "IMG0000044"  # the fixtures' truncated file; a boxed fracture
    (tmp_path / "annotations_yolo").mkdir()
    for name in (truncated, whole):
        source = next((FRACATLAS_FIXTURES / "images").rglob(f"{name}.jpg"))
        (tmp_path / "images" / source.parent.name).mkdir(parents=True)
        shutil.copy(source, tmp_path / "images" / source.parent.name)
        shutil.copy(FRACATLAS_FIXTURES / "annotations_yolo" / f"{whole}.txt", tmp_path / "annotations_yolo" / f"{name}.txt")
    samples = datasets.discover(tmp_path, config.BINARY_TASK).samples
    spec = PreprocessSpec(size=64)
    loaded = load_images(samples, spec, progress=False)
    assert [s.path.stem for s, cut in zip(loaded.samples, loaded.cut_short) if cut] == [truncated]

    masks = box_masks(tmp_path, loaded.samples, loaded.shapes, loaded.cut_short, spec.size)
    boxed = {s.path.stem: mask.any() for s, mask in zip(loaded.samples, masks)}
    assert boxed == {truncated: False, whole: True}
    assert len(boxed_images(tmp_path, loaded.samples, spec)) == 1


def test_candidate_layers_run_from_coarse_to_fine_and_stop_at_an_eighth_of_the_input(tiny_models_dir):
    model = load_model(artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"])
    names = candidate_layers(model.keras_model, model.spec.size)
    sides = [model.keras_model.get_layer(name).output.shape[1] for name in names]
    assert sides == sorted(sides) and len(set(sides)) == len(sides)
    assert max(sides) <= model.spec.size // 8


def test_no_fracatlas_image_with_a_fracture_box_is_an_incomplete_file(full_data_dir):
    """Boxes are fractions of the picture as stored; the reader cuts a truncated file's grey fill, which
    would move them. No FracAtlas box sits on such a file, so none is misplaced."""
    from fracture_app.imaging import read_image

    root = full_data_dir / "fracatlas"
    boxed = [path for path in (root / "images").rglob("*.jpg") if fracture_boxes(root, path)]
    assert len(boxed) > 600
    assert not [path.name for path in boxed if "missing_fraction" in read_image(path).metadata]
