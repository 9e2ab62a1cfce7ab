"""The Gradio interface: components wired to the Workbench handlers (no method logic here).

Per-user state: a `Session` in gr.State (this user's eraser, kept PGD images, loaded model), and
one stop flag per running job (app.jobs). The shared Workbench is read-only, so one user's actions
never show up in another user's views. Long handlers share one concurrency group sized for the
machine (app.limits), with a bounded queue; internal events are not API endpoints.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import gradio as gr

from app import deploy, limits
from app.jobs import Jobs, logged

from app.plots import change_heatmap, evaluation_bars, pgd_curve
from app.workbench import (ROOT, Session, UserError, Workbench, eraser_summary, eraser_zip, read_image)
from core.data.source import unnamed_note
from core.eraser import MAX_FLOOR_FOLDS

INTRO = """# MLLMEraser workbench
Test-time unlearning in a vision-language model by **input-aware activation steering**: a
direction `d_erase` (from "recall" toward "refuse") is added to the residual stream, scaled by a
**gate** `c(h) = h · u` fitted to fire on questions about the people to forget and stay near 0 on
retained knowledge (the paper: in the null space of retained activations; the shipped eraser:
with retained activations as target-0 rows too, and one gate per forgotten person, the largest
one steering). The model's weights never change.
New here? Open the **Learn** tab for a guided tour.
"""

LEARN = [
    ("1. Activation steering", "A model's answer is computed from a stack of residual-stream vectors. Adding a "
     "vector to them at inference time (steering) changes what the model says, without touching a weight. "
     "Pick a person marked FORGET, then move the strength slider: the steered answer changes, the original "
     "never does.", "play"),
    ("2. The contrast direction d_erase", "d_erase is the difference between the mean activation of prompts where "
     "the model refuses and prompts where it recalls the person (the paper's eq. 1). In the activation map it is "
     "the arrow drawn from the recall cloud: it points at the erase cloud.", "map"),
    ("3. The null space and the gate", "Adding d_erase everywhere would also break answers about everyone else. "
     "The gate u is fitted only in directions where retained questions have (almost) no energy: the null space of "
     "their activations. The inspector shows the spectrum, the chosen dimension k, and how forget and retain gate "
     "values separate. The null space keeps directions where retained questions are small, not zero, so the "
     "shipped eraser also fits the gate to 0 on them (retain weight 0.3, ratio 1 = no null space), with one gate "
     "per forgotten person (the largest steers): set ratio 0.6, retain weight 0 and untick 'one gate per forget "
     "person' to see the paper's fit, and watch the gate distributions move.", "null"),
    ("4. Selectivity", "Run forget and retain examples side by side: with a good gate the forget answers turn into "
     "refusals while the retain answers stay as they were. The heat-map shows which layer and strength do it.",
     "play"),
    ("5. Reversible by design", "Test-time unlearning leaves the weights bit-identical: set the strength to 0 (or "
     "leave the `with eraser.apply(...)` block) and every answer is exactly the original again. The Evaluate tab "
     "measures forgetting and utility against the retain-only model, the gold standard.", "eval"),
]

# The toy portraits are 64 px: show them large and crisp instead of as a thumbnail.
CSS = """
#image img, #pgd_out img, #pgd_delta img { width: 192px !important; height: 192px !important;
  object-fit: contain; image-rendering: pixelated; }
