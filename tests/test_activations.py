"""Activation capture at blocks.{l}.hook_resid_pre: shapes, positions, batching, and an
independent cross-check against transformer-lens's TransformerBridge."""
import copy
import subprocess

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt, capture, collect, collect_layers, shared_starts, site_name


def test_site_names_follow_transformer_lens():
    assert site_name(3) == "blocks.3.hook_resid_pre"


def test_capture_shapes(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is this ?", "who is it ?", "how many ?"], [random_image(i) for i in range(3)])
    last = capture(a, batch)
    assert last.shape == (3, a.num_layers, a.hidden_size)
    full = capture(a, batch, layers=[1], positions="all")
    assert full.shape == (3, 1, batch.input_ids.shape[1], a.hidden_size)
    assert torch.equal(full[:, 0, -1], last[:, 1])
    picked = capture(a, batch, layers=[0, 1], positions=torch.tensor([[0, -1]] * 3))
    assert picked.shape == (3, 2, 2, a.hidden_size)
    assert torch.equal(picked[:, :, 1], last)


def test_capture_equals_a_plain_hook_and_leaves_no_hook():
    a = tiny_adapter("llava")
    batch = a.encode(["what is this ?"], [random_image(0)])
    seen = {}

    def record(_module, args):
        seen["x"] = args[0][:, -1].clone()  # returns None: leaves the input unchanged

    h = a.layers[1].register_forward_pre_hook(record)
    with torch.no_grad():
        a.model(**a.forward_inputs(batch))
    h.remove()
    assert torch.equal(capture(a, batch, layers=[1])[:, 0], seen["x"])
    assert sum(len(b._forward_pre_hooks) for b in a.layers) == 0


def test_collect_keeps_input_order_across_image_and_text_groups():
    a = tiny_adapter("qwen2_vl")
    prompts = [Prompt("what is this ?", random_image(0)), Prompt("who is it ?"),
               Prompt("how many ?", random_image(1)), Prompt("what is the name ?")]
    acts = collect(a, prompts, batch_size=1)
    assert acts.shape == (4, a.num_layers, a.hidden_size)
    alone = capture(a, a.encode(["who is it ?"]))
    assert torch.allclose(acts[1], alone[0], atol=1e-5)
    calls = []
    collect(a, prompts, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4)
    with pytest.raises(InterruptedError):
        collect(a, prompts, should_stop=lambda: True)


def test_collect_runs_a_repeated_prompt_once_and_repeats_its_row():
    """Gate sets repeat prompts to weight them; each distinct prompt is computed once."""
    a = tiny_adapter("llava")
    img = random_image(0)
    prompts = [Prompt("who is it ?"), Prompt("what is this ?", img), Prompt("who is it ?"),
               Prompt("what is this ?", img), Prompt("what is this ?", random_image(0))]
    calls = []
    acts = collect(a, prompts, batch_size=8, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)  # the third image is another object: computed on its own
    assert torch.equal(acts[0], acts[2]) and torch.equal(acts[1], acts[3])
    assert torch.allclose(acts[4], acts[1], atol=1e-5)  # same pixels, same activations
    assert torch.allclose(acts, torch.stack([collect(a, [p])[0] for p in prompts]), atol=1e-5)
    # the same question as a later turn, or with a forced reply start, is another input
    turns = [Prompt("who is it ?"), Prompt("who is it ?", prefill="a"), Prompt("who is it ?", history=(("what ?", "a"),))]
    acts = collect(a, turns, batch_size=8)
    assert not torch.allclose(acts[0], acts[1]) and not torch.allclose(acts[0], acts[2])
    alone = capture(a, a.encode(["who is it ?"], histories=[(("what ?", "a"),)], prefills=[""]))
    assert torch.allclose(acts[2], alone[0], atol=1e-5)
    as_lists = Prompt("who is it ?", history=[["what ?", "a"]])  # user code may pass lists
    assert as_lists.history == (("what ?", "a"),) and torch.equal(collect(a, [as_lists])[0], acts[2])


def test_matches_transformer_lens_bridge(tmp_path, monkeypatch):
    """Independent reference: transformer-lens caches the same residual stream at
    blocks.{l}.hook_resid_pre on a copy of the tiny LLaVA model."""
    # transformer-lens may shell out to `pip install torchvision`, which would break the venv
    real_check_call = subprocess.check_call

    def refuse_installs(cmd, *args, **kwargs):
        if "install" in [str(c) for c in (cmd if isinstance(cmd, (list, tuple)) else [cmd])]:
            raise RuntimeError(f"refused install: {cmd}")
        return real_check_call(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "check_call", refuse_installs)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    from transformers import LlavaProcessor
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.generalized_components import NormalizationBridge

    a = tiny_adapter("llava")
    model = copy.deepcopy(a.model)
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.set_attn_implementation("eager")
    cfg = a.model.config
    LlavaProcessor(image_processor=a.image_processor, tokenizer=a.tokenizer, patch_size=cfg.vision_config.patch_size,
                   vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                   num_additional_image_tokens=1).save_pretrained(tmp_path)
    model.config.save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(str(tmp_path), hf_model=copy.deepcopy(model), device="cpu",
                                                 dtype=torch.float32)
    for m in bridge.modules():  # use the vision tower's own LayerNorm eps, not the text model's
        if isinstance(m, NormalizationBridge):
            m.use_native_layernorm_autograd = True

    reference = copy.deepcopy(a)
    reference.model = model
    batch = reference.encode(["what is this ?", "who is the person in this picture ?"],
                             [random_image(0), random_image(1)])
    ours = capture(reference, batch, positions="all")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(batch.inputs["input_ids"], pixel_values=batch.inputs["pixel_values"],
                                         attention_mask=batch.inputs["attention_mask"],
                                         names_filter=lambda n: n.endswith("hook_resid_pre"))
    mask = batch.inputs["attention_mask"].bool()
    for layer in range(a.num_layers):
        theirs = cache[site_name(layer)]
        # padded positions differ only by position ids; compare the real tokens
        assert torch.allclose(ours[:, layer][mask], theirs[mask], atol=1e-5), layer


def test_prompt_mean_skips_padding_bos_and_answer_tokens(family):
    a = tiny_adapter(family)
    batch = a.encode(["what is this ?", "who is the person in the picture ?"], [random_image(0), random_image(1)])
    full = capture(a, batch, layers=[1], positions="all")[:, 0]
    mean = capture(a, batch, layers=[1], positions="mean")[:, 0]
    mask = batch.inputs["attention_mask"]
    for i in range(2):
        kept = mask[i].nonzero().flatten()[1:]  # attended, without the first (sink) token
        assert torch.allclose(mean[i], full[i, kept].mean(0), atol=1e-5)
    # each row on its own (no padding) gives the same mean as inside the padded batch
    alone = capture(a, a.encode(["what is this ?"], [random_image(0)]), layers=[1], positions="mean")[0, 0]
    assert torch.allclose(alone, mean[0], atol=1e-4)
    if family == "paligemma":
        return  # its prefix attends both ways, so appended answer tokens change the prompt states
    # with answer tokens appended the mean still covers the prompt only
    answered = a.encode(["what is this ?"], [random_image(0)], ["a red circle"])
    assert torch.allclose(capture(a, answered, layers=[1], positions="mean")[0, 0], alone, atol=1e-4)


def test_collect_rejects_an_unknown_position():
    with pytest.raises(ValueError, match="position must be one of"):
        collect(tiny_adapter("llava"), [Prompt("what is this ?", random_image(0))], position="first")


def test_capture_is_request_scoped_under_threads():
    """One thread collecting while two others generate on the same shared model: every collect
    returns its own activations and no generation sees the capture hooks (before the fix,
    254 of 256 collects were wrong and almost every generation raised the stop signal). Two
    questions share a picture, so the collects also run a start pass with its kept keys and values."""
    import threading
    a = tiny_adapter("llava")
    prompts = [Prompt(q, random_image(i)) for i, q in enumerate(["what is this ?", "who is it ?", "how many ?"])]
    prompts.append(Prompt("what is the name ?", prompts[0].image))
    assert len(shared_starts(a, prompts, [1])[0]) == 1
    want = collect(a, prompts, layers=[1])
    batch = a.encode(["who is it ?"], [random_image(5)])
    want_text = a.generate(batch, 4)
    errors, wrong_collects, wrong_gens = [], [], []

    def collector():
        for _ in range(15):
            got = collect(a, prompts, layers=[1])
            if not torch.allclose(got, want, atol=1e-5):
                wrong_collects.append(1)

    def generator():
        for _ in range(15):
            if a.generate(batch, 4) != want_text:
                wrong_gens.append(1)

    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any failure is the defect under test
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(f,)) for f in (collector, generator, generator, collector)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong_collects == [] and wrong_gens == []
    assert sum(len(b._forward_pre_hooks) for b in a.layers) == 0


