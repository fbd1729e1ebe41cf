"""How the shipped fracture model fares on its own test X-rays once they are turned, inverted or dulled, and how
often the app warns about each: what a user's odd export costs. Fractured and not fractured X-rays are counted
apart: a fracture found on an altered picture means little if as many unfractured ones are called fractured too.

    python benchmarks/altered_xrays.py ../shared/data/fracatlas

Each image takes the app's road (encoded as PNG, read, diagnosed), altered as a user's export might alter it.
Prints figures, asserts nothing.
"""

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.command_line import data_folders  # noqa: E402
from fracture_app import config, import_tensorflow_quietly  # noqa: E402
from fracture_app.errors import ImageReadError  # noqa: E402
from fracture_app.imaging import read_image  # noqa: E402
from training.datasets import read_manifest  # noqa: E402

ALTERATIONS = {
    "as stored": lambda grey: grey,
    "turned 90°": lambda grey: np.rot90(grey),
    "upside down": lambda grey: np.rot90(grey, 2),
    "inverted (a negative)": lambda grey: 255 - grey,
    "darkened to 32 shades": lambda grey: grey // 8,
}
BATCH = 16


def test_images(data_dir: Path, label: int) -> list[Path]:
    manifest = REPO / "models" / "fracture_binary_split.csv"
    return [row.path for row in read_manifest(manifest, data_dir) if row.split == "test" and row.label == label]


def as_png(grey: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grey)).save(buffer, "PNG")
    return buffer.getvalue()


def main(data_dir: Path) -> None:
    import_tensorflow_quietly()
    from fracture_app.diagnosis import Diagnoser

    diagnoser = Diagnoser.from_dir(config.SHIPPED_MODELS_DIR)
    for label, title in ((1, "fractured"), (0, "not fractured")):
        paths = test_images(data_dir, label)
        # Read as the app reads them (a truncated JPEG loses its grey fill), then altered as 8-bit pictures.
        greys = [np.round(read_image(path).pixels * 255).astype(np.uint8) for path in paths]
        print(f"\n{len(paths)} {title} test X-rays of FracAtlas; the fracture model at its decision threshold")
        print(f"{'alteration':<24}{'called fractured':>18}{'with a caution':>16}{'refused':>9}  cautions (how many each)")
        for name, alter in ALTERATIONS.items():
            report(diagnoser, name, [alter(grey) for grey in greys], paths)


def report(diagnoser, name: str, pictures: list[np.ndarray], paths: list[Path]) -> None:
    xrays, refused = [], 0
    for picture, path in zip(pictures, paths):
        try:
            xrays.append(read_image(as_png(picture), name=path.name))
        except ImageReadError:  # a picture left blank: the reader refuses it, which is the right answer
            refused += 1
    diagnoses = [d for start in range(0, len(xrays), BATCH) for d in diagnoser.diagnose_batch(xrays[start:start + BATCH])]
    called = sum(bool(d.fractured) for d in diagnoses)
    kinds = [sorted({c.kind for c in d.cautions}) for d in diagnoses]
    cautioned = sum(bool(k) for k in kinds)
    seen = sorted({kind for k in kinds for kind in k})
    print(f"{name:<24}{called:>8} of {len(paths)} ({called / len(paths):.2f}){cautioned:>10}{refused:>11}  "
          f"{', '.join(f'{kind} {sum(kind in k for k in kinds)}' for kind in seen) or '—'}")


if __name__ == "__main__":
    main(data_folders(__doc__, ["../shared/data/fracatlas"])[0])
