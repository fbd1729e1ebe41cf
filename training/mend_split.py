"""Mend a stored split file in which copies of one picture sit in two splits.

    python -m training.mend_split --split models/fracture_binary_split.csv --data ../shared/data/fracatlas

Each set of copies goes whole to the least held-out split one of them is in (training, then validation, then
test): a test or validation image with a copy the model trained on, or was tuned on, cannot measure it. Copies
are those the file's groups already join, files cut short (datasets.cut_short_copies), and pairs named by hand
(`--same A B`, paths as the file gives them: copies a reader found by eye). The model is not changed: measure it
again afterwards (`python -m training.evaluate --redo-validation-choices`), since its validation and test
splits are smaller.
"""

import argparse
import csv
import sys
from pathlib import Path

from fracture_app.preprocess import PreprocessSpec
from training.datasets import SPLITS, DatasetError, Sample

HASH_SIZE = 32  # load_images also prepares each picture; the copies are found on its own thumbnails


def copies_in(data_dir: Path, paths: list[str]) -> list[tuple[int, int]]:
    """Pairs of rows (indices into `paths`) of which one is a cut-short copy of the other. Raises DatasetError
    where a file cannot be read: its copies would go unfound, and the file mended all the same."""
    from training.pipeline import load_images

    samples = [Sample(data_dir / path, 0) for path in paths]
    loaded = load_images(samples, PreprocessSpec(size=HASH_SIZE), progress=False)
    if loaded.failures:
        path, reason = loaded.failures[0]
        raise DatasetError(f"{len(loaded.failures)} images of the split file could not be read under {data_dir} "
                           f"(first: {path}: {reason})")
    row_of = {sample.path: index for index, sample in enumerate(samples)}
    return [(row_of[loaded.samples[i].path], row_of[loaded.samples[j].path]) for i, j in loaded.copies()]


def mend(rows: list[dict], links: list[tuple[int, int]]) -> list[tuple[str, str, str]]:
    """Join the groups of linked rows, move each joined group to its least held-out split, and renumber it by its
    smallest group; returns (path, from split, to split) for every row moved. `rows` are the file's, changed in
    place."""
    parent = {row["group"]: row["group"] for row in rows}

    def find(group):
        while parent[group] != group:
            group = parent[group]
        return group

    for first, second in links:
        roots = sorted((find(rows[first]["group"]), find(rows[second]["group"])), key=int)
        parent[roots[1]] = roots[0]
    splits_of = {}
    for row in rows:
        splits_of.setdefault(find(row["group"]), set()).add(row["split"])
    moved = []
    for row in rows:
        root = find(row["group"])
        target = next(split for split in SPLITS if split in splits_of[root])
        if row["split"] != target:
            moved.append((row["path"], row["split"], target))
        row["split"], row["group"] = target, root
    return moved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mend_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", type=Path, required=True, help="the split file to mend (written again in place)")
    parser.add_argument("--data", type=Path, required=True, help="the data folder its paths are relative to")
    parser.add_argument("--same", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="two paths of the file that are copies of one picture (may be given again)")
    args = parser.parse_args(argv)
    with open(args.split, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns, rows = reader.fieldnames, list(reader)
    index_of = {row["path"]: index for index, row in enumerate(rows)}
    unknown = [path for pair in args.same for path in pair if path not in index_of]
    if unknown:
        print(f"error: not in {args.split}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        links = copies_in(args.data, [row["path"] for row in rows])
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    links += [(index_of[first], index_of[second]) for first, second in args.same]
    moved = mend(rows, links)
    with open(args.split, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)  # as write_manifest writes it
        writer.writeheader()
        writer.writerows(rows)
    for path, before, after in moved:
        print(f"{path}: {before} → {after}")
    print(f"{len(links)} pairs of copies; {len(moved)} images moved", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
