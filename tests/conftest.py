"""Shared test fixtures: the tiny real X-ray fixtures, tiny trained models, and the full data sets when present."""

import json
import os
from pathlib import Path

import pytest

from fracture_app import config

FIXTURES = Path(__file__).parent / "fixtures"
FRACATLAS_FIXTURES = FIXTURES / "fracatlas"
BONE_BREAK_FIXTURES = FIXTURES / "bone_break"
TINY_SIZE = 64


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def fractured_xray_path() -> Path:
    return sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """Both models and the orientation model, trained for one epoch at 64 px on the shipped fixtures by the real
    training commands.

    Tests of the app, the command line and evaluation run on these: they are real models with real
    cards, just too small to be any good.
    """
    from training.orientation import main as train_orientation
    from training.train import main as train

    out = tmp_path_factory.mktemp("tiny_models")
    common = ["--img-size", str(TINY_SIZE), "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), *common]) == 0
    assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2", "--weights", "none",
                  *common]) == 0
    assert train_orientation(["--data", str(FRACATLAS_FIXTURES), "--img-size", str(TINY_SIZE), "--epochs", "1",
                              "--out", str(out)]) == 0
    # A one-epoch orientation model's guesses are noise: without a threshold it turns nothing, so that every other
    # test reads pictures as uploaded (tests/test_orientation.py turns them on purpose). Its card keeps the figures
    # measured at the threshold it was trained with; the Model card page shows them beside "never turns a picture".
    card = out / "orientation.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "threshold": None}))
    return out


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full data sets (FracAtlas, Bone Break), from the environment variable `.ci/run` sets."""
    value = os.environ.get(config.DATA_DIR_ENV)
    if not value:
        pytest.skip(f"full data sets not available: set {config.DATA_DIR_ENV} to the folder holding fracatlas/ and bone_break/")
    path = Path(value)
    if not (path / "fracatlas").is_dir() or not (path / "bone_break").is_dir():
        pytest.skip(f"{config.DATA_DIR_ENV}={value} does not hold fracatlas/ and bone_break/")
    return path


@pytest.fixture(scope="module")
def app_environment(tiny_models_dir):
    """Point the app at the tiny models and the fixture samples (read when a page runs, not at import)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FRACTURE_MODELS_DIR", str(tiny_models_dir))
    patch.setenv("FRACTURE_SAMPLES_DIR", str(FIXTURES))
    yield
    patch.undo()
