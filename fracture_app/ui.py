"""Streamlit pieces every page shares: the cached models, the sidebar, and showing one reading.

The pages in `pages/` stay thin; what they do in common lives here. Models load once per server
process (`st.cache_resource`) and are shared by every session. Uploaded bytes stay in memory: they go
straight to `read_image`, and only a display-sized copy of each reading is kept in the session.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from fracture_app import config, import_tensorflow_quietly
from fracture_app.diagnosis import LIKELY, NOT_RULED_OUT, NOT_SEEN, POSSIBLE, Diagnoser, Diagnosis
from fracture_app.errors import FractureAppError
from fracture_app.gradcam import DEFAULT_OPACITY, overlay
from fracture_app.imaging import read_image
from fracture_app.models import card_path_for, model_path_for
from fracture_app.report import (REPORT_MAX_SIDE, TYPE_GUESS_CAVEAT, dicom_summary, percent, report_pdf,
                                 report_png, shrink)
from fracture_app.samples import SampleSet, list_samples, samples_dir

TASK_TITLES = {task: name.capitalize() for task, name in config.TASK_NAMES.items()}
TASK_HELP = {config.BINARY_TASK: "fractured or not",
             config.TYPE_TASK: f"which of {len(config.FRACTURE_TYPES)} fracture types"}
TYPE_NAMES_TEXT = ", ".join(name.lower().removesuffix(" fracture") for name in config.FRACTURE_TYPES)
UPLOAD_LIMIT_TEXT = f"Up to {config.MAX_FILE_BYTES // 2**20} MB per file."
UPLOAD_TYPES_TEXT = "JPEG, PNG, BMP, TIFF, GIF or DICOM (.dcm, .dicom or no extension)"
DISPLAY_MAX_SIDE = REPORT_MAX_SIDE  # readings kept in the session are shrunk to this (memory per session)
THUMBNAIL_SIDE = 96
EMPTY_HEATMAP = 0.01  # a Grad-CAM whose peak is below this has nothing to show
READINGS_KEY = "_fracture_readings"
MAX_READINGS_KEPT = 32  # per session; the oldest are dropped first
# Kept readings hold their picture and heat maps as float16: at most 32 × 3 × 1024² × 2 B ≈ 200 MB a session.
STORED_DTYPE = np.float16
BAND_STYLE = {LIKELY: ("error", ":material/emergency:"), POSSIBLE: ("warning", ":material/visibility:"),
              NOT_RULED_OUT: ("warning", ":material/visibility:"), NOT_SEEN: ("success", ":material/check_circle:")}
CAUTION_ICONS = {"incomplete": ":material/broken_image:", "more_frames": ":material/burst_mode:",
                 "guessed_brightness": ":material/contrast:"}
BAND_ADVICE = {
    LIKELY: "The score is at or above the model's high-specificity operating point: few X-rays without a "
            "fracture score this high.",
    POSSIBLE: "The score is at or above the decision threshold, hence “Fractured”, but below the "
              "high-specificity operating point: many X-rays without a fracture score this high too.",
    NOT_RULED_OUT: "The score is below the decision threshold, hence “Not fractured”, but at or above the "
                   "high-sensitivity operating point: some fractured X-rays score this low too.",
    NOT_SEEN: "The score is below the model's high-sensitivity operating point: few fractured X-rays score this low.",
}


# ---- models ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModels:
    directory: Path
    diagnoser: Diagnoser | None
    error: str | None  # why nothing could be loaded
    fingerprint: str  # changes when a model file or card changes; part of every cached reading's key

    @property
    def problems(self) -> list[str]:
        """Why a model is missing while the other one loaded."""
        return list(self.diagnoser.problems) if self.diagnoser else []

    @property
    def versions(self) -> dict[str, str]:
        return self.diagnoser.model_versions if self.diagnoser else {}


def _fingerprint(directory: Path) -> str:
    parts = []
    for task in config.TASKS:
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
            "another folder). Train them with `python -m training.train --task binary --data …` and "
            "`python -m training.train --task type --data …`. The **About** page works without them.")
        st.stop()
    for problem in models.problems:
        st.warning(f"One model is missing, so part of the answer is not shown: {problem}", icon=":material/warning:")
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
        page.run()
        st.caption(config.NOTICE)  # also at the foot of every page: on a phone the sidebar starts folded
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
            for task in config.TASKS:
                if task in models.versions:
                    st.caption(f"{TASK_TITLES[task]} ({TASK_HELP[task]}): version `{models.versions[task]}`")
                else:
                    st.caption(f"{TASK_TITLES[task]}: not loaded")


# ---- readings -------------------------------------------------------------------------------------------


def for_display(diagnosis: Diagnosis, max_side: int = DISPLAY_MAX_SIDE) -> Diagnosis:
    """The same reading with its picture and heat maps shrunk, to keep in the session."""
    xray = dataclasses.replace(diagnosis.xray, pixels=shrink(diagnosis.xray.pixels, max_side))
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
    except FractureAppError as error:
        return str(error)
    except Exception as error:  # the models failed on this one image: the others must still be read
        return f"the models could not process this image ({type(error).__name__}: {error})"
    return for_display(diagnosis)


def _reading_key(models: LoadedModels, data: bytes, name: str) -> str:
    return f"{models.fingerprint}:{hashlib.sha256(data).hexdigest()}:{name}"


def _readings() -> OrderedDict:
    return st.session_state.setdefault(READINGS_KEY, OrderedDict())


def cached_reading(models: LoadedModels, data: bytes, name: str) -> Diagnosis | str:
    """Read once per session per (file content, name, models): moving a slider does not rerun the models."""
    key = _reading_key(models, data, name)
    readings = _readings()
    if key not in readings:
        readings[key] = with_arrays_as(read_and_diagnose(models.diagnoser, data, name), STORED_DTYPE)
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
        results.append((name, cached_reading(models, data, name)))
    if progress is not None:
        progress.empty()
    return results


def thumbnail_uri(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG as a data URI, for st.column_config.ImageColumn."""
    small = shrink(pixels, side)
    ok, encoded = cv2.imencode(".png", np.clip(small * 255.0, 0, 255).astype(np.uint8))
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""


