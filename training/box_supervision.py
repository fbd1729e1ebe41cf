"""Teach the fracture map where fractures are, from the FracAtlas boxes.

Each training image carries a mask of its fracture boxes, drawn on the same letterboxed square the
model sees. The mask moves with the image through the geometric augmentations, is pooled to the
map's resolution, and becomes a target distribution over the map's cells: the loss is the cross-entropy
between it and the softmax of the map, so the map's peak is pulled into a box. Images without a box
(not fractured, or a box augmented out of view) add nothing to it.
"""

import numpy as np

from fracture_app.preprocess import letterbox_box
from fracture_app.data_layout import fracture_boxes

MAP_LOSS_WEIGHT = 0.5  # the map's cross-entropy starts near log(cells) ≈ 7 on the few boxed images
MASK_THRESHOLD = 0.5  # a map cell is inside a box when the pooled (interpolated) mask reaches this


def box_mask(image_shape: tuple[int, int], boxes, size: int) -> np.ndarray:
    """uint8 (size, size): 1 inside any box, on the letterboxed square `prepare` makes of the image."""
    top, left, height, width = letterbox_box(image_shape, size)
    mask = np.zeros((size, size), np.uint8)
    for x_centre, y_centre, box_width, box_height in boxes:
        x0, x1 = left + (x_centre - box_width / 2) * width, left + (x_centre + box_width / 2) * width
        y0, y1 = top + (y_centre - box_height / 2) * height, top + (y_centre + box_height / 2) * height
        mask[_pixel_span(y0, y1, size), _pixel_span(x0, x1, size)] = 1
    return mask


def _pixel_span(start: float, end: float, size: int) -> slice:
    """The pixels a box edge-to-edge span covers, at least one however thin, clipped to the square."""
    first = int(np.floor(start))
    last = max(int(np.ceil(end)), first + 1)
    return slice(min(max(0, first), size), min(max(0, last), size))


def box_masks(data_dir, samples, shapes, cut_short, size: int) -> np.ndarray:
    """Masks for every sample, in order; all zeros where the sample has no box file, no box, or was cut short."""
    return np.stack([box_mask(shape, fracture_boxes(data_dir, sample.path, cut), size)
                     for sample, shape, cut in zip(samples, shapes, cut_short)]) if samples else np.zeros(
        (0, size, size), np.uint8)


def fracture_map_loss(mask_cells, map_logits):
    """Cross-entropy from the box cells (as a uniform distribution) to softmax(map); 0 without a box."""
    from keras import ops

    batch = ops.shape(map_logits)[0]
    target = ops.reshape(ops.cast(mask_cells, "float32"), (batch, -1))
    logits = ops.reshape(ops.cast(map_logits, "float32"), (batch, -1))
    target = target / ops.maximum(ops.sum(target, axis=1, keepdims=True), 1.0)
    return -ops.sum(target * ops.log_softmax(logits, axis=1), axis=1)


def batches_with_boxes(inputs, labels, masks, map_side: int, batch_size: int, training: bool,
                       seed: int = 0, class_weights: dict[int, float] | None = None):
    """Like pipeline.batches, for a model with a fracture map: (image, {logits, fracture_map}[, weight]).

    Class balance comes as per-image weights, because Keras takes no class_weight for several outputs.
    Keras applies them to both losses, so a boxed (fractured) image's map loss counts with its class's
    weight too, about 2.8 × MAP_LOSS_WEIGHT on FracAtlas.
    """
    from keras import ops

    from training import augment
    from training.architectures import FRACTURE_MAP, LOGITS
    from training.pipeline import feed

    channels, pool = inputs.shape[-1], inputs.shape[1] // map_side
    weight_of = None if class_weights is None else np.array(
        [class_weights[label] for label in sorted(class_weights)], np.float32)

    def to_model(images, mask, label, draws=None):
        mask = ops.cast(mask, "float32")[..., None]
        if training:
            moved = augment.warp(ops.concatenate([images, mask], axis=-1), draws)
            images, mask = augment.expose(moved[..., :channels], draws), moved[..., channels:]
        cells = ops.cast(ops.max_pool(mask, pool, pool, "valid") >= MASK_THRESHOLD, "float32")
        targets = {LOGITS: ops.cast(label, "float32")[:, None], FRACTURE_MAP: cells}
        return (images, targets) if weight_of is None else (images, targets, ops.take(weight_of, label))

    draw = augment.drawer(inputs.shape[1]) if training else None
    return feed((inputs, masks, labels.astype(np.int64)), batch_size, training, seed, to_model, draw)
