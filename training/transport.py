"""Carry a trained model through a narrow channel: its weights as float16, cut into parts under a size limit.

    python -m training.transport pack --model runs/X/fracture_type.keras --out PARTS_DIR [--part-mib 15]
    python -m training.transport unpack --parts PARTS_DIR --out runs/X_here

A ResNet50 is about 95 MB in float32, more than a lent GPU machine may send back in one go (there: 16 MiB a
file, 64 MiB in all). Packing keeps the .keras file whole (architecture, preprocessing, layer names) but
stores its float32 weights as float16 (about half the size); that and the card's small companions (split,
history, plots) make one archive, cut into numbered parts with a sha256 list.
Unpacking joins them and turns the weights back into float32: the float16 values, not the trained ones, so
the card's figures no longer describe the file exactly. It writes the companions beside the new file,
records the rounding and the new sha256 in the card, and says to measure it again
(`python -m training.evaluate --redo-validation-choices`).
"""

import argparse
import hashlib
import io
import json
import math
import os
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.models import artifact_paths, sha256_of
from training.card import update_card

WEIGHTS_MEMBER = "model.weights.h5"
PART_MIB = 15
SMALLEST_PART_MIB = 0.01
SHA_FILE = "sha256.json"
FLOAT16_LARGEST = float(np.finfo(np.float16).max)


class TransportError(Exception):
    pass


def convert_weights(h5_bytes: bytes, dtype) -> bytes:
    """The same HDF5 weights file with every floating-point dataset stored as `dtype`."""
    import h5py

    source, target = io.BytesIO(h5_bytes), io.BytesIO()
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        _copy_attributes(old, new)

        def copy(name, item):
            if isinstance(item, h5py.Group):
                _copy_attributes(item, new.require_group(name))
                return
            values = item[()]
            if np.issubdtype(item.dtype, np.floating):
                finite = np.abs(values[np.isfinite(values)])
                if dtype == np.float16 and finite.size and finite.max() > FLOAT16_LARGEST:
                    raise TransportError(f"weight {name} reaches {finite.max():.3g}: too large for float16")
                values = values.astype(dtype)
            _copy_attributes(item, new.create_dataset(name, data=values))

        old.visititems(copy)
    return target.getvalue()


def _copy_attributes(source, target) -> None:
    for key, value in source.attrs.items():
        target.attrs[key] = value


def with_weights_as(keras_bytes: bytes, dtype) -> bytes:
    """A .keras archive (a zip) whose weights member is converted to `dtype`; its other members unchanged."""
    source, target = io.BytesIO(keras_bytes), io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        if WEIGHTS_MEMBER not in old.namelist():
            raise TransportError(f"not a Keras 3 .keras file: no {WEIGHTS_MEMBER} inside")
        for member in old.infolist():
            data = old.read(member)
            if member.filename == WEIGHTS_MEMBER:
                data = convert_weights(data, dtype)
            # Each member keeps its own compression: Keras reads the weights stored, seeking about in them.
            new.writestr(member.filename, data, compress_type=member.compress_type)
    return target.getvalue()


def task_of(model: Path) -> str:
    """The task a model file is for, from the name training gives it (its card and companions follow that name)."""
    for task, name in config.MODEL_FILES.items():
        if model.name == name:
            return task
    raise TransportError(f"{model.name}: expected a model file as training writes it "
                         f"({' or '.join(config.MODEL_FILES.values())}), with its card beside it")


def pack(model: Path, out: Path, part_mib: float = PART_MIB) -> list[Path]:
    """Write one archive of the float16 model and its companions (card, split, history, plots) into `out`,
    cut into parts `<model name>.partNN`, with the sha256 list: the parts and that list are all to carry."""
    paths = artifact_paths(model.parent, task_of(model))
    if not paths["card"].is_file():
        raise TransportError(f"no model card beside {model} ({paths['card'].name})")
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(model.name, with_weights_as(model.read_bytes(), np.float16))
        for kind, path in paths.items():
            if kind != "model" and path.is_file():
                archive.write(path, path.name)
    packed, part_size = bundle.getvalue(), int(part_mib * 2**20)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, start in enumerate(range(0, len(packed), part_size)):
        parts.append(out / f"{model.name}.part{index:03d}")
        parts[-1].write_bytes(packed[start : start + part_size])
    listing = {"model": model.name, "parts": [[path.name, _sha256(path.read_bytes())] for path in parts],
               "packed_sha256": _sha256(packed)}
    (out / SHA_FILE).write_text(json.dumps(listing, indent=1))
    return parts