# The reading and its cautions before the type guess: on a laptop screen the last columns need scrolling to.
RESULT_COLUMNS = ("Image", "File", "Verdict", "Fracture probability (%)", "Reading", "Note", "Type guess",
                  "Type probability (%)")


def results_frame(results: list[tuple[str, Diagnosis | str]]) -> pd.DataFrame:
    """One row per file; unreadable files keep their row, with the reader's message as the note."""
    rows = []
    for name, reading in results:
        if isinstance(reading, str):
            rows.append({"Image": None, "File": name, "Verdict": "Not read", "Fracture probability (%)": np.nan,
                         "Type guess": "", "Type probability (%)": np.nan, "Reading": "", "Note": reading})
            continue
        best, best_p = (reading.type_top or [("", None)])[0]
        probability = reading.fracture_probability
        rows.append({
            "Image": thumbnail_uri(reading.xray.pixels),
            "File": name,
            "Verdict": reading.verdict,
            "Fracture probability (%)": np.nan if probability is None else round(100 * probability, 1),
            "Type guess": best,
            "Type probability (%)": np.nan if best_p is None else round(100 * best_p, 1),
            "Reading": reading.band or "",
            "Note": "; ".join(reading.notes),
        })
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def results_csv(frame: pd.DataFrame) -> bytes:
    return frame.drop(columns=["Image"]).to_csv(index=False).encode("utf-8")


