"""Samples: a random X-ray with a known answer, the model's answer beside it, and the heat map."""

import streamlit as st

from fracture_app import reading_view, ui
from fracture_app.samples import filter_options, filter_samples, grade_model, pick

CURRENT = "samples_current"


def main() -> None:
    ui.page_frame()
    st.title("Samples")
    st.caption("X-rays whose answer is known. Compare the data set's label with the model's answer and see where it "
               "looked.")
    models = ui.load_models()
    ui.require_models(models)
    sample_set = ui.samples_or_explain()
    if sample_set is None:
        return
    controls = st.columns([3, 1], vertical_alignment="bottom")
    choice = controls[0].selectbox("Show", filter_options(sample_set.samples), key="samples_filter")
    pool = filter_samples(sample_set.samples, choice)
    by_path = {str(sample.path): sample for sample in pool}
    current = by_path.get(st.session_state.get(CURRENT, ""))
    if controls[1].button("Another sample", icon=":material/shuffle:", width="stretch", key="samples_next") \
            or current is None:
        current = pick(pool, avoid=current.path if current else None)
        st.session_state[CURRENT] = str(current.path)
    st.caption(f"Drawn from {len(pool)} of the {len(sample_set.samples)} samples, as chosen in Show · {current.name}"
               + (f" · {current.source}" if current.source else ""))

    reading = ui.sample_reading(models, current.path)
    if isinstance(reading, str):
        st.error(f"**{current.name}** could not be read: {reading}", icon=":material/error:")
        return
    if reading.fractured is not None:
        reading_view.render_grade(grade_model(current, reading.fractured, reading.best_type[0],
                                              reading.fractured_as_uploaded),
                                  icon=":material/compare_arrows:", right_icon=":material/check_circle:")
    reading_view.render_diagnosis(reading, key="samples", ground_truth=current.ground_truth,
                                  truth_boxes=current.boxes, hardware=current.hardware)


main()
