"""Copy a data set with every image scaled down, for training on a machine the full set is slow to reach.

    python -m training.shrink --data ../shared/data/bone_break --size 224 --out packed/bone_break

The copy keeps the layout, the file names and every other file (FracAtlas' boxes and csv), so split files
and fracture boxes still apply to it. Each image goes through the app's reader and is resized the way
`prepare` resizes (longer side to `--size`, same interpolation), then saved as 8-bit grayscale in its own
format under its own name (a DICOM file as PNG: the reader goes by content): trained
at that input size, a model sees what it would see from the original, up to JPEG's rounding. An image so long
and thin that its short side would fall below the reader's minimum stays that much larger (and is resized
again when prepared). Images the reader refuses are left out and listed, as training would leave them out.
"""

import argparse
import math
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from fracture_app.config import IMAGE_SUFFIXES, MIN_IMAGE_SIDE
from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.preprocess import at_most
from training.pipeline import DECODE_WORKERS

JPEG_QUALITY = 95  # high enough that the copy's rounding stays well below the augmentation's noise


def shrink_image(source: Path, target: Path, size: int, jpeg_quality: int = JPEG_QUALITY) -> str | None:
    """Write `source` scaled down to `target` in the same format; the reader's refusal, if it refuses."""
    try:
        pixels = read_image(source).pixels
    except FractureAppError as error:
        return str(error)
    # A long, thin image keeps the shortest side the reader accepts, or it would drop out of the copy.
    longer_side = max(size, math.ceil(MIN_IMAGE_SIDE * max(pixels.shape) / min(pixels.shape)))
    smaller = at_most(pixels, longer_side)
    picture = Image.fromarray(np.round(np.clip(smaller, 0.0, 1.0) * 255).astype(np.uint8), mode="L")
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = source.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        picture.save(target, quality=jpeg_quality)
    elif suffix in (".dcm", ".dicom"):
        picture.save(target, format="PNG")  # Pillow writes no DICOM; the reader goes by content, not by name
    else:
        picture.save(target)
    return None


def shrink_data_set(root: Path, out: Path, size: int, jpeg_quality: int = JPEG_QUALITY) -> list[tuple[Path, str]]:
    """Copy `root` to `out`, images scaled down; returns the images left out, with the reason."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            (out / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / path.relative_to(root))
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        refusals = pool.map(lambda path: shrink_image(path, out / path.relative_to(root), size, jpeg_quality), images)
        return [(path, reason) for path, reason in zip(images, refusals) if reason]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.shrink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the data set's folder")
    parser.add_argument("--size", type=int, required=True, help="longest side of the copies, in pixels: "
                        "the --img-size the copy will train at")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the copy")
    parser.add_argument("--jpeg-quality", type=int, default=JPEG_QUALITY, metavar="Q",
                        help=f"JPEG quality of the copies, 1-95 (default {JPEG_QUALITY}); lower makes a smaller "
                        "copy, e.g. 85 to fit a 384-px FracAtlas under an upload limit, at the cost of more rounding")
    args = parser.parse_args(argv)
    if args.size < MIN_IMAGE_SIDE:
        parser.error(f"--size must be at least {MIN_IMAGE_SIDE}")
    if not 1 <= args.jpeg_quality <= 95:
        parser.error("--jpeg-quality must be between 1 and 95")
    if not args.data.is_dir():
        parser.error(f"--data: no such folder {args.data}")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out: {args.out} is not empty")
    left_out = shrink_data_set(args.data, args.out, args.size, args.jpeg_quality)
    for path, reason in left_out:
        print(f"left out {path}: {reason}", file=sys.stderr)
    print(f"copied {args.data} to {args.out} at {args.size} px ({len(left_out)} unreadable images left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
