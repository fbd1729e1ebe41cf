"""Every architecture behind one call: build(name, spec, num_outputs, weights).

Models take the project's preprocessed input (pixels in [0, 1]) and do their own backbone-specific
normalisation inside, so the saved file is self-contained. They output logits; calibration lives in the card.
"""

import warnings
from pathlib import Path

import keras
from keras import layers

from fracture_app.preprocess import PreprocessSpec

# ImageNet statistics each backbone was trained with, expressed on [0, 1] inputs.
_CAFFE_MEAN = [103.939 / 255, 116.779 / 255, 123.68 / 255]
_TORCH_MEAN, _TORCH_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "caffe"),
    "densenet121": (keras.applications.DenseNet121, "torch"),
    "mobilenetv2": (keras.applications.MobileNetV2, "tf"),
}
CUSTOM_CNN, CUSTOM_CNN_MAP = "custom_cnn", "custom_cnn_map"
ARCHITECTURES = (CUSTOM_CNN, CUSTOM_CNN_MAP, *BACKBONES)
# Channels each architecture expects: pretrained backbones were made for RGB.
CHANNELS = {CUSTOM_CNN: 1, CUSTOM_CNN_MAP: 1, **{name: 3 for name in BACKBONES}}
# Every architecture's head: its last feature map pooled (POOL), then one dense layer of logits (LOGITS). Training's
# losses, the ensemble, the probe and Grad-CAM find these layers by name.
POOL, LOGITS = "pool", "logits"
# The custom CNN with a fracture map: a per-cell fracture logit at 1/8 of the input, trained on the
# FracAtlas boxes and pooled into the answer, so the Grad-CAM on it points where the model found a fracture.
# Its features join block2 (1/8, fine) with block3 (1/16, more context) brought up to 1/8.
FRACTURE_MAP = "fracture_map"
FRACTURE_MAP_BLOCKS = ("block2_out", "block3_out")
FRACTURE_MAP_FILTERS = 64
MAP_SIZE_MULTIPLE = 32  # so block3's map, doubled, meets block2's exactly

CUSTOM_CNN_STEM = (24, 32)
CUSTOM_CNN_FILTERS = (32, 64, 128, 256)
HEAD_DROPOUT = 0.3


