"""training.compare copies each run's measured figures into the shipped card, and only for the same split."""

import json
import shutil

from fracture_app import config
from fracture_app.models import load_model
from training import compare
from fracture_app.models import artifact_paths

from conftest import TINY_SIZE


def copy_models(source, destination):
    shutil.copytree(source, destination)
    return artifact_paths(destination, config.TYPE_TASK)


def copy_split_with_another_seed(source, destination):
    """A copy whose card says its split came from another seed."""
    paths = copy_models(source, destination)
    card = json.loads(paths["card"].read_text())
    card["data"]["split_seed"] += 1
    paths["card"].write_text(json.dumps(card))
    return paths


def test_runs_on_the_same_split_are_recorded_with_their_own_figures(tiny_models_dir, tmp_path):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    other = copy_models(tiny_models_dir, tmp_path / "other_run")
    other_card = json.loads(other["card"].read_text())
    other_card["metrics"]["val"]["macro_f1"] = 0.123  # a different run measured something else
    other_card["training"]["weight_average_momentum"] = 0.99
    other_card["weights_init"] = "runs/domain/fracture_binary.keras"
    other_card["weights_init_sha256"] = "ab" * 32
    del other_card["training"]["augmentation"]  # as in cards from before the twelfth session
    del other_card["training"]["lr_schedule"]  # as in cards from before the fourteenth session
    other["card"].write_text(json.dumps(other_card))

    assert compare.main(["--model", str(shipped["model"]), str(other["card"])]) == 0
    rows = json.loads(shipped["card"].read_text())["compared_runs"]
    assert [row["run"] for row in rows] == ["shipped", "other_run"]
    assert rows[0]["shipped"] and not rows[1]["shipped"]
    assert rows[1]["val_macro_f1"] == 0.123 and rows[0]["val_macro_f1"] != 0.123
    assert rows[1]["test_top1"] == other_card["metrics"]["test"]["top1"]
    assert rows[1]["architecture"] == other_card["architecture"] and rows[1]["input_size"] == TINY_SIZE
    assert rows[1]["weight_average"] == 0.99 and rows[0]["weight_average"] is None
    assert rows[0]["augmentation"] == "one affine warp" and rows[1]["augmentation"] is None
    assert rows[0]["lr_schedule"] == "plateau" and rows[1]["lr_schedule"] is None
    assert rows[1]["weights_init_sha256"] == "ab" * 32 and rows[0]["weights_init_sha256"] is None  # from scratch
    assert "val_pointing_game" not in rows[0]  # a type model has no fracture boxes to point at
    assert rows[0]["fine_tune_share"] is None  # no pretrained backbone
    assert "fine_tune_share" not in rows[1]  # pretrained before cards recorded the share
    load_model(shipped["model"])  # the card still matches its model


def test_binary_rows_carry_the_pointing_game_and_the_rounding(tiny_models_dir, tmp_path):
    copy_models(tiny_models_dir, tmp_path / "shipped")
    shipped_paths = artifact_paths(tmp_path / "shipped", config.BINARY_TASK)
    other = artifact_paths(copy_models(tiny_models_dir, tmp_path / "jax_run")["card"].parent, config.BINARY_TASK)
    shipped_card = json.loads(shipped_paths["card"].read_text())
    shipped_card["gradcam"]["validation_hit_rates"] = {"another_layer": 0.75, shipped_card["gradcam"]["layer"]: 0.25}
    shipped_card["metrics"]["test"]["pointing_game"]["hit_rate"] = 0.5
    shipped_paths["card"].write_text(json.dumps(shipped_card))
    other_card = json.loads(other["card"].read_text())
    del other_card["metrics"]["test"]["pointing_game"]  # measured again without the boxes: the layer choice is stale
    other_card["weights_rounded"] = {"to": "float16", "by": "python -m training.transport"}
    other["card"].write_text(json.dumps(other_card))

    assert compare.main(["--model", str(shipped_paths["model"]), str(other["card"])]) == 0
    shipped_row, other_row = json.loads(shipped_paths["card"].read_text())["compared_runs"]
    assert (shipped_row["val_pointing_game"], shipped_row["test_pointing_game"]) == (0.25, 0.5)
    assert shipped_row["pointing_game_smoothing"] == shipped_card["gradcam"]["smoothing_cells"]
    assert other_row["val_pointing_game"] is None and other_row["test_pointing_game"] is None
    assert shipped_row["weights_rounded_to"] is None and other_row["weights_rounded_to"] == "float16"


def test_a_run_on_another_split_is_refused(tiny_models_dir, tmp_path, capsys):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    other = copy_split_with_another_seed(tiny_models_dir, tmp_path / "resplit_run")
    before = shipped["card"].read_text()

    assert compare.main(["--model", str(shipped["model"]), str(other["card"])]) == 2
    assert "split differently (split_seed differ)" in capsys.readouterr().err
    assert shipped["card"].read_text() == before


