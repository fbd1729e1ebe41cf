"""How a reading looks on a page: the results table of many files, and one reading in full (verdict, band,
cautions, type guess, original beside its heat map, DICOM header, report download). UI only: the reading itself
comes from fracture_app.diagnosis, through ui's cache.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from fracture_app import config
from fracture_app.cautions import (GUESSED_BRIGHTNESS, INCOMPLETE, LOW_CONTRAST, MORE_FRAMES, NARROW_BAND, NEGATIVE,
                                   READINGS_DISAGREE, TOO_INCOMPLETE, TOO_POOR, TRANSPARENT, TURNED, Caution)
from fracture_app.diagnosis import (ALARM, BAND_LEVEL, BAND_MEANING, CLEARS_NOTHING, LIKELY, LOW_SCORE, NEUTRAL,
                                    NO_VERDICT, NOT_RULED_OUT, POSSIBLE, TYPE_GUESS_WITHHELD, WARNING, Diagnosis)
from fracture_app.gradcam import DEFAULT_OPACITY, overlay
from fracture_app.preprocess import at_most, to_uint8
from fracture_app.report import (TYPE_GUESS_CAVEAT, as_uploaded_words, dicom_summary, heatmap_warning, percent,
                                 report_pdf, report_png)
from fracture_app.samples import HALF_RIGHT, NOT_MARKED, RIGHT, WRONG, Grade
from fracture_app.tables import printable, spreadsheet_safe

THUMBNAIL_SIDE = 96
FILE_COLUMN_PIXELS = 140
EMPTY_HEATMAP = 0.01  # a Grad-CAM whose peak is below this has nothing to show
TRUTH_LABEL = "Data set's label"
# FracAtlas, where the fracture model learnt, has 92 X-rays with hardware, and 90 of them are fractured.
HARDWARE_SAMPLE = ("The data set marks orthopaedic hardware on this film. In FracAtlas nearly every X-ray with hardware "
                   "is labelled fractured (90 of 92), so here the hardware alone gives the label away to you, and may "
                   "to the model: look for the fracture itself.")
TRUTH_BOX_COLOUR = (255, 0, 255)  # magenta: no colour of the heat map's scale
TRUTH_BOX_CAPTION = ("Magenta: where the data set marks the fracture. Does the heat map's hottest spot fall inside? "
                     "It need not: the heat map shows what raised the score, not the fracture's outline.")
HEATMAP_DECOYS = ("Plates, screws, casts and arrows drawn on a figure often draw the heat map and raise the score: "
                  "in FracAtlas nearly every X-ray with hardware is fractured, so the model may take hardware itself "
                  "for a sign. A hot spot on them is not by itself a sign of fracture.")
LEVEL_STYLE = {ALARM: ("error", ":material/emergency:"), WARNING: ("warning", ":material/visibility:"),
               NEUTRAL: ("info", ":material/info:")}
# Every kind shown above a reading (a NOT_READABLE picture shows its reason in place of the reading).
CAUTION_ICONS = {INCOMPLETE: ":material/broken_image:", TOO_INCOMPLETE: ":material/broken_image:",
                 TOO_POOR: ":material/contrast:", READINGS_DISAGREE: ":material/screen_rotation:",
                 TRANSPARENT: ":material/broken_image:",
                 MORE_FRAMES: ":material/burst_mode:", GUESSED_BRIGHTNESS: ":material/contrast:",
                 NARROW_BAND: ":material/contrast:", LOW_CONTRAST: ":material/contrast:",
                 NEGATIVE: ":material/invert_colors:", TURNED: ":material/screen_rotation:"}
BAND_ADVICE = {
    LIKELY: f"The score is at or above the model's high-specificity operating point: {BAND_MEANING[LIKELY]}. That "
            "ranks the X-ray; the probability beside it says how often X-rays scoring so were fractured, and it can "
            "be under 50%.",
    POSSIBLE: "The score is at or above the decision threshold, hence “Fractured”, but below the "
              f"high-specificity operating point: {BAND_MEANING[POSSIBLE]}.",
    NOT_RULED_OUT: "The score is below the decision threshold, hence “Not fractured”, but at or above the "
                   f"high-sensitivity operating point: {BAND_MEANING[NOT_RULED_OUT]}.",
    LOW_SCORE: f"The score is below the model's high-sensitivity operating point: {BAND_MEANING[LOW_SCORE]}. "
               f"{CLEARS_NOTHING[0].upper()}{CLEARS_NOTHING[1:]}.",
}


def thumbnail_uri(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG as a data URI, for st.column_config.ImageColumn."""
    ok, encoded = cv2.imencode(".png", to_uint8(at_most(pixels, side)))
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii") if ok else ""


