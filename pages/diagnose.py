"""Read X-rays: upload X-rays, get a verdict, the type model's guess and a Grad-CAM heat map for each."""

import streamlit as st

from fracture_app import reading_view, ui


def main() -> None:
    ui.page_frame()
    st.title("Read X-rays")
    st.caption("Upload one or more X-rays. Each gets the fracture model's verdict, the type model's guess and a "
               "heat map of where the models looked. Files are read in memory and never saved.")
    models = ui.load_models()
    ui.require_models(models)
    # type=None: DICOM files often have no extension, and the reader decides by content, not by name.
    uploads = st.file_uploader(f"X-ray images: {ui.UPLOAD_TYPES_TEXT}", type=None, accept_multiple_files=True,
                               key="diagnose_uploads", help=f"{ui.UPLOAD_LIMIT_TEXT} Several files can be chosen at once.")
    if not uploads:
        st.info("Drop X-ray files above to begin. No X-ray at hand? Try the **Samples** page.",
                icon=":material/upload_file:")
        return
    if len(uploads) > ui.MAX_READINGS_KEPT:
        # Past what a session keeps, every rerun (each slider move) would read the extra files again.
        left_out = [upload.name for upload in uploads[ui.MAX_READINGS_KEPT:]]
        named = ", ".join(left_out[:5]) + (f" and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        st.warning(f"{len(uploads)} files were chosen; the first {ui.MAX_READINGS_KEPT} are read here, not {named}. "
                   "For more, the command line reads a whole folder: `python -m fracture_app.predict FOLDER`.",
                   icon=":material/filter_list:")
        uploads = uploads[:ui.MAX_READINGS_KEPT]
    results = ui.read_uploads(models, uploads)
    for name, reading in results:
        if isinstance(reading, str):
            st.error(f"**{name}** could not be read: {reading}", icon=":material/error:")
    readable = [(name, reading) for name, reading in results if not isinstance(reading, str)]
    if len(results) > 1:
        st.subheader("Results")
        reading_view.render_results_table(results, key="diagnose")
    if not readable:
        return
    if len(readable) > 1:
        st.subheader("One image in detail")
        index = st.selectbox("Image", range(len(readable)), format_func=lambda i: f"{i + 1}. {readable[i][0]}",
                             key="diagnose_detail")
    else:
        index = 0
    name, diagnosis = readable[index]
    if len(readable) == 1:
        st.subheader(name)
    reading_view.render_diagnosis(diagnosis, key="diagnose")


main()
