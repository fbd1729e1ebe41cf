"""Per-image reports: valid PNG and PDF bytes, made in memory, carrying the verdict, versions and notice."""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from fracture_app import config
from fracture_app.diagnosis import LIKELY, NOT_RULED_OUT, LOW_SCORE, POSSIBLE, Diagnosis
from fracture_app.imaging import XRay, read_image
from fracture_app.report import (dicom_summary, findings, headline_colour, percent, pictures, report_figure,
                                 report_pdf, report_png)

WHEN = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)


def make_diagnosis(probability=0.42, band=POSSIBLE, threshold=0.3, pixels=None, metadata=None, heat=True) -> Diagnosis:
    if pixels is None:
        pixels = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (200, 1))
    xray = XRay(pixels, "wrist — left.png", "PNG", 0.0, {"original_size": pixels.shape, **(metadata or {})})
    heatmaps = {}
    if heat:
        heatmaps = {config.BINARY_TASK: np.outer(np.hanning(pixels.shape[0]), np.hanning(pixels.shape[1])).astype(np.float32),
                    config.TYPE_TASK: np.full(pixels.shape, 0.5, np.float32)}
    types = {"Oblique fracture": 0.6, "Spiral Fracture": 0.3, "Hairline Fracture": 0.05, "Avulsion fracture": 0.05}
    return Diagnosis(xray, probability, threshold, band, types, heatmaps,
                     {config.BINARY_TASK: "2026.01.01-0001", config.TYPE_TASK: "2026.01.01-0002"})


def pdf_text(data: bytes) -> str:
    """The text drawn on the page: fpdf2 writes it into deflated content streams with a built-in font. Each stream
    is taken by its /Length: found by its end marker instead, a stream whose last byte is a carriage return (the
    checksum's, so about one report in 256, as its timestamp changes) lost that byte and would not inflate."""
    texts, position = [], 0
    while (start := data.find(b"stream", position)) != -1:
        if data[start - 3:start] == b"end":
            position = start + len(b"stream")
            continue
        length = int(re.findall(rb"/Length (\d+)", data[position:start])[-1])
        body = start + len(b"stream") + (2 if data[start + 6:start + 8] == b"\r\n" else 1)
        content, position = data[body:body + length], body + length
        try:
            content = zlib.decompress(content)
        except zlib.error:
            pass
        texts += [t.replace(rb"\(", b"(").replace(rb"\)", b")") for t in re.findall(rb"\(((?:[^()\\]|\\.)*)\) Tj", content)]
    return b" ".join(texts).decode("latin-1")


def test_png_report_is_a_valid_png_with_the_verdict():
    data = report_png(make_diagnosis(), generated_at=WHEN)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.width > 800 and image.height > 600
    assert image.text["Title"] == "Fracture X-ray reading: Fractured"
    description = image.text["Description"]
    assert "Fractured (fracture probability 42.0%)" in description
    assert "Oblique fracture 60.0%" in description and "2026.01.01-0002" in description
    assert "Reading the heat map: Warm colours mark" in description  # the PDF's footer, as a row here
    assert image.text["Disclaimer"] == config.NOTICE
    colours = np.asarray(image.convert("RGB"))
    assert colours.std() > 10  # pictures and text, not a blank page


def test_pdf_report_is_a_valid_pdf_with_the_verdict_versions_and_notice():
    data = report_pdf(make_diagnosis(), config.TYPE_TASK, 0.7, generated_at=WHEN)
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in data and data.count(b"/Subtype /Image") >= 2
    text = pdf_text(data)
    assert "Fractured (fracture probability 42.0%)" in text
    assert "Fracture model's verdict: Fractured" in text  # the headline says whose answer it is
    assert "possible fracture - look closely" in text  # the em dash, in the PDF's Latin-1 font
    assert "Oblique fracture 60.0%" in text
    assert "fracture-type model, opacity 70%" in text
    assert "2026.01.01-0001" in text and "2026-01-02 03:04 UTC" in text
    assert "For education and research only" in text
    assert "wrist - left.png" in text


