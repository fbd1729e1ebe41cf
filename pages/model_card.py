"""Model card: how each model was made and how well it measured on its held-out test split."""

import streamlit as st

from fracture_app import card_view, config, ui


def main() -> None:
    ui.page_frame()
    st.title("Model cards")
    st.caption("What each model was trained on, how it measured on images it never saw (the test split), where its "
               "thresholds sit, and what it must not be used for.")
    models = ui.load_models()
    diagnoser = ui.require_models(models)
    tabs = st.tabs([config.TASK_TITLES[task] for task in config.TASKS])
    for tab, task in zip(tabs, config.TASKS):
        with tab:
            model = diagnoser.models.get(task)
            if model is None:
                st.warning(f"The {config.TASK_TITLES[task].lower()} is not loaded: "
                           + ("; ".join(models.problems) or "no model file"), icon=":material/warning:")
                continue
            card_view.render_card(model.card, models.directory, task)


main()
