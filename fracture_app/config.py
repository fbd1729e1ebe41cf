"""What every part of the project agrees on: tasks, classes, sizes, file names, limits.

Change a value here and training, the command line and the app all follow.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# FRACTURE_MODELS_DIR lets tests and deployments point the app at other model files.
MODELS_DIR_ENV = "FRACTURE_MODELS_DIR"
SHIPPED_MODELS_DIR = REPO_ROOT / "models"


def models_dir() -> Path:
    """FRACTURE_MODELS_DIR as it is now (tests set it after import), else the shipped models/."""
    value = os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else SHIPPED_MODELS_DIR


MODELS_DIR = models_dir()  # the default for the command lines, read once at start
SAMPLE_IMAGES_DIR = REPO_ROOT / "sample_images"
FAVICON = Path(__file__).resolve().parent / "favicon.png"  # a file, not a Material icon: those load from the web

# Environment variable naming the folder that holds the full data sets (FracAtlas, Bone Break).
DATA_DIR_ENV = "FRACTURE_DATA_DIR"
# Environment variable naming the folder the Samples and Teaching pages draw from, instead of sample_images/.
SAMPLES_DIR_ENV = "FRACTURE_SAMPLES_DIR"
# labels.csv column of a sample's fracture boxes, relative to the image: "x_centre y_centre width height; …"
SAMPLE_BOXES_COLUMN = "fracture_boxes"
SAMPLE_HARDWARE_COLUMN = "hardware"  # "yes" where the data set marks orthopaedic hardware on the film

BINARY_TASK = "binary"
TYPE_TASK = "type"
TASKS = (BINARY_TASK, TYPE_TASK)
# Which way up an X-ray lies: index i is the picture turned i quarter turns anticlockwise from upright (np.rot90's
# direction), so np.rot90(pixels, -i) sets it upright again. Not a task a reading answers: it decides how the
# fracture model is shown the picture (fracture_app.orientation).
ORIENTATION_TASK = "orientation"
# A card's weights_init for an ensemble whose members each started from an earlier model of their own
# (training.ensemble); the Model card page words it for readers.
MEMBERS_OWN_START = "each member from its own earlier model (training.members)"
ORIENTATIONS = ("upright", "turned a quarter turn anticlockwise", "upside down", "turned a quarter turn clockwise")

TASK_NAMES = {BINARY_TASK: "fracture model", TYPE_TASK: "fracture-type model",
              ORIENTATION_TASK: "orientation model"}  # as a sentence names them

# Index 1 is the positive class: a binary model's single logit scores "Fractured".
BINARY_CLASSES = ("Not fractured", "Fractured")
NOT_FRACTURED, FRACTURED = BINARY_CLASSES

# Display names exactly as the Bone Break folders spell them, in alphabetical order: the order training gives a
# type model's outputs (data_layout sorts class folders), so a card's classes and this list agree. A model's
# own card says what its outputs mean; this list is what the Teaching page offers and how Bone Break is recognised.
FRACTURE_TYPES = (
    "Avulsion fracture",
    "Comminuted fracture",
    "Fracture Dislocation",
    "Greenstick fracture",
    "Hairline Fracture",
    "Impacted fracture",
    "Longitudinal fracture",
    "Oblique fracture",
    "Pathological fracture",
    "Spiral Fracture",
)

CLASSES = {BINARY_TASK: BINARY_CLASSES, TYPE_TASK: FRACTURE_TYPES}
TASK_TITLES = {task: name.capitalize() for task, name in TASK_NAMES.items()}  # as a heading names them
TASK_HELP = {BINARY_TASK: "fractured or not", TYPE_TASK: f"which of {len(FRACTURE_TYPES)} fracture types",
             ORIENTATION_TASK: "which way up"}

MODEL_FILES = {
    BINARY_TASK: "fracture_binary.keras",
    TYPE_TASK: "fracture_type.keras",
    ORIENTATION_TASK: "orientation.keras",
}
TRAINING_COMMANDS = {BINARY_TASK: "python -m training.train --task binary", TYPE_TASK: "python -m training.train --task type",
                     ORIENTATION_TASK: "python -m training.orientation"}

DEFAULT_ARCHITECTURE = {BINARY_TASK: "custom_cnn", TYPE_TASK: "resnet50"}
DEFAULT_IMG_SIZE = {BINARY_TASK: 256, TYPE_TASK: 224}

# File endings searched for when a folder is given (the reader itself decides the format by content).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jp2", ".j2k", ".dcm",
                            ".dicom"})

# Images larger than this are refused before decoding (decompression bombs, absurd scans).
MAX_IMAGE_PIXELS = 60_000_000
# Files larger than this are refused before reading (matches the app's upload limit).
MAX_FILE_BYTES = 50 * 1024 * 1024
# Smaller than this on either side cannot carry diagnostic detail.
MIN_IMAGE_SIDE = 32

NOTICE = (
    "For education and research only. Not a medical device and not for clinical use: "
    "every finding must be confirmed by a qualified clinician."
)

# How the copies this project trained on differ from the published sets (../shared/data/README.md), so that a
# reader who knows the published counts is not puzzled by the cards' smaller ones.
DATA_AS_USED = {
    "fracatlas": "The copy this project was given is not the whole published set (4,083 images): about 8% of "
                 "the images are held back for a check outside this project, and images over 1024 px were "
                 "downscaled to 1024 px; training may have read a copy scaled down further (the card's data folder).",
    "bone_break": "The copy this project was given is not the whole published set: about 10% of the images "
                  "(whole groups of near-duplicates) are held back for a check outside this project.",
}
DATA_ATTRIBUTION = {
    "fracatlas": (
        "FracAtlas: Abedeen et al., \"FracAtlas: A Dataset for Fracture Classification, Localization and "
        "Segmentation of Musculoskeletal Radiographs\", Scientific Data 10, 521 (2023), "
        "doi:10.1038/s41597-023-02432-4; data doi:10.6084/m9.figshare.22363012. Licence: CC BY 4.0."
    ),
    "bone_break": (
        "Bone Break Classification image set, Roboflow Universe (curso-rphcb/bone-break-classification), "
        "mirrored on Kaggle (pkdarabi/bone-break-classification-image-dataset). Licence: CC BY 4.0."
    ),
}
