"""The Model card page's view of a card: what a model is, how it was made, how good it measured.

Tables of figures to read (targets, operating points, subgroups, another source's folders) are static (st.table):
every column shows and long labels wrap, where a data grid would cut them on a laptop. Those to compare and sort
(the runs compared, the figures per class) stay data grids.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fracture_app import config
from fracture_app.diagnosis import LIKELY, NOT_RULED_OUT
from fracture_app.models import artifact_paths, member_curves_path
from fracture_app.report import percent


def _number(value, style: str = "ratio") -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.1f}%" if style == "percent" else f"{float(value):.3f}"


def _smoothing_words(game: dict) -> str:
    sigma = game.get("smoothing_cells") or 0
    return f", blurred (Gaussian, σ = {sigma:g} map cell{'' if sigma == 1 else 's'})" if sigma else ""


def _epochs_line(training: dict) -> str:
    if training.get("members"):  # each member's own epochs are listed below with its command
        return (f"- Epochs: {training.get('epochs_run', '?')} in all over {len(training['members'])} networks "
                f"trained separately, batch size {training.get('batch_size', '?')}\n")
    return (f"- Epochs: {training.get('epochs_run', '?')} of {training.get('epochs_requested', '?')} "
            f"(best {training.get('best_epoch', '?')}), batch size {training.get('batch_size', '?')}\n")


def duration_words(seconds) -> str:
    if not seconds:
        return "n/a"
    minutes, secs = divmod(int(round(float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else (f"{minutes} min {secs} s" if minutes else f"{secs} s")


BINARY_METRICS = (("auroc", "AUROC", "ratio"), ("sensitivity", "Sensitivity", "percent"),
                  ("specificity", "Specificity", "percent"), ("accuracy", "Accuracy", "percent"),
                  ("precision", "Precision", "percent"), ("ece", "Calibration error (ECE)", "ratio"))
TYPE_METRICS = (("top1", "Top-1 accuracy", "percent"), ("top3", "Top-3 accuracy", "percent"),
                ("macro_f1", "Macro F1", "ratio"), ("ece", "Calibration error (ECE)", "ratio"))
DEVELOPER_DETAILS = "How it was made: hardware, commands and the other runs tried (for developers)"
# A phone shows a table's first columns only and no scroll bar: said there, and only there (a CSS media query).
NARROW_SCREEN_HINT = ("<style>@media (min-width: 700px) {.fracture-narrow-hint {display: none;}}</style>"
                      "<p class='fracture-narrow-hint'><small>On a narrow screen the tables below scroll sideways: "
                      "swipe one to see its other columns.</small></p>")
DATA_NAMES = {"fracatlas": "FracAtlas", "bone_break": "Bone Break Classification", "custom": "custom data set"}
POINT_NAMES = {"high_sensitivity": f"High sensitivity (lower bound of “{NOT_RULED_OUT}”)",
               "high_specificity": f"High specificity (lower bound of “{LIKELY}”)"}


def _initial_weights(data: dict) -> str:
    """Where training started; a file of ours is named with its sha256, since the path is reused by each release."""
    start, digest = data.get("weights_init", "unknown"), data.get("weights_init_sha256")
    return f"{start} (sha256 {digest[:12]}…)" if digest else str(start)


def _start_in_words(data: dict) -> str:
    """The start for a reader of the card; the file it came from is a developer's detail."""
    start = data.get("weights_init")
    where = f"named under “{DEVELOPER_DETAILS.split(':')[0]}”"
    if start is None:
        return "not recorded"
    if start == config.MEMBERS_OWN_START:
        return f"each member from an earlier model of its own ({where})"
    return {"none": "none (trained from scratch)", "imagenet": "ImageNet"}.get(
        str(start).lower(), f"an earlier model of ours ({where})")


def _metric_row(values: dict, spec) -> None:
    columns = st.columns(len(spec))
    for column, (key, label, style) in zip(columns, spec):
        column.metric(label, _number(values.get(key), style))


def _plot(path: Path, caption: str) -> None:
    if path.is_file():
        st.image(str(path), caption=caption, width="stretch")
    else:
        st.caption(f"{caption}: plot not found ({path.name}).")