def test_not_fractured_report_and_a_reading_without_heat_maps():
    diagnosis = make_diagnosis(probability=0.01, band=LOW_SCORE, heat=False)
    text = pdf_text(report_pdf(diagnosis))
    assert "Not fractured (fracture probability 1.0%)" in text
    assert "A low fracture score: it clears nothing" in text  # the report leaves the app: the caution goes with it
    assert "No type guess: the fracture model's score is below its decision threshold" in text
    assert "Oblique fracture" not in text  # withheld beside "Not fractured", as in the app and the CSV
    assert "heat map is scaled to its own peak" not in text, "no heat map here: no warning about one"
    assert "heat map is scaled to its own peak" in pdf_text(report_pdf(make_diagnosis(probability=0.01, band=LOW_SCORE)))
    assert "heat map is scaled to its own peak" not in pdf_text(report_pdf(make_diagnosis()))  # a "Fractured"
    assert "No type guess" not in pdf_text(report_pdf(make_diagnosis()))
    assert Image.open(io.BytesIO(report_png(diagnosis))).text["Title"].endswith("Not fractured")


def test_a_report_on_noise_gives_no_verdict_and_no_type_guess():
    noise = np.random.default_rng(0).random((200, 300), dtype=np.float32)
    text = pdf_text(report_pdf(make_diagnosis(pixels=noise, heat=False)))
    assert "Verdict No verdict" in text.replace("\n", " ") and "looks like noise" in text
    assert "fracture probability" not in text and "Oblique fracture" not in text


def test_a_large_image_is_shrunk_and_a_dicom_is_summarised():
    pixels = np.random.default_rng(1).random((3000, 2400), dtype=np.float32)
    diagnosis = make_diagnosis(pixels=pixels, metadata={"Modality": "DX", "BodyPartExamined": "WRIST", "ViewPosition": "PA"})
    assert dicom_summary(diagnosis) == {"Body part": "WRIST", "View": "PA", "Modality": "DX"}
    pdf = report_pdf(diagnosis)
    assert len(pdf) < 3_000_000
    assert "WRIST" in pdf_text(pdf)
    assert ("DICOM body part", "WRIST") in findings(diagnosis)


def test_every_row_of_a_long_png_report_is_on_the_page():
    metadata = {"Modality": "DX", "BodyPartExamined": "WRIST", "ViewPosition": "PA", "ImageLaterality": "L",
                "StudyDescription": "Wrist two views " * 6, "SeriesDescription": "Left wrist PA " * 6,
                "missing_fraction": 0.1, "frames": 2, "brightness_bits": 12}
    diagnosis = make_diagnosis(probability=0.01, band=LOW_SCORE, metadata=metadata)
    rows = findings(diagnosis, generated_at=WHEN)
    original, blended, task = pictures(diagnosis)
    figure = report_figure(diagnosis, original, blended, task, rows)
    renderer = FigureCanvasAgg(figure).get_renderer()
    page = figure.bbox
    drawn = [text for text in figure.texts if text.get_text()]
    assert "Generated:" in [text.get_text() for text in drawn]  # the last row
    for text in drawn:
        box = text.get_window_extent(renderer)
        assert page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()
    assert figure.get_figheight() > 8.5  # grown, not cropped


def test_a_tall_picture_turned_back_with_many_rows_keeps_its_pdf_report_on_one_page():
    metadata = {"Modality": "DX", "BodyPartExamined": "WRIST", "ViewPosition": "PA", "ImageLaterality": "L",
                "StudyDescription": "Wrist two views " * 6, "SeriesDescription": "Left wrist PA " * 6,
                "missing_fraction": 0.1, "frames": 2, "brightness_bits": 12}
    tall = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (900, 1))
    diagnosis = replace(make_diagnosis(pixels=tall, metadata=metadata), turn=1, as_uploaded_probability=0.12)
    data = report_pdf(diagnosis, generated_at=WHEN)
    assert len(re.findall(rb"/Type /Page\b", data)) == 1
    text = pdf_text(data)
    assert "As uploaded" in text and "Generated 2026-01-02" in text and text.endswith(config.NOTICE)


