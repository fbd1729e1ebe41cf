"""The binary model's figures within each kind of FracAtlas image, from the data set's own flags."""

import shutil

import numpy as np
import pytest

from fracture_app import config
from fracture_app.data_layout import discover
from training.subgroups import image_flags, subgroup_metrics

from conftest import FRACATLAS_FIXTURES

THRESHOLD = 0.5


def test_flags_are_read_for_each_sample_in_its_order():
    samples = discover(FRACATLAS_FIXTURES, config.BINARY_TASK).samples
    flags = image_flags(list(reversed(samples)), FRACATLAS_FIXTURES)
    by_name = dict(zip([s.path.name for s in reversed(samples)], flags))
    # dataset.csv: IMG0000092.jpg is a leg with hardware; IMG0000006.jpg a hand seen laterally and obliquely.
    assert by_name["IMG0000092.jpg"]["leg"] == 1 and by_name["IMG0000092.jpg"]["hardware"] == 1
    assert by_name["IMG0000092.jpg"]["hand"] == 0
    assert (by_name["IMG0000006.jpg"]["lateral"], by_name["IMG0000006.jpg"]["oblique"]) == (1, 1)
    assert by_name["IMG0000006.jpg"]["frontal"] == 0


def test_no_flags_without_the_table_or_for_an_image_it_does_not_list(tmp_path):
    samples = discover(FRACATLAS_FIXTURES, config.BINARY_TASK).samples
    copy = tmp_path / "fracatlas"
    shutil.copytree(FRACATLAS_FIXTURES, copy)
    rows = (copy / "dataset.csv").read_text().splitlines()
    (copy / "dataset.csv").write_text("\n".join(row for row in rows if not row.startswith("IMG0000092")) + "\n")
    assert image_flags(samples, copy) is None
    (copy / "dataset.csv").unlink()
    assert image_flags(samples, copy) is None


def _image(**set_flags) -> dict:
    flags = dict.fromkeys(("hand", "leg", "hip", "shoulder", "mixed", "hardware", "frontal", "lateral", "oblique"), 0)
    return {**flags, **set_flags}


def test_each_subgroup_is_measured_on_its_own_images_only():
    flags = [_image(hand=1), _image(hand=1), _image(hand=1), _image(hand=1),
             _image(hip=1, hardware=1), _image(hip=1, hardware=1), _image(hip=1)]
    labels = [1, 1, 0, 0, 1, 0, 1]
    # Hands: one fracture found, one missed, one healthy hand called fractured: sensitivity 1/2, specificity 1/2.
    # Hips: both fractures found, the healthy hip cleared, and every fracture scored above every healthy hip.
    scores = [0.9, 0.2, 0.7, 0.1, 0.8, 0.3, 0.6]
    rows = {(row["group"], row["subgroup"]): row for row in subgroup_metrics(labels, scores, THRESHOLD, flags)}
    hand, hip = rows["body region", "hand"], rows["body region", "hip"]
    assert (hand["images"], hand["fractured"], hand["sensitivity"], hand["specificity"]) == (4, 2, 0.5, 0.5)
    assert hand["auroc"] == pytest.approx(0.75)  # of the four (fracture, healthy) pairs, three are in order
    assert (hip["images"], hip["fractured"], hip["sensitivity"], hip["specificity"], hip["auroc"]) == (3, 2, 1.0, 1.0, 1.0)
    hardware = rows["orthopaedic hardware", "present"]
    assert (hardware["images"], hardware["fractured"]) == (2, 1)
    assert rows["orthopaedic hardware", "absent"]["images"] == 5
    assert ("body region", "leg") not in rows  # no leg in the set: no row, rather than a row of nothing
    assert hand["intervals"]["sensitivity"][0] < 0.5 < hand["intervals"]["sensitivity"][1]


def test_a_subgroup_of_one_class_has_no_auroc_but_keeps_its_sensitivity():
    flags = [_image(shoulder=1), _image(shoulder=1), _image(leg=1), _image(leg=1)]
    rows = {row["subgroup"]: row for row in subgroup_metrics([1, 1, 0, 1], [0.9, 0.4, 0.2, 0.7], THRESHOLD, flags)}
    assert np.isnan(rows["shoulder"]["auroc"]) and rows["shoulder"]["intervals"]["auroc"] is None
    assert rows["shoulder"]["sensitivity"] == 0.5
    assert np.isnan(rows["shoulder"]["specificity"])


def test_a_kind_of_image_almost_always_fractured_is_named_as_a_limitation(tmp_path):
    from training.subgroups import shortcut_limitations

    header = "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"
    rows = [f"IMG{i}.jpg,0,1,0,0,0,1,0,1,1,1,0,0" for i in range(9)]  # nine legs with hardware, all fractured
    rows += ["IMG9.jpg,0,1,0,0,0,1,0,0,0,1,0,0"]                   # and one with hardware, not fractured
    rows += [f"IMG{i}.jpg,0,1,0,0,0,0,0,{i % 2},0,1,0,0" for i in range(10, 30)]  # legs, half fractured
    (tmp_path / "dataset.csv").write_text("\n".join([header, *rows]) + "\n")
    found = shortcut_limitations(tmp_path)
    assert len(found) == 1 and "9 of the 10 X-rays flagged “orthopaedic hardware: present”" in found[0]
    assert "the whole set holds 1)" in found[0]
    (tmp_path / "dataset.csv").write_text("\n".join([header, *rows, "IMG99.jpg,0,1,0,0,0,1,0,0,0,1,0,0"]) + "\n")
    assert shortcut_limitations(tmp_path) == []  # 9 of 11 is under the 0.9 share
    assert shortcut_limitations(tmp_path / "no such folder") == []


def test_a_perfect_ranking_is_not_shown_as_a_certain_interval():
    from fracture_app.card_view import _with_interval

    assert _with_interval(1.0, [0.9999999999999999, 1.0], "ratio") == "1.000 (too few to bound)"  # as the card has it
    assert _with_interval(0.9, [0.8, 0.95], "percent") == "90.0% (80.0%–95.0%)"
    assert _with_interval(float("nan"), None, "ratio") == _with_interval(None, None, "ratio") == "n/a (one class only)"
