"""The Model card page's view of the orientation model's card: what it decides, and how often it was right."""

import streamlit as st

from fracture_app import config
from fracture_app.card_view import DEVELOPER_DETAILS, duration_words, interval_words
from fracture_app.report import percent

SPLIT_NAMES = {"val": "Validation (chose the threshold)", "test": "Test (never used to choose anything)"}


def render_orientation_card(card) -> None:
    data, training = card.data, card.data.get("training", {})
    st.subheader(f"{data.get('name', 'orientation')} · version {card.version}")
    size = data.get("preprocessing", {}).get("size", "?")
    st.caption(f"Architecture **{data.get('architecture', 'unknown')}** · input {size}×{size} px, letterboxed, grey · "
               f"trained from random initialisation · {len(card.classes)} answers: {', '.join(card.classes)}")
    st.info("**What it does.** The fracture model learnt X-rays the way up FracAtlas stores them, and reads an X-ray "
            "turned a quarter turn no better than chance. This model says which way up an uploaded X-ray lies; where "
            "its score for a turn reaches the threshold, the fracture model reads the picture turned back, and the "
            "reading says so and gives the score of the picture as uploaded too; where that reading says "
            "“Fractured” and the turned-back one does not, no verdict is given. The type model reads every "
            "picture as uploaded.", icon=":material/screen_rotation:")
    threshold = card.turn_threshold
    if threshold is None:
        st.warning("No threshold kept upright validation X-rays upright, so this model never turns a picture.",
                   icon=":material/warning:")
    else:
        st.markdown(f"A picture is turned when the model's answer is not “upright” and it gives that answer at least "
                    f"**{threshold:.0%}**: {data.get('threshold_rule', '')}.")
    st.markdown("#### How often it was right")
    st.caption("Every X-ray of each split shown in all four quarter turns; FracAtlas X-rays the fracture model did "
               "not train on either.")
    for split, figures in data.get("metrics", {}).items():
        st.markdown(f"**{SPLIT_NAMES.get(split, split)}**")
        st.markdown(
            f"- Upright X-rays taken for turned: {figures['upright_taken_for_turned']} of {figures['upright']} "
            f"({percent(figures['false_turn_share'])}, 95% interval {interval_words(figures.get('false_turn_interval'), 'percent')})\n"
            f"- Turned X-rays set upright: {figures['turned_set_upright']} of {figures['turned']} "
            f"({percent(figures['found_share'])}, 95% interval {interval_words(figures.get('found_interval'), 'percent')}); "
            f"turned the wrong way: {figures['turned_set_wrong']}; left as they lay: {figures['turned_left_as_they_lie']}")
    st.markdown("#### Data")
    source = data.get("data", {})
    st.markdown(f"- FracAtlas, the training rows of `{source.get('split_file', '?')}`: "
                + ", ".join(f"{name} {count}" for name, count in source.get("split_sizes", {}).items())
                + f"\n- Labels: {source.get('labels', 'the turn')}")
    st.caption(f"Attribution: {source.get('attribution') or config.DATA_ATTRIBUTION['fracatlas']}")
    if data.get("limitations"):
        st.markdown("#### Limitations")
        st.markdown("\n".join(f"- {item}" for item in data["limitations"]))
    with st.expander(DEVELOPER_DETAILS):
        st.markdown("#### Training")
        st.markdown(f"- Hardware: {training.get('hardware', 'unknown')}; time: {duration_words(training.get('seconds'))}\n"
                    f"- Epochs: {training.get('epochs_requested', '?')} (best {training.get('best_epoch', '?')}), "
                    f"batch size {training.get('batch_size', '?')}\n- Trained at: {training.get('trained_at', 'unknown')}")
        if training.get("command"):
            st.code(training["command"], language="bash")
        st.caption(f"Model file sha256: `{data.get('sha256', 'unknown')}`")