# The table's columns in the CSV download's order (less the image; append only: a script may read it by position).
RESULT_COLUMNS = ("Image", "File", "Verdict", "Fracture probability (%)", "Reading", "Note", "Type guess",
                  "Type probability (%)")


# On screen, the verdict and what its score means side by side: on a phone only the first few columns show.
SHOWN_COLUMNS = ("File", "Image", "Verdict", "Reading", "Fracture probability (%)", "Note", "Type guess",
                 "Type probability (%)")

MARKDOWN_SPECIALS = set("\\`*_[]<>$~|")
REPORT_MIN_OPACITY = 0.3
CAUTION_MARK = "⚠ "  # before the verdict on screen, where the note explaining it may be scrolled out of view


def results_frame(results: list[tuple[str, Diagnosis | str]]) -> pd.DataFrame:
    """One row per file; unreadable files keep their row, with the reader's message as the note. A picture that
    is not an X-ray gets no verdict in the table: the models' answer on it means nothing (the note says why)."""
    rows = []
    for name, reading in results:
        if isinstance(reading, str):
            rows.append({"Image": None, "File": name, "Verdict": "Not read", "Fracture probability (%)": np.nan,
                         "Type guess": "", "Type probability (%)": np.nan, "Reading": "", "Note": reading})
            continue
        stated = reading.stated()
        rows.append({
            "Image": thumbnail_uri(reading.xray.pixels),
            "File": name,
            "Verdict": stated["verdict"],
            "Fracture probability (%)": _percent_cell(stated["fracture_probability"]),
            "Type guess": stated["fracture_type"] or "",
            "Type probability (%)": _percent_cell(stated["fracture_type_probability"]),
            "Reading": stated["reading"] or "",
            "Note": "; ".join(stated["notes"]),
        })
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def _percent_cell(probability: float | None) -> float:
    return np.nan if probability is None else round(100 * probability, 1)


def results_csv(results: list[tuple[str, Diagnosis | str]]) -> bytes:
    """The table as a file that still says, once separated from the app, which models answered, at what
    threshold, and that it is not for clinical use."""
    frame = results_frame(results).drop(columns=["Image"])
    diagnoses = [reading for _, reading in results if not isinstance(reading, str)]
    versions = diagnoses[0].model_versions if diagnoses else {}
    for task in config.TASKS:
        frame[f"{config.TASK_TITLES[task]} version"] = versions.get(task, "")
    threshold = diagnoses[0].threshold if diagnoses and diagnoses[0].fracture_probability is not None else None
    frame["Decision threshold (%)"] = np.nan if threshold is None else round(100 * threshold, 1)
    frame["Notice"] = config.NOTICE
    # Columns added later go last, so that a script reading the file by position keeps working.
    frame[f"{config.TASK_TITLES[config.ORIENTATION_TASK]} version"] = versions.get(config.ORIENTATION_TASK, "")
    stated = [{} if isinstance(reading, str) else reading.stated() for _, reading in results]
    frame["Turned back before reading"] = [said.get("turned_back") or "" for said in stated]
    frame["Fracture probability as uploaded (%)"] = [
        _percent_cell(said.get("fracture_probability_as_uploaded")) for said in stated]
    for column in frame.columns:
        frame[column] = [spreadsheet_safe(cell) if isinstance(cell, str) else cell for cell in frame[column]]
    return frame.to_csv(index=False).encode("utf-8")


