"""training.mend_split: copies found in two splits of a stored split file go whole to the least held-out one."""

import csv
import shutil

from training.mend_split import main, mend

from conftest import FRACATLAS_FIXTURES


def rows_of(groups_and_splits):
    return [{"path": f"{index}.jpg", "split": split, "group": str(group)}
            for index, (group, split) in enumerate(groups_and_splits)]


def test_a_joined_group_goes_to_its_least_held_out_split_and_takes_its_smallest_number():
    rows = rows_of([(3, "test"), (7, "val"), (7, "val"), (9, "test"), (12, "train")])
    moved = mend(rows, [(0, 1), (3, 4)])
    assert [(row["split"], row["group"]) for row in rows] == [
        ("val", "3"), ("val", "3"), ("val", "3"), ("train", "9"), ("train", "9")]
    assert moved == [("0.jpg", "test", "val"), ("3.jpg", "test", "train")]
    assert mend(rows, []) == []  # a mended file has nothing left to move


def test_a_file_cut_short_in_the_test_split_joins_its_whole_picture_in_training(tmp_path, capsys):
    whole, other = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[:2]
    (tmp_path / "images").mkdir()
    shutil.copy(whole, tmp_path / "images" / "whole.jpg")
    shutil.copy(other, tmp_path / "images" / "other.jpg")
    data = whole.read_bytes()
    (tmp_path / "images" / "cut.jpg").write_bytes(data[: int(0.6 * len(data))])  # a download that stopped early
    split_file = tmp_path / "split.csv"
    with open(split_file, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "class", "split", "group"])
        for group, (name, split) in enumerate([("whole", "train"), ("cut", "test"), ("other", "test")]):
            writer.writerow([f"images/{name}.jpg", 1, "Fractured", split, group])
    assert main(["--split", str(split_file), "--data", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "images/cut.jpg: test → train\n"
    with open(split_file, newline="", encoding="utf-8") as handle:
        assert [(row["split"], row["group"]) for row in csv.DictReader(handle)] == [
            ("train", "0"), ("train", "0"), ("test", "2")]
    assert main(["--split", str(split_file), "--data", str(tmp_path), "--same", "images/other.jpg",
                 "images/whole.jpg"]) == 0
    assert capsys.readouterr().out == "images/other.jpg: test → train\n"
    assert main(["--split", str(split_file), "--data", str(tmp_path), "--same", "images/x.jpg", "images/whole.jpg"]) == 2
    (tmp_path / "images" / "other.jpg").unlink()  # a file missing: its copies could not be looked for
    assert main(["--split", str(split_file), "--data", str(tmp_path)]) == 2
    assert "could not be read" in capsys.readouterr().err
