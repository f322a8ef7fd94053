"""The simplest thumbnail app a Streamlit user writes: an uploader and a picture per file.

streamlit run bench/peers/streamlit_app.py   (bench/ui.py starts it in bench/peers/.venv)
"""

import streamlit as st
from PIL import Image

THUMBNAIL_SIZE = (256, 256)  # Darkroom's server thumbnail size: the same work per file

files = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "webp"], accept_multiple_files=True)
for file in files or []:
    image = Image.open(file)
    image.thumbnail(THUMBNAIL_SIZE)
    st.image(image, caption=file.name)