def test_capture_refuses_layers_out_of_range_before_running():
    a = tiny_adapter("llava")
    with pytest.raises(ValueError, match=r"layer\(s\) \[4, 5\] out of range.*2 decoder layers"):
        collect(a, [Prompt("what is this ?", random_image(0))], layers=[1, 4, 5])


def test_collect_layers_runs_only_up_to_the_deepest_chosen_layer_and_lays_rows_out_over_all_layers():
    a = tiny_adapter("llava", layers=4)
    prompts = [Prompt("what is this ?", random_image(i)) for i in range(3)] + [Prompt("who is it ?")]
    ran = []
    hooks = [blk.register_forward_pre_hook(lambda m, args, l=l: ran.append(l)) for l, blk in enumerate(a.layers)]
    try:
        some = collect_layers(a, prompts, [1, 0], position="mean")
    finally:
        for h in hooks:
            h.remove()
    assert max(ran) == 1  # the forward pass stopped at layer 1's input: blocks 2 and 3 never ran
    full = collect(a, prompts, position="mean")
    assert some.shape == full.shape == (4, 4, a.hidden_size)
    assert torch.allclose(some[:, :2], full[:, :2], atol=1e-6)
    assert not some[:, 2:].any()
    assert torch.equal(collect_layers(a, prompts, None, position="mean"), full)