def render_results_table(results: list[tuple[str, Diagnosis | str]], key: str) -> None:
    frame = results_frame(results)
    # Cautions about the image itself (an incomplete file, a faint picture, …), not the type guess's caveat.
    cautioned = [not isinstance(reading, str) and not reading.verdict_withheld and bool(reading.cautions)
                 for _, reading in results]
    frame.loc[cautioned, "Verdict"] = CAUTION_MARK + frame.loc[cautioned, "Verdict"]
    for row, (_, reading) in enumerate(results):
        if not isinstance(reading, str) and reading.fractured_as_uploaded not in (None, reading.fractured):
            frame.loc[row, "Verdict"] += f" (turned back) / {reading.verdict_as_uploaded} (as uploaded)"
    st.dataframe(
        frame, hide_index=True, row_height=56, key=f"{key}_table", placeholder="–", column_order=SHOWN_COLUMNS,
        column_config={
            "Image": st.column_config.ImageColumn("X-ray", width="small"),
            # Pinned (so it shows first), so that on a phone, scrolled to the right-hand columns, each row still says
            # which file it is; narrow enough to leave the verdict room there (the notes below give names in full).
            "File": st.column_config.TextColumn("File", width=FILE_COLUMN_PIXELS, pinned=True),
            "Verdict": st.column_config.TextColumn(
                "Verdict", help=f"{CAUTION_MARK.strip()}: a caution about the image itself, given under Note and in "
                                "the detail view; read it before the verdict"),
            "Reading": st.column_config.TextColumn(
                "Reading", help="What the score means: the band of the fracture score (the detail view explains it)"),
            "Fracture probability (%)": st.column_config.ProgressColumn(
                "Fracture probability", min_value=0, max_value=100, format="%.1f%%", width="medium"),
            "Type probability (%)": st.column_config.NumberColumn("Type probability", format="%.1f%%"),
            "Type guess": st.column_config.TextColumn(
                "Type model's guess", help=f"{TYPE_GUESS_CAVEAT.capitalize()}; given only where the verdict is "
                                           "Fractured (the detail view can show it anyway)"),
            "Note": st.column_config.TextColumn("Note", width="large",
                                                help="Every note is also given in full below the table"),
        },
    )
    render_notes_in_full(frame)
    st.download_button("Download the table (CSV)", data=results_csv(results), file_name="fracture_readings.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore", key=f"{key}_csv",
                       help="A cell starting with =, +, - or @ (a file name can) gets a leading ' in the CSV, so "
                            "that a spreadsheet shows it as text instead of running it as a formula.")


def render_notes_in_full(frame: pd.DataFrame) -> None:
    """The table's notes, each in full: a table cell cuts a long one short, on a phone most of all."""
    lines = [f"- {as_code(name)}: {as_text(note)}" for name, note in zip(frame["File"], frame["Note"]) if note]
    if lines:
        st.markdown("**Notes**\n" + "\n".join(lines))


def as_code(name: str) -> str:
    """A file name shown as it is in Markdown: `*scan*_[1].png` must not turn into emphasis or a link, nor a
    newline in it end the list item. (A double backtick lets a single one inside show.)"""
    return f"`` {printable(name)} ``"


def as_text(note: str) -> str:
    """A note shown as it is in Markdown: a model's error message may hold `*`, `_` or `$` (which starts a formula)."""
    return "".join("\\" + character if character in MARKDOWN_SPECIALS else character for character in printable(note))


# ---- showing one reading ---------------------------------------------------------------------------------


def render_grade(grade: Grade, icon: str, right_icon: str | None = None) -> None:
    """A marked reading: red when the fracture call is wrong, amber when only the type is, green otherwise."""
    show = {WRONG: st.error, HALF_RIGHT: st.warning, RIGHT: st.success, NOT_MARKED: st.info}[grade.outcome]
    show(grade.message, icon=right_icon if grade.outcome == RIGHT and right_icon else icon)


def render_warnings(cautions: tuple[Caution, ...]) -> None:
    """What the trainee must know before trusting anything on the page (an incomplete file, a faint picture, …)."""
    for caution in cautions:
        st.warning(caution.text, icon=CAUTION_ICONS.get(caution.kind, ":material/warning:"))


