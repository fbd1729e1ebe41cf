"""Streamlit pieces every page shares: the cached models, the page frame and sidebar, the session's readings
and the samples. How a reading is drawn lives in fracture_app.reading_view.

The pages in `pages/` stay thin; what they do in common lives here. Models load once per server
process (`st.cache_resource`) and are shared by every session. Uploaded bytes stay in memory: they go
straight to `read_image`, and only a display-sized copy of each reading is kept in the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from fracture_app import config, import_tensorflow_quietly
from fracture_app.diagnosis import Diagnoser, Diagnosis, models_failed
from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.models import card_path_for, model_path_for
from fracture_app.preprocess import at_most
from fracture_app.report import REPORT_MAX_SIDE
from fracture_app.samples import SampleSet, list_samples, samples_dir

TYPE_NAMES_TEXT = ", ".join(name.lower().removesuffix(" fracture") for name in config.FRACTURE_TYPES)
UPLOAD_LIMIT_TEXT = f"Up to {config.MAX_FILE_BYTES // 2**20} MB per file."
UPLOAD_TYPES_TEXT = "JPEG, PNG, BMP, TIFF, GIF, WebP, JPEG 2000 or DICOM (.dcm, .dicom or no extension)"
DISPLAY_MAX_SIDE = REPORT_MAX_SIDE  # readings kept in the session are shrunk to this (memory per session)
READINGS_KEY = "_fracture_readings"
MAX_READINGS_KEPT = 32  # per session; the oldest are dropped first
# Kept readings hold their picture and heat maps as float16: at most 32 × 3 × 1024² × 2 B ≈ 200 MB a session.
STORED_DTYPE = np.float16


# ---- models ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModels:
    directory: Path
    diagnoser: Diagnoser | None
    error: str | None  # why nothing could be loaded
    fingerprint: str  # changes when a model file or card changes; part of every cached reading's key

    @property
    def problems(self) -> dict[str, str]:
        """Task → why its model is missing while another one loaded."""
        return self.diagnoser.problems if self.diagnoser else {}

    @property
    def versions(self) -> dict[str, str]:
        return self.diagnoser.model_versions if self.diagnoser else {}


def _fingerprint(directory: Path) -> str:
    parts = []
    for task in config.MODEL_FILES:
        model = model_path_for(task, directory)
        for path in (model, card_path_for(model)):
            try:
                stat = path.stat()
                parts.append(f"{path.name}:{stat.st_mtime_ns}:{stat.st_size}")
            except OSError:
                parts.append(f"{path.name}:missing")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@st.cache_resource(show_spinner="Loading the models (once per server)…", max_entries=4)
def _load_models(directory: str, fingerprint: str) -> LoadedModels:
    """Keyed by the files' fingerprint: new or replaced models are picked up without a restart."""
    import_tensorflow_quietly()
    try:
        diagnoser = Diagnoser.from_dir(Path(directory))
    except FractureAppError as error:
        return LoadedModels(Path(directory), None, str(error), fingerprint)
    except Exception as error:  # a broken TensorFlow install or model graph: say so, keep the app up
        return LoadedModels(Path(directory), None, f"the models could not be loaded ({type(error).__name__}: {error})",
                            fingerprint)
    return LoadedModels(Path(directory), diagnoser, None, fingerprint)


def load_models() -> LoadedModels:
    directory = config.models_dir().resolve()
    return _load_models(str(directory), _fingerprint(directory))


def require_models(models: LoadedModels) -> Diagnoser:
    """The diagnoser, or a clear message and the end of this page's run (other pages keep working)."""
    if models.diagnoser is None:
        st.error(f"**The models are not available**, so this page cannot work: {models.error}", icon=":material/error:")
        st.markdown(
            f"Models are read from `{models.directory}` (set the environment variable `{config.MODELS_DIR_ENV}` to use "
            f"another folder). Train them with `{config.TRAINING_COMMANDS[config.BINARY_TASK]} --data …` and "
            f"`{config.TRAINING_COMMANDS[config.TYPE_TASK]} --data …`. The **About** page works without them.")
        st.stop()
    for problem in models.problems.values():
        st.warning(f"A model is missing: {problem}", icon=":material/warning:")
    return models.diagnoser


# ---- the frame around every page ------------------------------------------------------------------------

_frame = threading.local()  # Streamlit runs each session's script in one thread: app.py, then the page
FRAME_RETRY_KEY = "_fracture_frame_retry"


def run_app(pages: list) -> None:
    """app.py: navigation over `pages`, the sidebar (notice and model versions), then the chosen page."""
    page = st.navigation(pages)
    _frame.active = True
    try:
        sidebar(load_models())
        # Also on top of every page and at its foot: on a phone the sidebar starts folded.
        st.caption(f":material/info: {config.NOTICE}")
        page.run()
        st.caption(config.NOTICE)
    finally:
        _frame.active = False


def page_frame() -> None:
    """First line of every page: make sure the page runs inside app.py's frame.

    On a fresh server, Streamlit's legacy `pages/` folder mode can run the first request for a page's URL
    straight from its file, skipping app.py (no notice, no navigation) until some run calls st.navigation.
    Here that mode is switched off and the run repeated, now through app.py; should that ever fail,
    the page still draws the sidebar with the notice itself.
    """
    if getattr(_frame, "active", False):
        return
    if not st.session_state.get(FRAME_RETRY_KEY):
        st.session_state[FRAME_RETRY_KEY] = True
        try:
            from streamlit.runtime.pages_manager import PagesManager

            PagesManager.uses_pages_directory = False
        except (ImportError, AttributeError):
            pass
        else:
            st.rerun()
    sidebar(load_models())


