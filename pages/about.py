"""About: what the tool does and does not do, how to read a Grad-CAM heat map, and the notice."""

import streamlit as st

from fracture_app import config, ui


def main() -> None:
    ui.page_frame()
    st.title("About this reading aid")
    st.warning(f"**{config.NOTICE}**", icon=":material/info:")
    st.markdown(f"""
This tool helps clinicians in training practise reading musculoskeletal radiographs. Two neural networks
look at an X-ray, after a third, small one has checked which way up it lies:

- the **fracture model** answers *fractured or not fractured*, with a calibrated probability and a plain-language
  reading taken from the operating points on its model card: *high suspicion of fracture* (a ranking, which can go
  with a probability under 50%) or *possible fracture — look
  closely* go with “Fractured”, *fracture not ruled out — look closely* or *low fracture score* with “Not fractured”;
- the **fracture-type model** guesses {config.TASK_HELP[config.TYPE_TASK]} it is ({ui.TYPE_NAMES_TEXT}). It was
  trained only on fractured images and names a type for every picture, so **its guess is given only beside
  “Fractured”** (the detail view can show it anyway);
- the **orientation model** says whether the X-ray lies the way the fracture model's training X-rays were stored;
  where it is sure enough that it does not, the fracture model reads it turned back, and the page shows both
  readings: turned back and as uploaded.

### What it does not do
- It does not diagnose. It is not a medical device and has no regulatory clearance.
- It does not localise or measure a fracture, grade displacement, or look at soft tissue, joints or implants.
- It has not been validated outside the public data sets it learned from. On images from other hospitals,
  devices, age groups or body regions it will be wrong more often, and it does not know when. The Model card
  page measures this where it can: on fracture pictures from another public data set, and on its own test
  images by body region, view and implant.
- Plates, screws and nails may look like a fracture to it: in the data it learned from, almost every X-ray
  with such hardware was fractured.
- It reads X-rays bone white, and the way up FracAtlas stored them (hands fingers up, most feet toes down).
  Alone, the fracture model reads an X-ray turned a quarter turn at chance; a small orientation model now turns
  such a picture back first and says so (turned a quarter turn, 64 of 92 test fractures found against 79 as
  stored, and 59 of 470 unfractured X-rays called fractured, on the test split before it was mended). It also
  took 21 of the 562 test X-rays as stored
  for turned (12 of them hands; forearms, elbows and feet are not always stored the same way up); the verdict then
  comes with the score of the picture as uploaded too (and no “Not fractured” where that score says “Fractured”).
  It misses nearly every fracture on a negative or a very dull picture, which usually, not always, gets a warning
  (89 of the 92 test fractures inverted), and then no “Not fractured”.
- It cannot tell a radiograph from another picture reliably; a colour photo, plain noise, a picture of a few
  shades of grey (thresholded or dithered) and a DICOM whose header names another modality (CT, MR, ultrasound)
  get no verdict and a blank picture is refused, but any other picture that is not an X-ray still gets an answer,
  and it is meaningless.

### How to read a Grad-CAM heat map
Grad-CAM (Selvaraju et al., 2017) colours the regions whose features most **raised** the chosen model's score:
red and yellow most, blue not at all. Use the opacity slider to compare it with the original, and switch between
the two models' maps.

- It is **coarse**: it comes from one feature map of the network (a grid of cells 1/8 to 1/32 of the input's
  side; the Model card page names the fracture model's layer), stretched over the image. Where the Model card
  page says so, the fracture model's map is also blurred a little (by the amount that did best on validation
  images), so that a region of warm cells outweighs a single hot one. It points at a neighbourhood, not at a
  fracture line.
- The fracture model's map was trained to point at the fracture boxes drawn on its training images, and the
  Model card page says how often its hottest point fell inside a box on the test images: far from always.
- It is **not a segmentation** and not proof. A hot spot on a plate, a screw, a cast, a text label or the image
  border means the model used that, which is a reason for doubt, not for confidence.
- A cold map does not mean the bone is intact; a hot map does not mean it is broken.
- The fracture model's map always explains the *fracture* score, even when that score is low.
- Where a model's answer is the mean over the X-ray and its mirror image (the Model card page says which), its
  map combines both looks, the mirror's flipped back onto this X-ray: two hot spots can mean the two looks
  found different places, so read both.

### Where the models come from
All three were trained from public, CC BY 4.0 data sets; see the **Model card** page for the data, the
test-split metrics, the operating points, the limitations and how they were trained.
""")
    for source in config.DATA_ATTRIBUTION.values():
        st.caption(source)
    st.markdown("""
### Privacy
Uploaded files are read in memory and are not written to disk; the readings live only in your browser session
and disappear when it ends. From a DICOM header only technical fields (body part, view, modality and the like)
and the study and series descriptions are kept; patient names, identifiers and dates are dropped as the file
is read. The **file name** is shown and goes into the reports and tables you download, and a description typed
at the scanner can hold anything: rename a file named after a patient before uploading, and read a report
before sharing it.
""")


main()
