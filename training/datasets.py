"""Group duplicates, split without leaks, write and read the split manifest.

The layouts themselves are recognised in fracture_app.data_layout, which the app's sample demo uses too; its
names are re-exported here so training code has one module for its data.
"""

import csv
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from fracture_app.data_layout import (  # noqa: F401 (re-exported)
    SPLIT_NAMES,
    SPLITS,
    Dataset,
    DatasetError,
    Sample,
    discover,
    normalise,
)

DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
# Roboflow exports name augmented copies "<source>_jpg.rf.<hash>.jpg" (Bone Break also has "<source>_png.<hash>"
# and annotated "Inked<source>_jpg.rf.<hash>_LI"): same source → same group.
AUGMENTED_COPY = re.compile(r"^(?:Inked)?(?P<stem>.+)_(jpe?g|png|bmp)(?:[._].*)?$", re.IGNORECASE)
# Perceptual hashes this close (bits of 64) are the same picture re-encoded, resized or lightly edited.
NEAR_DUPLICATE_BITS = 6
SMALL_CLASS_GROUPS = 20
# A file cut short (the reader drops its missing rows) is the top of the picture it was copied from, which a hash of
# the whole picture cannot match. On FracAtlas, with cut_short_copies, 49 pairs correlate at 0.991 or more, top
# against top, and the next at 0.969; the least alike of the 49 (0.991-0.995) were looked at: copies (twenty-fifth
# session).
CUT_COPY_CORRELATION = 0.985
THUMBNAIL_SIDE = 64


# ---- grouping -------------------------------------------------------------------------------------------


def perceptual_hashes(pixels: np.ndarray) -> tuple[int, ...]:
    """64-bit DCT hashes of the picture turned 0, 90, 180, 270 degrees, then of its mirror turned so.

    Each is robust to resizing, re-encoding and small contrast changes; the first is the picture as stored.
    """
    small = cv2.resize(np.asarray(pixels, np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    turns = [np.rot90(small, quarter) for quarter in range(4)]
    return tuple(_dct_hash(view) for view in turns + [np.fliplr(turn) for turn in turns])


def _dct_hash(small: np.ndarray) -> int:
    low = cv2.dct(np.ascontiguousarray(small))[:8, :8].flatten()
    bits = low[1:] > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """The picture squeezed to THUMBNAIL_SIDE², for cut_short_copies."""
    return cv2.resize(np.asarray(pixels, np.float32), (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA)


def cut_short_copies(thumbnails: np.ndarray, kept_shares: list[float],
                     least_correlation: float = CUT_COPY_CORRELATION) -> list[tuple[int, int]]:
    """Pairs (i, j) where picture i, a file cut short to the top `kept_shares[i]` of its picture, is the top of
    picture j: i's thumbnail squeezed to that many rows against the top rows of every other thumbnail.

    It finds a cut copy beside the whole picture only: two copies cut at different rows, with no whole one, are not
    joined; nor is a cut file whose EXIF tag turns it (its missing rows are then at another edge)."""
    pairs = []
    for index, kept in enumerate(kept_shares):
        if kept >= 1.0:
            continue
        rows = max(4, round(THUMBNAIL_SIDE * kept))
        mine = cv2.resize(thumbnails[index], (THUMBNAIL_SIDE, rows), interpolation=cv2.INTER_AREA)
        tops = _standardised(thumbnails[:, :rows].reshape(len(thumbnails), -1))
        correlation = tops @ _standardised(mine.reshape(1, -1))[0]
        correlation[index] = -1.0
        pairs += [(index, int(other)) for other in np.nonzero(correlation >= least_correlation)[0]]
    return pairs


def _standardised(rows: np.ndarray) -> np.ndarray:
    """Each row with zero mean and unit length, so that a dot product of two is their correlation."""
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-6)


def source_stem(path: Path) -> str:
    match = AUGMENTED_COPY.match(path.stem)
    return match.group("stem") if match else path.stem


def assign_groups(samples: list[Sample], hashes: list[tuple[int, ...]], max_bits: int = NEAR_DUPLICATE_BITS,
                  copies: list[tuple[int, int]] = ()) -> int:
    """Union augmented copies (same class, same source stem), near-identical pictures and the pairs in `copies`
    (cut_short_copies). Returns group count.

    `hashes` holds each sample's perceptual_hashes. In an augmented export (file names as Roboflow writes them)
    copies may be turned or mirrored, so pictures are matched in all eight orientations; elsewhere a mirrored
    match is more often another patient's other side (FracAtlas feet), so only the pictures as stored are.
    """
    parent = list(range(len(samples)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        parent[find(i)] = find(j)

    first_with_stem = {}
    for index, sample in enumerate(samples):
        key = (sample.label, source_stem(sample.path))
        union(index, first_with_stem.setdefault(key, index))
    values = np.array(hashes, dtype=np.uint64).reshape(len(samples), -1)
    augmented_export = any(AUGMENTED_COPY.match(sample.path.stem) for sample in samples)
    views = values if augmented_export else values[:, :1]
    for index in range(len(values) - 1):
        # Each later picture as stored against every view of this one, and the other way round (a hash of a
        # turned picture is close to, not exactly, the turned picture's hash): the nearest pair counts.
        differing = np.concatenate([values[index + 1 :, :1] ^ views[index], views[index + 1 :] ^ values[index, :1]], 1)
        distance = np.unpackbits(differing[..., None].view(np.uint8), axis=-1).sum(axis=-1).min(axis=1)
        for other in np.nonzero(distance <= max_bits)[0] + index + 1:
            union(index, int(other))
    for index, other in copies:
        union(index, other)
    roots = {}
    for index, sample in enumerate(samples):
        sample.group = roots.setdefault(find(index), len(roots))
    return len(roots)


# ---- splitting ------------------------------------------------------------------------------------------


def split_groups(samples: list[Sample], seed: int, honour_given: bool = True, fractions=None) -> dict:
    """Give every sample a split so that no group spans two splits. Returns a small report.

    Given split folders are honoured, except that a group found in several of them (a leak in the
    data as published) is counted in the report and moved whole to the split most of it was in.
    Without a given validation folder, validation is carved out of the training groups.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    given = honour_given and any(s.given_split for s in samples)
    has_val = given and any(s.given_split == "val" for s in samples)
    rng = random.Random(seed)
    leaking, to_deal = 0, []
    for members in _members_by_group(samples).values():
        votes = Counter(s.given_split for s in members if s.given_split)
        leaking += len(votes) > 1
        split = _majority(votes) if given else None
        if split is None or (split == "train" and not has_val):
            to_deal.append(members)
        else:
            for sample in members:
                sample.split = split
    if given:
        val_share = fractions["val"] / (fractions["train"] + fractions["val"])
        fractions = {"train": 1.0 - val_share, "val": val_share, "test": 0.0}
    _deal_stratified(to_deal, fractions, rng)
    _fill_empty_splits(to_deal, fractions)
    return {"groups": len(_members_by_group(samples)), "groups_across_given_splits": leaking,
            "sizes": split_sizes(samples)}


def keep_stored_split(samples: list[Sample], stored: list[Sample], refuse_spanning: bool = True) -> dict:
    """Give every sample the split a stored split file gave it (as split_groups reports).

    For a run that starts from a model trained on the same images: a split made afresh could differ (the
    grouping depends on the reader's pixels), and would then validate and test on images the start had
    trained on. Refused where the stored file leaves an image out, or, unless `refuse_spanning` is false
    (a split file named by hand, on a scaled-down copy whose near-duplicate hashes differ a little), where
    a group of copies, as grouped now, spans two of its splits; those are then counted in the report
    (`groups_spanning_split_file`).
    """
    split_of = {Path(row.path).resolve(): row.split for row in stored}
    unplaced = [s.path for s in samples if Path(s.path).resolve() not in split_of]
    if unplaced:
        raise DatasetError(f"{len(unplaced)} images are not in the stored split file (first: {unplaced[0]})")
    for sample in samples:
        sample.split = split_of[Path(sample.path).resolve()]
    groups = _members_by_group(samples)
    spanning = sum(len({s.split for s in members}) > 1 for members in groups.values())
    if spanning and refuse_spanning:
        raise DatasetError(f"{spanning} groups of copies span two splits of the stored split file")
    return {"groups": len(groups), "groups_across_given_splits": 0, "groups_spanning_split_file": spanning,
            "sizes": split_sizes(samples)}


def _members_by_group(samples: list[Sample]) -> dict[int, list[Sample]]:
    groups = defaultdict(list)
    for sample in samples:
        groups[sample.group].append(sample)
    return groups


def _majority(votes: Counter) -> str | None:
    if not votes:
        return None
    # Ties go to the split that must stay clean: test, then validation.
    return max(votes, key=lambda split: (votes[split], SPLITS.index(split)))


def _deal_stratified(groups: list[list[Sample]], fractions: dict, rng: random.Random) -> None:
    """Deal whole groups, class by class, to the split furthest below its share of that class."""
    by_label = defaultdict(list)
    for members in groups:
        by_label[Counter(s.label for s in members).most_common(1)[0][0]].append(members)
    for _, label_groups in sorted(by_label.items()):
        rng.shuffle(label_groups)
        total = sum(len(members) for members in label_groups)
        counts = Counter()
        # A small class gets one group in every split first, so that even a tiny data set measures
        # every class on validation and test; large classes are dealt by share alone.
        first = [name for name in ("val", "test", "train") if fractions[name] > 0]
        first = first if len(first) <= len(label_groups) < SMALL_CLASS_GROUPS else []
        for index, members in enumerate(label_groups):
            if index < len(first):
                split = first[index]
            else:
                split = max(SPLITS, key=lambda name: fractions[name] * total - counts[name])
            for sample in members:
                sample.split = split
            counts[split] += len(members)


def _fill_empty_splits(groups: list[list[Sample]], fractions: dict) -> None:
    """On tiny data sets per-class dealing can leave a split empty; give it the smallest training group."""
    for split in SPLITS:
        if fractions[split] == 0 or any(members[0].split == split for members in groups):
            continue
        training = sorted((m for m in groups if m[0].split == "train"), key=len)
        if len(training) > 1:
            for sample in training[0]:
                sample.split = split


def split_sizes(samples: list[Sample]) -> dict:
    return {split: sum(1 for s in samples if s.split == split) for split in SPLITS}


def write_manifest(path: Path, dataset: Dataset) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "class", "split", "group"])
        for s in dataset.samples:
            writer.writerow([s.path.relative_to(dataset.root).as_posix(), s.label, dataset.classes[s.label], s.split, s.group])


def split_assignments(path: Path, root: Path = Path()) -> dict[Path, str]:
    """Each image's split in a split file (group numbers may differ between copies of one split)."""
    return {sample.path: sample.split for sample in read_manifest(path, root)}


def read_manifest(path: Path, root: Path) -> list[Sample]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            Sample(Path(root) / row["path"], int(row["label"]), None, row["split"], int(row["group"]))
            for row in csv.DictReader(handle)
        ]