# ---- sidebar --------------------------------------------------------------------------------------------


def sidebar(models: LoadedModels) -> None:
    with st.sidebar:
        st.warning(config.NOTICE, icon=":material/info:")
        st.markdown("**Models in use**")
        if models.diagnoser is None:
            st.caption(f"None loaded: {models.error}")
        else:
            for task in config.MODEL_FILES:
                title = config.TASK_TITLES[task]
                if task in models.versions:
                    st.caption(f"{title} ({config.TASK_HELP[task]}): version `{models.versions[task]}`. "
                               + models.diagnoser.every_model[task].card.measured_in_brief)
                elif task == config.ORIENTATION_TASK and (why := models.diagnoser.orientation_idle_because):
                    st.caption(f"{title}: loaded, but {why}, so it turns no picture")
                else:
                    st.caption(f"{title}: not loaded")


# ---- readings -------------------------------------------------------------------------------------------


def for_display(diagnosis: Diagnosis, max_side: int = DISPLAY_MAX_SIDE) -> Diagnosis:
    """The same reading with its picture and heat maps shrunk, to keep in the session."""
    xray = dataclasses.replace(diagnosis.xray, pixels=at_most(diagnosis.xray.pixels, max_side))
    height, width = xray.pixels.shape
    heatmaps = {task: cv2.resize(heat, (width, height), interpolation=cv2.INTER_AREA)
                for task, heat in diagnosis.heatmaps.items()}
    return dataclasses.replace(diagnosis, xray=xray, heatmaps=heatmaps)


def read_and_diagnose(diagnoser: Diagnoser, data: bytes, name: str) -> Diagnosis | str:
    """A display-sized Diagnosis, or the reason (in words) why this file could not be read or diagnosed."""
    try:
        xray = read_image(data, name=name)
    except FractureAppError as error:
        return str(error)
    try:
        diagnosis = diagnoser.diagnose(xray)
    except Exception as error:  # the models failed on this one image: the others must still be read
        return models_failed(error)
    return for_display(diagnosis)


def _reading_key(models: LoadedModels, data: bytes, name: str) -> str:
    return f"{models.fingerprint}:{hashlib.sha256(data).hexdigest()}:{name}"


def _readings() -> OrderedDict:
    return st.session_state.setdefault(READINGS_KEY, OrderedDict())


def cached_reading(models: LoadedModels, data: bytes, name: str, spinner: bool = True) -> Diagnosis | str:
    """Read once per session per (file content, name, models): moving a slider does not rerun the models.
    A new reading takes seconds, so it shows a spinner unless the caller shows progress of its own."""
    key = _reading_key(models, data, name)
    readings = _readings()
    if key not in readings:
        with st.spinner(f"Reading {name}…") if spinner else contextlib.nullcontext():
            reading = read_and_diagnose(models.diagnoser, data, name)
        readings[key] = with_arrays_as(reading, STORED_DTYPE)
        while len(readings) > MAX_READINGS_KEPT:
            readings.popitem(last=False)
    readings.move_to_end(key)
    return with_arrays_as(readings[key], np.float32)


def with_arrays_as(reading: Diagnosis | str, dtype) -> Diagnosis | str:
    """The reading with its picture and heat maps in `dtype`; an error message passes through."""
    if isinstance(reading, str):
        return reading
    xray = dataclasses.replace(reading.xray, pixels=reading.xray.pixels.astype(dtype, copy=False))
    heatmaps = {task: heat.astype(dtype, copy=False) for task, heat in reading.heatmaps.items()}
    return dataclasses.replace(reading, xray=xray, heatmaps=heatmaps)


def read_uploads(models: LoadedModels, uploads) -> list[tuple[str, Diagnosis | str]]:
    """(file name, reading or error) for each upload, in order; a progress bar while new ones are read."""
    files = [(upload.name, upload.getvalue()) for upload in uploads]  # in memory; never written to disk
    new = [name for name, data in files if _reading_key(models, data, name) not in _readings()]
    progress = st.progress(0.0, text="Reading the X-rays…") if len(new) > 1 else None
    results = []
    for index, (name, data) in enumerate(files):
        if progress is not None:
            progress.progress(index / len(files), text=f"Reading {name} ({index + 1} of {len(files)})…")
        results.append((name, cached_reading(models, data, name, spinner=progress is None)))
    if progress is not None:
        progress.empty()
    return results


# ---- samples --------------------------------------------------------------------------------------------


@st.cache_data(ttl=120, show_spinner=False, max_entries=8)
def _samples(folder: str) -> SampleSet:
    return list_samples(Path(folder))


def load_samples() -> SampleSet:
    return _samples(str(samples_dir()))


def samples_or_explain() -> SampleSet | None:
    """The sample set, or None after saying on the page why there is none."""
    sample_set = load_samples()
    if not sample_set.samples:
        no_samples_message(sample_set)
        return None
    return sample_set


def sample_reading(models: LoadedModels, path: Path) -> Diagnosis | str:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"could not read {Path(path).name}: {error.strerror or error}"
    return cached_reading(models, data, Path(path).name)


def no_samples_message(sample_set: SampleSet) -> None:
    from fracture_app.samples import LABELS_FILE

    st.info(
        f"**No sample X-rays found** in `{sample_set.root}`. Put images there with a `{LABELS_FILE}` "
        "(columns `file,source,ground_truth`), or point the environment variable "
        f"`{config.SAMPLES_DIR_ENV}` at a data set folder (FracAtlas, Bone Break, or one folder per class).",
        icon=":material/photo_library:")
    for problem in sample_set.problems[:5]:
        st.caption(problem)