def test_the_reading_row_says_what_the_band_means_for_the_score_where_the_card_measured_it():
    def reading(band, measured=(0.2, 0.7)):
        diagnosis = replace(make_diagnosis(probability=0.42, band=band, threshold=0.3), band_measured=measured)
        return dict(findings(diagnosis, generated_at=WHEN))["Reading"]

    assert reading(POSSIBLE) == f"{POSSIBLE}: many X-rays without a fracture score this high too; decision threshold 30.0%"
    assert reading(NOT_RULED_OUT).startswith(f"{NOT_RULED_OUT}: some fractured X-rays score this low too;")
    assert reading(LIKELY).startswith(f"{LIKELY}: few X-rays without a fracture score this high;")
    assert reading(LOW_SCORE).startswith(f"{LOW_SCORE}: few fractured X-rays score this low;")
    assert reading(POSSIBLE, measured=None) == f"{POSSIBLE}; decision threshold 30.0%", "no operating points measured"


def test_the_headline_takes_the_bands_colour():
    colours = {band: headline_colour(make_diagnosis(band=band)) for band in (LIKELY, POSSIBLE, NOT_RULED_OUT, LOW_SCORE)}
    assert colours[POSSIBLE] == colours[NOT_RULED_OUT]  # both say "look closely", as the app's amber box does
    assert len({colours[LIKELY], colours[POSSIBLE], colours[LOW_SCORE]}) == 3
    # A withheld verdict's headline is one colour whatever its band: the colour would tell the score kept back.
    withheld = {headline_colour(make_diagnosis(probability=0.2, band=band, metadata={"missing_fraction": 0.4}))
                for band in (NOT_RULED_OUT, LOW_SCORE)}
    assert len(withheld) == 1 and not withheld & set(colours.values())


def test_report_of_a_real_xray_through_the_real_models(fractured_xray_path, tiny_models_dir, monkeypatch):
    from fracture_app import ui

    monkeypatch.setenv("FRACTURE_MODELS_DIR", str(tiny_models_dir))
    diagnoser = ui.load_models().diagnoser  # Diagnoser.from_dir, cached per process (shared with the app tests)
    diagnosis = ui.for_display(diagnoser.diagnose(read_image(fractured_xray_path)))
    text = pdf_text(report_pdf(diagnosis))
    assert f"{diagnosis.verdict} (fracture probability {percent(diagnosis.fracture_probability)})" in text
    assert "How good" in text
    said = [value for label, value in findings(diagnosis) if label == "How good"]
    cards = [model.card for model in diagnoser.every_model.values() if model.card.measured_in_brief]
    assert said and len(said) == len(cards)
    assert all(value.endswith(card.measured_in_brief) for value, card in zip(said, cards))
    assert Image.open(io.BytesIO(report_png(diagnosis))).text["Title"].endswith(diagnosis.verdict)


@pytest.mark.parametrize("value, shown", [(None, "n/a"), (0.0, "<0.1%"), (0.0004, "<0.1%"), (0.5, "50.0%"),
                                          (0.9994, ">99.9%"), (1.0, ">99.9%"), (0.999, "99.9%")])
def test_percent_never_claims_certainty(value, shown):
    assert percent(value) == shown


def test_a_reading_turned_back_reports_the_score_as_uploaded_too():
    from dataclasses import replace

    turned = replace(make_diagnosis(probability=0.42, threshold=0.3), turn=2, as_uploaded_probability=0.12, cautions=None)
    rows = dict(findings(turned, config.BINARY_TASK, 0.5))
    assert rows["As uploaded"] == "not turned back, the fracture model scored it 12.0% (“Not fractured”)"
    assert any("upside down" in text for label, text in findings(turned, config.BINARY_TASK, 0.5) if label == "Warning")
    assert "As uploaded" not in dict(findings(make_diagnosis(), config.BINARY_TASK, 0.5))
