"""The model factory: data discovery and splits, input pipeline, architectures, training, evaluation, export."""

from fracture_app import import_keras_quietly

# Every training command imports Keras; its backend's native start-up lines (CUDA probing, CPU features) would
# bury `--help` and the first lines of a log. Which hardware trains is logged by train.configure_hardware.
import_keras_quietly()
