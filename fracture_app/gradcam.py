"""Grad-CAM: where in the X-ray the model looked for its answer (Selvaraju et al., 2017).

Works on a flat functional model and on a classifier that wraps a nested backbone (ResNet50 and
friends). For the nested case we cannot ask Keras for a model from the outer input to an inner layer
("Graph disconnected"), so we run the outer layers one by one and only the backbone as a sub-graph.
"""

import cv2
import numpy as np

from fracture_app.preprocess import WIDTH_AXIS, to_uint8

DEFAULT_OPACITY = 0.4
MAP_WIDTH_AXIS = 1  # of a heat map (height, width)
COLORMAP = cv2.COLORMAP_JET


def feature_layers(model) -> list[tuple[object, object]]:
    """Every layer with a 4-D output, in graph order, as (owner, layer): the Grad-CAM candidates.

    A nested backbone's layers are listed in its place, one level deep: that is all _features_and_logits runs.
    """
    import keras

    found = []
    for layer in model.layers:
        owned = [(layer, inner) for inner in layer.layers] if isinstance(layer, keras.Model) else [(model, layer)]
        found.extend((owner, inner) for owner, inner in owned
                     if not isinstance(inner, (keras.layers.InputLayer, keras.Model)) and len(inner.output.shape) == 4)
    return found


def find_layer(model, layer_name: str | None = None):
    """(owner, layer) for `layer_name`, looking inside a nested backbone; when None, the last 4-D layer:
    the most abstract features and the coarsest map."""
    candidates = feature_layers(model)
    if not candidates:
        raise ValueError(f"{model.name} has no convolutional feature map for Grad-CAM")
    if layer_name is None:
        return candidates[-1]
    for owner, layer in candidates:
        if layer.name == layer_name:
            return owner, layer
    raise ValueError(f"{model.name} has no 4-D layer named {layer_name!r} for Grad-CAM")


def _features_and_logits(model, layer_name: str | None = None):
    """A callable batch → (feature map, logits) that avoids the nested-model graph pitfall."""
    import keras

    owner, target = find_layer(model, layer_name)
    if owner is model:
        probe = keras.Model(model.inputs, [target.output, model.output])
        return lambda batch: probe(batch, training=False)

    inner = keras.Model(owner.inputs, [target.output, owner.output])
    position = model.layers.index(owner)
    before, after = model.layers[1:position], model.layers[position + 1 :]

    def run(batch):
        x = batch
        for layer in before:
            x = layer(x, training=False)
        features, x = inner(x, training=False)
        for layer in after:
            x = layer(x, training=False)
        return features, x

    return run


class GradCam:
    """Grad-CAM for one model; build once, call per image. Thread-safe (no mutable state).

    `layer_name` picks the feature map; the default, the last one, is the coarsest. A model card may name a
    finer layer chosen on validation images (see training.localisation.choose_gradcam_layer).
    With `flip_average` (a model whose answer averages the image and its mirror) the map is the Grad-CAM of
    that averaged answer: each pass's weighted features, the mirror's flipped back, summed before the ReLU.
    With `smoothing` (σ in map cells, chosen on validation too) the map is blurred before it is shown or its
    peak read; see `smoothed`.
    """

    def __init__(self, keras_model, layer_name: str | None = None, flip_average: bool = False,
                 smoothing: float = 0.0):
        import tensorflow as tf

        forward = _features_and_logits(keras_model, layer_name)
        shape = keras_model.inputs[0].shape

        def weighted_features(batch, class_index):
            with tf.GradientTape() as tape:
                features, logits = forward(batch)
                tape.watch(features)
                # A single-logit binary model scores "Fractured"; class 0 means the opposite direction.
                if logits.shape[-1] == 1:
                    score = logits[0, 0] * tf.cast(2 * class_index - 1, logits.dtype)
                else:
                    score = tf.gather(logits[0], class_index)
            grads = tape.gradient(score, features)[0]
            weights = tf.reduce_mean(grads, axis=(0, 1))
            return tf.reduce_sum(features[0] * weights, axis=-1)

        @tf.function(input_signature=[tf.TensorSpec([1, *shape[1:]], tf.float32), tf.TensorSpec([], tf.int32)])
        def compute(batch, class_index):
            summed = weighted_features(batch, class_index)
            if flip_average:
                mirror = weighted_features(tf.reverse(batch, [WIDTH_AXIS]), class_index)
                summed += tf.reverse(mirror, [MAP_WIDTH_AXIS])
            cam = tf.nn.relu(summed)
            return cam / (tf.reduce_max(cam) + 1e-8)

        self._compute = compute
        self._smoothing = float(smoothing)

    def heatmap(self, model_input: np.ndarray, class_index: int) -> np.ndarray:
        """model_input: one prepared image (H, W, C). Returns a 2-D map in [0, 1] at feature resolution."""
        batch = np.asarray(model_input, np.float32)[None]
        return smoothed(np.asarray(self._compute(batch, np.int32(class_index)), dtype=np.float32), self._smoothing)


def smoothed(heat: np.ndarray, sigma_cells: float) -> np.ndarray:
    """A heat map blurred with a Gaussian of `sigma_cells` map cells, its maximum brought back to 1.

    A fracture lights several neighbouring cells of a fine map; a lone hot cell is more often noise. Blurring
    lets a hot region outweigh a hotter single cell, which the pointing game on validation rewarded.
    """
    if sigma_cells <= 0:
        return heat
    blurred = cv2.GaussianBlur(heat, (0, 0), sigma_cells)
    peak = float(blurred.max())
    return blurred / peak if peak > 0 else blurred


def resize_to_image(heat: np.ndarray, image_shape: tuple[int, int], input_size: int) -> np.ndarray:
    """A heat map computed on the letterboxed square, brought onto the original image's pixels.

    Not clipped: cubic interpolation overshoots 1 where several hot cells meet, and the hottest point
    (the pointing game's) must be read before clipping flattens those into one plateau.
    """
    from fracture_app.preprocess import letterbox_box

    square = cv2.resize(heat, (input_size, input_size), interpolation=cv2.INTER_CUBIC)
    top, left, height, width = letterbox_box(image_shape, input_size)
    cropped = square[top : top + height, left : left + width]
    return cv2.resize(cropped, (image_shape[1], image_shape[0]), interpolation=cv2.INTER_LINEAR)


def heatmap_on_image(heat: np.ndarray, image_shape: tuple[int, int], input_size: int) -> np.ndarray:
    """The heat map on the original image's pixels, in [0, 1] for display."""
    return np.clip(resize_to_image(heat, image_shape, input_size), 0.0, 1.0)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """Blend a heat map (same shape as `image`, [0, 1]) over a grayscale image → RGB uint8."""
    base = cv2.cvtColor(to_uint8(image), cv2.COLOR_GRAY2RGB)
    coloured = cv2.applyColorMap(to_uint8(heat), COLORMAP)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(coloured, float(opacity), base, 1.0 - float(opacity), 0.0)


def peak_location(heat: np.ndarray) -> tuple[int, int]:
    """(row, column) of the hottest pixel: used by the pointing-game localisation check."""
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(row), int(column)