def render_verdict(diagnosis: Diagnosis, ground_truth: str | None = None) -> None:
    """Verdict, probability and threshold (with the ground truth first when it is known), then the band."""
    if reason := diagnosis.withheld_because:  # the reason once, as the verdict's place; any other caution above it
        render_warnings(tuple(caution for caution in diagnosis.cautions if caution is not reason))
        if ground_truth:
            render_truth(st.columns([3, 4])[0], ground_truth)
        st.info(f"**{NO_VERDICT}.** {reason.text} No type guess and no heat map either: beside no verdict, a hot "
                "spot would look like a finding.", icon=":material/block:")
        return
    render_warnings(diagnosis.cautions)
    if diagnosis.fracture_probability is None:
        st.info("No fracture model is loaded, so there is no verdict; only the type model's guess is shown.")
        return
    threshold_help = (f"At or above {percent(diagnosis.threshold)} the verdict is “Fractured” (the decision "
                      "operating point on the model card).")
    probability_help = ("How often X-rays scoring so were fractured, calibrated on FracAtlas's validation X-rays, of "
                        "which about one in six is fractured: where fractures are more common (a fracture clinic), "
                        "the same score means more. " + threshold_help)
    turned = diagnosis.as_uploaded_probability is not None
    which = " (turned back)" if turned else ""
    if ground_truth:  # the truth needs the room: a type name is long
        columns = st.columns([3, 2, 2])
        render_truth(columns[0], ground_truth)
        columns = columns[1:]
    else:
        columns = st.columns(3)
        columns[2].metric("Decision threshold", percent(diagnosis.threshold), help=threshold_help)
    columns[0].metric(f"Verdict{which}", diagnosis.verdict)
    columns[1].metric(f"Fracture probability{which}", percent(diagnosis.fracture_probability), help=probability_help)
    if turned:
        render_as_uploaded(diagnosis, ground_truth is not None)
    style, icon = LEVEL_STYLE.get(BAND_LEVEL.get(diagnosis.band), ("info", None))
    measured = ""
    if diagnosis.band_measured:
        without, with_fracture = diagnosis.band_measured
        measured = (f" On the model's test split this band held {without:.0%} of the X-rays without a fracture and "
                    f"{with_fracture:.0%} of those with one.")
    whose = ", for the turned-back reading" if turned else ""
    getattr(st, style)(f"**{diagnosis.band.capitalize()}{whose}.** {BAND_ADVICE.get(diagnosis.band, '')}{measured}", icon=icon)


def render_truth(column, ground_truth: str) -> None:
    column.metric(TRUTH_LABEL, ground_truth, help="The label the data set gives this picture: not a second reading "
                  "of it, and sometimes wrong")


def render_as_uploaded(diagnosis: Diagnosis, beside_the_truth: bool) -> None:
    """The fracture model's other reading, of the picture as uploaded, as prominent as the turned-back one, and
    plainly said where the two disagree: the orientation model can be wrong, and a picture can lie otherwise than
    FracAtlas stores it without lying wrongly."""
    columns = st.columns([3, 2, 2]) if beside_the_truth else st.columns(3)
    columns = columns[1:] if beside_the_truth else columns
    columns[0].metric("Verdict (as uploaded)", diagnosis.verdict_as_uploaded)
    columns[1].metric("Fracture probability (as uploaded)", percent(diagnosis.as_uploaded_probability))
    if diagnosis.fractured_as_uploaded != diagnosis.fractured:
        measured = diagnosis.model_measures.get(config.ORIENTATION_TASK, "")
        st.warning(f"**The two readings disagree:** turned back, “{diagnosis.verdict}” "
                   f"({percent(diagnosis.fracture_probability)}); as uploaded, {as_uploaded_words(diagnosis)}. The "
                   f"orientation model can be wrong. {measured} And a picture may have no natural way up (a close "
                   "crop): weigh both, and look at the film.", icon=":material/screen_rotation:")


