"""Shared core of the fracture X-ray reading aid: reading, preprocessing, models, prediction, Grad-CAM."""

import os

# TensorFlow's C++ start-up messages (CUDA probing, CPU features) mean nothing to a clinician.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
