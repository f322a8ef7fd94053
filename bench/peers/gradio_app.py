"""The simplest thumbnail app a Gradio user writes: a multi-file input feeding a gallery.

python bench/peers/gradio_app.py PORT   (bench/ui.py starts it in bench/peers/.venv)
"""

import sys

import gradio as gr
from PIL import Image

THUMBNAIL_SIZE = (256, 256)  # Darkroom's server thumbnail size: the same work per file


def thumbnails(paths: list[str] | None) -> list[tuple[Image.Image, str]]:
    """A thumbnail and its file name per uploaded file."""
    pictures = []
    for path in paths or []:
        image = Image.open(path)
        image.thumbnail(THUMBNAIL_SIZE)
        pictures.append((image, path.rsplit("/", 1)[-1]))
    return pictures


with gr.Blocks() as demo:
    files = gr.File(file_count="multiple", file_types=["image"], label="Photos")
    gallery = gr.Gallery(label="Thumbnails")
    files.upload(thumbnails, files, gallery)

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
