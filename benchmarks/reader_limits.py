"""Where the reader's limits sit against real X-rays: the contrast below which a picture is blank or faint, the
roughness above which it is noise, not a radiograph, and how many real X-rays, and how many of them inverted,
look like a negative, and how much of the picture the incomplete files miss.

    python benchmarks/reader_limits.py ../shared/data/fracatlas ../shared/data/bone_break

For every image the reader accepts: the spread between its 1st and 99th percentile of brightness (the blank
check; pixels.BLANK_SPREAD and LOW_CONTRAST_SPREAD), pixels.roughness (cautions.XRAY_ROUGHNESS_LIMIT) and
cautions.looks_negative, on the image and on its inversion, and how many shades of grey it has
(pixels.FEW_SHADES), and the share of the picture a truncated file misses (cautions.INCOMPLETE_NEGATIVE_LIMIT);
then roughness for pixel-level random noise and for
coarser noise. Prints figures, asserts nothing.
"""

import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.command_line import data_folders  # noqa: E402
from fracture_app import config  # noqa: E402
from fracture_app.cautions import INCOMPLETE_NEGATIVE_LIMIT, XRAY_ROUGHNESS_LIMIT, looks_negative  # noqa: E402
from fracture_app.errors import ImageReadError  # noqa: E402
from fracture_app.imaging import read_image  # noqa: E402
from fracture_app.pixels import (BLANK_SPREAD, FEW_SHADES, LEAST_XRAY_SPREAD, LOW_CONTRAST_SPREAD,  # noqa: E402
                                  contrast_spread, roughness, shade_count)

SHOWN = 5


def main(folders: list[str]) -> None:
    figures, refused, missing = [], 0, []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() not in config.IMAGE_SUFFIXES:
                continue
            try:
                xray = read_image(path)
            except ImageReadError:
                refused += 1
                continue
            pixels = xray.pixels
            if xray.metadata.get("missing_fraction"):
                missing.append(xray.metadata["missing_fraction"])
            figures.append((contrast_spread(pixels), roughness(pixels), path, looks_negative(pixels), looks_negative(1 - pixels),
                            shade_count(pixels)))
    print(f"{len(figures)} images read, {refused} refused by the reader")
    negatives = [row[2] for row in figures if row[3]]
    print(f"look like a negative: {len(negatives)} as stored; {sum(row[4] for row in figures)} of {len(figures)} "
          "inverted")
    for path in negatives:
        print(f"  {path}")
    print(f"least contrast (1st-99th percentile spread; blank below {BLANK_SPREAD}, low contrast below "
          f"{LOW_CONTRAST_SPREAD}; pixels.LEAST_XRAY_SPREAD says {LEAST_XRAY_SPREAD}):")
    for value, _, path, *_ in sorted(figures, key=lambda row: row[0])[:SHOWN]:
        print(f"  {value:.3f}  {path}")
    print(f"roughest (noise above {XRAY_ROUGHNESS_LIMIT}); median {np.median([row[1] for row in figures]):.3f}:")
    for _, value, path, *_ in sorted(figures, key=lambda row: row[1])[-SHOWN:]:
        print(f"  {value:.3f}  {path}")
    print(f"fewest shades of grey on the sampled grid (not an X-ray at {FEW_SHADES} or fewer):")
    for row in sorted(figures, key=lambda row: row[5])[:SHOWN]:
        print(f"  {row[5]}  {row[2]}")
    print(f"incomplete files read: {len(missing)}, missing {min(missing, default=0):.0%} to {max(missing, default=0):.0%} "
          f"of their picture; 12% or less: {sum(share <= 0.12 for share in missing)}; "
          f"{INCOMPLETE_NEGATIVE_LIMIT:.0%} or more (no \"Not fractured\" given): "
          f"{sum(share >= INCOMPLETE_NEGATIVE_LIMIT for share in missing)}")
    rng = np.random.default_rng(0)
    print("noise:")
    for side in (256, 512, 2000):
        print(f"  pixel-level, {side} px: {roughness(rng.random((side, side), dtype=np.float32)):.3f}")
    for grain in (2, 4, 8):
        coarse = cv2.resize(rng.random((512 // grain, 512 // grain), dtype=np.float32), (512, 512),
                            interpolation=cv2.INTER_NEAREST)
        print(f"  in grains of {grain} px, 512 px: {roughness(coarse):.3f}")


if __name__ == "__main__":
    main(data_folders(__doc__, [str(REPO / "tests" / "fixtures")], many=True))
