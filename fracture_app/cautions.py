"""What can make a reading untrustworthy, worded once for the app, the report, the command line and Teaching.

A Caution is about the picture itself (a negative, low contrast, an incomplete or partly transparent file, several
frames, a guessed brightness), about a picture that is no radiograph (it gets no verdict at all), or about the
reading (turned back). Where the fracture score is below the threshold, some of them withhold the "Not fractured"
that would be given (cautions_against_a_negative); a "Fractured" stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fracture_app import config
from fracture_app.imaging import XRay
from fracture_app.pixels import FEW_SHADES, FEWEST_XRAY_SHADES, LEAST_XRAY_SPREAD, roughness, shade_count

if TYPE_CHECKING:  # a reading, for the cautions that depend on its scores
    from fracture_app.diagnosis import Diagnosis

NOT_READABLE = "not_xray"  # a caution that withholds the verdict: not a radiograph the models can read
# Cautions that withhold a "Not fractured" (a "Fractured" stands): too little of the picture is there; a picture
# unlike those the model learnt from in a way it misses nearly every fracture on (a negative, a flat or dull one);
# the fracture model's two readings of a turned picture disagree, and the one as uploaded says "Fractured".
TOO_INCOMPLETE = "too_incomplete"
TOO_POOR = "too_poor_for_a_negative"
READINGS_DISAGREE = "readings_disagree"
WITHHOLDING = (NOT_READABLE, TOO_INCOMPLETE, TOO_POOR, READINGS_DISAGREE)
TURNED = "turned"  # the caution on a picture the fracture model read turned back
INCOMPLETE = "incomplete"
NEGATIVE = "negative"
LOW_CONTRAST = "low_contrast"
MORE_FRAMES = "more_frames"
GUESSED_BRIGHTNESS = "guessed_brightness"
NARROW_BAND = "narrow_band"
TRANSPARENT = "transparent"
CAUTION_KINDS = (NOT_READABLE, TOO_INCOMPLETE, TOO_POOR, READINGS_DISAGREE, TURNED, INCOMPLETE, NEGATIVE,
                 LOW_CONTRAST, MORE_FRAMES, GUESSED_BRIGHTNESS, NARROW_BAND, TRANSPARENT)
# The picture's cautions whose kind of picture the fracture model misses nearly every fracture on (README,
# benchmarks/altered_xrays.py: of 92 FracAtlas test fractures it found 2 inverted and 6 darkened to 32 shades).
POOR_FOR_A_NEGATIVE = (NEGATIVE, LOW_CONTRAST, NARROW_BAND)

# More than this share of coloured pixels means a photograph or drawing, not a radiograph. Measured on
# the data sets: no FracAtlas image and under 1% of Bone Break journal figures exceed it; photographs do.
XRAY_COLOUR_FRACTION_LIMIT = 0.2
# Rougher than this (pixels.roughness) is pixel-level noise, not a radiograph: the data sets' roughest image
# scores 0.25, such noise 1.1 (benchmarks/reader_limits.py).
XRAY_ROUGHNESS_LIMIT = 0.6
# DICOM modalities that are not plain radiographs, as their header names them (the article is for the sentence).
OTHER_MODALITIES = {"CT": "a CT", "MR": "an MR", "US": "an ultrasound", "NM": "a nuclear medicine", "PT": "a PET",
                    "XC": "a camera photograph", "ES": "an endoscopy", "OP": "an ophthalmic photograph",
                    "SM": "a microscopy", "GM": "a microscopy", "OCT": "an OCT", "IVUS": "an intravascular ultrasound"}
# From a quarter of the picture missing, "Not fractured" is withheld (too_hidden_for_a_negative). Of FracAtlas's 54
# truncated files that the reader keeps, 40 miss 12% of their picture or less, and 5 a quarter or more (up to 54%;
# benchmarks/reader_limits.py).
INCOMPLETE_NEGATIVE_LIMIT = 0.25
# A radiograph shows air dark and bone white; a negative the reverse. A picture whose outer twentieth is bright
# along most of its edges (the median of the four edges' means: one dark edge, a label strip or a film's end, does
# not hide it) and whose median is bright too may be one (benchmarks/reader_limits.py gives the counts on both
# data sets, as stored and inverted).
NEGATIVE_EDGE_LEVEL = 0.6
NEGATIVE_MEDIAN = 0.4
BORDER_SHARE = 20  # the outer 1/20 of each side


def looks_negative(pixels: np.ndarray) -> bool:
    """Whether the picture may be a negative (see NEGATIVE_EDGE_LEVEL)."""
    height, width = pixels.shape
    rows, columns = max(1, height // BORDER_SHARE), max(1, width // BORDER_SHARE)
    edges = [pixels[:rows].mean(), pixels[-rows:].mean(), pixels[:, :columns].mean(), pixels[:, -columns:].mean()]
    return float(np.median(edges)) > NEGATIVE_EDGE_LEVEL and float(np.median(pixels)) > NEGATIVE_MEDIAN


def looks_like_xray(xray: XRay) -> bool:
    return _unlike_an_xray(xray) is None


def _unlike_an_xray(xray: XRay) -> tuple[str, str] | None:
    """(a few words, a sentence) saying why the models give no verdict on a picture; None where they may read it."""
    radiographs_only = "The models learned from radiographs only, so they give no verdict on it."
    modality = str(xray.metadata.get("Modality", "")).upper()
    if modality in OTHER_MODALITIES:
        kind = OTHER_MODALITIES[modality]
        return (f"{kind.split(' ', 1)[1]} image (DICOM Modality {modality}), not a radiograph",
                f"The DICOM header says this is {kind} image (Modality {modality}), not a radiograph. {radiographs_only}")
    if xray.colour_fraction > XRAY_COLOUR_FRACTION_LIMIT:
        return ("a colour image, not an X-ray",
                f"This picture is in colour, as a photograph or a drawing is, not an X-ray. {radiographs_only}")
    if (shades := shade_count(xray.pixels)) <= FEW_SHADES:  # before roughness: a dithered copy is rough too
        return (f"only {shades} shades of grey: upload the original",
                f"This picture has only {shades} shades of grey, as a thresholded, dithered or posterised copy, a "
                f"drawing or a grossly underexposed film has; every X-ray the models learned from has at least "
                f"{FEWEST_XRAY_SHADES}. The models cannot read it, so they give no verdict: upload the original image.")
    if roughness(xray.pixels) > XRAY_ROUGHNESS_LIMIT:
        return ("noise, not an X-ray",
                f"This picture looks like noise: neighbouring pixels barely resemble each other. {radiographs_only}")
    return None


@dataclass(frozen=True)
class Caution:
    """What a reader must know before trusting a reading, worded once for the app, the report and the CSV."""
    kind: str  # one of CAUTION_KINDS
    brief: str  # a few words a script can grep for
    text: str  # a sentence for the app and the report
    # A caution that withholds a "Not fractured" tells the model's answer; this, the picture's own caution it
    # stands for, does not (Teaching shows it before the trainee commits).
    about_the_picture: Caution | None = None


def cautions_for(xray: XRay) -> list[Caution]:
    found, metadata = [], xray.metadata
    if unlike := _unlike_an_xray(xray):
        found.append(Caution(NOT_READABLE, *unlike))
    elif not (metadata.get("narrow_band") or metadata.get("low_contrast")) and looks_negative(xray.pixels):
        # (a flat picture's brightness says nothing of its polarity: the contrast caution covers it)
        found.append(Caution(NEGATIVE, "bright background: a negative? a fracture may be missed",
                             "The background of this picture is bright and most of it is light: it may be a negative "
                             "(inverted) image. The models learned from X-rays with dark air and white bone, and on a "
                             "negative they can miss a fracture. Use a positive image if there is one; if bone is "
                             "white in this one, it is not a negative (a film filled by soft tissue looks so too), "
                             "and this warning does not apply."))
    if metadata.get("low_contrast"):
        spread = metadata["low_contrast"]
        found.append(Caution(LOW_CONTRAST, "low contrast: a fracture may be missed",
                             f"This picture's brightness spans only {spread:.0%} of its range, where every X-ray in "
                             f"the two data sets the models learned from spans at least {LEAST_XRAY_SPREAD:.0%}: it "
                             "is much darker, paler or flatter than they are, and the models can miss a fracture on "
                             "it. Use the original export if there is one."))
    if metadata.get("missing_fraction"):
        found.append(incomplete_caution(metadata["missing_fraction"]))
    if metadata.get("transparent_fraction"):
        found.append(transparent_caution(metadata["transparent_fraction"]))
    if metadata.get("missing_detail"):
        found.append(Caution(INCOMPLETE, "incomplete file: fine detail missing",
                             "This file is incomplete: it is a progressive JPEG whose end is missing, so the whole "
                             "picture shows but without its finest detail, where a thin fracture line would be. "
                             "Read with care, and use the complete file if there is one."))
    if metadata.get("frames", 1) > 1:
        frames = metadata["frames"]
        found.append(Caution(MORE_FRAMES, f"first of {frames} images read",
                             f"This file holds {frames} images; only the first was read. Upload the others "
                             "one by one."))
    if metadata.get("brightness_bits"):
        bits = metadata["brightness_bits"]
        found.append(Caution(GUESSED_BRIGHTNESS, f"brightness guessed from the values ({bits} bits)",
                             f"This file stores more than 8 bits a pixel but not how to display them; its values "
                             f"were read as {bits}-bit. If the picture looks too dark or too bright, export it as "
                             "an 8-bit PNG or as DICOM."))
    if metadata.get("no_display_window"):
        found.append(Caution(GUESSED_BRIGHTNESS, "no display window in the DICOM: contrast from its values",
                             "This DICOM file gives no display window (window centre and width, or a VOI LUT) that "
                             "could be used, so its brightness was spread from its darkest to its brightest value. A "
                             "viewer may show it with other contrast, and the models' scores can change with it. "
                             "Export it with its window settings if it has them."))
    if metadata.get("narrow_band"):
        found.append(Caution(NARROW_BAND, "very low contrast: brightness needs a display window",
                             "This picture uses only a narrow band of its brightness range (a raw 16-bit export?), "
                             "so it shows almost flat, and the models read it as flat too. Export it with a display "
                             "window, as an 8-bit PNG or as DICOM with its window settings."))
    return found


def incomplete_caution(missing: float) -> Caution:
    return Caution(INCOMPLETE, f"incomplete file: about {missing:.0%} missing",
                   f"This file is incomplete: about {missing:.0%} of the picture is missing and not shown. "
                   "Read with care.")


def cautions_against_a_negative(found: list[Caution], diagnosis: Diagnosis) -> list[Caution]:
    """The picture's cautions where its score is below the threshold, with those that make a "Not fractured"
    untrustworthy turned into cautions that withhold it, and, where none does, one more if the reading as uploaded
    says "Fractured"."""
    turned = []
    for caution in found:
        if caution.kind in HIDDEN_PARTS:
            caution = too_hidden_for_a_negative(caution, diagnosis.xray) or caution
        elif caution.kind in POOR_FOR_A_NEGATIVE:
            caution = too_poor_for_a_negative(caution)
        turned.append(caution)
    uploaded = diagnosis.as_uploaded_probability
    if uploaded is not None and uploaded >= diagnosis.threshold and not any(c.kind in WITHHOLDING for c in turned):
        turned.append(readings_disagree(diagnosis))
    return turned


def too_poor_for_a_negative(caution: Caution) -> Caution:
    return Caution(TOO_POOR, f"{caution.brief}, so no “Not fractured” verdict",
                   f"{caution.text} On such pictures the fracture model misses nearly every fracture (it found only 2 "
                   "of 92 FracAtlas test fractures when the X-rays were inverted, and 6 when they were darkened), so its low score here gives "
                   "no “Not fractured” verdict, even where this warning is mistaken.", about_the_picture=caution)


def readings_disagree(diagnosis: Diagnosis) -> Caution:
    """Without the scores: a withheld verdict gives none (a score alone would be read as a verdict)."""
    words = config.ORIENTATIONS[diagnosis.turn]
    return Caution(READINGS_DISAGREE, "readings disagree: Fractured as uploaded, not when turned back",
                   f"The orientation model took this picture for {words} compared with the X-rays the fracture "
                   "model learnt from, so the fracture model read it turned back, and that reading scored below its threshold; read as "
                   "uploaded, it scored at or above it. With the two readings disagreeing, no “Not fractured” "
                   "verdict is given: the orientation model can be wrong, and a picture can have no natural way up. "
                   "Look at the film.")


def transparent_caution(share: float) -> Caution:
    return Caution(TRANSPARENT, f"transparent: about {share:.0%} of the picture shown black",
                   f"About {share:.0%} of this picture is transparent. Transparent parts are shown and read as black, "
                   "as a radiograph's background is, so whatever the file holds there was not seen, and a verdict "
                   "covers only the rest. Export it without transparency if you can.")


# A picture partly hidden, by kind: the metadata giving the hidden share; what the withholding caution says of it;
# the part the model scored; the hidden part; what to do.
HIDDEN_PARTS = {
    INCOMPLETE: ("missing_fraction", "This file is incomplete: about {share:.0%} of the picture is missing.",
                 "the part that is there", "missing", "Use the complete file."),
    TRANSPARENT: ("transparent_fraction", "About {share:.0%} of this picture is transparent, shown and read as black.",
                  "the rest", "transparent", "Export it without transparency."),
}


def too_hidden_for_a_negative(caution: Caution, xray: XRay) -> Caution | None:
    """The caution that withholds a "Not fractured" from a picture so much of which is missing or transparent
    that the verdict would cover too little of it; None where less is hidden (the picture keeps `caution`). A
    "Fractured" stands: the fracture it scored is in the part that is there."""
    key, said, seen, hidden, what_to_do = HIDDEN_PARTS[caution.kind]
    share = xray.metadata.get(key, 0)
    if share < INCOMPLETE_NEGATIVE_LIMIT:
        return None
    return Caution(TOO_INCOMPLETE, f"{caution.brief}, too much for a “Not fractured” verdict",
                   f"{said.format(share=share)} The fracture model scored {seen} below its threshold, but a fracture "
                   f"in the {hidden} part could not be seen, so no “Not fractured” verdict is given. {what_to_do}",
                   about_the_picture=caution)


def turned_caution(turn: int) -> Caution:
    """Says what was done, not the score (the score goes with the verdict)."""
    words = config.ORIENTATIONS[turn]
    return Caution(TURNED, f"turned back before reading: {words} compared with the training X-rays",
                   f"Compared with the X-rays the fracture model learnt from, this picture appears {words}. That is "
                   "their habit, not a fault in your picture: FracAtlas stores hands fingers up and most feet toes "
                   "down. So the fracture model read it turned back, and it was read as uploaded too: both readings "
                   "are given with the verdict. The heat map is drawn on your picture; the type model read it as "
                   "uploaded.")