def render_type_guess(diagnosis: Diagnosis, key: str, always: bool = False) -> None:
    """The type model's top three; beside "Not fractured" behind an expander unless `always` (a picture known to be
    fractured)."""
    if not diagnosis.type_top:
        return
    st.markdown("**The type model's guess** (top 3)")
    measured = diagnosis.model_measures.get(config.TYPE_TASK)
    st.caption(f"{TYPE_GUESS_CAVEAT.capitalize()}." + (f" {measured}" if measured else ""))
    frame = pd.DataFrame({"Fracture type": [name for name, _ in diagnosis.type_top],
                          "Probability (%)": [round(100 * p, 1) for _, p in diagnosis.type_top]})
    if diagnosis.turned_back:
        st.caption("This picture seemed turned; the type model read it as uploaded, as it learnt, so its guess is "
                   "less sure to mean anything.")
    if diagnosis.type_withheld and not always:
        st.caption(TYPE_GUESS_WITHHELD)
        # One per picture: opened for one, it stays closed for the next picture picked.
        with st.expander("Show its guess anyway (if you see a fracture the model missed)",
                         key=f"{key}_type_anyway_{diagnosis.xray.source}"):
            st.altair_chart(type_chart(frame), width="stretch")
        return
    st.altair_chart(type_chart(frame), width="stretch")


def type_chart(frame: pd.DataFrame):
    """Horizontal bars on a 0–100% axis (a short bar must look short), best guess on top, values printed."""
    import altair as alt

    base = alt.Chart(frame).encode(
        x=alt.X("Probability (%):Q", scale=alt.Scale(domain=[0, 100]), title="Probability (%)"),
        y=alt.Y("Fracture type:N", sort="-x", title=None, axis=alt.Axis(labelLimit=240)),  # whole type names
        tooltip=["Fracture type", "Probability (%)"])
    bars = base.mark_bar(color="#1f6f8b", cornerRadiusEnd=3)
    labels = base.mark_text(align="left", dx=4, color="#1b2a35").encode(text=alt.Text("Probability (%):Q", format=".1f"))
    return (bars + labels).properties(height=alt.Step(30))


def render_dicom(diagnosis: Diagnosis) -> None:
    summary = dicom_summary(diagnosis)
    if summary:
        st.markdown("**DICOM header**")
        st.caption(" · ".join(f"{label}: **{value}**" for label, value in summary.items()))


def image_fraction(shape: tuple[int, ...], pictures: int = 2, tallest: float = 0.5) -> float:
    """The share of the page width each of `pictures` side-by-side images gets, so that a tall radiograph
    is no taller than `tallest` times the page width (by default half: the verdict and both pictures then fit on
    one screen)."""
    height, width = shape[:2]
    return min(1.0 / pictures, tallest * width / height)


def image_columns(shape: tuple[int, ...], pictures: int = 2, tallest: float = 0.5) -> list:
    """`pictures` columns sized by `image_fraction`, centred between two spacers."""
    fraction = image_fraction(shape, pictures, tallest)
    spare = max(0.0, 1.0 - pictures * fraction)
    if spare < 0.02:
        return st.columns(pictures)
    return st.columns([spare / 2, *([fraction] * pictures), spare / 2])[1:-1]


def with_boxes(picture: np.ndarray, boxes) -> np.ndarray:
    """The picture (uint8, grey or RGB) with each box (x_centre, y_centre, width, height, relative) outlined."""
    if not boxes:
        return picture
    drawn = cv2.cvtColor(picture, cv2.COLOR_GRAY2RGB) if picture.ndim == 2 else picture.copy()
    height, width = drawn.shape[:2]
    thickness = max(2, round(max(height, width) / 300))
    for x_centre, y_centre, box_width, box_height in boxes:
        corners = [(round((x_centre + sign * box_width / 2) * width), round((y_centre + sign * box_height / 2) * height))
                   for sign in (-1, 1)]
        cv2.rectangle(drawn, *corners, TRUTH_BOX_COLOUR, thickness)
    return drawn


