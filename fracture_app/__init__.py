"""Shared core of the fracture X-ray reading aid: reading, preprocessing, models, prediction, Grad-CAM."""