def _pictures_encoded(a, seen: list[int]) -> None:
    """Counts the pictures each pass hands the model (rows through the adapter's pixel path) into
    `seen`; `del a.pixel_inputs` ends it."""
    own = a.pixel_inputs
    a.pixel_inputs = lambda pixels: (seen.append(pixels.shape[0]), own(pixels))[1]


def test_questions_about_one_picture_run_its_start_once_and_equal_whole_prompts(family):
    """Three questions about one picture, two about another, one about a third, a text question:
    where the family's decoder allows it (causal, 1-D positions) the two pictures' common start
    (template and image tokens) runs once and each question's own tokens read it from the kept
    keys and values; the activations equal whole prompts' at every layer, at the last token and
    averaged over the prompt (Qwen2-VL's questions continue from the M-RoPE positions of their
    picture's start). PaliGemma (prefix-LM) runs whole."""
    a = tiny_adapter(family, layers=3)
    pics = [random_image(i) for i in range(3)]
    prompts = [Prompt("what is this ?", pics[0]), Prompt("who is the person in this picture ?", pics[1]),
               Prompt("how many ?", pics[0]), Prompt("who is it ?"), Prompt("what is the name of this person ?", pics[0]),
               Prompt("what is this ?", pics[1]), Prompt("what is this ?", pics[2])]
    groups, alone = shared_starts(a, prompts)
    if a.shared_prefix:
        assert [g.rows for g in groups] == [[0, 2, 4], [1, 5]] and alone == [3, 6]
        assert all(g.start.count(a.image_token_id) == a.num_image_tokens() for g in groups)
    else:
        assert groups == [] and alone == list(range(7))
    for position in ("last", "mean"):
        whole = collect(a, prompts, batch_size=2, position=position, share_starts=False)
        seen: list[int] = []
        _pictures_encoded(a, seen)
        shared = collect(a, prompts, batch_size=2, position=position)
        del a.pixel_inputs
        assert torch.allclose(shared, whole, atol=1e-5, rtol=1e-4)
        if a.shared_prefix:  # pictures 0 and 1 once in the start pass, picture 2 with its question
            assert sorted(seen) == [1, 2]
    assert shared_starts(a, prompts, layers=[0]) == ([], list(range(7)))  # layer 0 reads no attention