def build(name: str, spec: PreprocessSpec, num_outputs: int, weights: str = "none") -> keras.Model:
    """A classifier returning logits: 1 for the binary task, one per class otherwise.

    `weights` is "none", a file, or "imagenet" once `available_weights` has said it can be had.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if name in (CUSTOM_CNN, CUSTOM_CNN_MAP):
        model = custom_cnn(spec, num_outputs, fracture_map=name == CUSTOM_CNN_MAP)
        if weights not in ("none", None):
            copy_matching_weights(model, Path(weights))
        return model
    return backbone_classifier(name, spec, num_outputs, weights)


def available_weights(name: str, spec: PreprocessSpec, weights: str | None) -> str:
    """`weights` as a run can really start: "imagenet" becomes "none", with a plain warning, where it cannot.

    Training asks this before it builds, so an offline run neither freezes a random backbone as if it were
    pretrained nor records ImageNet in its card.
    """
    if weights in ("none", None):
        return "none"
    if weights != "imagenet":
        return weights
    if name not in BACKBONES:
        warnings.warn("the custom CNN has no ImageNet weights; starting from random initialisation")
        return "none"
    return _download_or_none(BACKBONES[name][0], spec) or "none"


def custom_cnn(spec: PreprocessSpec, num_outputs: int, fracture_map: bool = False) -> keras.Model:
    """Two strided stem convolutions, then four residual blocks of two 3×3 convolutions.

    Plain convolutions, not separable ones: on a CPU their oneDNN kernels train several times faster,
    and the 4× stem keeps the 256 px input affordable. Each block's output (block1_out … block4_out, from
    1/4 to 1/32 of the input) that is no finer than localisation.FINEST_MAP_SHARE is a Grad-CAM candidate;
    training.localisation chooses among them.
    With `fracture_map`, see _fracture_map_head.
    """
    inputs = keras.Input((spec.size, spec.size, spec.channels), name="xray")
    x = inputs
    for index, filters in enumerate(CUSTOM_CNN_STEM, start=1):
        x = _conv_bn_relu(x, filters, f"stem{index}", strides=2)
    for block, filters in enumerate(CUSTOM_CNN_FILTERS, start=1):
        if block > 1:
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"block{block}_shortcut")(x)
        x = _conv_bn_relu(x, filters, f"block{block}_conv1")
        x = _conv_bn_relu(x, filters, f"block{block}_conv2", activation=False)
        x = layers.Add(name=f"block{block}_add")([x, shortcut])
        x = layers.Activation("relu", name=f"block{block}_out")(x)
    if fracture_map:
        if spec.size % MAP_SIZE_MULTIPLE:
            raise ValueError(f"custom_cnn_map needs an input size that is a multiple of {MAP_SIZE_MULTIPLE}")
        trunk = keras.Model(inputs, x)
        fine, coarse = (trunk.get_layer(name).output for name in FRACTURE_MAP_BLOCKS)
        outputs = _fracture_map_head(x, fine, coarse, num_outputs)
        return keras.Model(inputs, outputs, name=CUSTOM_CNN_MAP)
    outputs = _head(x, num_outputs)
    return keras.Model(inputs, outputs, name=CUSTOM_CNN)


def _fracture_map_head(features, fine, coarse, num_outputs: int):
    """The usual pooled head's logit plus the maximum of a fracture map (one channel per output).

    The map is what training supervises with the fracture boxes (training.box_supervision). Its
    maximum is added with weight 1, not learned: the gradient of the answer on the map is then 1 at its
    hottest cell and 0 elsewhere, so Grad-CAM on the map is the map itself (its positive part), and a
    fracture found in one small place can carry the image.
    """
    coarse = layers.UpSampling2D(2, interpolation="bilinear", name="map_upsample")(coarse)
    x = layers.Concatenate(name="map_inputs")([fine, coarse])
    x = _conv_bn_relu(x, FRACTURE_MAP_FILTERS, "map_features")
    fracture_map = layers.Conv2D(num_outputs, 1, dtype="float32", name=FRACTURE_MAP)(x)
    strongest = layers.GlobalMaxPooling2D(dtype="float32", name="map_max")(fracture_map)
    return layers.Add(dtype="float32", name="answer")([_head(features, num_outputs), strongest])


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1, activation: bool = True):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if activation else x


def backbone_classifier(name: str, spec: PreprocessSpec, num_outputs: int, weights: str) -> keras.Model:
    constructor, mode = BACKBONES[name]
    if spec.channels != 3:
        raise ValueError(f"{name} expects 3 input channels (gray repeated); the spec has {spec.channels}")
    backbone = constructor(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(spec.size, spec.size, 3),
    )
    backbone.name = name
    if weights not in ("imagenet", "none", None):
        load_backbone_weights(backbone, Path(weights))
    inputs = keras.Input((spec.size, spec.size, 3), name="xray")
    x = _normaliser(mode)(inputs)
    x = backbone(x)
    outputs = _head(x, num_outputs)
    return keras.Model(inputs, outputs, name=f"{name}_classifier")


def _head(features, num_outputs: int):
    x = layers.GlobalAveragePooling2D(name=POOL)(features)
    x = layers.Dropout(HEAD_DROPOUT, name="dropout")(x)
    # float32 logits even under mixed precision, so calibration and thresholds stay exact.
    return layers.Dense(num_outputs, dtype="float32", name=LOGITS)(x)


def _normaliser(mode: str) -> layers.Layer:
    if mode == "caffe":  # x*255 - mean, in BGR; gray inputs make the channel order moot
        return layers.Normalization(mean=_CAFFE_MEAN, variance=[(1 / 255) ** 2] * 3, name="normalise")
    if mode == "torch":
        return layers.Normalization(mean=_TORCH_MEAN, variance=[s * s for s in _TORCH_STD], name="normalise")
    return layers.Rescaling(2.0, offset=-1.0, name="normalise")


def _download_or_none(constructor, spec: PreprocessSpec):
    """ImageNet weights when they can be downloaded; otherwise say so plainly and start from scratch."""
    try:
        constructor(include_top=False, weights="imagenet", input_shape=(spec.size, spec.size, 3))
    except Exception as error:  # offline, proxy, hub refused: all mean the same to the user
        warnings.warn(
            f"ImageNet weights could not be downloaded ({type(error).__name__}: {error}); "
            "training from random initialisation instead. Pass --weights PATH to use a local weights file."
        )
        return None
    return "imagenet"  # now in Keras' cache, so the real build below loads it without a download


def load_backbone_weights(backbone: keras.Model, path: Path) -> None:
    """Weights from a Keras weights file, or from the same backbone inside one of our `.keras` models."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".keras":
        donor = keras.saving.load_model(path, compile=False)
        donors = [layer for layer in donor.layers if isinstance(layer, keras.Model) and layer.name == backbone.name]
        if not donors:
            raise ValueError(f"{path.name} holds no {backbone.name} backbone to take weights from")
        backbone.set_weights(donors[0].get_weights())
    else:
        backbone.load_weights(path, skip_mismatch=True)


def copy_matching_weights(model: keras.Model, path: Path) -> None:
    """Start from one of our `.keras` models: every layer whose name and weight shapes match is copied.

    How the binary custom CNN with a fracture map starts from the shipped custom CNN; layers new to
    the architecture keep their random start.
    """
    if not path.is_file() or path.suffix != ".keras":
        raise FileNotFoundError(f"a custom CNN starts only from one of our .keras models: {path}")
    donor = {layer.name: layer for layer in keras.saving.load_model(path, compile=False).layers}
    copied = 0
    for layer in model.layers:
        theirs = donor.get(layer.name)
        if theirs is None or not layer.weights:
            continue
        if [w.shape for w in layer.get_weights()] == [w.shape for w in theirs.get_weights()]:
            layer.set_weights(theirs.get_weights())
            copied += 1
    if not copied:
        raise ValueError(f"{path.name} shares no layer with {model.name}: nothing to start from")


def find_backbone(model: keras.Model) -> keras.Model | None:
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else None


def trains_in_two_phases(arch: str, weights) -> bool:
    """A pretrained backbone first learns with its layers frozen, then with the top --fine-tune-share of them.

    (`weights`, as --weights or a card's weights_init, becomes "none" where ImageNet weights could not be downloaded.)"""
    return arch in BACKBONES and str(weights) != "none"