def read_listing(parts_dir: Path) -> dict:
    try:
        listing = json.loads((parts_dir / SHA_FILE).read_text())
        valid = (isinstance(listing, dict) and listing.get("model") in config.MODEL_FILES.values()
                 and isinstance(listing.get("packed_sha256"), str) and isinstance(listing.get("parts"), list)
                 and listing["parts"] and all(isinstance(part, list) and len(part) == 2 for part in listing["parts"]))
    except ValueError:  # not JSON, or not text
        valid = False
    if not valid:
        raise TransportError(f"{parts_dir / SHA_FILE} is not a parts list that training.transport pack wrote")
    return listing


def unpack(parts_dir: Path, out_dir: Path) -> Path:
    """Join and check the parts; write the float32 model and its companions into `out_dir` under the names
    training gives them (never over existing files), with the new sha256 and the rounding in its card."""
    listing = read_listing(parts_dir)
    pieces = []
    for name, digest in listing["parts"]:
        part = parts_dir / Path(str(name)).name
        data = part.read_bytes() if part.is_file() else b""
        if _sha256(data) != digest:
            raise TransportError(f"part {part.name} is missing or damaged (sha256 differs)")
        pieces.append(data)
    packed = b"".join(pieces)
    if _sha256(packed) != listing["packed_sha256"]:
        raise TransportError("the joined parts differ from what was packed")
    paths = artifact_paths(out_dir, task_of(Path(listing["model"])))
    by_name = {path.name: path for path in paths.values()}
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        names = [name for name in archive.namelist() if name in by_name]  # nothing else is written anywhere
        existing = [by_name[name] for name in names if by_name[name].exists()]
        if existing:
            raise TransportError(f"{existing[0]} exists already: unpack into a new folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = {}  # all written before any is put in place: an interrupted unpack blocks no rerun
        for name in names:
            data = archive.read(name)
            staged[name] = out_dir / f".{name}.writing"
            staged[name].write_bytes(with_weights_as(data, np.float32) if by_name[name] == paths["model"] else data)
        for name, path in staged.items():
            os.replace(path, by_name[name])
    if paths["card"].is_file():
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        update_card(paths["model"], {"sha256": sha256_of(paths["model"]), "weights_rounded": {
            "to": "float16", "by": "python -m training.transport", "at": now, "measured_again": None}})
    return paths["model"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_size_mib(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < SMALLEST_PART_MIB:
        raise argparse.ArgumentTypeError(f"a part size in MiB of at least {SMALLEST_PART_MIB}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.transport", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="a .keras model (card beside it) → float16 parts in a folder")
    packing.add_argument("--model", type=Path, required=True)
    packing.add_argument("--out", type=Path, required=True, help="folder for the parts")
    packing.add_argument("--part-mib", type=part_size_mib, default=PART_MIB,
                         help=f"largest part (default {PART_MIB} MiB)")
    unpacking = commands.add_parser("unpack", help="the parts → a float32 .keras model with its card")
    unpacking.add_argument("--parts", type=Path, required=True, help="folder holding the parts and sha256.json")
    unpacking.add_argument("--out", type=Path, required=True,
                           help="a new folder for the model and its companions, under the names training gives them")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            parts = pack(args.model, args.out, args.part_mib)
            total = sum(path.stat().st_size for path in parts) / 2**20
            print(f"{len(parts)} parts, {total:.1f} MiB in all, in {args.out}")
        else:
            model = unpack(args.parts, args.out)
            print(f"wrote {model}; its card's figures were measured before the float16 rounding: measure them "
                  f"again with python -m training.evaluate --model {model} --data DATA --redo-validation-choices")
    except (OSError, TransportError, zipfile.BadZipFile) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
