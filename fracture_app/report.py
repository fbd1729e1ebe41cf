"""A one-page report of one reading, as PNG or PDF, made entirely in memory (nothing touches the disk).

The report carries the image, the Grad-CAM overlay, the verdict with its probability and plain-language
band, the fracture-type model's guess, the model versions and the education-only notice.
"""

from __future__ import annotations

import io
import textwrap
from datetime import datetime, timezone

import cv2
import numpy as np

from fracture_app import config
from fracture_app.diagnosis import (ALARM, BAND_LEVEL, BAND_MEANING, CLEARS_NOTHING, LOW_SCORE, NEUTRAL,
                                    TYPE_GUESS_WITHHELD, WARNING, Diagnosis)
from fracture_app.gradcam import DEFAULT_OPACITY, overlay
from fracture_app.preprocess import at_most, to_uint8

# Longer side of the pictures placed in a report: sharp on A4 and on screen, small enough to share.
REPORT_MAX_SIDE = 1024
TYPE_GUESS_CAVEAT = "meaningful only when a fracture is present"
DICOM_FIELDS = (("BodyPartExamined", "Body part"), ("ViewPosition", "View"), ("Modality", "Modality"),
                ("ImageLaterality", "Laterality"), ("Laterality", "Laterality"),
                ("StudyDescription", "Study"), ("SeriesDescription", "Series"))
# The headline takes the band's colour, as the app's box does (red, amber, blue-grey).
LEVEL_COLOURS = {ALARM: "#b3261e", WARNING: "#8a5a00", NEUTRAL: "#2f4a63"}
NO_BAND_COLOUR = "#333333"
# The PNG page in inches, from the top: the text below the pictures grows the page, never runs off it.
PNG_WIDTH, PNG_MIN_HEIGHT, PNG_DPI = 11.0, 8.5, 110
PNG_PICTURES_TOP, PNG_PICTURES_HEIGHT, PNG_VERDICT_TOP, PNG_ROWS_TOP = 0.85, 4.42, 5.65, 6.08
PNG_LINE_HEIGHT, PNG_BOTTOM_MARGIN = 0.24, 0.35


def as_uploaded_words(diagnosis) -> str:
    """The fracture model's answer on a turned-back picture as it was uploaded (the reader's other reading): its
    score and the verdict that score would give."""
    return f"{percent(diagnosis.as_uploaded_probability)} (“{diagnosis.verdict_as_uploaded}”)"


def percent(probability: float | None) -> str:
    """A probability as a percentage that never claims certainty it does not have (">99.9%", not "100.0%")."""
    if probability is None:
        return "n/a"
    value = 100.0 * float(probability)
    if value > 99.9:
        return ">99.9%"
    if value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%"


def dicom_summary(diagnosis: Diagnosis) -> dict[str, str]:
    """Body part, view, modality (and laterality, descriptions) from a DICOM's header; {} for other files."""
    metadata = diagnosis.xray.metadata or {}
    summary = {}
    for key, label in DICOM_FIELDS:
        if metadata.get(key) and label not in summary:
            summary[label] = str(metadata[key])
    return summary


def heatmap_for(diagnosis: Diagnosis, task: str | None = None) -> tuple[str | None, np.ndarray | None]:
    """The heat map of `task`, else of the binary model, else of whichever model has one."""
    for candidate in (task, config.BINARY_TASK, *diagnosis.heatmaps):
        if candidate in diagnosis.heatmaps:
            return candidate, diagnosis.heatmaps[candidate]
    return None, None


def heatmap_warning(diagnosis: Diagnosis, task: str) -> str | None:
    """What the heat map of `task` must be read with beyond the usual (the app's caption, the report's row)."""
    return BELOW_THRESHOLD_HEATMAP if task == config.BINARY_TASK and diagnosis.fractured is False else None


