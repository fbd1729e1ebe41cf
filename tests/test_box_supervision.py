"""The fracture map: box masks on the model's square, masks that move with the image, its loss and layer."""

import numpy as np

from fracture_app.imaging import read_image
from fracture_app.preprocess import PreprocessSpec
from training import architectures
from training.box_supervision import batches_with_boxes, box_mask, fracture_map_loss
from fracture_app.data_layout import fracture_boxes
from training.localisation import candidate_layers, peak_in_a_box

from conftest import FRACATLAS_FIXTURES

SIZE = 64


def boxed_fixture():
    for path in sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg")):
        boxes = fracture_boxes(FRACATLAS_FIXTURES, path)
        if boxes:
            return read_image(path).pixels, boxes
    raise AssertionError("the fixtures include an annotated fracture")


def test_the_mask_lies_where_the_pointing_game_looks_for_the_box():
    """A heat map peaking at the mask's centre, mapped back onto the image, peaks inside the box."""
    pixels, boxes = boxed_fixture()
    mask = box_mask(pixels.shape, boxes, SIZE)
    assert 0 < mask.sum() < mask.size / 4
    rows, columns = np.nonzero(mask)
    heat = np.zeros(mask.shape, np.float32)
    heat[int(rows.mean()), int(columns.mean())] = 1.0
    assert peak_in_a_box(heat, pixels.shape, SIZE, boxes)
    heat = np.roll(heat, SIZE // 4, axis=1)
    assert not peak_in_a_box(heat, pixels.shape, SIZE, boxes)


def test_a_box_on_a_wide_image_lands_inside_the_letterbox():
    # A 100×200 image letterboxed into 64: rows 16..47 hold it; a box at its centre covers the centre.
    mask = box_mask((100, 200), [(0.5, 0.5, 0.25, 0.5)], SIZE)
    rows, columns = np.nonzero(mask)
    assert rows.min() == 24 and rows.max() == 39
    assert columns.min() == 24 and columns.max() == 39
    assert box_mask((100, 200), [], SIZE).sum() == 0


def test_the_mask_moves_with_the_augmented_image():
    """The image is its own mask (a bright box on black), so after any augmentation they must agree."""
    masks = np.zeros((8, SIZE, SIZE), np.uint8)
    for index in range(8):
        masks[index, 8 + 4 * index : 24 + 4 * index, 10:30] = 1
    images = masks[..., None].astype(np.float32)
    labels = np.ones(8, np.int64)
    data = batches_with_boxes(images, labels, masks, map_side=8, batch_size=8, training=True,
                              class_weights={0: 1.0, 1: 1.0})
    augmented, targets, weights = next(iter(data))
    cells = targets["fracture_map"].numpy()[..., 0]
    pooled = augmented.numpy()[..., 0].reshape(8, 8, 8, 8, 8).max(axis=(2, 4))
    assert cells.sum() > 0
    assert not np.array_equal(augmented.numpy(), images), "the batch was augmented"
    # Photometric changes dim the box but keep it well above the black background.
    assert np.mean((cells > 0) == (pooled > 0.3)) > 0.97
    assert targets["logits"].shape == (8, 1) and weights.shape == (8,)


def test_the_map_loss_rewards_a_peak_in_the_box_and_ignores_images_without_one():
    inside = np.zeros((2, 4, 4, 1), np.float32)
    inside[0, 1, 2] = 1.0
    peak_in_box = np.zeros((2, 4, 4, 1), np.float32)
    peak_in_box[:, 1, 2] = 5.0
    peak_elsewhere = np.zeros((2, 4, 4, 1), np.float32)
    peak_elsewhere[:, 3, 0] = 5.0
    good, bad = np.asarray(fracture_map_loss(inside, peak_in_box)), np.asarray(fracture_map_loss(inside, peak_elsewhere))
    assert good[0] < bad[0]
    assert good[1] == 0 and bad[1] == 0, "no box, no loss"


def test_the_fracture_map_is_a_gradcam_candidate_and_starts_from_an_earlier_model(tmp_path):
    import keras

    from fracture_app.gradcam import GradCam

    spec = PreprocessSpec(size=SIZE)
    donor_path = tmp_path / "donor.keras"
    architectures.build("custom_cnn", spec, 1).save(donor_path)
    model = architectures.build("custom_cnn_map", spec, 1, str(donor_path))
    assert model.output.shape == (None, 1)
    assert architectures.FRACTURE_MAP in candidate_layers(model, spec.size)
    donor = keras.saving.load_model(donor_path, compile=False)
    for name in ("stem1_conv", "block3_conv2_conv", "block4_shortcut"):
        for mine, theirs in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)

    # The answer rises with the map's maximum, so Grad-CAM on the map peaks where the map does.
    fracture_map = model.get_layer(architectures.FRACTURE_MAP)
    fracture_map.set_weights([fracture_map.get_weights()[0], np.array([10.0], np.float32)])  # positive everywhere
    image = np.zeros((SIZE, SIZE, 1), np.float32)
    image[20:30, 40:50] = 1.0
    probe = keras.Model(model.inputs, fracture_map.output)
    expected = np.asarray(probe(image[None]))[0, ..., 0]
    heat = GradCam(model, architectures.FRACTURE_MAP).heatmap(image, 1)
    assert expected.min() > 0
    assert np.unravel_index(np.argmax(heat), heat.shape) == np.unravel_index(np.argmax(expected), expected.shape)


def test_the_training_command_makes_a_loadable_model_with_a_fracture_map(tiny_models_dir, tmp_path):
    """From the tiny binary model, as the shipped one starts from the custom CNN before it."""
    from fracture_app.models import load_model, sha256_of
    from fracture_app.models import artifact_paths
    from training.train import main as train

    from conftest import TINY_SIZE

    donor = artifact_paths(tiny_models_dir, "binary")["model"]
    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--arch", "custom_cnn_map",
                  "--weights", str(donor), "--learning-rate", "3e-4", "--img-size", str(TINY_SIZE),
                  "--epochs", "1", "--batch-size", "8", "--map-loss-weight", "1.5", "--out", str(out),
                  "--quiet"]) == 0
    model = load_model(artifact_paths(out, "binary")["model"])
    assert model.card.data["architecture"] == "custom_cnn_map"
    assert model.card.data["training"]["map_loss_weight"] == 1.5
    assert model.card.data["weights_init_sha256"] == sha256_of(donor)
    assert model.card.data["limitations"][0].startswith(
        f"Started from the layers it shares with an earlier model, {donor.name} (sha256 {sha256_of(donor)[:12]}")
    assert architectures.FRACTURE_MAP in model.card.data["gradcam"]["validation_hit_rates"]
    assert model.keras_model.output.shape == (None, 1)
    history = artifact_paths(out, "binary")["history"].read_text().splitlines()[0]
    assert "fracture_map_loss" in history, "the boxes trained the map"