def test_a_shared_start_collection_reports_progress_and_stops_between_passes():
    a = tiny_adapter("llava")
    pic = random_image(0)
    prompts = [Prompt(q, pic) for q in ("what is this ?", "how many ?", "who is it ?", "what is the name ?")]
    calls: list[tuple[int, int]] = []
    collect(a, prompts, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 4), (4, 4)]  # one start pass, then two batches of the questions' own tokens
    asked = []
    with pytest.raises(InterruptedError):
        collect(a, prompts, batch_size=2, should_stop=lambda: asked.append(1) or len(asked) > 2)
    assert len(asked) == 3  # before the start pass, before the first batch of questions, then stopped


def test_while_the_context_steers_prompts_are_read_whole():
    """A mean gate read by a steering hook sees the prompt its pass is given: under steering, a
    picture's start and its questions' own tokens in two passes would steer differently. So the
    collection reads whole prompts then, and equals the whole-prompt collection exactly."""
    from core.steering import SteeringConfig, steer
    a = tiny_adapter("llava", layers=3)
    pic = random_image(0)
    prompts = [Prompt(q, pic) for q in ("what is this ?", "how many ?", "who is the person in this picture ?")]
    g = torch.Generator().manual_seed(0)
    r, u = torch.randn(3, a.hidden_size, generator=g), torch.randn(3, a.hidden_size, generator=g)
    plain = collect(a, prompts, [2], position="mean")
    with steer(a, r, SteeringConfig((2.0, 0.0, 0.0), "latched"), u, gate_position="mean"):
        assert shared_starts(a, prompts, [2]) == ([], [0, 1, 2])
        steered = collect(a, prompts, [2], position="mean")
        whole = collect(a, prompts, [2], position="mean", share_starts=False)
    assert torch.equal(steered, whole) and not torch.allclose(steered, plain, atol=1e-3)
    assert len(shared_starts(a, prompts, [2])[0]) == 1  # shared again once the steering ends


def test_collection_batches_are_large_for_small_models_only():
    """64 prompts per pass where Python overhead dominates; 16 at a billion parameters and more,
    where 16 pictures' kept keys and values are already gigabytes."""
    from core.activations import collection_batch
    a = tiny_adapter("llava")
    assert a.num_parameters == sum(p.numel() for p in a.model.parameters()) < 10**9
    assert collection_batch(a) == 64
    a.__dict__["num_parameters"] = 10**9  # as a 1B model would count
    assert collection_batch(a) == 16


def test_reading_no_layer_is_a_clear_error():
    """collect(..., layers=[]) (an eraser that steers no layer asking for its gate) failed with
    'max() arg is an empty sequence'."""
    a = tiny_adapter("llava")
    with pytest.raises(ValueError, match="no layer to read"):
        collect(a, [Prompt("who is this person ?", random_image(0))], [])


def test_a_shared_picture_given_as_a_tensor_is_checked_as_encode_checks_it():
    """A 0-255 tensor asked about twice went through the shared-start pass unchecked (finite, wrong
    activations), while the same prompts run whole were refused."""
    a = tiny_adapter("llava")
    pic = a.to_pixels(random_image(0)) * 255
    prompts = [Prompt("what is this ?", pic), Prompt("who is it ?", pic)]
    for share in (False, True):
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
            collect(a, prompts, share_starts=share)
