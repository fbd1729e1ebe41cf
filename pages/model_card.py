"""Model card: how each model was made and how well it measured on its held-out test split (and which way up)."""

import streamlit as st

from fracture_app import card_view, config, ui
from fracture_app.orientation_card_view import render_orientation_card


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
                why = models.problems.get(task, "no model file")
                st.warning(f"The {config.TASK_TITLES[task].lower()} is not loaded: {why}", icon=":material/warning:")
                continue
            card_view.render_card(model.card, models.directory, task)
    with orientation_tab:
        if diagnoser.orientation is None:
            st.warning("The orientation model is not loaded, so X-rays are read as uploaded: "
                       + models.problems.get(config.ORIENTATION_TASK, "no model file"), icon=":material/warning:")
        else:
            render_orientation_card(diagnoser.orientation.card)


main()