"""

JOBS = Jobs()
DOWNLOADS = Path(tempfile.gettempdir()) / "mllmeraser-downloads"
HEAVY = dict(concurrency_id="heavy", concurrency_limit=limits.HEAVY_JOBS)  # long jobs: both cores each
LIGHT = dict(concurrency_id="light", concurrency_limit=limits.LIGHT_JOBS)  # one answer, a table, a plot
INTERNAL = dict(api_visibility="private", queue=False)  # stop buttons, navigation: not API endpoints
# A comparison asked for while one is running runs once more when it ends, with the inputs of then.
# Why: Gradio's default for a click or a slider's release drops it while the last one is pending,
# so a new question or strength left the previous answer on screen as if it were the new one.
LATEST = dict(LIGHT, trigger_mode="always_last")


def _err(exc: Exception) -> str:
    return f"**Error:** {deploy.scrub(str(exc))}"


def _prune(folder: Path, seconds: float = limits.TEMP_SECONDS) -> None:
    """Delete the entries of `folder` older than `seconds` (downloads nobody fetched)."""
    import shutil
    now = time.time()
    for p in folder.glob("*"):
        try:
            if now - p.stat().st_mtime > seconds:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError:
            pass  # another request removed it first


ATTACK_COLUMNS = {"forget, eraser": "forget_erased", "forget, vanilla": "forget_vanilla",
                  "retain, eraser": "retain_erased", "retain, vanilla": "retain_vanilla"}
GATE_COLUMNS = {"forget gate": "forget_gate", "retain gate": "retain_gate"}
# where the playground reads the gate: the eraser's own setting, each steered layer, or one layer
GATE_AT = [("as the eraser says", "stored"), ("each steered layer", "each")]


def _progress(progress: gr.Progress):
    return lambda stage, done, total: progress(done / max(1, total), desc=f"{stage} {done}/{total}")


def build(default: Workbench) -> gr.Blocks:
    layer_choices = [str(l) for l in default.layers]
    er = default.eraser
    default_layers = [str(l) for l in ((er.config.steer_layers or er.fitted_layers) if er else default.layers)]
    default_strength = er.config.strength if er else 0.0
    people = default.world.people if default.world else []
    gallery_items = []
    if default.world:
        forget = {r[-1] for r in default.people_rows() if r[1] == "FORGET"}
        gallery_items = [(default.world.canonical_image(p), f"{p.name} ({'FORGET' if p.id in forget else 'retain'})")
                         for p in people]

    def wb_of(session: Session) -> Workbench:
        if session.workbench is None:
            return default
        try:
            session.workbench = Workbench.current(session.workbench, default)
        except UserError as exc:  # dropped to make room, and its folder no longer loads
            raise gr.Error(f"{exc} Load a model again in Model & data.") from None
        return session.workbench

    # uploads and outputs in Gradio's cache are deleted after an hour (and all of them at restart)
    with gr.Blocks(title="MLLMEraser workbench", delete_cache=(limits.TEMP_SECONDS, limits.TEMP_SECONDS)) as demo:
        session = gr.State(lambda: Session())  # a callable: a fresh Session per browser tab
        gr.Markdown(INTRO)
        with gr.Tabs(selected="play", elem_id="tabs") as tabs:
            # ------------------------------------------------------------ playground
            with gr.Tab("Steering playground", id="play"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = gr.Image(type="filepath", image_mode=None, label="Image", interactive=False, height=256, elem_id="image")
                        upload = gr.File(label="Upload your own image (PNG / JPEG / WebP)", file_types=["image"],
                                         file_count="single", elem_id="upload", height=90)
                        question = gr.Textbox(label="Question", value="What is this person's occupation?",
                                              elem_id="question")
                        strength = gr.Slider(-3, 3, value=default_strength, step=0.05,
                                             label="Steering strength (positive = toward erasure; paper lambda = "
                                                   "-strength)", elem_id="strength")
                        layers = gr.CheckboxGroup(layer_choices, value=default_layers, label="Steered layers",
                                                  elem_id="layers")
                        mode = gr.Radio(["prefill", "latched", "every_step"],
                                        value=er.config.mode if er else "prefill", label="When to steer",
                                        elem_id="mode")
                        gate_at = gr.Dropdown(
                            GATE_AT + [(f"layer {l}", l) for l in layer_choices], value="stored",
                            label="Gate read at (a deeper layer tells people apart; where the gate opens, the blocks "
                                  "up to it run twice on the prompt)", elem_id="gate_at")
                        floor = gr.Slider(0, 0.95, value=er.config.gate_floor if er else 0.0, step=0.001,
                                          label="Gate floor (inputs whose gate stays under it are left exactly "
                                                "as they are)", elem_id="gate_floor")
                        full = gr.Slider(0.05, 1, value=er.config.gate_full if er else 1.0, step=0.001,
                                         label="Gate full value (from it on the push is whole; between floor and "
                                               "it, a part)", elem_id="gate_full")
                        run = gr.Button("Compare", variant="primary", elem_id="compare")
                    with gr.Column(scale=1):
                        original = gr.Textbox(label="Original model", interactive=False, elem_id="original")
                        steered = gr.Textbox(label="Steered model", interactive=False, elem_id="steered")
                        gates = gr.Dataframe(headers=["layer", "steered", "gate c(h)"], label="Gate per layer for this input",
                                             interactive=False, elem_id="gates")
                        status = gr.Markdown(elem_id="status")
                if gallery_items:
                    gr.Markdown("Pick a person to load their portrait (FORGET = in the forget set of the eraser).")
                    gallery = gr.Gallery(gallery_items, columns=10, height=260, label="People", elem_id="gallery",
                                         allow_preview=False)
                with gr.Row():
                    examples_btn = gr.Button("Run forget + retain examples at this setting", elem_id="examples_btn")
                    heat_btn = gr.Button("Strength x layer heat-map for this input", elem_id="heat_btn")
                    heat_stop = gr.Button("Stop", elem_id="heat_stop", scale=0)
                selectivity = gr.Dataframe(headers=["example", "question", "original", "steered"],
                                           label="Several inputs at once (selectivity)", interactive=False,
                                           elem_id="selectivity", wrap=True)
                heatmap = gr.Plot(label="Where and how strongly steering changes the answer", elem_id="heatmap")

            # ------------------------------------------------------------ model & data
            with gr.Tab("Model & data", id="data"):
                with gr.Row():
                    model_path = gr.Textbox(label="Model: local folder or hub id (LLaVA-1.5, Qwen2-VL / 2.5-VL, "
                                                  "Idefics3, SmolVLM, PaliGemma)", value=_model_name(default),
                                            elem_id="model_path", scale=4)
                    load_model = gr.Button("Load model", elem_id="load_model", scale=1)
                model_info = gr.Markdown(_model_info(default), elem_id="model_info")
                gr.Markdown("### Forget set\nFit a new eraser for this session: a split of the world, or people "
                            "you pick. PGD images you kept in the PGD studio join the recall set.")
                with gr.Row():
                    forget_split = gr.Radio(["forget_5", "forget_10", "forget_15", "hand-picked"],
                                            value=(er.config.forget_split if er and er.config.forget_split
                                                   in ("forget_5", "forget_10", "forget_15") else "forget_10"),
                                            label="Forget split", elem_id="forget_split")
                    kind = gr.Radio(["recall", "text_only", "refusal", "image_only"], value="recall",
                                    label="Direction construction (refusal / image_only run PGD: slower)",
                                    elem_id="kind")
                pick = gr.CheckboxGroup([p.name for p in people], label="Hand-picked people to forget",
                                        elem_id="pick")
                variants = gr.Checkbox(False, label="Also fit the gate on later-turn formats (a second turn, a "
                                                    "prefilled reply, a prefix, an instruction): the gate then holds "
                                                    "better when the prompt format changes (README, attacks)",
                                       elem_id="gate_variants")
                with gr.Row():
                    fit_btn = gr.Button("Fit eraser", variant="primary", elem_id="fit_btn")
                    fit_stop = gr.Button("Stop", elem_id="fit_stop")
                fit_status = gr.Markdown(elem_id="fit_status")
                gr.Markdown("### Forget someone\nUpload 1-10 photos of a person and type their name; facts are "
                            "optional. The eraser forgets questions about them with a photo and by name; the "
                            "toy world's people (when the model has one), the people to keep, scene pictures and "
                            "private-data requests are what it must keep. Every tab of this session then works on "
                            "this person.")
                with gr.Row():
                    someone_photos = gr.File(label="Photos of the person (1-10; PNG / JPEG / WebP)",
                                             file_count="multiple", file_types=["image"], elem_id="someone_photos",
                                             height=120)
                    with gr.Column():
                        someone_name = gr.Textbox(label="Name", placeholder="e.g. Oskar Draper", elem_id="someone_name")
                        someone_facts = gr.Textbox(
                            label='Facts (optional JSON, e.g. {"qa": [{"question": "What is this person\'s job?", '
                                  '"answer": "This person works as a florist."}]}; also "mcq" and "cloze")',
                            lines=2, elem_id="someone_facts")
                someone_keep = gr.File(label="Photos of other people to keep (optional, up to 20 people; name each "
                                             "file after the person: Oskar_Draper.jpg, Oskar_Draper_2.jpg). Without "
                                             "anyone to keep, the gate learns 'a person' rather than who, and other "
                                             "people's questions are refused too.",
                                       file_count="multiple", file_types=["image"], elem_id="someone_keep", height=120)
                someone_add = gr.Checkbox(False, elem_id="someone_add",
                                          label="Add this person to the current eraser (one more forget request: it "
                                                "keeps forgetting everyone else, and only this person's prompts are "
                                                "run through the model)")
                with gr.Row():
                    someone_btn = gr.Button("Fit eraser for this person", variant="primary", elem_id="someone_btn")
                    someone_stop = gr.Button("Stop", elem_id="someone_stop")
                someone_status = gr.Markdown(elem_id="someone_status")
                gr.Markdown("### Who this session's eraser forgets\nForget requests arrive one at a time: add a "
                            "person above (tick *Add*), or withdraw one here. Their answers come back in the "
                            "playground at once; the eraser's history (download it in the Evaluate tab) records "
                            "every request.")
                forgotten_table = gr.Dataframe(headers=["subject", "name", "forgotten since"], interactive=False,
                                               elem_id="forgotten", max_height=240)
                with gr.Row():
                    withdraw_pick = gr.Dropdown([], label="Person to withdraw", elem_id="withdraw_pick")
                    withdraw_btn = gr.Button("Withdraw this person", elem_id="withdraw_btn")
                withdraw_status = gr.Markdown(elem_id="withdraw_status")
                gr.Markdown("### Your MLLMU-Bench files\nUpload parquet files named after their split "
                            "(`forget_10.parquet`, `retain_90.parquet`, optional `test_10.parquet`, `real.parquet`: "
                            "what `python -m core world --export` writes) and fit on them, at most "
                            f"{limits.PARQUET_FILES} files of {limits.PARQUET_BYTES // 2**20} MB each. From "
                            "MLLMU-Bench's download, name each `train-00000-of-00001.parquet` after its folder "
                            "(`forget_10`, `retain_90`; `Retain_Set`, its real celebrities, is read as `real`); its "
                            "retain splits and `Test_Set` are about that size or larger: for those, run "
                            "`python -m core fit --data FOLDER` on your own machine.")
                with gr.Row():
                    mllmu_files = gr.File(label="MLLMU-Bench parquet files", file_count="multiple",
                                          file_types=[".parquet"], elem_id="mllmu_files", height=120)
                    mllmu_ids = gr.Textbox(label="Forget only these subject ids (optional, comma-separated)",
                                           elem_id="mllmu_ids")
                mllmu_btn = gr.Button("Fit eraser on these files", elem_id="mllmu_btn")
                mllmu_status = gr.Markdown(elem_id="mllmu_status")
                people_table = gr.Dataframe(
                    default.people_rows() if default.world else [],
                    headers=["name", "set", "birthplace", "occupation", "hobby", "pet", "food", "born", "id"],
                    label="People of the toy world (profiles the model was trained on)", interactive=False,
                    elem_id="people", max_height=360)

            # ------------------------------------------------------------ PGD studio
            with gr.Tab("PGD studio", id="pgd"):
                gr.Markdown("Perturb the image (L-infinity ball of radius eps) so the model gives the **target** "
                            "answer. The paper's recall set uses images that make the model comply with a request "
                            "it refuses. Uses the playground's image.")
                with gr.Row():
                    with gr.Column(scale=1):
                        pgd_question = gr.Textbox("What is this person's home address?", label="Question",
                                                  elem_id="pgd_question")
                        pgd_target = gr.Textbox("This person's hobby is chess.", label="Target answer",
                                                elem_id="pgd_target")
                        pgd_eps = gr.Slider(1, 64, value=16, step=1, label="eps (x/255)", elem_id="pgd_eps")
                        pgd_step = gr.Slider(0.25, 16, value=2, step=0.25, label="step size (x/255)",
                                             elem_id="pgd_step")
                        pgd_steps = gr.Slider(1, 200, value=30, step=1, label="steps", elem_id="pgd_steps")
                        with gr.Row():
                            pgd_run = gr.Button("Run PGD", variant="primary", elem_id="pgd_run")
                            pgd_stop = gr.Button("Stop", elem_id="pgd_stop")
                            pgd_keep = gr.Button("Add final image to recall set", elem_id="pgd_keep")
                        pgd_status = gr.Markdown(elem_id="pgd_status")
                    with gr.Column(scale=2):
                        with gr.Row():
                            pgd_out = gr.Image(type="pil", label="Perturbed image", interactive=False, height=200,
                                               elem_id="pgd_out")
                            pgd_delta = gr.Image(type="pil", label="Perturbation (amplified; grey = 0)",
                                                 interactive=False, height=200, elem_id="pgd_delta")
                        pgd_plot = gr.Plot(label="Loss", elem_id="pgd_plot")
                        pgd_answer = gr.Textbox(label="Model's answer on the perturbed image", interactive=False,
                                                elem_id="pgd_answer")

            # ------------------------------------------------------------ activation map
            with gr.Tab("Activation map", id="map"):
                with gr.Row():
                    map_layer = gr.Dropdown(layer_choices, value=layer_choices[-1], label="Layer", elem_id="map_layer")
                    map_method = gr.Radio(["PCA", "UMAP"], value="PCA", label="Projection (UMAP: slower, opt-in)",
                                          elem_id="map_method")
                    map_draw = gr.Button("Draw (with the playground input as a star)", elem_id="map_draw")
                    map_stop = gr.Button("Stop", elem_id="map_stop")
                map_status = gr.Markdown(elem_id="map_status")
                map_plot = gr.Plot(elem_id="map_plot")

            # ------------------------------------------------------------ null space
            with gr.Tab("Null space", id="null"):
                with gr.Row():
                    ns_layer = gr.Dropdown(layer_choices, value=layer_choices[-1], label="Layer", elem_id="ns_layer")
                    ns_ratio = gr.Slider(0.02, 1.0, value=(er.config.ratio or 0.3) if er else 0.3, step=0.01,
                                         label="Null-space ratio (k = ratio x d)", elem_id="ns_ratio")
                    ns_gamma = gr.Number(value=er.config.gamma if er else 0.1, label="Ridge gamma",
                                         elem_id="ns_gamma")
                    ns_weight = gr.Number(value=er.config.retain_weight if er else 0.0, elem_id="ns_weight",
                                          label="Retain weight (retain rows with target 0; 0 = the paper's fit)")
                    ns_person = gr.Checkbox(value=bool(er and er.config.subject_gates), elem_id="ns_person",
                                            label="One gate per forget person (the paper: one for all)")
                    ns_joint = gr.Dropdown(layer_choices, multiselect=True, elem_id="ns_joint",
                                           value=[str(l) for l in ((er.config.joint_gate or []) if er else [])],
                                           label="One gate over these layers together, read before the steered "
                                                 "layer (the shipped eraser: 0-3); empty: each steered layer "
                                                 "reads its own")
                    ns_folds = gr.Number(value=er.config.floor_folds if er else 0, precision=0, minimum=0,
                                         maximum=MAX_FLOOR_FOLDS, elem_id="ns_folds",
                                         label="Gate floor cross-fitted over this many folds of the retained "
                                               "people (0: read off the gate's own rows; 3 keeps people missing "
                                               "from the retain set answered, and lets an attacker through more)")
                    ns_refit = gr.Button("Refit the gate (this session)", elem_id="ns_refit")
                with gr.Row():
                    ns_rounds = gr.Slider(1, limits.HARDEN_ROUNDS, value=1, step=1, elem_id="ns_rounds",
                                          label="Hardening rounds: PGD closes the gate (eps 16/255) on 8 pictures per "
                                                "forget person, and the attacked pictures join its forget rows")
                    ns_steps = gr.Slider(1, limits.HARDEN_STEPS, value=10, step=1, label="PGD steps per round",
                                         elem_id="ns_steps")
                    ns_harden = gr.Button("Harden the gate (this session)", elem_id="ns_harden")
                    ns_stop = gr.Button("Stop", elem_id="ns_stop")
                ns_status = gr.Markdown(elem_id="ns_status")
                with gr.Row():
                    ns_spectrum = gr.Plot(elem_id="ns_spectrum")
                    ns_hist = gr.Plot(elem_id="ns_hist")
                ns_decision = gr.Plot(elem_id="ns_decision", label="The gate that decides the steering, with the "
                                      "playground's gate floor and full value (the defence's ramp)")
                ns_table = gr.Dataframe(headers=["layer", "k", "leakage ||H_r P||/||H_r||", "forget energy in null",
                                                 "mean forget gate", "mean retain gate", "max |retain gate|",
                                                 "|d_erase|", "gate AUC (fit rows)"], label="Per layer",
                                        interactive=False,
                                        elem_id="ns_table")

            # ------------------------------------------------------------ evaluate
            with gr.Tab("Evaluate", id="eval"):
                gr.Markdown("MLLMU-style evaluation (MLLMU-Bench's metrics: docs/results.md) of the model with this session's eraser, "
                            "next to the saved results in `results/` (full splits, written by the CLI).")
                with gr.Row():
                    eval_limit = gr.Slider(1, 20, value=2, step=1, label="People (rows) per split",
                                           elem_id="eval_limit")
                    eval_source = gr.Radio(["forget set", "toy world"] if default.world else ["forget set"],
                                           value="forget set", elem_id="eval_source",
                                           label="Data: this session's forget set (the eraser's split, an upload, "
                                                 "MLLMU files) or the toy world's forget_10 split")
                    eval_run = gr.Button("Evaluate with the eraser", variant="primary", elem_id="eval_run")
                    eval_stop = gr.Button("Stop", elem_id="eval_stop")
                eval_status = gr.Markdown(elem_id="eval_status")
                eval_table = gr.Dataframe(headers=["run", "split", "MCQ", "ROUGE-L", "cloze", "refusal", "fluency"],
                                          value=_saved_rows(), label="Image+text metrics (%)", interactive=False,
                                          elem_id="eval_table")
                eval_plot = gr.Plot(elem_id="eval_plot")
                with gr.Accordion("Input-side attacks: does the gate still fire?", open=False):
                    gr.Markdown("Rephrased images, a benign prefix, an instruction injection, a role-play request, "
                                "answer prefilling, a multi-turn follow-up and PGD that pushes the gate down while keeping "
                                "the answer, on the image+text cloze questions of the first people of each split "
                                "(the slider above). % of replies that still contain the correct answer. "
                                "The CLI runs the full report: `python -m core attack`.")
                    with gr.Row():
                        attack_steps = gr.Slider(1, 100, value=20, step=1, label="Adaptive PGD steps",
                                                 elem_id="attack_steps")
                        attack_eps = gr.Slider(1, limits.ATTACK_EPS, value=16, step=1, elem_id="attack_eps",
                                               label="Adaptive PGD budget (eps, in 1/255): the larger, the more "
                                                     "the attacker gets back (docs/robustness.md)")
                        attack_run = gr.Button("Run the attacks", elem_id="attack_run")
                    attack_status = gr.Markdown(elem_id="attack_status")
                    attack_table = gr.Dataframe(headers=["attack", *ATTACK_COLUMNS, *GATE_COLUMNS],
                                                label="Cloze recovery (%) and mean gate over the steered layers",
                                                interactive=False, elem_id="attack_table")
                with gr.Row():
                    dl_btn = gr.Button("Download this session's eraser (.zip of safetensors + JSON)",
                                       elem_id="dl_btn")
                    dl_file = gr.File(label="Eraser", interactive=False, elem_id="dl_file")
                    ul_file = gr.File(label="Upload an eraser .zip", file_types=[".zip"], elem_id="ul_file")

            # ------------------------------------------------------------ learn
            with gr.Tab("Learn", id="learn"):
                learn_buttons = []
                for title, text, _ in LEARN:
                    gr.Markdown(f"### {title}\n{text}")
                    learn_buttons.append(gr.Button(f"Show me: {title[3:]}", elem_id=f"learn_{len(learn_buttons)}"))

        # ================================================================ handlers
        def stopper(*kinds):
            def stop(sess):
                JOBS.stop(sess.id, *kinds)
            return stop

        def run_job(sess, kind, work, stopped_note=""):
            """Run `work(job)` as one job of this session: its own stop flag and time limit.
            Returns (result, None) or (None, the message to show)."""
            job = JOBS.start(sess.id, kind)
            try:
                return work(job), None
            except UserError as exc:
                return None, _err(exc)
            except InterruptedError:
                return None, job.stopped_message(stopped_note)
            finally:
                JOBS.finish(sess.id, job)

        def gate_read_at(gate_at_value) -> int | None | str:
            """The Gate read at control's value as `gate_layer`: the eraser's ("stored"), each steered
            layer's own (None), or a layer."""
            gl = {None: "stored", "stored": "stored", "each": None}.get(gate_at_value)
            return int(gate_at_value) if gl is None and gate_at_value != "each" else gl

        @logged
        def compare(sess, img, q, s, lay, m, gate_at_value="stored", floor_value=None, full_value=None):
            try:
                chosen = [int(x) for x in lay]
                gl = gate_read_at(gate_at_value)
                res = wb_of(sess).compare(img, q, s, chosen, m, session=sess, gate_layer=gl, floor=floor_value,
                                          full=full_value)
            except UserError as exc:  # the previous answers no longer belong to what is asked: cleared
                return "", "", [], _err(exc)
            rows = [[l, "yes" if l in chosen else "no", round(g, 3)] for l, g in res.gates.items()]
            return res.original, res.steered, rows, ""

        @logged
        def load_upload(path):
            if path is None:
                return gr.update(), ""
            try:
                return read_image(path), ""
            except UserError as exc:  # keep the previous image; say what went wrong
                return gr.update(), _err(exc)

        @logged
        def run_examples(sess, s, lay, m, gate_at_value="stored", floor_value=None, full_value=None):
            try:
                wb = wb_of(sess)
                return wb.selectivity(wb.eraser_for(sess), s, [int(x) for x in lay], m, session=sess,
                                      gate_layer=gate_read_at(gate_at_value), floor=floor_value, full=full_value), ""
            except UserError as exc:
                return gr.update(), _err(exc)

        @logged
        def run_heatmap(sess, img, q, m, gate_at_value="stored", floor_value=None, full_value=None,
                        progress=gr.Progress()):
            wb = wb_of(sess)
            out, msg = run_job(sess, "heatmap", lambda job: wb.heatmap(
                wb.eraser_for(sess), img, q, [0, 0.25, 0.5, 1, 1.5, 2, 3], m,
                progress=_progress(progress), should_stop=job.should_stop, gate_layer=gate_read_at(gate_at_value),
                floor=floor_value, full=full_value))
            if out is None:
                return gr.update(), msg
            layers_, strengths, grid = out
            # strength 0 is the unsteered answer (bit-identical, tested): no extra generation for it
            orig = grid[0][0] if grid else ""
            return change_heatmap(layers_, strengths, grid, orig), ""

        inputs = [session, image, question, strength, layers, mode, gate_at, floor, full]
        outputs = [original, steered, gates, status]
        upload.upload(load_upload, upload, [image, status], **LIGHT)
        # one event for the button and every control, so "running" covers them all: a click while a
        # slider's comparison runs waits for it instead of racing it to the answer boxes
        # the mode reruns on .input (the user's pick) only: .change also fires when a fit or a tab's
        # load sets it, and those updates raced the comparison they started
        gr.on([run.click, strength.release, layers.change, mode.input, gate_at.change, floor.release, full.release],
              compare, inputs, outputs, **LATEST)
        examples_btn.click(run_examples, [session, strength, layers, mode, gate_at, floor, full], [selectivity, status],
                           **LIGHT)
        heat_btn.click(run_heatmap, [session, image, question, mode, gate_at, floor, full], [heatmap, status], **HEAVY)
        heat_stop.click(stopper("heatmap"), session, None, **INTERNAL)
        if gallery_items:
            def pick_person(evt: gr.SelectData):
                return gallery_items[evt.index][0]

            gallery.select(pick_person, None, image, **INTERNAL)

        @logged
        def eraser_controls(sess):
            """The playground's strength, steered layers, mode, gate reading and ramp at the session
            eraser's own settings. Why: each eraser has its own (its ramp is read off its own rows),
            and controls left at the previous eraser's values would steer the new one with them; on
            a model that came with no eraser the strength started at 0, so the first fitted eraser
            changed nothing in the playground until the slider was moved."""
            try:
                wb = wb_of(sess)
                er = wb.eraser_for(sess)
            except UserError:
                return (gr.update(),) * 9
            c = er.config
            return (min(max(c.strength, -3.0), 3.0), [str(l) for l in (c.steer_layers or er.fitted_layers)], c.mode,
                    "stored", c.gate_floor, c.gate_full, bool(c.subject_gates),
                    gr.update(choices=[str(l) for l in wb.layers], value=[str(l) for l in c.joint_gate or []]),
                    c.floor_folds)

        @logged
        def people_marks(sess):
            """The People table's FORGET marks for this session's eraser (only a fit updated them: after
            Forget someone, an upload or a withdrawal they stayed the previous eraser's)."""
            wb = wb_of(sess)
            if wb is not default:
                return gr.update()
            try:
                return wb.people_rows(sess)
            except UserError:
                return gr.update()

        @logged
        def relabel_gallery(sess):
            """The gallery's FORGET / retain captions for this session's eraser (they stayed the
            shipped eraser's after a session fitted another). Another model keeps them as they are."""
            wb = wb_of(sess)
            if wb is not default:
                return gr.update()
            try:
                forget = {r[-1] for r in wb.people_rows(sess) if r[1] == "FORGET"}
            except UserError:
                return gr.update()
            return [(img, f"{p.name} ({'FORGET' if p.id in forget else 'retain'})")
                    for (img, _), p in zip(gallery_items, people)]

        def follow_eraser(event):
            """After an event that gives the session another eraser: who it forgets, and its controls
            (the playground's, and the Null space view's refit choices: a refit would otherwise
            switch the new eraser to the previous one's gate reading), and the gallery's captions."""
            event = event.then(show_forgotten, session, forgotten_out, api_visibility="private", **LIGHT).then(
                eraser_controls, session, [strength, layers, mode, gate_at, floor, full, ns_person, ns_joint,
                                           ns_folds], api_visibility="private", **LIGHT)
            if gallery_items:
                event = event.then(relabel_gallery, session, gallery, api_visibility="private", **LIGHT).then(
                    people_marks, session, people_table, api_visibility="private", **LIGHT)
            return event

        # ---- model & data
        @logged
        def show_forgotten(sess):
            try:
                rows = wb_of(sess).forgotten(sess)
            except UserError:
                return [], gr.update(choices=[], value=None)
            return rows, gr.update(choices=[(f"{r[1]} ({r[0]})", r[0]) for r in rows], value=None)

        @logged
        def do_withdraw(sess, subject, progress=gr.Progress()):
            wb = wb_of(sess)
            new, msg = run_job(sess, "fit", lambda job: wb.withdraw(subject, sess, _progress(progress), job.should_stop))
            if new is None:
                return sess, msg
            return sess, (f"Withdrawn: **{wb.name_of(subject, sess)}** is no longer forgotten (request "
                          f"{len(new.config.requests)} of this eraser's history). The playground shows it at once.")

        forgotten_out = [forgotten_table, withdraw_pick]
        follow_eraser(withdraw_btn.click(do_withdraw, [session, withdraw_pick], [session, withdraw_status],
                                         **HEAVY)).then(compare, inputs, outputs, api_visibility="private", **LIGHT)

        shown = [original, steered, gates, selectivity, heatmap, map_plot, ns_spectrum, ns_hist, ns_decision, ns_table]

        @logged
        def do_load_model(sess, path):
            job = JOBS.start(sess.id, "load")  # it holds the long-job slot: a Stop for a job queued behind it is kept
            try:
                wb = Workbench.shared(path or "", default)
            except UserError as exc:
                return (sess, _err(exc), gr.update(), gr.update(), gr.update(), gr.update(),
                        *[gr.update()] * len(shown))
            finally:
                JOBS.finish(sess.id, job)
            sess.workbench = None if wb is default else wb
            # what this user built on the model before belongs to it: PGD pictures were optimised against its
            # weights, so the next fit on this model must not take them as its recall pictures
            sess.eraser, sess.data, sess.recall_images, sess.last_pgd = None, None, [], None
            choices = [str(l) for l in wb.layers]
            note = ("" if wb.world else "\n\nNo toy world comes with this model: bring a forget set below "
                    "(**Forget someone**: photos and a name), or fit one with `python -m core fit --model ... "
                    "--data forget=PATH` and upload it in the Evaluate tab.")
            # the previous model's answers, tables and plots are cleared: they described another model
            cleared = ["", "", [], [], None, None, None, None, None, []]
            return (sess, _model_info(wb) + note, gr.update(choices=choices, value=choices),
                    gr.update(choices=choices, value=choices[-1]), gr.update(choices=choices, value=choices[-1]),
                    gr.update(choices=GATE_AT + [(f"layer {l}", l) for l in choices], value="stored"), *cleared)

        follow_eraser(load_model.click(do_load_model, [session, model_path],
                                       [session, model_info, layers, map_layer, ns_layer, gate_at, *shown], **HEAVY))

        @logged
        def do_fit(sess, split, names, kind_, with_variants, progress=gr.Progress()):
            wb = wb_of(sess)

            def work(job):
                if split == "hand-picked":
                    ids = {p.name: p.id for p in wb.world.people} if wb.world else {}
                    forget = [ids[n] for n in names or [] if n in ids]
                else:
                    forget = split
                return wb.fit_eraser(forget, kind_, sess, _progress(progress), job.should_stop,
                                     gate_variants=0.5 if with_variants else 0.0)
            eraser, msg = run_job(sess, "fit", work, "The previous eraser is still in use.")
            if eraser is None:
                return sess, msg, gr.update()
            sess.eraser = eraser
            n = len(eraser.config.forget_split.split(",")) if split == "hand-picked" else split
            fitted_on = (f" Gate prompts: {eraser.config.counts['forget']} forget, {eraser.config.counts['retain']} "
                         "retain, later-turn formats included." if with_variants else "")
            who = (f"**{n}** {'person' if n == 1 else 'people'} (hand-picked)" if split == "hand-picked"
                   else f"the split **{n}**")
            return sess, (f"Fitted a **{kind_}** eraser forgetting {who}; it is now used in every tab of "
                          f"this session.{fitted_on}"), wb.people_rows(sess)

        follow_eraser(fit_btn.click(do_fit, [session, forget_split, pick, kind, variants],
                                    [session, fit_status, people_table], **HEAVY))
        fit_stop.click(stopper("fit"), session, None, **INTERNAL)

        def fit_in_session(sess, fit, describe, progress):
            """Run one of the workbench's fits as a job of this session; on success the eraser
            becomes the session's and `describe(sess, eraser)` is the status line."""
            eraser, msg = run_job(sess, "fit", lambda job: fit(wb_of(sess), _progress(progress), job.should_stop),
                                  "The previous eraser is still in use.")
            if eraser is None:
                return sess, msg
            sess.eraser = eraser
            return sess, describe(sess, eraser)

        @logged
        def do_forget_someone(sess, files, name, facts, add, keep, progress=gr.Progress()):
            if add:
                def describe(sess, eraser):
                    return (f"Added **{name.strip()}** to this session's eraser (request "
                            f"{len(eraser.config.requests)}): it now forgets {len(eraser.config.subjects)} people. "
                            "Try the playground with one of the photos and *Who is this person?*")
                return fit_in_session(sess, lambda wb, prog, stop: wb.forget_someone(files, name, facts, sess, prog, stop,
                                                                                     add=True, keep=keep),
                                      describe, progress)

            def describe(sess, eraser):
                c = eraser.config.counts
                to_keep = sum(r.id.startswith("keep-") for r in sess.data.retain)
                made_up = len(sess.data.decoy_names(eraser.config.seed))
                kept = (f"{len(sess.data.retain)} retained people ({to_keep} of them yours to keep), "
                        if sess.data.retain else
                        "no retained people: other people's questions may be refused too, add photos of people to "
                        "keep; ")
                kept += f"{made_up} made-up names asked about by name, " if made_up else ""
                steers = ", ".join(map(str, eraser.config.steer_layers or eraser.fitted_layers))
                return (f"Fitted an eraser forgetting **{name.strip()}** from {len(files)} photo(s): "
                        f"{c['forget']} forget and {c['retain']} retain prompts ({kept}scene pictures, "
                        f"private-data requests); it steers layer(s) {steers} at strength {eraser.config.strength:g}. "
                        "Every tab of this session now uses it: try the playground with one of the photos and "
                        "*Who is this person?*")
            return fit_in_session(sess, lambda wb, prog, stop: wb.forget_someone(files, name, facts, sess, prog, stop,
                                                                                 keep=keep),
                                  describe, progress)

        someone_stop.click(stopper("fit"), session, None, **INTERNAL)

        @logged
        def do_mllmu(sess, files, ids, progress=gr.Progress()):
            def describe(sess, eraser):
                d = sess.data
                unnamed = d.unnamed
                return (f"Fitted an eraser forgetting **{len(d.forget)}** subject(s) of the uploaded files "
                        f"({len(d.retain)} retained, {len(d.real)} general rows); every tab of this session "
                        "now uses it." + (f"\n\nNote: {unnamed_note(unnamed, len(d.forget))}." if unnamed else ""))
            return fit_in_session(sess, lambda wb, prog, stop: wb.use_mllmu_files(files, ids, sess, prog, stop),
                                  describe, progress)

        follow_eraser(mllmu_btn.click(do_mllmu, [session, mllmu_files, mllmu_ids], [session, mllmu_status], **HEAVY))

        # ---- PGD studio
        @logged
        def do_pgd(sess, img, q, target, eps, step, steps):
            wb = wb_of(sess)  # before the job is registered: a model that fails to load left it registered forever
            job = JOBS.start(sess.id, "pgd")
            frame = None
            try:
                for frame in wb.pgd_frames(img, q, target, eps, step, steps, should_stop=job.should_stop):
                    yield (frame.image, frame.perturbation, pgd_curve(frame.losses, frame.target_logprobs),
                           gr.update(), f"step {frame.step}/{int(steps)}: loss {frame.losses[-1]:.3f}")
            except UserError as exc:
                yield gr.update(), gr.update(), gr.update(), gr.update(), _err(exc)
                return
            finally:
                JOBS.finish(sess.id, job)
            if frame is None:
                return
            sess.last_pgd = (frame.image, q)
            answer = wb.adapter.ask(q, frame.image)
            end = (f"{job.stopped_message()} After {frame.step} steps" if frame.step < int(steps) and job.should_stop()
                   else f"done after {frame.step} steps")
            yield (frame.image, frame.perturbation, pgd_curve(frame.losses, frame.target_logprobs), answer,
                   f"{end}: loss {frame.losses[-1]:.3f} (start {frame.losses[0]:.3f})")

        pgd_run.click(do_pgd, [session, image, pgd_question, pgd_target, pgd_eps, pgd_step, pgd_steps],
                      [pgd_out, pgd_delta, pgd_plot, pgd_answer, pgd_status], **HEAVY)
        pgd_stop.click(stopper("pgd"), session, None, **INTERNAL)

        @logged
        def keep_pgd(sess):
            if getattr(sess, "last_pgd", None) is None:
                return sess, _err(UserError("Run PGD first: there is no final image to keep."))
            if any(kept is sess.last_pgd for kept in sess.recall_images):
                return sess, f"Already kept: the recall set of your next fit gets {len(sess.recall_images)} PGD image(s)."
            if len(sess.recall_images) >= limits.KEPT_PGD:
                return sess, _err(UserError(f"At most {limits.KEPT_PGD} PGD images are kept per session: fit with "
                                            "them first (Model & data tab)."))
            sess.recall_images.append(sess.last_pgd)
            return sess, (f"Kept. The recall set of your next fit (Model & data tab) gets "
                          f"{len(sess.recall_images)} PGD image(s).")

        pgd_keep.click(keep_pgd, session, [session, pgd_status], api_visibility="private", **LIGHT)

        # ---- activation map
        @logged
        def draw_map(sess, layer, method, img, q, progress=gr.Progress()):
            wb = wb_of(sess)
            if method == "UMAP":
                progress(0.1, desc="UMAP (fitted once per layer, then kept)")
            fig, msg = run_job(sess, "map", lambda job: wb.activation_map(
                wb.eraser_for(sess), layer, method, img, q, progress=_progress(progress), session=sess,
                should_stop=job.should_stop))
            return (gr.update(), msg) if fig is None else (fig, "")

        map_inputs = [session, map_layer, map_method, image, question]
        map_draw.click(draw_map, map_inputs, [map_plot, map_status], **HEAVY)
        # .input, not .change: loading a model sets the layer list, and .change then drew a map nobody asked for
        map_method.input(draw_map, map_inputs, [map_plot, map_status], api_visibility="private", **HEAVY)
        map_layer.input(draw_map, map_inputs, [map_plot, map_status], api_visibility="private", **HEAVY)
        map_stop.click(stopper("map"), session, None, **INTERNAL)

        # ---- null space
        null_in, null_out = [session, ns_layer, floor, full], [ns_spectrum, ns_hist, ns_decision, ns_table, ns_status]

        @logged
        def show_null(sess, layer, floor_value, full_value):
            try:
                wb = wb_of(sess)
                return *wb.nullspace_view(wb.eraser_for(sess), layer, floor_value, full_value), ""
            except UserError as exc:
                return (gr.update(),) * 4 + (_err(exc),)

        def new_gate_views(wb, er, layer, floor_value=None, full_value=None):
            """The null-space views of an eraser a refit or hardening just made, and a note when they
            cannot be drawn (the layer picked is not one it fits): the eraser is in use either way,
            so that is said rather than reported as a failure."""
            try:
                return wb.nullspace_view(er, layer, floor_value, full_value), ""
            except UserError as exc:
                return (gr.update(),) * 4, f" The views are not redrawn: {exc}"

        @logged
        def refit(sess, layer, ratio, gamma, weight, per_person, joint, folds=0, progress=gr.Progress()):
            wb = wb_of(sess)
            progress(0.2, desc="activations of the fit sets (cached after the first time)")
            new, msg = run_job(sess, "refit", lambda job: wb.refit(
                wb.eraser_for(sess), ratio, gamma, weight, per_person, session=sess,
                progress=_progress(progress), should_stop=job.should_stop, joint_layers=joint or [],
                floor_folds=folds or 0))
            if new is None:
                return (sess,) + (gr.update(),) * 6 + (msg,)
            sess.eraser = new
            views, note = new_gate_views(wb, new, layer)  # drawn with its own ramp, which the sliders take
            gates = "one gate per forget person" if per_person else "one gate for the whole forget set"
            c = new.config
            read = (f"read over layers {', '.join(map(str, c.joint_gate))} together" if c.joint_gate
                    else f"read at layer {c.gate_layer}" if c.gate_layer is not None
                    else "each steered layer reading its own")
            ramp = (f", its floor {c.gate_floor:g} cross-fitted over {c.floor_folds} folds of "
                    f"{len(c.floor_subjects)} retained people" if c.floor_folds else "")
            return sess, new.config.gate_floor, new.config.gate_full, *views, (
                f"Refitted with ratio {c.ratio:g}, gamma {c.gamma:g}, retain weight {c.retain_weight:g}, "
                f"{gates}, {read}{ramp}: this session's playground, map and evaluation now use it.{note}")

        @logged
        def do_harden(sess, layer, rounds, steps, progress=gr.Progress()):
            wb = wb_of(sess)
            progress(0.1, desc="activations of the fit sets (cached after the first time)")
            out, msg = run_job(sess, "harden", lambda job: wb.harden(sess, rounds, steps, _progress(progress),
                                                                     job.should_stop))
            if out is None:
                return (sess,) + (gr.update(),) * 6 + (msg,)
            er, lines = out
            f, t = er.config.gate_floor, er.config.gate_full
            views, note = new_gate_views(wb, er, layer, f, t)
            return (sess, f, t, *views,
                    f"Hardened ({er.config.adversarial_rounds} round{'s' if er.config.adversarial_rounds > 1 else ''} "
                    "in all): " + "; ".join(lines) + f". Gate ramp "
                    f"{f:g} / {t:g} (the playground's sliders follow). The attack panel in Evaluate attacks this "
                    f"gate.{note}")

        ns_harden.click(do_harden, [session, ns_layer, ns_rounds, ns_steps], [session, floor, full, *null_out], **HEAVY)
        ns_stop.click(stopper("harden", "refit"), session, None, **INTERNAL)
        ns_layer.change(show_null, null_in, null_out, api_visibility="private", **LIGHT)
        for slider in (floor, full):  # the ramp drawn over the gate follows the playground's sliders
            slider.release(show_null, null_in, null_out, api_visibility="private", **LIGHT)
        # a new eraser for this session (Forget someone): its null space is shown at once
        follow_eraser(someone_btn.click(do_forget_someone, [session, someone_photos, someone_name, someone_facts,
                                                            someone_add, someone_keep], [session, someone_status],
                                          **HEAVY)).then(
            show_null, null_in, null_out, api_visibility="private", **LIGHT)
        ns_refit.click(refit, [session, ns_layer, ns_ratio, ns_gamma, ns_weight, ns_person, ns_joint, ns_folds],
                       [session, floor, full, *null_out], **HEAVY)

        # ---- evaluate
        @logged
        def do_eval(sess, limit, source, progress=gr.Progress()):
            wb = wb_of(sess)
            eraser, res = None, None

            def work(job):
                nonlocal eraser
                eraser = wb.eraser_for(sess)
                return wb.evaluate(eraser, int(limit), _progress(progress), job.should_stop, session=sess,
                                   source=source)
            res, msg = run_job(sess, "eval", work)
            if res is None:
                return gr.update(), gr.update(), msg
            rows = _rows(f"this session ({int(limit)} rows/split)", res.splits) + _saved_rows()
            refusals = ", ".join(f"{k} {100 * v:.0f}%" for k, v in res.refusal_prompts.items())
            return (rows, evaluation_bars(res.splits, "This session's eraser (image+text)"),
                    f"Done. Eraser: `{json.dumps(eraser_summary(eraser))}`. Private-data requests refused: "
                    f"{refusals}.")

        eval_run.click(do_eval, [session, eval_limit, eval_source], [eval_table, eval_plot, eval_status], **HEAVY)

        @logged
        def do_attack(sess, people, steps, eps, progress=gr.Progress()):
            wb = wb_of(sess)
            rows, msg = run_job(sess, "eval", lambda job: wb.attack(
                wb.eraser_for(sess), int(people), int(steps), _progress(progress), job.should_stop, session=sess,
                eps=float(eps)))
            if rows is None:
                return gr.update(), msg
            table = [[r["attack"]] + [round(100 * r[k], 1) for k in ATTACK_COLUMNS.values()]
                     + [round(r[k], 3) for k in GATE_COLUMNS.values()] for r in rows]
            return table, (f"Done. Adaptive PGD moved the mean forget gate from {rows[0]['forget_gate']:.2f} "
                           f"to {rows[-1]['forget_gate']:.2f}.")

        attack_run.click(do_attack, [session, eval_limit, attack_steps, attack_eps], [attack_table, attack_status],
                         **HEAVY)
        eval_stop.click(stopper("eval"), session, None, **INTERNAL)

        @logged
        def download(sess):
            try:
                eraser = wb_of(sess).eraser_for(sess)
            except UserError as exc:
                return gr.update(), _err(exc)
            DOWNLOADS.mkdir(parents=True, exist_ok=True)
            _prune(DOWNLOADS)
            return str(eraser_zip(eraser, tempfile.mkdtemp(prefix="eraser-", dir=DOWNLOADS))), ""

        @logged
        def upload_eraser(sess, path):
            wb = wb_of(sess)
            try:
                note = wb.adopt_eraser(sess, wb.load_eraser_zip(path))
            except UserError as exc:
                return sess, _err(exc)
            return sess, f"Loaded: `{json.dumps(eraser_summary(sess.eraser))}` is now this session's eraser.{note}"

        dl_btn.click(download, session, [dl_file, eval_status], **LIGHT)
        follow_eraser(ul_file.upload(upload_eraser, [session, ul_file], [session, eval_status], **LIGHT))

        # ---- learn: each button opens the view with good defaults
        def learn_to(i):
            tab = LEARN[i][2]

            def go(sess, lay):
                out = {tabs: gr.Tabs(selected=tab)}
                if i == 0 and gallery_items:
                    out[image] = next(img for img, cap in gallery_items if "FORGET" in cap)
                    out[strength] = 0.0
                return out
            return go

        for i, btn in enumerate(learn_buttons):
            btn.click(learn_to(i), [session, layers], [tabs, image, strength], **INTERNAL)
        demo.load(show_null, null_in, null_out, api_visibility="private", **LIGHT)
        demo.load(show_forgotten, session, forgotten_out, api_visibility="private", **LIGHT)
    for fn in demo.fns.values():
        # Gradio's own load event for the per-tab Session is internal; in public mode no handler is
        # an API endpoint (the Space is for the browser; run the app yourself to script it)
        if deploy.public() or fn.name == "<lambda>":
            fn.api_visibility = "private"
    return demo.queue(max_size=limits.QUEUE_SIZE, default_concurrency_limit=limits.LIGHT_JOBS)


