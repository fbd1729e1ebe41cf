"""Model card: how each model was made and how well it measured on its held-out test split (and which way up)."""

from pathlib import Path

import streamlit as st

from fracture_app import card_view, config, ui
from fracture_app.orientation_card_view import render_orientation_card


def problem_of(models, task: str) -> str:
    """Why this model is missing (each problem names its file), not every model's problems."""
    stem = Path(config.MODEL_FILES[task]).stem  # a problem names the model file or its card
    mine = [problem for problem in models.problems if stem in problem]
    return "; ".join(mine) or "no model file"


def main() -> None:
    ui.page_frame()
    st.title("Model cards")
    st.caption("What each model was trained on, how it measured on images it never saw (the test split), where its "
               "thresholds sit, and what it must not be used for.")
    models = ui.load_models()
    diagnoser = ui.require_models(models)
    *tabs, orientation_tab = st.tabs([config.TASK_TITLES[task] for task in config.TASKS] + ["Which way up"])
    for tab, task in zip(tabs, config.TASKS):
        with tab:
            model = diagnoser.models.get(task)
            if model is None:
                st.warning(f"The {config.TASK_TITLES[task].lower()} is not loaded: " + problem_of(models, task),
                           icon=":material/warning:")
                continue
            card_view.render_card(model.card, models.directory, task)
    with orientation_tab:
        if diagnoser.orientation is None:
            st.warning("The orientation model is not loaded, so X-rays are read as uploaded: "
                       + problem_of(models, config.ORIENTATION_TASK), icon=":material/warning:")
        else:
            render_orientation_card(diagnoser.orientation.card)


main()