def render_targets(targets: list[dict] | None) -> None:
    """The project's targets beside what this model measured: a missed target is said plainly."""
    if not targets:
        return
    missed = sum(target["met"] is False for target in targets)
    st.markdown("#### Against the project's targets (test split)")
    unmeasured = sum(target["met"] is None for target in targets)
    if missed:
        st.warning(f"This model misses {missed} of its {len(targets)} targets.", icon=":material/flag:")
    elif not unmeasured:
        st.success(f"This model meets all {len(targets)} of its targets on the point estimates; the 95% intervals "
                   "say how sure that is on a test split this size.", icon=":material/flag:")
    frame = pd.DataFrame({
        "Target": [target["target"] for target in targets],
        "Measured": [_measured(target["measured"]) for target in targets],
        "95% interval": [interval_words(target.get("interval")) for target in targets],
        "Met": [{True: "yes", False: "no", None: "not measured"}[target["met"]] for target in targets],
    })
    st.table(frame, hide_index=True)


def _channels(count: int) -> str:
    return "grey (1 channel)" if count == 1 else f"{count} channels"


def interval_words(bounds, style: str = "ratio") -> str:
    return f"{_number(bounds[0], style)}–{_number(bounds[1], style)}" if bounds else ""


def _measured(value) -> str:
    if value is None:
        return "n/a"
    return _number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def render_card(card, directory: Path, task: str) -> None:
    """The model card (the JSON beside the model) and the plots training wrote beside it, section by section; a
    card edited by hand or by an older version of this project may lack an entry a section needs: that is said, in
    place of a traceback."""
    try:
        _render_sections(card, directory, task)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        st.warning(f"The rest of this model card could not be shown: `{card.path.with_suffix('.json').name}` has an "
                   f"entry this page cannot read ({type(error).__name__}: {error}). The model itself loaded and reads "
                   "X-rays as usual.", icon=":material/warning:")


def _render_sections(card, directory: Path, task: str) -> None:
    _render_header(card, task)
    st.markdown(NARROW_SCREEN_HINT, unsafe_allow_html=True)
    _render_test_figures(card, task)
    render_targets(card.data.get("targets"))
    render_cross_validation(card.data.get("cross_validation"), card)
    _render_plots(card, directory, task)
    if task == config.BINARY_TASK:
        _render_operating_points(card)
        render_subgroups(card.data.get("metrics", {}).get("test", {}).get("subgroups"))
        render_external_checks(card.data.get("external_checks"), card.version)
    _render_data(card.data.get("data", {}))
    if card.data.get("limitations"):
        st.markdown("#### Limitations")
        st.markdown("\n".join(f"- {item}" for item in card.data["limitations"]))
    # Run names, commands and checksums matter to whoever retrains the model, not to a reader of its answers.
    with st.expander(DEVELOPER_DETAILS):
        _render_training(card)
        render_compared_runs(card.data.get("compared_runs"))


def _render_header(card, task: str) -> None:
    data, pre = card.data, card.data.get("preprocessing", {})
    st.subheader(f"{data.get('name', task)} · version {card.version}")
    size = pre.get("size", "?")
    st.caption(f"Architecture **{data.get('architecture', 'unknown')}** · input {size}×{size} px, letterboxed, "
               f"{_channels(pre.get('channels', 1))} · initial weights: {_start_in_words(data)} · "
               f"{len(card.classes)} classes: {', '.join(card.classes)}{_flip_sentence(data.get('test_time_flip'))}")
    rounded = data.get("weights_rounded")
    if isinstance(rounded, dict):
        st.caption(f"The weights were carried as {rounded.get('to')} and turned back into float32 "
                   f"({rounded.get('at', '?')[:10]}); "
                   + (f"every figure was measured again on this file (version {rounded['measured_again']})."
                      if rounded.get("measured_again") else
                      "**the figures below were measured before that rounding.**"))
    if data.get("intended_use"):
        st.info(f"**Intended use.** {data['intended_use']}", icon=":material/school:")