def test_a_run_with_the_same_split_sizes_but_other_images_is_refused(tiny_models_dir, tmp_path, capsys):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    other = copy_models(tiny_models_dir, tmp_path / "swapped_run")
    lines = other["manifest"].read_text(encoding="utf-8").splitlines()
    train = next(i for i, line in enumerate(lines) if line.split(",")[3] == "train")
    test = next(i for i, line in enumerate(lines) if line.split(",")[3] == "test")
    swap = {"train": "test", "test": "train"}
    for index in (train, test):  # sizes stay equal, membership does not
        fields = lines[index].split(",")
        fields[3] = swap[fields[3]]
        lines[index] = ",".join(fields)
    other["manifest"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = shipped["card"].read_text()

    assert compare.main(["--model", str(shipped["model"]), str(other["card"])]) == 2
    assert "its split file differs" in capsys.readouterr().err
    assert shipped["card"].read_text() == before


def test_the_card_shipped_before_keeps_its_own_row_and_the_runs_it_had_compared(tiny_models_dir, tmp_path):
    """Run folders are scratch: once one is gone, only the earlier card remembers what that run measured."""
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    earlier = copy_models(tiny_models_dir, tmp_path / "saved_aside")
    other = copy_models(tiny_models_dir, tmp_path / "new_run")
    earlier_card = json.loads(earlier["card"].read_text())
    earlier_card["metrics"]["val"]["macro_f1"] = 0.321
    gone = {**compare.summary(earlier_card, "run_whose_folder_is_gone"), "val_macro_f1": 0.2, "shipped": False}
    earlier_card["compared_runs"] = [{"run": "shipped", "val_macro_f1": 0.321, "shipped": True}, gone,
                                     {"run": "new_run", "val_macro_f1": 0.9, "shipped": False},
                                     {**gone, "run": compare.EARLIER_LABEL, "val_macro_f1": 0.31},
                                     {**gone, "run": "shipped 2 releases before", "val_macro_f1": 0.3}]
    earlier_card[compare.EARLIER_SPLIT_ROWS] = [{"run": "on_a_split_since_corrected", "val_macro_f1": 0.257}]
    earlier["card"].write_text(json.dumps(earlier_card))

    assert compare.main(["--model", str(shipped["model"]), "--earlier", str(earlier["card"]), str(other["card"])]) == 0
    rows = json.loads(shipped["card"].read_text())["compared_runs"]
    # Each model shipped earlier keeps its row, a release older now.
    assert [row["run"] for row in rows] == ["shipped", "new_run", compare.EARLIER_LABEL, "run_whose_folder_is_gone",
                                            "shipped 2 releases before", "shipped 3 releases before"]
    assert [row["val_macro_f1"] for row in rows[4:]] == [0.31, 0.3]
    assert [row["shipped"] for row in rows] == [True, False, False, False, False, False]
    assert rows[2]["val_macro_f1"] == 0.321 and rows[3] == gone
    assert rows[1]["val_macro_f1"] != 0.9, "a run named again is measured from its own card, not the old row"
    kept = json.loads(shipped["card"].read_text())[compare.EARLIER_SPLIT_ROWS]
    assert kept == earlier_card[compare.EARLIER_SPLIT_ROWS]


def test_an_earlier_card_on_another_split_is_refused(tiny_models_dir, tmp_path, capsys):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    earlier = copy_split_with_another_seed(tiny_models_dir, tmp_path / "saved_aside")

    assert compare.main(["--model", str(shipped["model"]), "--earlier", str(earlier["card"])]) == 2
    assert "split differently" in capsys.readouterr().err


def test_keep_rows_adds_a_run_beside_those_the_card_already_compares(tiny_models_dir, tmp_path):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    other = copy_models(tiny_models_dir, tmp_path / "another_try")
    card = json.loads(shipped["card"].read_text())
    gone = {**compare.summary(card, "run_whose_folder_is_gone"), "val_macro_f1": 0.2, "shipped": False}
    card["compared_runs"] = [{**compare.summary(card, "shipped"), "val_macro_f1": -1.0, "shipped": True}, gone]
    shipped["card"].write_text(json.dumps(card))

    assert compare.main(["--model", str(shipped["model"]), "--keep-rows", str(other["card"])]) == 0
    rows = json.loads(shipped["card"].read_text())["compared_runs"]
    assert [row["run"] for row in rows] == ["shipped", "another_try", "run_whose_folder_is_gone"]
    assert rows[0]["val_macro_f1"] == card["metrics"]["val"]["macro_f1"] and rows[2] == gone


def test_the_validation_pointing_game_of_a_row_is_the_one_with_the_chosen_blur():
    card = {"metrics": {"test": {"pointing_game": {"hit_rate": 0.63}}},
            "gradcam": {"layer": "fracture_map", "validation_hit_rates": {"fracture_map": 0.61},
                        "smoothing_cells": 1.0, "validation_hit_rates_by_smoothing": {"0.0": 0.61, "1.0": 0.69}}}
    assert compare.pointing_game(card) == {"val_pointing_game": 0.69, "test_pointing_game": 0.63,
                                           "pointing_game_smoothing": 1.0}
    del card["gradcam"]["smoothing_cells"]  # a card from before the blur was chosen
    assert compare.pointing_game(card)["val_pointing_game"] == 0.61
    assert compare.pointing_game(card)["pointing_game_smoothing"] is None


def test_a_run_folder_named_like_an_earlier_release_is_refused(tiny_models_dir, tmp_path, capsys):
    shipped = copy_models(tiny_models_dir, tmp_path / "shipped")
    clash = copy_models(tiny_models_dir, tmp_path / "shipped 2 releases before")
    assert compare.main(["--model", str(shipped["model"]), str(clash["card"])]) == 2
    assert "name of a model shipped before" in capsys.readouterr().err
