"""Carry a trained model through a narrow channel: its weights as float16, cut into parts under a size limit.

    python -m training.transport pack --model runs/X/fracture_type.keras --out PARTS_DIR [--part-mib 15]
    python -m training.transport unpack --parts PARTS_DIR --out runs/X_here/fracture_type.keras

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
import sys
import zipfile
from pathlib import Path

import numpy as np

WEIGHTS_MEMBER = "model.weights.h5"
PART_MIB = 15
SHA_FILE = "sha256.json"
FLOAT16_LARGEST = float(np.finfo(np.float16).max)
COMPANION_SUFFIXES = (".json", ".csv", ".png")  # card, split, history, plots


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
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        if WEIGHTS_MEMBER not in old.namelist():
            raise TransportError(f"not a Keras 3 .keras file: no {WEIGHTS_MEMBER} inside")
        for member in old.infolist():
            data = old.read(member)
            new.writestr(member, convert_weights(data, dtype) if member.filename == WEIGHTS_MEMBER else data)
    return target.getvalue()


def pack(model: Path, out: Path, part_mib: float = PART_MIB) -> list[Path]:
    """Write one archive of the float16 model and its companions, cut into parts `<model name>.partNN`, and
    the sha256 list, into `out`: the parts and that list are all that needs carrying."""
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_STORED) as archive:  # the members are compressed already
        archive.writestr(model.name, with_weights_as(model.read_bytes(), np.float16))
        for path in sorted(model.parent.glob(f"{model.stem}*")):
            if path.suffix in COMPANION_SUFFIXES:
                archive.write(path, path.name)
    packed, part_size = bundle.getvalue(), int(part_mib * 2**20)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, start in enumerate(range(0, len(packed), part_size)):
        parts.append(out / f"{model.name}.part{index:02d}")
        parts[-1].write_bytes(packed[start : start + part_size])
    listing = {path.name: _sha256(path.read_bytes()) for path in parts}
    (out / SHA_FILE).write_text(json.dumps({"model": model.name, "parts": listing, "packed_sha256": _sha256(packed)},
                                           indent=1))
    return parts


def unpack(parts_dir: Path, out: Path) -> Path:
    """Join and check the parts; write the float32 model at `out`, its companions beside it, and amend its card."""
    listing = json.loads((parts_dir / SHA_FILE).read_text())
    pieces = []
    for name, digest in sorted(listing["parts"].items()):
        data = (parts_dir / name).read_bytes() if (parts_dir / name).is_file() else b""
        if _sha256(data) != digest:
            raise TransportError(f"part {name} is missing or damaged (sha256 differs)")
        pieces.append(data)
    packed = b"".join(pieces)
    if _sha256(packed) != listing["packed_sha256"]:
        raise TransportError("the joined parts differ from what was packed")
    stem = Path(listing["model"]).stem
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(packed)) as archive:
        out.write_bytes(with_weights_as(archive.read(listing["model"]), np.float32))
        for name in archive.namelist():
            if name != listing["model"]:
                (out.parent / name.replace(stem, out.stem, 1)).write_bytes(archive.read(name))
    card_path = out.with_suffix(".json")
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        card["sha256"] = _sha256(out.read_bytes())
        card["weights_rounded"] = ("carried as float16 (training.transport) and turned back into float32: figures "
                                   "measured before then are of the unrounded weights")
        card_path.write_text(json.dumps(card, indent=2))
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.transport", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="a .keras model (card beside it) → float16 parts in a folder")
    packing.add_argument("--model", type=Path, required=True)
    packing.add_argument("--out", type=Path, required=True, help="folder for the parts")
    packing.add_argument("--part-mib", type=float, default=PART_MIB, help=f"largest part (default {PART_MIB} MiB)")
    unpacking = commands.add_parser("unpack", help="the parts → a float32 .keras model with its card")
    unpacking.add_argument("--parts", type=Path, required=True, help="folder holding the parts and sha256.json")
    unpacking.add_argument("--out", type=Path, required=True, help="the .keras file to write")
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
    except (OSError, TransportError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