def _render_test_figures(card, task: str) -> None:
    data = card.data
    test = data.get("metrics", {}).get("test", {})
    count = test.get("n", "?")
    st.markdown(f"#### Test split ({count} image{'' if count == 1 else 's'} never used in training)")
    if task != config.BINARY_TASK:
        _metric_row(test, TYPE_METRICS)
        _intervals_caption(test, TYPE_METRICS)
        if test.get("per_class"):
            with st.expander("Per-class precision, recall and F1 (test split)"):
                frame = pd.DataFrame(test["per_class"]).T.rename_axis("Fracture type").reset_index()
                st.dataframe(frame, hide_index=True)
        return
    _metric_row(test, BINARY_METRICS)
    _intervals_caption(test, BINARY_METRICS)
    game = test.get("pointing_game")
    if game:
        interval = game.get("interval")
        st.caption(f"Grad-CAM pointing game: the hottest point fell inside an annotated fracture box on "
                   f"{game.get('hits', 0)} of {game.get('images', 0)} fractured test images "
                   f"({_number(game.get('hit_rate'), 'percent')}"
                   + (f", 95% interval {interval_words(interval, 'percent')})"
                      if interval else ")")
                   + (f"; heat map from layer `{game.get('layer', 'last')}`{_smoothing_words(game)}, chosen on "
                      "the validation split." if data.get("gradcam") else "; heat map from the last convolutional layer."))
    elif (data.get("gradcam") or {}).get("not_measured"):
        st.caption(f"Grad-CAM pointing game not measured: {data['gradcam']['not_measured']}.")
    # How a choice came about, where that flatters it; apart from "gradcam", which evaluate rewrites whole.
    if (data.get("disclosures") or {}).get("gradcam"):
        st.caption(data["disclosures"]["gradcam"])


METRIC_WORDS = {"macro-F1": "macro-F1 (the mean over the types of how well each is both found and not over-called: "
                            "1 is perfect, about {chance} is chance)"}


def render_cross_validation(result: dict | None, card) -> None:
    """The pooled out-of-fold figures of models trained nearly like this one (training.crossval), beside this
    model's own test figure and its validation figure on the same terms (each image alone)."""
    if not result or not result.get("recipes"):
        return
    data, recipe, metric = card.data, result["recipes"][0], result.get("metric", "score")
    runs, images = recipe.get("runs", "?"), result.get("images", "?")
    st.markdown("#### Cross-validated: how models made nearly this way do")
    if result.get("model_version") not in (None, card.version):
        st.warning(f"Measured for version {result['model_version']} of this model, not this one ({card.version}).",
                   icon=":material/history:")
    also = recipe.get("also") or {}
    shares = [f"{words} {_number(also[key]['score'], 'percent')} (95% interval "
              f"{interval_words(also[key].get('interval'), 'percent') or 'n/a'})"
              for key, words in (("top1", "first guess right for"), ("top3", "right type among the top three for"))
              if (also.get(key) or {}).get("score") is not None]
    test = (data.get("metrics") or {}).get("test") or {}
    key, differs = result.get("metric_key", ""), result.get("differs_from_this_file")
    chance = f"{1 / len(card.classes):.1f}" if card.classes else "?"
    for_comparison = (f" For comparison, this model's own test {metric} above is {_number(test[key])} on "
                      f"{test.get('n', '?')} X-rays." if test.get(key) is not None else "")
    st.markdown(
        f"{runs} models made " + ("nearly as this one was (the differences are below)" if differs else
                                  "as this one was" if differs == [] else "with a recipe of their own")
        + f" were each trained on all but one of {runs} parts of its {images} training and validation X-rays "
        "(near-identical pictures kept in the same part) and scored on the part they never saw. Pooled over all "
        f"{images}: " + "; ".join(shares + [f"{METRIC_WORDS.get(metric, metric).format(chance=chance)} "
                                            f"**{_number(recipe.get('score'))}** (95% interval "
                                            f"{interval_words(recipe.get('interval')) or 'n/a'})"])
        + "." + for_comparison)
    flip, validation = data.get("test_time_flip") or {}, (data.get("metrics") or {}).get("val") or {}
    alone = (flip.get("validation") or {}).get("image_alone") if flip.get("used") else validation.get(key)
    if alone is not None:
        as_run = (f" ({_number(validation[key])} as the app runs it)"
                  if flip.get("used") and validation.get(key) is not None else "")
        count = f", on only {validation['n']} X-rays" if validation.get("n") else ""
        picked = len(data.get("compared_runs") or []) > 1
        st.markdown(f"Scored the same way (each X-ray once), this model's validation {metric} is {_number(alone)}"
                    f"{as_run}{count}"
                    + ("; it was picked as the best of several runs by its validation figure, which flatters it"
                       if picked else "") + ". The pooled figure is the better guess for new X-rays.")
    if differs:
        st.caption("How those models were made otherwise than this one: they "
                   + "; ".join(map(difference_words, differs)) + ".")
    if len(result["recipes"]) > 1:
        other, difference = result["recipes"][1], result.get("difference") or {}
        bounds = difference.get("interval") or [None, None]
        clear = None not in bounds and (bounds[0] > 0 or bounds[1] < 0)
        lead = ("The same models " + "; ".join(map(difference_words, other["differs"])) if other.get("differs")
                else "The same recipe trained again" if other.get("differs") == [] else "Another recipe")
        st.caption(f"{lead}: {metric} {_number(other.get('score'))} (95% interval "
                   f"{interval_words(other.get('interval')) or 'n/a'}). This way minus that: "
                   f"{_signed(difference.get('score'))} (95% interval {' to '.join(map(_signed, bounds))}): "
                   + ("a difference." if clear else "no detectable difference."))
    st.caption("None of the scored X-rays decided anything in training (each model kept its last epoch), so these "
               "figures are not flattered by a choice.")


def difference_words(difference: dict) -> str:
    """One way the fold runs were trained otherwise than the model (training.crossval's record), in words."""
    option, theirs, ours = difference.get("option"), difference.get("theirs"), difference.get("instead_of")
    if option == "--img-size":
        return f"read {theirs} px instead of {ours} px"
    if option == "--weights":
        both_ours = all(str(value).startswith("sha256") for value in (theirs, ours))
        return ("started from another earlier model" if both_ours
                else f"started {_start_words(theirs)} instead of {_start_words(ours)}")
    if option == "--keep-last-epoch":
        return ("trained for all their epochs instead of stopping at the best one on validation" if theirs == "yes"
                else "stopped at their best epoch on validation instead of training all their epochs")
    if option == "--seed":
        return "started from other random numbers"
    if option == "mirror":
        return "read each X-ray once instead of averaging it with its mirror image"
    if option == "epochs run":
        return f"ran {theirs} epochs instead of {ours}"
    return f"{option} {theirs} instead of {ours}"


def _start_words(weights) -> str:
    return {"none": "from scratch", "imagenet": "from ImageNet weights"}.get(str(weights), "from an earlier model")


def _signed(value) -> str:
    return "n/a" if value is None else f"{float(value):+.3f}".replace("-", "−")


def _render_plots(card, directory: Path, task: str) -> None:
    paths = artifact_paths(directory, task)
    plots = st.columns(2)
    with plots[0]:
        if task == config.BINARY_TASK:
            _plot(paths["roc"], "ROC curve (test split) with the operating points")
        else:
            st.caption("A ROC curve belongs to the binary model; the type model is judged by the confusion matrix.")
    with plots[1]:
        _plot(paths["confusion"], "Confusion matrix (test split)")
    caption = "Training curves (validation scored on each X-ray alone, epoch by epoch)"
    if card.data.get("validation_choices_redone"):
        # The curves stay as training drew them, on the data it was given (a scaled-down copy, on a GPU machine).
        caption += ("; as training measured them: the figures above were measured again afterwards (see "
                    "Training), so the curves' validation scores can differ a little from them")
    members = card.data.get("training", {}).get("members", [])
    for number, _ in enumerate(members, start=1):
        _plot(member_curves_path(directory, task, number), f"{caption}, member {number} of {len(members)}")
    if not members:
        _plot(paths["curves"], caption)


def _render_operating_points(card) -> None:
    test, validation = card.data.get("metrics", {}).get("test", {}), card.data.get("metrics", {}).get("val", {})
    st.markdown("#### Operating points")
    rows = [{"Operating point": "Decision threshold (verdict “Fractured”)", "Threshold": percent(card.threshold),
             "Test sensitivity": _number(test.get("sensitivity"), "percent"),
             "Test specificity": _number(test.get("specificity"), "percent"),
             "Validation sensitivity": _number(validation.get("sensitivity"), "percent"),
             "Validation specificity": _number(validation.get("specificity"), "percent")}]
    for name, point in card.operating_points.items():
        at_test, at_val = point.get("test", {}), point.get("validation", {})
        rows.append({"Operating point": POINT_NAMES.get(name, name.replace("_", " ")),
                     "Threshold": percent(point.get("threshold")),
                     "Test sensitivity": _number(at_test.get("sensitivity"), "percent"),
                     "Test specificity": _number(at_test.get("specificity"), "percent"),
                     "Validation sensitivity": _number(at_val.get("sensitivity"), "percent"),
                     "Validation specificity": _number(at_val.get("specificity"), "percent")})
    st.table(pd.DataFrame(rows), hide_index=True)
    st.caption("Thresholds are chosen on the validation split and reported on the test split.")