def pictures(diagnosis: Diagnosis, task: str | None = None,
             opacity: float = DEFAULT_OPACITY) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(original as RGB uint8, overlay as RGB uint8 or None, task of the overlay), both at report size."""
    pixels = at_most(diagnosis.xray.pixels, REPORT_MAX_SIDE)
    original = cv2.cvtColor(to_uint8(pixels), cv2.COLOR_GRAY2RGB)
    task, heat = heatmap_for(diagnosis, task)
    if heat is None:
        return original, None, None
    heat = cv2.resize(heat, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
    return original, overlay(pixels, heat, opacity), task


def findings(diagnosis: Diagnosis, task: str | None = None, opacity: float = DEFAULT_OPACITY,
             generated_at: datetime | None = None) -> list[tuple[str, str]]:
    """The report's text, as (label, value) rows, shared by the PNG and the PDF."""
    rows = [("File", diagnosis.xray.source)]
    if diagnosis.verdict_withheld:
        rows.append(("Verdict", diagnosis.verdict))
    elif diagnosis.fracture_probability is not None:
        turned = " of the picture turned back" if diagnosis.as_uploaded_probability is not None else ""
        rows.append(("Verdict", f"{diagnosis.verdict} (fracture probability {percent(diagnosis.fracture_probability)}"
                                f"{turned})"))
        # Only where the card measured its operating points: without them the band says nothing about the score.
        measured = diagnosis.band_measured and diagnosis.band in BAND_MEANING
        meaning = f": {BAND_MEANING[diagnosis.band]}" if measured else ""
        rows.append(("Reading", f"{diagnosis.band}{meaning}; decision threshold {percent(diagnosis.threshold)}"))
        if diagnosis.band == LOW_SCORE:  # "Not fractured" in large type must not read as a clearance
            rows.append(("Warning", f"A low fracture score: {CLEARS_NOTHING}."))
        if diagnosis.as_uploaded_probability is not None:
            rows.append(("As uploaded",
                         f"not turned back, the fracture model scored it {as_uploaded_words(diagnosis)}"))
    else:
        rows.append(("Verdict", "no fracture model loaded"))
    rows += [("Warning", caution.text) for caution in diagnosis.cautions]
    if diagnosis.type_withheld:
        rows.append(("Type model's guess", TYPE_GUESS_WITHHELD))
    elif diagnosis.type_top:
        guesses = ", ".join(f"{name} {percent(p)}" for name, p in diagnosis.type_top)
        rows.append(("Type model's guess", f"{guesses} ({TYPE_GUESS_CAVEAT})"))
    task, _ = heatmap_for(diagnosis, task)
    if task:
        rows.append(("Heat map", f"Grad-CAM of the {config.TASK_NAMES.get(task, task)}, opacity {opacity:.0%}"))
        if warning := heatmap_warning(diagnosis, task):
            rows.append(("Warning", warning))
    for label, value in dicom_summary(diagnosis).items():
        rows.append((f"DICOM {label.lower()}", value))
    versions = ", ".join(f"{config.TASK_NAMES.get(t, t)} {v}" for t, v in diagnosis.model_versions.items())
    rows.append(("Models", versions or "none"))
    rows += [("How good", f"{config.TASK_TITLES.get(t, t)}: {measure}")
             for t, measure in diagnosis.model_measures.items() if measure]
    when = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    rows.append(("Generated", when))
    return rows


def _title(diagnosis: Diagnosis) -> str:
    return f"Fracture X-ray reading: {diagnosis.verdict}"


def headline(diagnosis: Diagnosis) -> str:
    """The report's large line: whose answer it is, so that a printed page is not read as a diagnosis."""
    return f"Fracture model's verdict: {diagnosis.verdict}"


def headline_colour(diagnosis: Diagnosis) -> str:
    if diagnosis.verdict_withheld:  # the band's colour would tell the score a withheld verdict keeps back
        return NO_BAND_COLOUR
    return LEVEL_COLOURS.get(BAND_LEVEL.get(diagnosis.band), NO_BAND_COLOUR)