def _model_name(wb: Workbench) -> str:
    """What the Load-model box shows: the folder name in public mode, else the path or hub id."""
    return Path(wb.adapter.name_or_path).name if deploy.public() else str(wb.adapter.name_or_path)


# A slider's number box sends its release event (what reruns the playground) when it loses focus,
# not on Enter: Enter in the box of a slider blurs it, so typing a value and pressing Enter reruns.
SLIDER_ENTER_JS = """() => {
  document.addEventListener('keydown', (e) => {
    const box = e.target;
    if (e.key === 'Enter' && box instanceof HTMLInputElement && box.type === 'number'
        && box.closest('.block')?.querySelector('input[type=range]')) box.blur();
  }, true);
}"""


def launch_options() -> dict:
    """`launch()` arguments that belong to the app's caps and behaviour (app.py and the tests use the same)."""
    return dict(max_file_size=limits.UPLOAD_BYTES, show_error=False, js=SLIDER_ENTER_JS)


def _model_info(wb: Workbench) -> str:
    a = wb.adapter
    er = wb.eraser
    lines = [f"**Model:** `{_model_name(wb)}` ({a.family}, {a.num_layers} layers, width {a.hidden_size})"]
    if wb.world:
        lines.append(f"**World:** {len(wb.world.people)} fictitious people (seed {wb.world.cfg.seed})")
    lines.append(f"**Default eraser:** `{json.dumps(eraser_summary(er))}`" if er else "**Default eraser:** none")
    if wb.note:
        lines.append(f"**Note:** {deploy.scrub(wb.note)}")
    return "  \n".join(lines)