def render_images(diagnosis: Diagnosis, key: str, truth_boxes=()) -> tuple[str | None, float]:
    """Original and Grad-CAM overlay side by side, with the opacity and the heat-map source to choose; where the
    data set marks the fracture, its boxes on both."""
    tasks = [task for task in config.TASKS if task in diagnosis.heatmaps]
    original = with_boxes(to_uint8(diagnosis.xray.pixels), truth_boxes)
    if truth_boxes:
        st.caption(TRUTH_BOX_CAPTION)
    if not tasks:
        image_columns(original.shape, 1)[0].image(original, caption=f"Original: {diagnosis.xray.source}", width="stretch")
        return None, DEFAULT_OPACITY
    controls = st.columns([3, 2])
    task = controls[0].radio(
        "Heat map from", tasks, format_func=lambda t: f"{config.TASK_TITLES[t]} ({config.TASK_HELP[t]})", horizontal=True,
        key=f"{key}_heat", help="Grad-CAM of the fracture model explains its “Fractured” score; Grad-CAM of the "
                                "type model explains its top type.")
    opacity = controls[1].slider("Heat map opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key=f"{key}_opacity")
    left, right = image_columns(original.shape)
    left.image(original, caption=f"Original: {diagnosis.xray.source}", width="stretch")
    heat = overlay(diagnosis.xray.pixels, diagnosis.heatmaps[task], opacity)
    explained = (f"its score for “{diagnosis.best_type[0]}”" if task == config.TYPE_TASK and diagnosis.best_type[0]
                 else "its fracture score")
    right.image(with_boxes(heat, truth_boxes), width="stretch",
                caption=f"Grad-CAM of the {config.TASK_TITLES[task].lower()}, for {explained}: red = raised it most")
    if float(np.max(diagnosis.heatmaps[task])) < EMPTY_HEATMAP:
        st.caption("This heat map is empty: no region raised the score, so it says nothing about where to look.")
    else:
        st.caption(" ".join(filter(None, (heatmap_warning(diagnosis, task), HEATMAP_DECOYS))))
    return task, opacity


def render_report_download(diagnosis: Diagnosis, key: str, task: str | None, opacity: float) -> None:
    # A report's overlay panel is read apart from the slider: at an opacity near 0 it would show no heat map at all.
    opacity = max(opacity, REPORT_MIN_OPACITY)
    columns = st.columns([1, 2])
    choice = columns[0].radio("Report format", ("PDF", "PNG"), horizontal=True, key=f"{key}_report_format")
    maker, mime = (report_pdf, "application/pdf") if choice == "PDF" else (report_png, "image/png")
    stem = Path(diagnosis.xray.source).stem or "xray"
    with columns[1]:
        st.download_button(
            f"Download the report ({choice})", data=lambda: maker(diagnosis, task, opacity),
            file_name=f"{stem}_fracture_report.{choice.lower()}", mime=mime, icon=":material/download:",
            on_click="ignore", key=f"{key}_report",
            help=f"The image, the heat map as shown (at least {REPORT_MIN_OPACITY:.0%} opaque), the verdict, the type "
                 "guess, the model versions and the notice.")


def render_diagnosis(diagnosis: Diagnosis, key: str, report: bool = True, ground_truth: str | None = None,
                     truth_boxes=(), type_always: bool = False, hardware: bool = False) -> None:
    """Everything about one reading: verdict, warnings, type guess, images, DICOM summary, report. A sample's
    label, fracture boxes and hardware flag come with it where the data set gives them."""
    render_verdict(diagnosis, ground_truth)
    if hardware:
        st.info(HARDWARE_SAMPLE, icon=":material/build:")
    task, opacity = render_images(diagnosis, key, truth_boxes)
    details = st.columns(2)
    with details[0]:
        render_type_guess(diagnosis, key, always=type_always)
    with details[1]:
        render_dicom(diagnosis)
        versions = "; ".join(f"{config.TASK_TITLES[t]} {v}" for t, v in diagnosis.model_versions.items())
        st.caption(f"Models: {versions}")
        if report:
            render_report_download(diagnosis, key, task, opacity)