def _png_lines(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label or "", line) for each printed line: the label on the first line of its value only."""
    lines = []
    for label, value in rows:
        if label == "File":
            value = textwrap.shorten(value, 110)
        for index, line in enumerate(textwrap.wrap(value, 105) or [""]):
            lines.append((f"{label}:" if index == 0 else "", line))
    return lines


def report_png(diagnosis: Diagnosis, task: str | None = None, opacity: float = DEFAULT_OPACITY,
               generated_at: datetime | None = None) -> bytes:
    """The report as one PNG picture: images on top, findings and notice below."""
    original, blended, task = pictures(diagnosis, task, opacity)
    rows = findings(diagnosis, task, opacity, generated_at)
    if task:  # the PDF says it in its footer
        rows.append(("Reading the heat map", HEATMAP_GUIDE))
    figure = report_figure(diagnosis, original, blended, task, rows)
    buffer = io.BytesIO()
    metadata = {"Title": _title(diagnosis), "Description": "; ".join(f"{k}: {v}" for k, v in rows),
                "Disclaimer": config.NOTICE, "Software": "fracture X-ray reading aid"}
    figure.savefig(buffer, format="png", metadata=metadata)
    return buffer.getvalue()


def report_figure(diagnosis: Diagnosis, original, blended, task: str | None, rows: list[tuple[str, str]]):
    """The PNG report's page; it grows taller with the findings, so no row is cut off."""
    from matplotlib.figure import Figure  # the object API: no pyplot global state, safe across sessions

    lines = _png_lines(rows)
    height = max(PNG_MIN_HEIGHT, PNG_ROWS_TOP + len(lines) * PNG_LINE_HEIGHT + PNG_BOTTOM_MARGIN)

    def y(inches_from_top: float) -> float:
        return 1 - inches_from_top / height

    figure = Figure(figsize=(PNG_WIDTH, height), dpi=PNG_DPI, facecolor="white")
    figure.text(0.04, y(0.30), "Fracture X-ray reading aid: report", fontsize=17, weight="bold", color="#16324f")
    figure.text(0.04, y(0.55), config.NOTICE, fontsize=9.5, color="#7a4b00")
    panels = [(original, "Original")] + ([(blended, f"Grad-CAM overlay ({config.TASK_NAMES.get(task, task)})")]
                                         if blended is not None else [])
    width = 0.9 / len(panels)
    for index, (picture, caption) in enumerate(panels):
        bottom = y(PNG_PICTURES_TOP + PNG_PICTURES_HEIGHT)
        axes = figure.add_axes((0.05 + index * width, bottom, width - 0.02, PNG_PICTURES_HEIGHT / height))
        axes.imshow(picture)
        axes.set_title(caption, fontsize=11)
        axes.axis("off")
    figure.text(0.04, y(PNG_VERDICT_TOP), headline(diagnosis), fontsize=20, weight="bold",
                color=headline_colour(diagnosis))
    for number, (label, line) in enumerate(lines):
        top = PNG_ROWS_TOP + number * PNG_LINE_HEIGHT
        if label:
            figure.text(0.04, y(top), label, fontsize=10, weight="bold", color="#16324f")
        figure.text(0.22, y(top), line, fontsize=10, color="#1b2a35")
    return figure


# fpdf2's built-in fonts speak Latin-1 only; these few characters appear in our own wording.
_LATIN1 = str.maketrans({"—": "-", "–": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "…": "...", "≥": ">=",
                         "≤": "<=", "→": "->", "×": "x"})


# Grad-CAM is scaled to its own peak, so a score below the threshold still shows a red spot as bright as a fracture's
# (said in the app and in the report).
BELOW_THRESHOLD_HEATMAP = ("The score is below the decision threshold, but the heat map is scaled to its own peak: its "
                           "red marks what raised this score, as bright as on a fractured X-ray, and need not point "
                           "at a fracture.")
HEATMAP_GUIDE = ("Warm colours mark the regions that most raised the model's score. It is coarse, it is not an "
                 "outline of a fracture, and it can point at plates, screws, text or borders.")
PDF_FOOTER = f"How to read the heat map: {HEATMAP_GUIDE} {config.NOTICE}"
# Millimetres on the A4 page.
PDF_PICTURE_MAX_HEIGHT, PDF_PICTURE_MIN_HEIGHT = 95, 40
PDF_CAPTION_SPACE = 9  # the caption under the pictures and the gap after it
PDF_VERDICT_HEIGHT = 10


