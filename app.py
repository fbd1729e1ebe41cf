"""Fracture X-ray reading aid: the Streamlit app.

    streamlit run app.py        (models from models/, or the folder FRACTURE_MODELS_DIR names)

For education and research only; see the About page.
"""

import streamlit as st

from fracture_app import config, ui

st.set_page_config(page_title="Fracture X-ray reading aid", page_icon=str(config.FAVICON), layout="wide")

PAGES = [
    st.Page("pages/diagnose.py", title="Read X-rays", icon=":material/radiology:", default=True),
    st.Page("pages/samples.py", title="Samples", icon=":material/photo_library:"),
    st.Page("pages/teaching.py", title="Teaching mode", icon=":material/school:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/fact_check:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
]

ui.run_app(PAGES)