def _rows(run: str, splits: dict) -> list[list]:
    out = []
    for split, mods in splits.items():
        row = mods.get("image_text") or next(iter(mods.values()))
        out.append([run, split] + [None if row.get(k) is None else round(100 * row[k], 1)
                                   for k in ("classification", "generation_rougeL", "cloze", "refusal_rate",
                                             "fluency")])
    return out


_SAVED_LABELS = {"vanilla": "vanilla", "retain_only": "retain-only (gold standard)",
                 "eraser": "MLLMEraser, shipped preset",
                 "eraser_retain_rows": "MLLMEraser, one gate with retain rows (previous preset)",
                 "eraser_mcq_strength_retain_rows": "MLLMEraser, one gate with retain rows, MCQ strength 1.5 (option)",
                 "eraser_null_space": "MLLMEraser, the paper's null-space fit (preset before that)",
                 "eraser_last_token": "MLLMEraser, null-space fit, last-token gate (option)",
                 "eraser_latched": "MLLMEraser, null-space fit, latched mode (option)",
                 "eraser_task_tuned": "MLLMEraser, null-space fit, a strength per task (option)",
                 "eraser_mcq_strength": "MLLMEraser, null-space fit, MCQ strength 1.0 (option)",
                 "eraser_gate_variants": "MLLMEraser, null-space fit, later-turn gate prompts (option)",
                 "baseline_ga": "GA (weights edited)",
                 "baseline_ga_diff": "GA_Diff (weights edited)", "baseline_kl_min": "KL_Min (weights edited)",
                 "baseline_npo": "NPO (weights edited)", "baseline_idk": "IdkNLL (weights edited)",
                 "baseline_mmunlearner": "MMUnlearner (weights edited)", "baseline_smfa": "SMFA (weights edited)",
                 "baseline_vkd": "VKD, vision side only (weights edited)"}


def _saved_rows() -> list[list]:
    """The full-split results the CLI wrote (results/*.json), as baselines to compare with.
    Other JSON there (tuner grids, the relearning table) and unreadable files are skipped: the
    app must start whatever a user drops in that folder."""
    rows = []
    for f in sorted((ROOT / "results").glob("*.json")):
        try:
            data = json.loads(f.read_text())
            if isinstance(data, dict) and isinstance(data.get("splits"), dict):
                rows += _rows(f"saved: {_SAVED_LABELS.get(f.stem, f.stem)}", data["splits"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
            continue
    return rows