def _latin1(text: str) -> str:
    return str(text).translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def report_pdf(diagnosis: Diagnosis, task: str | None = None, opacity: float = DEFAULT_OPACITY,
               generated_at: datetime | None = None) -> bytes:
    """The report as a one-page A4 PDF."""
    from fpdf import FPDF
    from PIL import Image

    original, blended, task = pictures(diagnosis, task, opacity)
    rows = findings(diagnosis, task, opacity, generated_at)
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_latin1(_title(diagnosis)))
    pdf.set_subject(_latin1(f"{diagnosis.verdict}; {config.NOTICE}"))
    pdf.set_creator("fracture X-ray reading aid")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.set_text_color(22, 50, 79)
    pdf.cell(0, 9, "Fracture X-ray reading aid: report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    pdf.set_fill_color(255, 243, 214)
    pdf.set_text_color(90, 55, 0)
    pdf.multi_cell(0, 5, _latin1(config.NOTICE), border=0, fill=True, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    panels = [(original, "Original")]
    if blended is not None:
        panels.append((blended, f"Grad-CAM overlay ({config.TASK_NAMES.get(task, task)}, opacity {opacity:.0%})"))
    usable = pdf.w - pdf.l_margin - pdf.r_margin
    gap = 4
    box = (usable - gap * (len(panels) - 1)) / len(panels)
    label_width = 42
    top = pdf.get_y()
    # The pictures give way to the text, so that a tall picture with many rows still fits on one page.
    footer = PDF_FOOTER if blended is not None else config.NOTICE  # no heat map drawn: nothing to read on it
    text_below = PDF_VERDICT_HEIGHT + _pdf_rows_height(pdf, rows, usable - label_width) + _pdf_footer_height(pdf, footer)
    max_height = max(PDF_PICTURE_MIN_HEIGHT,
                     min(PDF_PICTURE_MAX_HEIGHT, pdf.h - pdf.b_margin - top - PDF_CAPTION_SPACE - text_below))
    tallest = 0.0
    for index, (picture, caption) in enumerate(panels):
        height, width = picture.shape[:2]
        scale = min(box / width, max_height / height)
        w, h = width * scale, height * scale
        x = pdf.l_margin + index * (box + gap) + (box - w) / 2
        pdf.image(Image.fromarray(picture), x=x, y=top, w=w, h=h)
        pdf.set_xy(pdf.l_margin + index * (box + gap), top + h + 1)
        pdf.set_font("helvetica", "I", 8)
        pdf.set_text_color(80, 80, 80)
        pdf.cell(box, 4, _latin1(caption), align="C")
        tallest = max(tallest, h + 6)
    pdf.set_xy(pdf.l_margin, top + tallest + 3)

    red, green, blue = (int(headline_colour(diagnosis)[i:i + 2], 16) for i in (1, 3, 5))
    pdf.set_font("helvetica", "B", 18)
    pdf.set_text_color(red, green, blue)
    pdf.cell(0, 10, _latin1(headline(diagnosis)), new_x="LMARGIN", new_y="NEXT")
    for label, value in rows:
        pdf.set_font("helvetica", "B", 10)
        pdf.set_text_color(22, 50, 79)
        y = pdf.get_y()
        pdf.cell(label_width, 6, _latin1(label))
        pdf.set_font("helvetica", "", 10)
        pdf.set_text_color(27, 42, 53)
        pdf.set_xy(pdf.l_margin + label_width, y)
        pdf.multi_cell(usable - label_width, 6, _latin1(value), align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("helvetica", "I", 8.5)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(0, 4.5, _latin1(footer), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _pdf_rows_height(pdf, rows: list[tuple[str, str]], value_width: float) -> float:
    pdf.set_font("helvetica", "", 10)
    return sum(pdf.multi_cell(value_width, 6, _latin1(value), dry_run=True, output="HEIGHT") for _, value in rows)


def _pdf_footer_height(pdf, footer: str) -> float:
    pdf.set_font("helvetica", "I", 8.5)
    return 4 + pdf.multi_cell(0, 4.5, _latin1(footer), dry_run=True, output="HEIGHT")