def _render_data(source: dict) -> None:
    st.markdown("#### Data")
    splits = source.get("split_sizes", {})
    st.markdown(
        f"- Source: **{DATA_NAMES.get(source.get('source'), source.get('source', 'unknown'))}** "
        f"({source.get('layout', 'unknown layout')} layout), "
        f"{source.get('images', '?')} images ({source.get('unreadable', 0)} unreadable skipped)\n"
        f"- Splits: " + ", ".join(f"{name} {count}" for name, count in splits.items()) +
        f" · {source.get('groups', '?')} groups of duplicates kept within one split"
        + (f" · {source['groups_across_given_splits']} groups crossed the published split folders and were kept whole"
           if source.get("groups_across_given_splits") else "")
        + (f" · split from the file `{source['split_file']['path']}`" if source.get("split_file") else "")
        + (f", across whose splits {source['groups_spanning_split_file']} groups of near-identical pictures, as "
           "grouped on these pixels, fall" if source.get("groups_spanning_split_file") else ""))
    if source.get("source") in config.DATA_AS_USED:
        st.caption(config.DATA_AS_USED[source["source"]])
    attribution = source.get("attribution") or config.DATA_ATTRIBUTION.get(source.get("source", ""), "")
    if attribution:
        st.caption(f"Attribution: {attribution}")


def _render_training(card) -> None:
    data, training = card.data, card.data.get("training", {})
    st.markdown("#### Training")
    method = card.calibration.get("method", "none")
    calibration = {"platt": "Platt scaling", "temperature": "temperature scaling"}.get(method, method)
    st.markdown(
        f"- Started from: {_initial_weights(data)}\n"
        f"- Hardware: {training.get('hardware', 'unknown')}; time: {duration_words(training.get('seconds'))}\n"
        + _epochs_line(training) +
        f"- Calibration: {calibration} (fitted on the {card.calibration.get('fitted_on', 'validation')} split)\n"
        f"- Trained at: {training.get('trained_at', 'unknown')}")
    if training.get("time_note"):
        # A run that starts from an earlier model of ours took more training than its own time says.
        st.caption(f"Training time in all: {training['time_note']}")
    for number, member in enumerate(training.get("members", []), start=1):
        st.caption(f"Member {number} (sha256 {str(member.get('sha256'))[:12]}…): {member.get('epochs_run', '?')} "
                   f"epochs (best {member.get('best_epoch', '?')}) in {duration_words(member.get('seconds'))} on "
                   f"{member.get('hardware', 'unknown')}, trained with:")
        st.code(member.get("command") or "not recorded", language="bash")
    if training.get("command"):
        st.code(training["command"], language="bash")
    redone = data.get("validation_choices_redone")
    if redone:
        st.caption(f"Validation choices and figures redone on {redone.get('at', '?')} with:")
        st.code(redone.get("command", ""), language="bash")
    st.caption(f"Model file sha256: `{data.get('sha256', 'unknown')}`")


def render_subgroups(rows: list[dict] | None) -> None:
    """The test figures within each body region, hardware and view (training.subgroups), with their intervals."""
    if not rows:
        return
    st.markdown("#### By kind of X-ray (test split)")
    table = [{"Group": row["group"], "Subgroup": row["subgroup"], "Images": row["images"], "Fractured": row["fractured"],
              **{f"{label} (95% interval)": _with_interval(row.get(key), row.get("intervals", {}).get(key), style)
                 for key, label, style in BINARY_METRICS if key in row.get("intervals", {})}}
             for row in rows]
    st.table(pd.DataFrame(table), hide_index=True)
    st.caption("From FracAtlas' own flags for each image; an image of two regions or two views counts in each. "
               "At the one decision threshold chosen on validation. Small subgroups have wide intervals: read the "
               "interval, not the figure. Nothing was chosen on these rows.")


def render_external_checks(checks: dict | None, version: str) -> None:
    """training.external_check's results: the share of another source's fractures the model calls fractured."""
    for name, check in (checks or {}).items():
        st.markdown(f"#### Fractures from another source: {name}")
        if check.get("model_version") != version:  # e.g. a threshold chosen again since: the share may differ now
            st.warning(f"Measured on version {check.get('model_version')}, not on this one: run the command below "
                       "again before relying on it.", icon=":material/history:")
        pictures = check["source_pictures"]
        st.markdown(f"Every one of these {check['images']:,} images shows a fracture, and the model saw none of them "
                    f"in training. It called **{_number(check['share'], 'percent')}** of them fractured (95% interval "
                    f"{interval_words(check['interval'], 'percent')}); counted by source picture (augmented copies of one "
                    f"picture averaged), {pictures['found']} of {pictures['images']} "
                    f"({_number(pictures['share'], 'percent')}).")
        table = [{"Folder": folder, "Images": part["images"], "Called fractured (95% interval)":
                  _with_interval(part["share"], part["interval"], "percent"),
                  "Source pictures called fractured": f"{part['source_pictures']['found']} of "
                                                      f"{part['source_pictures']['images']}"}
                 for folder, part in check.get("by_folder", {}).items()]
        st.table(pd.DataFrame(table), hide_index=True)
        st.caption(f"At the decision threshold ({percent(check.get('threshold'))}); measured on "
                   f"{str(check.get('at', '?'))[:10]} with `{check.get('command', '')}`; "
                   f"{check.get('skipped', 0)} unreadable images left out. Only sensitivity can be measured here: the "
                   "folder holds no healthy X-rays.")


def _with_interval(value, bounds, style: str) -> str:
    if value is None or value != value:
        return "n/a (one class only)"
    if bounds and bounds[1] - bounds[0] < 1e-9:  # every bootstrap resample agreed (perfect ranking): not certainty
        return f"{_number(value, style)} (too few to bound)"
    return f"{_number(value, style)} ({interval_words(bounds, style)})" if bounds else _number(value, style)


def _flip_sentence(flip: dict | None) -> str:
    """Whether the answer averages the image and its mirror, and the validation figures that decided it."""
    if not flip:
        return ""
    scores = flip.get("validation", {})
    used = "the mean over the X-ray and its mirror image" if flip.get("used") else "from the X-ray alone"
    return (f" · answer {used}, chosen on {flip.get('chosen_on', 'validation')} "
            f"({_number(scores.get('image_alone'))} alone, {_number(scores.get('averaged_with_mirror'))} averaged)")


def _intervals_caption(test: dict, spec) -> None:
    """95% intervals under the figures: how far each could move on another sample of the same size."""
    intervals = test.get("intervals") or {}
    parts = [f"{label} {interval_words(intervals[key], style)}" for key, label, style in spec if intervals.get(key)]
    if parts:
        st.caption("95% intervals: " + " · ".join(parts))


# Row keys training.compare may leave blank: (shown where a row predates the key, shown where it is None).
# Augmentation: runs before the twelfth session trained with a chain of Keras layers and did not record it.
# Learning-rate schedule: runs before the fourteenth session did not record it (they halved it on a plateau).
# Pointing game: rows before the thirteenth session did not copy it; runs on JAX could not measure it.
# Start model's digest: rows before the fifteenth session did not copy it; a start with no file of ours has none.
# Heat-map blur (σ in map cells): rows before the sixteenth session measured the pointing game with none.
BLANK_ROW_FIELDS = {
    "augmentation": ("not recorded", "not recorded"),
    "lr_schedule": ("not recorded", "not recorded"),
    "val_pointing_game": ("not recorded", "not measured"),
    "test_pointing_game": ("not recorded", "not measured"),
    "weights_rounded_to": ("not recorded", "not rounded"),
    "fine_tune_share": ("not recorded", "—"),
    "weights_init_sha256": ("not recorded", "—"),
    "pointing_game_smoothing": ("none", "none"),
}


def _spelled_out(row: dict, rows: list[dict]) -> dict:
    """The row with its blanks said in words, for the fields some row of the table has (such a column is shown as
    text, so its figures are rounded here)."""
    shown = dict(row)
    for key, (absent, none) in BLANK_ROW_FIELDS.items():
        if any(key in other for other in rows) and shown.get(key) is None:
            shown[key] = none if key in row else absent
        elif isinstance(shown.get(key), float):
            shown[key] = f"{shown[key]:.3f}"
    return shown


def render_compared_runs(rows) -> None:
    """Other runs tried for this task on the same split, as `python -m training.compare` recorded them."""
    if not rows:
        return
    st.markdown("#### Runs compared")
    frame = pd.DataFrame([_spelled_out(row, rows) for row in rows]).drop(columns=["command", "hardware"],
                                                                          errors="ignore")
    st.dataframe(frame, hide_index=True)
    st.caption("Each row's figures were measured by its own training run on this split. What ships was "
               "chosen by the validation column; the test columns are for reading, not for choosing.")
