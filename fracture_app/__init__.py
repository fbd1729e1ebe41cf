"""Shared core of the fracture X-ray reading aid: reading, preprocessing, models, prediction, Grad-CAM."""

import os

# TensorFlow's C++ start-up messages (CUDA probing, CPU features) mean nothing to a clinician.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly():
    """Import TensorFlow with the native start-up lines it writes straight to file descriptor 2 hidden.

    The environment variable above does not reach the messages logged before TensorFlow sets up its
    logger (CUDA probing on machines without a GPU), and a command line's stderr is for the user.
    """
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401  (imports TensorFlow too)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow
