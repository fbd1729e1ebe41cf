"""Teaching mode: read a sample X-ray yourself, commit, then see the truth, the model's answer and the heat map."""

import streamlit as st

from fracture_app import config, reading_view, ui
from fracture_app.preprocess import to_uint8
from fracture_app.samples import NAME_THE_TYPE, SPOT_THE_FRACTURE, TeachingScore, exercises, grade, grade_type, pick

CASE, COMMITTED, GRADE, GUESS, SCORE = "teach_case", "teach_committed", "teach_grade", "teach_guess", "teach_score"
EXERCISE = "teach_exercise"
NOT_SURE = "Not sure"
FRACTURE_CHOICES = (config.FRACTURED, config.NOT_FRACTURED)
# Worded by what the labels say, not by data set: FRACTURE_SAMPLES_DIR may name others (the shipped ones in brackets).
EXERCISE_HELP = {
    SPOT_THE_FRACTURE: "Cases labelled fractured or not (shipped: FracAtlas radiographs), each equally often: is "
                       "there a fracture?",
    NAME_THE_TYPE: "Cases labelled with a fracture type (shipped: Bone Break's journal figures, some with arrows): "
                   "which type is it?",
}


def next_case(pool, avoid=None) -> None:
    st.session_state[CASE] = str(pick(pool, avoid=avoid).path)
    st.session_state[COMMITTED] = False
    st.session_state.pop(GRADE, None)
    st.session_state.pop(GUESS, None)


def score_panel() -> None:
    score = st.session_state.setdefault(SCORE, TeachingScore())
    columns = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    columns[0].metric("Cases read", score.cases, help="In both exercises together.")
    fracture = f"{score.fracture_correct} / {score.fracture_calls}" if score.fracture_calls else "–"
    columns[1].metric("Fracture calls right", fracture)
    types = f"{score.types_correct} / {score.types_scored}" if score.types_scored else "–"
    columns[2].metric("Types right", types, help="Counted when the sample's type is known and you named one.")
    if columns[3].button("Reset score", icon=":material/restart_alt:", key="teach_reset", width="stretch"):
        st.session_state[SCORE] = TeachingScore()
        st.rerun()


def main() -> None:
    ui.page_frame()
    st.title("Teaching mode")
    st.caption("Read the X-ray, commit your answer, then compare it with the data set's label and with the model.")
    models = ui.load_models()
    ui.require_models(models)
    sample_set = ui.samples_or_explain()
    if sample_set is None:
        return
    pools = exercises(sample_set.samples)
    exercise = st.radio("Exercise", list(pools), horizontal=True, key=EXERCISE,
                        captions=[EXERCISE_HELP.get(name, "") for name in pools])
    pool = pools[exercise]
    score_panel()
    by_path = {str(sample.path): sample for sample in pool}
    if st.session_state.get(CASE) not in by_path:
        next_case(pool)
    case = by_path[st.session_state[CASE]]
    reading = ui.sample_reading(models, case.path)  # computed now, shown only after the guess
    if isinstance(reading, str):
        st.error(f"This case could not be read: {reading}", icon=":material/error:")
        if st.button("Next case", key="teach_skip"):
            next_case(pool, avoid=case.path)
            st.rerun()
        return

    if not st.session_state.get(COMMITTED):
        image_col, form_col = st.columns([3, 2])
        with image_col:
            # The turned reading's warning refers to a verdict not shown yet, and a journal picture flagged as turned
            # would hint at a fracture: it waits for the answer, with the verdict (as does a withheld negative's).
            reading_view.render_warnings(reading.cautions_before_the_answer)
            # The trainee reads this picture alone, so it may be taller than the column is wide (half as tall again).
            picture_column = reading_view.image_columns(reading.xray.pixels.shape, 1, tallest=1.5)[0]
            picture_column.image(to_uint8(reading.xray.pixels), caption="Case to read", width="stretch")
        with form_col.form("teach_form", border=True):
            st.markdown("**Your reading**")
            if exercise == NAME_THE_TYPE:
                fractured = config.FRACTURED  # every case here is fractured: only the type is asked
                kind = st.selectbox("Which type of fracture?", (NOT_SURE, *config.FRACTURE_TYPES), key="teach_type")
            else:
                fractured = st.radio("Is there a fracture?", FRACTURE_CHOICES, index=None, key="teach_fractured")
                kind = NOT_SURE  # the data set records no type for these
            submitted = st.form_submit_button("Commit my reading", type="primary", icon=":material/check:")
        if submitted:
            if fractured is None:
                form_col.warning("Choose “Fractured” or “Not fractured” first.")
                return
            guessed_type = None if kind == NOT_SURE else kind
            result = (grade_type(case, guessed_type) if exercise == NAME_THE_TYPE
                      else grade(case, fractured == config.FRACTURED, guessed_type))
            st.session_state[SCORE].record(result, exercise)
            st.session_state[GRADE] = result
            st.session_state[GUESS] = (guessed_type or NOT_SURE) if exercise == NAME_THE_TYPE else fractured
            st.session_state[COMMITTED] = True
            st.rerun()
        return

    reading_view.render_grade(st.session_state[GRADE], icon=":material/school:")
    guess_col, next_col = st.columns([3, 1], vertical_alignment="bottom")
    guess_col.markdown(f"Your reading: **{st.session_state.get(GUESS, '')}** · the data set's label: "
                       f"**{case.ground_truth}**")
    if next_col.button("Next case", type="primary", icon=":material/arrow_forward:", key="teach_next", width="stretch"):
        next_case(pool, avoid=case.path)
        st.rerun()
    st.markdown("##### What the model says")
    # Every case of "name the type" is fractured: the type model's guess is the point, whatever the verdict.
    reading_view.render_diagnosis(reading, key="teach", report=False, ground_truth=case.ground_truth,
                                  truth_boxes=case.boxes, type_always=exercise == NAME_THE_TYPE, hardware=case.hardware)


main()