def render_results_table(results: list[tuple[str, Diagnosis | str]], key: str) -> None:
    frame = results_frame(results)
    st.dataframe(
        frame, hide_index=True, row_height=56, key=f"{key}_table", placeholder="–",
        column_config={
            "Image": st.column_config.ImageColumn("X-ray", width="small"),
            "File": st.column_config.TextColumn("File", width="medium"),
            "Fracture probability (%)": st.column_config.ProgressColumn(
                "Fracture probability", min_value=0, max_value=100, format="%.1f%%", width="medium"),
            "Type probability (%)": st.column_config.NumberColumn("Type probability", format="%.1f%%"),
            "Type guess": st.column_config.TextColumn("Type model's guess", help=TYPE_GUESS_CAVEAT.capitalize()),
            "Note": st.column_config.TextColumn("Note", width="large"),
        },
    )
    st.download_button("Download the table (CSV)", data=results_csv(frame), file_name="fracture_readings.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key=f"{key}_csv")


# ---- showing one reading ---------------------------------------------------------------------------------


def render_warnings(diagnosis: Diagnosis) -> None:
    """What the trainee must know before trusting anything on the page (not an X-ray, an incomplete file, …)."""
    for caution in diagnosis.cautions:
        st.warning(caution.text, icon=CAUTION_ICONS.get(caution.kind, ":material/warning:"))


def render_verdict(diagnosis: Diagnosis, ground_truth: str | None = None) -> None:
    """Verdict, probability and threshold (with the ground truth first when it is known), then the band."""
    render_warnings(diagnosis)
    if diagnosis.fracture_probability is None:
        st.info("No fracture model is loaded, so there is no verdict; only the type model's guess is shown.")
        return
    threshold_help = (f"At or above {percent(diagnosis.threshold)} the verdict is “Fractured” (the decision "
                      "operating point on the model card).")
    if ground_truth:  # the truth needs the room: a type name is long
        columns = st.columns([3, 2, 2])
        columns[0].metric("Ground truth", ground_truth)
        columns = columns[1:]
    else:
        columns = st.columns(3)
        columns[2].metric("Decision threshold", percent(diagnosis.threshold), help=threshold_help)
    columns[0].metric("Verdict", diagnosis.verdict)
    columns[1].metric("Fracture probability", percent(diagnosis.fracture_probability), help=threshold_help)
    style, icon = BAND_STYLE.get(diagnosis.band, ("info", None))
    getattr(st, style)(f"**{diagnosis.band.capitalize()}.** {BAND_ADVICE.get(diagnosis.band, '')}", icon=icon)


def render_type_guess(diagnosis: Diagnosis) -> None:
    if not diagnosis.type_top:
        return
    st.markdown("**The type model's guess** (top 3)")
    caution = diagnosis.type_caution
    st.caption(f"{TYPE_GUESS_CAVEAT.capitalize()}." + (f" {caution.text}" if caution else ""))
    frame = pd.DataFrame({"Fracture type": [name for name, _ in diagnosis.type_top],
                          "Probability (%)": [round(100 * p, 1) for _, p in diagnosis.type_top]})
    st.altair_chart(type_chart(frame), width="stretch")


def type_chart(frame: pd.DataFrame):
    """Horizontal bars on a 0–100% axis (a short bar must look short), best guess on top, values printed."""
    import altair as alt

    base = alt.Chart(frame).encode(
        x=alt.X("Probability (%):Q", scale=alt.Scale(domain=[0, 100]), title="Probability (%)"),
        y=alt.Y("Fracture type:N", sort="-x", title=None),
        tooltip=["Fracture type", "Probability (%)"])
    bars = base.mark_bar(color="#1f6f8b", cornerRadiusEnd=3)
    labels = base.mark_text(align="left", dx=4, color="#1b2a35").encode(text=alt.Text("Probability (%):Q", format=".1f"))
    return (bars + labels).properties(height=alt.Step(30))


def render_dicom(diagnosis: Diagnosis) -> None:
    summary = dicom_summary(diagnosis)
    if summary:
        st.markdown("**DICOM header**")
        st.caption(" · ".join(f"{label}: **{value}**" for label, value in summary.items()))


def image_fraction(shape: tuple[int, ...], pictures: int = 2) -> float:
    """The share of the page width each of `pictures` side-by-side images gets, so that a tall radiograph
    is no taller than half the page width (the verdict and both pictures then fit on one screen)."""
    height, width = shape[:2]
    return min(1.0 / pictures, 0.5 * width / height)


def image_columns(shape: tuple[int, ...], pictures: int = 2) -> list:
    """`pictures` columns sized by `image_fraction`, centred between two spacers."""
    fraction = image_fraction(shape, pictures)
    spare = max(0.0, 1.0 - pictures * fraction)
    if spare < 0.02:
        return st.columns(pictures)
    return st.columns([spare / 2, *([fraction] * pictures), spare / 2])[1:-1]


def render_images(diagnosis: Diagnosis, key: str) -> tuple[str | None, float]:
    """Original and Grad-CAM overlay side by side, with the opacity and the heat-map source to choose."""
    tasks = [task for task in config.TASKS if task in diagnosis.heatmaps]
    original = np.clip(diagnosis.xray.pixels * 255.0, 0, 255).astype(np.uint8)
    if not tasks:
        image_columns(original.shape, 1)[0].image(original, caption=f"Original: {diagnosis.xray.source}", width="stretch")
        return None, DEFAULT_OPACITY
    controls = st.columns([3, 2])
    task = controls[0].radio(
        "Heat map from", tasks, format_func=lambda t: f"{TASK_TITLES[t]} ({TASK_HELP[t]})", horizontal=True,
        key=f"{key}_heat", help="Grad-CAM of the fracture model explains its “Fractured” score; Grad-CAM of the "
                                "type model explains its top type.")
    opacity = controls[1].slider("Heat map opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key=f"{key}_opacity")
    left, right = image_columns(original.shape)
    left.image(original, caption=f"Original: {diagnosis.xray.source}", width="stretch")
    right.image(overlay(diagnosis.xray.pixels, diagnosis.heatmaps[task], opacity), width="stretch",
                caption=f"Grad-CAM of the {TASK_TITLES[task].lower()}: red = raised the score most")
    if float(np.max(diagnosis.heatmaps[task])) < EMPTY_HEATMAP:
        st.caption("This heat map is empty: no region raised the score, so it says nothing about where to look.")
    return task, opacity


def render_report_download(diagnosis: Diagnosis, key: str, task: str | None, opacity: float) -> None:
    columns = st.columns([1, 2])
    choice = columns[0].radio("Report format", ("PDF", "PNG"), horizontal=True, key=f"{key}_report_format")
    maker, mime = (report_pdf, "application/pdf") if choice == "PDF" else (report_png, "image/png")
    stem = Path(diagnosis.xray.source).stem or "xray"
    with columns[1]:
        st.download_button(
            f"Download the report ({choice})", data=lambda: maker(diagnosis, task, opacity),
            file_name=f"{stem}_fracture_report.{choice.lower()}", mime=mime, icon=":material/download:",
            on_click="ignore", key=f"{key}_report",
            help="The image, the heat map as shown, the verdict, the type guess, the model versions and the notice.")


def render_diagnosis(diagnosis: Diagnosis, key: str, report: bool = True, ground_truth: str | None = None) -> None:
    """Everything about one reading: verdict, warnings, type guess, images, DICOM summary, report."""
    render_verdict(diagnosis, ground_truth)
    task, opacity = render_images(diagnosis, key)
    details = st.columns(2)
    with details[0]:
        render_type_guess(diagnosis)
    with details[1]:
        render_dicom(diagnosis)
        versions = "; ".join(f"{TASK_TITLES[t]} {v}" for t, v in diagnosis.model_versions.items())
        st.caption(f"Models: {versions}")
        if report:
            render_report_download(diagnosis, key, task, opacity)


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
    from fracture_app.samples import LABELS_FILE, SAMPLES_DIR_ENV

    st.info(
        f"**No sample X-rays found** in `{sample_set.root}`. Put images there with a `{LABELS_FILE}` "
        "(columns `file,source,ground_truth`), or point the environment variable "
        f"`{SAMPLES_DIR_ENV}` at a data set folder (FracAtlas, Bone Break, or one folder per class).",
        icon=":material/photo_library:")
    for problem in sample_set.problems[:5]:
        st.caption(problem)
