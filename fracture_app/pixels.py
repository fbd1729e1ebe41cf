"""Measures and conversions on pixel arrays that both image readers (`imaging`, `dicom_reader`) and the checks
on a reading (`diagnosis`) share: grey levels on [0, 1], the colour share, the brightness band, roughness.

Every limit here was set on the 4,771 images of the two data sets (`benchmarks/reader_limits.py` prints them).
"""

from __future__ import annotations

import numpy as np

from .preprocess import at_most

# Channel spread (on [0, 1]) above which a pixel counts as coloured; JPEG noise on grey stays below it.
COLOUR_SPREAD = 0.08
# Colour share and brightness band are estimated on a grid of at least this many pixels (fewer only in smaller
# images), so the colour share's standard error stays under 0.3 percentage points while costing less than
# decoding the JPEG.
SAMPLE_PIXELS = 40_000
ROUGHNESS_SIDE = 256  # roughness is judged at this size, where a radiograph's own film grain has averaged out

# Below this spread between the 1st and 99th percentile of brightness (on [0, 1]) a picture has almost no
# contrast. The least of the 4771 images in both data sets spreads 0.27 (benchmarks/reader_limits.py). With
# no more than BLANK_LEVELS shades in that band it is blank: nothing for a model to read, yet a model would
# still answer, so it is refused; with more (a 16-bit file whose content fills a narrow band) it is read, and
# the app says its brightness needs a display window.
BLANK_SPREAD = 0.05
BLANK_LEVELS = 32
# Below this spread (and above BLANK_SPREAD) a picture is read but is much duller, darker or paler than any X-ray in
# the two data sets, and the models can miss a fracture on it: the app says so.
LOW_CONTRAST_SPREAD = 0.25
LEAST_XRAY_SPREAD = 0.27  # the least contrast_spread of the 4771 images in both data sets
# With no more shades than this on the sampled grid a picture is a thresholded, dithered or posterised copy (or a
# drawing), not a radiograph: a model still answers it, and confidently (a dithered copy of an X-ray it calls clear
# scored 0.99). The fewest of the 4771 images in both data sets have FEWEST_XRAY_SHADES.
FEW_SHADES = 16
FEWEST_XRAY_SHADES = 129


def used_bits(arr: np.ndarray) -> int:
    """The bits an unsigned image's values reach (at least 8): 12 for a 12-bit scan in a 16-bit container."""
    return max(8, int(arr.max()).bit_length()) if arr.size else 8


def scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Unsigned integers by the bits their values reach (8 by 255, 12 in 16 by 4095); floats and signed by range.

    A 16-bit container often holds fewer real bits, and dividing by 65535 would leave such a scan near black.
    The guess can be wrong (a dark 16-bit picture), so the reader records it and the app says so.
    """
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0:
        return arr.astype(np.float32) / np.float32(2 ** used_bits(arr) - 1)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size and arr.min() >= 0 and arr.max() <= 1:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / np.float32(hi - lo) if hi > lo else np.zeros(arr.shape, np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:  # ITU-R BT.601, as Pillow's "L"
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def clean_unit_range(grey: np.ndarray) -> np.ndarray:
    """float32 in [0, 1], NaN as black, contiguous: the one form every reader hands on."""
    grey = np.nan_to_num(np.asarray(grey, dtype=np.float32), nan=0.0)
    return np.ascontiguousarray(np.clip(grey, 0.0, 1.0))


def grid_step(arr: np.ndarray) -> int:
    """Every n-th pixel in each direction, so the colour share and the brightness band look at about SAMPLE_PIXELS
    pixels."""
    return max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / SAMPLE_PIXELS)))


def brightness_band(pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
    step = grid_step(pixels)
    sample = pixels[::step, ::step]
    darkest, brightest = np.percentile(sample, [1, 99])
    return sample, float(darkest), float(brightest)


def contrast_spread(pixels: np.ndarray) -> float:
    """The spread between the 1st and 99th percentile of brightness, on [0, 1]: what the contrast checks read."""
    _, darkest, brightest = brightness_band(pixels)
    return float(brightest - darkest)


def shade_count(pixels: np.ndarray) -> int:
    """How many different grey levels the sampled grid holds (at most 256 for an 8-bit picture)."""
    step = grid_step(pixels)
    return int(np.unique(pixels[::step, ::step]).size)


def roughness(pixels: np.ndarray) -> float:
    """How far neighbouring pixels differ, for the picture's own spread, on a copy at most 256 px long.

    About 0.05 for a radiograph (no image in either data set above 0.25; benchmarks/reader_limits.py), about
    1.1 for pixel-level random noise, where each pixel is as unlike its neighbour as any other pixel. Noise in
    coarser grains scores lower and may pass."""
    small = at_most(pixels, ROUGHNESS_SIDE).astype(np.float32)
    steps = np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean()
    return float(steps / 2 / max(float(small.std()), 1e-6))


def colour_fraction(rgb: np.ndarray) -> float:
    """Share of pixels whose colour differs from a plain tint of their brightness by more than COLOUR_SPREAD.

    A radiograph is grey, or one tint of grey when photographed off a monitor; journal figures add small
    coloured arrows (a few % of pixels); a photograph is coloured almost everywhere. So each channel is
    first fitted as a linear function of brightness (removing any tint) and only what is left counts.
    """
    step = grid_step(rgb)
    return untinted_colour_share(rgb[::step, ::step, :3])


def untinted_colour_share(rgb: np.ndarray) -> float:
    sample = rgb.reshape(-1, 3).astype(np.float32)
    if len(sample) == 0:
        return 0.0
    # Least squares of each channel on brightness, in closed form (one regressor plus an intercept).
    brightness = luma(sample)
    centred = brightness - brightness.mean()
    variance = float(centred @ centred)
    slopes = (centred @ (sample - sample.mean(axis=0))) / variance if variance > 0 else np.zeros(3, np.float32)
    residual = sample - sample.mean(axis=0) - centred[:, None] * slopes
    return float(np.mean(np.ptp(residual, axis=1) > COLOUR_SPREAD))
