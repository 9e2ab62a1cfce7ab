"""The Gradio interface: components wired to the Workbench handlers (no method logic here)."""

from __future__ import annotations

import gradio as gr

from app.workbench import UserError, Workbench, read_image

INTRO = """# MLLMEraser workbench
Test-time unlearning in a vision-language model by **input-aware activation steering**: a
direction `d_erase` (from "recall" toward "refuse") is added to the residual stream, scaled by a
**gate** `c(h) = h · u` fitted in the null space of retained knowledge, so it fires on questions
about the people to forget and stays near 0 elsewhere. The model's weights never change.
"""


def _people_gallery(wb: Workbench):
    if wb.world is None:
        return [], {}
    forget = {p.id for p in wb.world.forget_people(wb.eraser_split)} if wb.eraser else set()
    items, lookup = [], {}
    for p in wb.world.people:
        tag = "FORGET" if p.id in forget else "retain"
        caption = f"{p.name} ({tag})"
        items.append((wb.world.canonical_image(p), caption))
        lookup[caption] = p
    return items, lookup


def build(wb: Workbench) -> gr.Blocks:
    gallery_items, _ = _people_gallery(wb)
    layer_choices = [str(l) for l in wb.layers]
    default_layers = [str(l) for l in (wb.eraser.config.steer_layers or wb.eraser.config.layers or wb.layers
                                         if wb.eraser else wb.layers)]
    default_strength = wb.eraser.config.strength if wb.eraser else 0.0

    with gr.Blocks(title="MLLMEraser workbench") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Steering playground"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(type="pil", label="Image", interactive=False, height=256, elem_id="image")
                    upload = gr.File(label="Upload your own image (PNG / JPEG / WebP)", file_types=["image"],
                                     file_count="single", elem_id="upload", height=90)
                    question = gr.Textbox(label="Question", value="What is this person's occupation?",
                                          elem_id="question")
                    strength = gr.Slider(-3, 3, value=default_strength, step=0.05,
                                         label="Steering strength (positive = toward erasure; paper lambda = -strength)",
                                         elem_id="strength")
                    layers = gr.CheckboxGroup(layer_choices, value=default_layers, label="Steered layers",
                                              elem_id="layers")
                    mode = gr.Radio(["prefill", "latched", "every_step"],
                                    value=wb.eraser.config.mode if wb.eraser else "prefill",
                                    label="When to steer", elem_id="mode")
                    run = gr.Button("Compare", variant="primary", elem_id="compare")
                with gr.Column(scale=1):
                    original = gr.Textbox(label="Original model", interactive=False, elem_id="original")
                    steered = gr.Textbox(label="Steered model", interactive=False, elem_id="steered")
                    gates = gr.Dataframe(headers=["layer", "gate c(h)"], label="Gate per layer for this input",
                                         interactive=False, elem_id="gates")
                    status = gr.Markdown(elem_id="status")
            if gallery_items:
                gr.Markdown("Pick a person to load their portrait (FORGET = in the forget set of the eraser).")
                gallery = gr.Gallery(gallery_items, columns=10, height=260, label="People", elem_id="gallery",
                                     allow_preview=False)

                def pick(evt: gr.SelectData):
                    return gallery_items[evt.index][0]

                gallery.select(pick, None, image)

        def compare(img, q, s, lay, m):
            try:
                res = wb.compare(img, q, s, [int(x) for x in lay], m)
            except UserError as exc:
                return gr.update(), gr.update(), gr.update(), f"**Error:** {exc}"
            rows = [[l, round(g, 3)] for l, g in res.gates.items()]
            return res.original, res.steered, rows, ""

        def load_upload(path):
            if path is None:
                return gr.update(), ""
            try:
                return read_image(path), ""
            except UserError as exc:  # keep the previous image; say what went wrong
                return gr.update(), f"**Error:** {exc}"

        upload.upload(load_upload, upload, [image, status])
        inputs = [image, question, strength, layers, mode]
        outputs = [original, steered, gates, status]
        run.click(compare, inputs, outputs)
        strength.release(compare, inputs, outputs)
        layers.change(compare, inputs, outputs)
    return demo
