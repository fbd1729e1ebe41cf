"""Shared core of the fracture X-ray reading aid: reading, preprocessing, models, prediction, Grad-CAM."""

import os

# TensorFlow's C++ start-up messages (CUDA probing, CPU features) mean nothing to a clinician.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly():
    """Import Keras and TensorFlow with the native start-up lines they write straight to file descriptor 2 hidden.

    The environment variable above does not reach the messages logged before TensorFlow sets up its
    logger (CUDA probing on machines without a GPU), and a command line's stderr is for the user.
    """
    import_keras_quietly()
    import tensorflow

    return tensorflow


def import_keras_quietly():
    """Import Keras (and with it TensorFlow, where that is its backend) with those start-up lines hidden; on the
    JAX backend (a GPU machine without TensorFlow) nothing imports TensorFlow."""
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras
