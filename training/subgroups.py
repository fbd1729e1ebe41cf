"""The binary model's test figures within each kind of FracAtlas image: body region, orthopaedic hardware and
view, from the flags in the data set's `dataset.csv`.

A headline AUROC can hide a region where the model is much weaker (few hip fractures, say) or a shortcut
(screws and plates seen as fractures); a reader of the card should see both. Nothing here is chosen on these
figures: the threshold is the one chosen on validation for the whole model.
"""

import csv
from pathlib import Path

import numpy as np

from training import metrics

METADATA_FILE = "dataset.csv"
# (group shown to people, subgroup shown to people, the dataset.csv column, the value that puts an image in it).
# An image may carry several region or view flags (a "mixed" study, a multiscan with two views): it counts in each.
SUBGROUPS = (
    ("body region", "hand", "hand", 1),
    ("body region", "leg", "leg", 1),
    ("body region", "hip", "hip", 1),
    ("body region", "shoulder", "shoulder", 1),
    ("body region", "several regions", "mixed", 1),
    ("orthopaedic hardware", "present", "hardware", 1),
    ("orthopaedic hardware", "absent", "hardware", 0),
    ("view", "frontal", "frontal", 1),
    ("view", "lateral", "lateral", 1),
    ("view", "oblique", "oblique", 1),
)
FIELDS = ("auroc", "sensitivity", "specificity")
# A kind of image this often fractured in the whole data set can teach a model the kind instead of the fracture.
SHORTCUT_SHARE = 0.9
SHORTCUT_OPENING = "In the data set it learnt from, "  # how such a limitation starts, so a rewrite can replace it


def _table(data_root: Path) -> list[dict] | None:
    """dataset.csv's rows, or None where the data set has no such file."""
    table = Path(data_root) / METADATA_FILE
    if not table.is_file():
        return None
    with open(table, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def image_flags(samples, data_root: Path) -> list[dict] | None:
    """Each sample's dataset.csv row (column → int), in the samples' order; None where the data set has no such
    file or it misses a sample (a folder other than FracAtlas, or a different copy of it)."""
    table = _table(data_root)
    if table is None:
        return None
    rows = {row["image_id"]: row for row in table}
    columns = {column for _, _, column, _ in SUBGROUPS}
    flags = []
    for sample in samples:
        row = rows.get(Path(sample.path).name)
        if row is None or not columns <= row.keys():
            return None
        flags.append({column: int(row[column] or 0) for column in columns})
    return flags


def shortcut_limitations(data_root: Path) -> list[str]:
    """A card limitation for each kind of image (a flag set) that is almost always fractured in the data set: in
    FracAtlas, 90 of the 92 X-rays with orthopaedic hardware."""
    rows = _table(data_root) or []
    found = []
    for group, name, column, value in SUBGROUPS:
        if value != 1 or not rows or column not in rows[0] or "fractured" not in rows[0]:
            continue
        inside = [row for row in rows if int(row[column] or 0) == 1]
        # The table's own label column, so the count needs no image read; it disagrees with the folders for one
        # FracAtlas image, which carries no hardware.
        fractured = sum(int(row["fractured"] or 0) for row in inside)
        if inside and fractured / len(inside) >= SHORTCUT_SHARE:
            found.append(f"{SHORTCUT_OPENING}{fractured} of the {len(inside)} X-rays flagged "
                         f"“{group}: {name}” are fractured, so the model may answer the {group} rather than the "
                         f"fracture; how it answers such an X-ray without a fracture can hardly be measured (the "
                         f"whole set holds {len(inside) - fractured}).")
    return found


def subgroup_metrics(labels, probabilities, threshold: float, flags: list[dict]) -> list[dict]:
    """One row per subgroup: its size, its fractures, and AUROC, sensitivity and specificity at `threshold`
    with their 95% intervals (AUROC is undefined, None, where the subgroup holds one class only)."""
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    rows = []
    for group, name, column, value in SUBGROUPS:
        inside = np.array([image[column] == value for image in flags], bool)
        if not inside.any():
            continue
        measured = metrics.binary_metrics(labels[inside], probabilities[inside], threshold)
        rows.append({"group": group, "subgroup": name, "images": int(inside.sum()), "fractured": int(labels[inside].sum()),
                     **{field: measured[field] for field in FIELDS},
                     "intervals": {field: measured["intervals"][field] for field in FIELDS}})
    return rows


def print_subgroups(measured: list[dict], on_card: list[dict] | None) -> None:
    """The measured rows beside the card's, for `training.evaluate`'s reproduction check."""
    stored = {(row["group"], row["subgroup"]): row for row in on_card or []}
    print(f"{'subgroup':<36}{'images':>7}{'fract.':>7}" + "".join(f"{field:>13}{'card':>7}" for field in FIELDS))
    for row in measured:
        card_row = stored.get((row["group"], row["subgroup"]), {})
        cells = "".join(f"{_figure(row[field]):>13}{_figure(card_row.get(field)):>7}" for field in FIELDS)
        print(f"{row['group'] + ': ' + row['subgroup']:<36}{row['images']:>7}{row['fractured']:>7}{cells}")


def _figure(value) -> str:
    return "—" if value is None or value != value else f"{value:.3f}"
