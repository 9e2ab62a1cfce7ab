"""Steering hooks: exactness at 0, effect otherwise, prefill vs decode, no leaks, isolation."""
import contextlib
import threading

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import capture
from core.models.weights import state_hash
from core.steering import SteeringConfig, add_vector, hook_count, layer_strengths, steer


def _vectors(a, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(a.num_layers, a.hidden_size, generator=g) * scale
    u = torch.randn(a.num_layers, a.hidden_size, generator=g) * 0.5
    return r, u


def _batch(a):
    return a.encode(["what is this ?", "who is the person ?"], [random_image(0), random_image(1)])


def _in_threads(work, args) -> None:
    """Run work(arg) in one thread per arg at once; fail with whatever any of them raised."""
    errors = []

    def guarded(x):
        try:
            work(x)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=guarded, args=(x,)) for x in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_zero_strength_is_bit_identical_and_nonzero_changes(family):
    a = tiny_adapter(family)
    batch = _batch(a)
    r, u = _vectors(a)
    with torch.no_grad():
        base = a.logits(batch)
        with steer(a, r, SteeringConfig((0.0,) * a.num_layers), u):
            zero = a.logits(batch)
        with steer(a, r, SteeringConfig((1.0,) * a.num_layers), u):
            moved = a.logits(batch)
    assert torch.equal(base, zero)
    assert (base - moved).abs().max() > 1e-3
    assert hook_count(a) == 0


def test_prefill_only_leaves_decode_steps_unsteered(family):
    a = tiny_adapter(family)
    r, u = _vectors(a)
    batch = _batch(a)
    with steer(a, r, SteeringConfig((1.0,) * a.num_layers, "prefill"), u) as h:
        a.generate(batch, 4)
    prefill = [t for t in h.trace if t[1] > 1]
    decode = [t for t in h.trace if t[1] == 1]
    assert len(prefill) == a.num_layers and all(s for _, _, s in prefill)
    assert decode and not any(s for _, _, s in decode)
    with steer(a, r, SteeringConfig((1.0,) * a.num_layers, "latched"), u) as h:
        a.generate(batch, 4)
    assert all(s for _, n, s in h.trace if n == 1)


def test_every_step_reads_the_gate_at_each_token_and_latched_keeps_the_prompts(family):
    """every_step was only ever run at strength 0: had it latched the prompt's gate, no test would
    tell. A gate that is open on the prompt and shut afterwards: every_step then generates what
    prefill-only steering does, latched what an always-open gate does, and the two differ."""
    a = tiny_adapter(family)
    r, u = _vectors(a)

    def generate(mode, shuts):
        calls, outs = [], []

        def gate(layer, h):
            calls.append(layer)
            open_ = not shuts or len(calls) <= a.num_layers  # the prompt pass reads each layer's gate once
            return torch.full((h.shape[0],), 1.0 if open_ else 0.0, dtype=h.dtype)
        # the last block's output at each one-token step (a tiny model's text can be the same either way)
        record = a.layers[-1].register_forward_hook(
            lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).detach().clone()))
        try:
            with steer(a, r, SteeringConfig((1.0,) * a.num_layers, mode), gate):
                text = a.generate(_batch(a), 6)
        finally:
            record.remove()
        return text, torch.cat([o[:, -1] for o in outs if o.shape[1] == 1]), len(calls)
    every, every_h, every_calls = generate("every_step", True)
    latched, latched_h, latched_calls = generate("latched", True)
    assert latched_calls == a.num_layers and every_calls == 6 * a.num_layers  # prompt + 5 one-token steps
    prefill, prefill_h, _ = generate("prefill", False)
    always, always_h, _ = generate("latched", False)
    assert every == prefill and torch.equal(every_h, prefill_h)
    assert latched == always and torch.equal(latched_h, always_h)
    assert (every_h - latched_h).abs().max() > 1e-3


def test_hooks_removed_after_exception_and_explicit_handle(family):
    a = tiny_adapter(family)
    r, u = _vectors(a)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(a, r, SteeringConfig((1.0,) * a.num_layers), u):
            assert hook_count(a) == a.num_layers + 2
            raise RuntimeError("boom")
    assert hook_count(a) == 0
    h1 = steer(a, r, SteeringConfig((1.0,) * a.num_layers), u)
    h2 = add_vector(a, r[0], 0.5)
    assert hook_count(a) == a.num_layers + 2  # shared hooks: one per block, the mask hook and the rerun hook
    h1.remove()
    assert hook_count(a) == a.num_layers + 2
    h2.remove()
    h2.remove()  # idempotent
    assert hook_count(a) == 0


def test_weights_unchanged_by_steering(family):
    a = tiny_adapter(family)
    before = state_hash(a.model)
    r, u = _vectors(a)
    with steer(a, r, SteeringConfig((2.0,) * a.num_layers, "latched"), u):
        a.generate(_batch(a), 3)
    assert state_hash(a.model) == before


def test_gate_is_read_at_last_prompt_token_and_recorded():
    a = tiny_adapter("llava")
    batch = _batch(a)
    r, u = _vectors(a)
    acts = capture(a, batch)  # unsteered activations at every layer
    with torch.no_grad(), steer(a, r, SteeringConfig((1.0, 0.0)), u) as h:
        a.logits(batch)
    # layer 0 sees unsteered input; its gate is h_0 . u_0
    assert torch.allclose(h.gates[0], acts[:, 0] @ u[0], atol=1e-4)
    assert 1 in h.gates  # gates are recorded for unsteered layers too (the UI shows them)


def test_per_subject_gates_steer_with_the_largest():
    a = tiny_adapter("llava")
    batch = _batch(a)
    r, u = _vectors(a)
    U = torch.stack([u, -u, 0.5 * u], 1)  # (L, 3 subjects, d)
    acts = capture(a, batch)
    with torch.no_grad(), steer(a, r, SteeringConfig((1.0, 0.0)), U) as h:
        a.logits(batch)
    want = (acts[:, 0] @ u[0]).abs()  # max(g, -g, g/2) = |g|
    assert torch.allclose(h.gates[0], want, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        steer(a, r, SteeringConfig((1.0, 0.0)), U[:, :, :-1])
    assert hook_count(a) == 0


def test_plain_additive_vector_shifts_activations_exactly():
    a = tiny_adapter("llava")
    batch = _batch(a)
    v = torch.randn(a.hidden_size)
    base = capture(a, batch, layers=[1])
    with add_vector(a, v, 0.7, layers=[1]):
        moved = capture(a, batch, layers=[1])
    assert torch.allclose(moved - base, (0.7 * v).expand_as(base), atol=1e-5)


def _uncached_prefill_steered_greedy(a, batch, r, u, strength, steps):
    """Reference: re-run the whole sequence each step, steering only the prompt positions with
    the gate read at the last prompt token -- what cached prefill-only steering must equal."""
    n_prompt = batch.input_ids.shape[1]
    ids, mask = batch.inputs["input_ids"], batch.inputs["attention_mask"]
    extra = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "attention_mask")}

    def make(layer):
        def hook(_m, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            g = h[:, n_prompt - 1].float() @ u[layer]
            h = h.clone()
            h[:, :n_prompt] += (strength * g)[:, None, None] * r[layer]
            return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})
        return hook

    handles = [blk.register_forward_pre_hook(make(i), with_kwargs=True) for i, blk in enumerate(a.layers)]
    try:
        for _ in range(steps):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = a.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **extra).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    finally:
        for h in handles:
            h.remove()
    return ids[:, n_prompt:]


def test_cached_prefill_steering_equals_uncached_reference():
    a = tiny_adapter("llava")
    batch = _batch(a)
    r, u = _vectors(a, seed=3, scale=2.0)
    ref = _uncached_prefill_steered_greedy(a, batch, r, u, 1.0, 5)
    with steer(a, r, SteeringConfig((1.0,) * a.num_layers, "prefill"), u):
        out = a.model.generate(**batch.inputs, max_new_tokens=5, do_sample=False, use_cache=True,
                               pad_token_id=a.tokenizer.pad_token_id, eos_token_id=None)
    assert torch.equal(out[:, batch.input_ids.shape[1]:], ref)


def test_concurrent_requests_never_see_each_others_strength():
    a = tiny_adapter("llava")
    batch = _batch(a)
    r, u = _vectors(a)
    strengths = [0.0, 0.5, -1.0, 2.0]
    expected = {}
    with torch.no_grad():
        for s in strengths:
            with steer(a, r, SteeringConfig((s,) * a.num_layers), u):
                expected[s] = a.logits(batch)
    results = {}
    barrier = threading.Barrier(len(strengths))

    def work(s):
        barrier.wait()
        for _ in range(5):
            with torch.no_grad(), steer(a, r, SteeringConfig((s,) * a.num_layers), u):
                out = a.logits(batch)
            assert torch.equal(out, expected[s]), s
        results[s] = True
    _in_threads(work, strengths)
    assert len(results) == len(strengths)
    assert hook_count(a) == 0


def test_layer_strengths_and_bad_values():
    assert layer_strengths(4, 0.3, layers=[1, 3]) == (0.0, 0.3, 0.0, 0.3)
    assert layer_strengths(3, {2: 1.0}) == (0.0, 0.0, 1.0)
    assert layer_strengths(2, [0.1, 0.2]) == (0.1, 0.2)
    with pytest.raises(ValueError, match="out of range"):
        layer_strengths(2, 0.3, layers=[5])
    with pytest.raises(ValueError, match=r"strength given for layer\(s\) \[7\], out of range"):
        layer_strengths(4, {1: 1.0, 7: 1.0})  # a map written for a deeper model steered nothing at layer 7
    for strength, layers in (("2", None), (2.0, "13")):  # text read as a list of characters: layer "1" and "3"
        with pytest.raises(ValueError, match="strength must be a number, a list of one per layer"):
            layer_strengths(4, strength, layers)
    with pytest.raises(ValueError, match="usable number"):
        SteeringConfig((float("nan"),))
    with pytest.raises(ValueError, match="mode"):
        SteeringConfig((1.0,), mode="sometimes")
    a = tiny_adapter("llava")
    with pytest.raises(ValueError, match="do not fit"):
        steer(a, torch.zeros(5, a.hidden_size), SteeringConfig((0.0,) * 5))


def test_prompt_mean_gate_reads_the_mean_of_the_prompt_tokens(family):
    from core.activations import prompt_mean
    a = tiny_adapter(family)
    batch = _batch(a)
    r, u = _vectors(a)
    full = capture(a, batch, layers=[0], positions="all")[:, 0]
    want = prompt_mean(full, batch.inputs["attention_mask"]) @ u[0]
    strengths = (1.0,) + (0.0,) * (a.num_layers - 1)  # layer 0 sees the unsteered stream
    with torch.no_grad(), steer(a, r, SteeringConfig(strengths, "latched"), u, gate_position="mean") as h:
        a.logits(batch)
    assert torch.allclose(h.gates[0], want, rtol=1e-4, atol=1e-4)
    with torch.no_grad(), steer(a, r, SteeringConfig(strengths), u) as last:
        a.logits(batch)
    assert not torch.allclose(last.gates[0], want, atol=1e-3)  # the default still reads the last token
    assert hook_count(a) == 0


def test_prompt_mean_gate_refuses_per_step_gating_and_unknown_positions():
    a = tiny_adapter("llava")
    r, u = _vectors(a)
    with pytest.raises(ValueError, match="read once per prompt"):
        steer(a, r, SteeringConfig((1.0,) * a.num_layers, "every_step"), u, gate_position="mean")
    with pytest.raises(ValueError, match="gate position must be one of"):
        steer(a, r, SteeringConfig((1.0,) * a.num_layers), u, gate_position="middle")
    assert hook_count(a) == 0


def test_a_gate_read_at_a_deeper_layer_steers_like_that_gate_applied_by_hand(family):
    """gate_from=2: the gate is read at layer 2 before layer 0 is steered with it.
    By hand: the unsteered gate at layer 2, handed to layer 0 as a constant. Logits and greedy
    generation (KV cache, decode steps latched) agree; no hook is left."""
    a = tiny_adapter(family, layers=3)
    batch = _batch(a)
    r, u = _vectors(a)
    want = capture(a, batch, [2])[:, 0] @ u[2]  # the gate at layer 2, unsteered
    cfg = SteeringConfig((2.0, 0.0, 0.0), "latched")
    with torch.no_grad():
        with steer(a, r, cfg, u, gate_from=2) as h:
            early = a.logits(batch)
        with steer(a, r, cfg, lambda layer, x: want.to(x)):
            by_hand = a.logits(batch)
            seen = capture(a, batch, [1])[:, 0] @ u[1]  # layer 1's input once layer 0 is steered
        with steer(a, r, cfg, u):
            own = a.logits(batch)
    assert torch.allclose(h.gates[0], want, atol=1e-5)
    assert torch.allclose(h.gates[1], seen, atol=1e-4)  # an unsteered layer shows its own gate
    assert torch.allclose(early, by_hand, atol=1e-4)
    assert (early - own).abs().max() > 1e-3  # not the layer-0 gate
    with steer(a, r, cfg, u, gate_from=2):
        text_early = a.generate(batch, 4)
    with steer(a, r, cfg, lambda layer, x: want.to(x)):
        text_by_hand = a.generate(batch, 4)
    assert text_early == text_by_hand
    assert hook_count(a) == 0
    with pytest.raises(ValueError, match="latched"):
        steer(a, r, SteeringConfig((1.0, 0.0, 0.0), "every_step"), u, gate_from=2)
    with pytest.raises(ValueError, match="needs a gate tensor and layers in 0..2"):
        steer(a, r, cfg, u, gate_from=3)


@pytest.mark.parametrize("layers,patch", [(3, True), (4, True), (3, False)])
def test_a_floored_gate_scouts_unsteered_and_reruns_the_prompt_only_when_it_opens(family, layers, patch, monkeypatch):
    """A joint gate over layers 1-2 applied at layer 0, with a floor: the prompt pass runs
    unsteered reading the gate, and only when some row's gate passes the floor do blocks 0-1 run
    again steered (block 2, whose input completed the gate, takes their output).
    Logits, greedy text and the gates shown equal the read-ahead's (blocks 0-1 run again in the
    pass); a shut gate runs every block once and leaves the logits exactly unsteered. Where the
    KV cache's layers cannot be emptied one by one (`patch` False), the whole prompt pass runs again.
    """
    import core.steering as steering
    if not patch:
        monkeypatch.setattr(steering, "_can_patch", lambda r: False)
    a = tiny_adapter(family, layers=layers)
    batch = _batch(a)
    r, _ = _vectors(a)
    u = torch.randn(a.num_layers, a.hidden_size, generator=torch.Generator().manual_seed(5))
    h12 = capture(a, batch, [1, 2])
    raw = h12[:, 0] @ u[1] + h12[:, 1] @ u[2]
    scale = 0.8 / raw[raw.abs().argmax()]  # the row of the largest gate at 0.8 (the gate is linear in u)
    u, want = u * scale, raw * scale
    with torch.no_grad():
        plain = a.logits(batch)
    embedded = []  # the embeddings (and the vision tower before them) run once unless the whole pass reruns
    counter = a.model.get_input_embeddings().register_forward_hook(lambda *_: embedded.append(1))
    for floor, opens in ((0.9, False), (0.5, True)):
        cfg = SteeringConfig((2.0,) + (0.0,) * (layers - 1), "latched", floor=floor)
        seen = {}
        for scout in (True, False):
            monkeypatch.setattr(steering, "SCOUT", scout)
            embedded.clear()
            with torch.no_grad(), steer(a, r, cfg, u, gate_from=(1, 2)) as h:
                logits = a.logits(batch)
            assert len(embedded) == (2 if scout and opens and not patch else 1)
            with steer(a, r, cfg, u, gate_from=(1, 2)):
                text = a.generate(batch, 4)
            with torch.no_grad(), steer(a, r, cfg, u, gate_from=(1, 2)):  # every layer's output asked for: no scouting
                states = a.model(**a.forward_inputs(batch), use_cache=False, output_hidden_states=True).hidden_states
            prompt_calls = [t for t in h.trace if t[1] > 1]
            seen[scout] = (logits, text, {l: g.clone() for l, g in h.gates.items()}, prompt_calls, states)
        (s_logits, s_text, s_gates, s_calls, s_states), (r_logits, r_text, r_gates, r_calls, r_states) = \
            seen[True], seen[False]
        assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(s_states, r_states))
        assert torch.allclose(s_logits, r_logits, atol=1e-5) and s_text == r_text
        assert all(torch.allclose(s_gates[l], r_gates[l], atol=1e-6) for l in range(layers))
        assert torch.allclose(s_gates[0], want, atol=1e-4)
        assert len(s_calls) == ((layers + 2 if patch else 2 * layers) if opens else layers) and len(r_calls) == layers
        assert torch.equal(s_logits, plain) != opens  # shut: the unsteered pass is the answer
    counter.remove()
    assert hook_count(a) == 0


def test_when_one_row_of_a_batch_opens_the_gate_only_that_row_runs_again(family, monkeypatch):
    """Three rows, the gate (joint over layers 1-2, applied at layer 0, floored) open on one: the
    scouting pass reruns blocks 0-1 for that row alone, its keys and values written over the
    scouted ones in the cache; logits, greedy text and gates equal those of the whole batch
    run again and of the read-ahead."""
    import core.steering as steering
    rows_apart = steering._rows_apart
    a = tiny_adapter(family, layers=3)
    batch = a.encode(["what is this ?", "who is the person ?", "describe it"], [random_image(i) for i in range(3)])
    r, _ = _vectors(a)
    u = torch.randn(a.num_layers, a.hidden_size, generator=torch.Generator().manual_seed(5))
    h12 = capture(a, batch, [1, 2])
    raw = h12[:, 0] @ u[1] + h12[:, 1] @ u[2]
    if raw.max() <= 0:  # the gate is linear in u: flip it so that some row's is positive
        u, raw = -u, -raw
    top = int(raw.argmax())
    u = u * (0.8 / raw[top])  # that row's gate at 0.8; the others under it
    gates = raw * (0.8 / raw[top])
    floor = (0.8 + float(gates.sort().values[-2])) / 2  # between it and every other row's gate
    cfg = SteeringConfig((2.0, 0.0, 0.0), "latched", floor=floor)
    sizes = []
    counter = a.layers[0].register_forward_pre_hook(
        lambda m, args, kw: sizes.append((args or [kw["hidden_states"]])[0].shape[0]), with_kwargs=True)
    seen = {}
    for how in ("rows", "batch", "read-ahead"):
        monkeypatch.setattr(steering, "SCOUT", how != "read-ahead")
        monkeypatch.setattr(steering, "_rows_apart", (lambda c, b: False) if how == "batch" else rows_apart)
        sizes.clear()
        with torch.no_grad(), steer(a, r, cfg, u, gate_from=(1, 2)) as h:
            logits = a.logits(batch)
        prompt_sizes = list(sizes)
        with steer(a, r, cfg, u, gate_from=(1, 2)):
            text = a.generate(batch, 4)
        seen[how] = (logits, text, h.gates[0].clone(), prompt_sizes)
    counter.remove()
    assert seen["rows"][3] == [3, 1] and seen["batch"][3] == [3, 3]  # block 0 ran again for the open row only
    for how in ("batch", "read-ahead"):
        assert torch.allclose(seen["rows"][0], seen[how][0], atol=1e-5) and seen["rows"][1] == seen[how][1]
        assert torch.allclose(seen["rows"][2], seen[how][2], atol=1e-6)
    assert not torch.allclose(seen["rows"][0][top], a.logits(batch)[top], atol=1e-3)  # that row was steered
    assert hook_count(a) == 0


def test_a_joint_gate_over_two_layers_steers_like_that_gate_applied_by_hand(family):
    """gate_from=(1, 2) with one gate per subject: the first pass sums each subject's parts at
    layers 1 and 2 and takes the largest subject; layer 0 is steered with it, as with that value
    handed in by hand. The joint layers show the joint gate, not their part."""
    a = tiny_adapter(family, layers=3)
    batch = _batch(a)
    r, _ = _vectors(a)
    g = torch.Generator().manual_seed(5)
    u = torch.randn(a.num_layers, 2, a.hidden_size, generator=g) * 0.5  # (L, K=2, d)
    h12 = capture(a, batch, [1, 2])  # (B, 2, d), unsteered
    want = (torch.einsum("bd,kd->bk", h12[:, 0], u[1]) + torch.einsum("bd,kd->bk", h12[:, 1], u[2])).amax(-1)
    assert not torch.allclose(want, (h12[:, 1] @ u[2].T).amax(-1))  # not the layer-2 gate alone
    cfg = SteeringConfig((2.0, 0.0, 0.0), "latched")
    with torch.no_grad():
        with steer(a, r, cfg, u, gate_from=[2, 1]) as h:
            joint = a.logits(batch)
        with steer(a, r, cfg, lambda layer, x: want.to(x)):
            by_hand = a.logits(batch)
    assert torch.allclose(h.gates[0], want, atol=1e-4)
    assert torch.allclose(h.gates[1], want, atol=1e-4) and torch.allclose(h.gates[2], want, atol=1e-4)
    assert torch.allclose(joint, by_hand, atol=1e-4)
    with steer(a, r, cfg, u, gate_from=(1, 2)):
        text_joint = a.generate(batch, 4)
    with steer(a, r, cfg, lambda layer, x: want.to(x)):
        assert a.generate(batch, 4) == text_joint
    assert hook_count(a) == 0


def _runs(a, batch, *steerings):
    """Logits under the steerings (stacked), the gates of the first, and how many times the input
    embeddings and each block computed (forward hooks: a block stopped by the gate pass does not count)."""
    counts = {"embed": 0, **{i: 0 for i in range(a.num_layers)}}

    def counter(key):
        def hook(*_):
            counts[key] += 1
        return hook
    blocks = a.layers
    handles = [a.model.get_input_embeddings().register_forward_hook(counter("embed"))]
    handles += [b.register_forward_hook(counter(i)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad(), contextlib.ExitStack() as stack:
            hs = [stack.enter_context(make()) for make in steerings]
            out = a.logits(batch)
    finally:
        for h in handles:
            h.remove()
    return out, {l: g.clone() for l, g in hs[0].gates.items()}, counts


def test_the_gate_is_read_on_the_way_and_equals_a_first_pass_from_the_top(family):
    """A joint gate over layers 0-3 with layer 1 steered (the shipped recipe): the prompt pass reads
    layer 0's part as it passes, and at layer 1 runs blocks 1-2 once more for the rest; the vision
    tower and embeddings run once. A gate over layers 0-1 with layer 2 steered costs no block at all.
    Both equal a first pass from the top, which a second stacked request forces (and a block of
    another attention type, e.g. a sliding-window one, too)."""
    a = tiny_adapter(family, layers=4)
    batch = _batch(a)
    r, _ = _vectors(a)
    u = torch.randn(a.num_layers, 2, a.hidden_size, generator=torch.Generator().manual_seed(5)) * 0.5
    quiet = lambda: steer(a, r, SteeringConfig((0.0,) * 4))  # noqa: E731  (adds nothing)
    outs = []
    for layers, steered, extra in (((0, 1, 2, 3), 1, {1, 2}), ((0, 1), 2, set())):
        cfg = SteeringConfig(tuple(2.0 if l == steered else 0.0 for l in range(4)))
        joint = lambda: steer(a, r, cfg, u, gate_from=layers)  # noqa: E731
        out, gates, counts = _runs(a, batch, joint)
        outs.append(out)
        assert counts == {"embed": 1, **{l: 2 if l in extra else 1 for l in range(4)}}, (layers, counts)
        top, top_gates, top_counts = _runs(a, batch, joint, quiet)
        assert top_counts["embed"] == 2  # the first pass from the top
        assert torch.allclose(out, top, atol=1e-5)
        assert gates.keys() == top_gates.keys()
        assert all(torch.allclose(gates[l], top_gates[l], atol=1e-5) for l in gates)
    blocks = a.layers
    saved = [b.__dict__.get("attention_type") for b in blocks]
    try:
        for i, b in enumerate(blocks):
            b.attention_type = "sliding_attention" if i == 2 else "full_attention"
        cfg = SteeringConfig((0.0, 2.0, 0.0, 0.0))  # blocks 1-2 would run ahead: 2 is another kind
        mixed, _, mixed_counts = _runs(a, batch, lambda: steer(a, r, cfg, u, gate_from=(0, 1, 2, 3)))
    finally:
        for b, t in zip(blocks, saved):
            if t is None:
                del b.attention_type
            else:
                b.attention_type = t
    assert mixed_counts["embed"] == 2 and torch.allclose(mixed, outs[0], atol=1e-5)
    assert hook_count(a) == 0


def test_a_gate_read_in_a_first_pass_passes_gradients_to_the_input():
    """No gradient masking: the steered output's gradient w.r.t. the pixels follows the early gate
    too. With the same gate handed in as a constant, the logits agree but the gradient differs."""
    a = tiny_adapter("llava", layers=3)
    r, u = _vectors(a)
    cfg = SteeringConfig((2.0, 0.0, 0.0))
    want = capture(a, _batch(a), [2])[:, 0] @ u[2]

    def grad(**gate):
        batch = _batch(a)
        pixels = batch.inputs["pixel_values"].clone().requires_grad_(True)
        batch.inputs["pixel_values"] = pixels
        with steer(a, r, cfg, **gate):
            out = a.logits(batch)
        return out.detach(), torch.autograd.grad(out.sum(), pixels)[0]
    out_early, g_early = grad(gate=u, gate_from=2)
    out_const, g_const = grad(gate=lambda layer, x: want.to(x))
    assert torch.allclose(out_early, out_const, atol=1e-4)
    assert (g_early - g_const).abs().max() > 1e-6 * g_const.abs().max()
    assert hook_count(a) == 0


def test_concurrent_requests_with_and_without_a_gate_pass_keep_their_own_gates():
    """Threads steering one model at once, some reading the gate at layer 2 in a first pass, some at
    the steered layer, some scouting a floored joint gate: each gets its serial result (the gate
    pass and scouting state is per request)."""
    a = tiny_adapter("llava", layers=3)
    batch = _batch(a)
    r, u = _vectors(a)
    cfg = SteeringConfig((2.0, 0.0, 0.0))
    # and a floored joint gate over layers 1-2, which scouts and reruns blocks 0-1 for the rows it opens on
    scouted = SteeringConfig((2.0, 0.0, 0.0), floor=1e-3)
    settings = {None: (cfg, None, u), 2: (cfg, 2, u), "scout": (scouted, (1, 2), -u)}  # -u: both rows' gates above 0
    kinds = [None, 2, "scout", None, 2, "scout"]
    with torch.no_grad():
        expected = {}
        for k, (c, g, v) in settings.items():
            with steer(a, r, c, v, gate_from=g) as h:
                expected[k] = a.logits(batch)
            if k == "scout":
                assert bool((c.coefficient(h.gates[0]) > 0).any())  # it opens: the blocks run again
    assert not torch.allclose(expected[None], expected[2])
    barrier = threading.Barrier(len(kinds))

    def work(k):
        c, g, v = settings[k]
        barrier.wait()
        for _ in range(5):
            with torch.no_grad(), steer(a, r, c, v, gate_from=g):
                assert torch.equal(a.logits(batch), expected[k]), k
    _in_threads(work, kinds)
    assert hook_count(a) == 0


def test_a_gate_floor_leaves_inputs_under_it_untouched_and_rescales_the_rest():
    """floor f: the gate steers by (g - f)+ / (1 - f). A row whose gate is under f gets exactly the
    unsteered logits; a row above it gets what the rescaled gate handed in by hand gives; the
    handle still shows the raw gate."""
    a = tiny_adapter("llava", layers=3)
    batch = _batch(a)
    r, _ = _vectors(a)
    with torch.no_grad():
        h1 = capture(a, batch, [1])[:, 0].double()  # the two rows at the steered layer 1
        u = torch.zeros(a.num_layers, a.hidden_size)
        u[1] = (torch.linalg.pinv(h1) @ torch.tensor([0.2, 0.8], dtype=torch.float64)).float()  # gates 0.2, 0.8
        plain = a.logits(batch)
        cfg = SteeringConfig((0.0, 2.0, 0.0), floor=0.5)
        with steer(a, r, cfg, u) as h:
            floored = a.logits(batch)
        want = torch.tensor([0.0, 0.6])  # (0.8 - 0.5) / 0.5
        with steer(a, r, SteeringConfig((0.0, 2.0, 0.0)), lambda layer, x: want.to(x)):
            by_hand = a.logits(batch)
    assert torch.allclose(h.gates[1], torch.tensor([0.2, 0.8]), atol=1e-4)
    assert torch.equal(floored[0], plain[0])
    assert torch.allclose(floored, by_hand, atol=1e-4)
    assert not torch.allclose(floored[1], plain[1], atol=1e-3)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="gate floor"):
            SteeringConfig((1.0, 0.0, 0.0), floor=bad)
    assert hook_count(a) == 0


def test_the_gate_ramp_steers_fully_from_its_full_value_and_not_under_its_floor():
    """coefficient: the method's g by default (negative too); with floor f and full value t the
    ramp (g - f)+ / (t - f), capped at 1 when t < 1 (uncapped when t = 1); bad pairs refused."""
    g = torch.tensor([-0.3, 0.1, 0.2, 0.35, 0.5, 0.9, 1.3])
    assert torch.equal(SteeringConfig((1.0,)).coefficient(g), g)
    ramp = SteeringConfig((1.0,), floor=0.2, full=0.5).coefficient(g)
    assert torch.allclose(ramp, torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]))
    floor_only = SteeringConfig((1.0,), floor=0.2).coefficient(g)
    assert torch.allclose(floor_only, torch.tensor([0.0, 0.0, 0.0, 0.1875, 0.375, 0.875, 1.375]))
    for floor, full in ((0.5, 0.5), (0.5, 0.3), (0.1, 1.5)):
        with pytest.raises(ValueError, match="full-steering value"):
            SteeringConfig((1.0,), floor=floor, full=full)


def _joint_gate(a, batch, u, layers):
    """The unsteered joint gate sum_l h_l . u_l at the last prompt token, (B,)."""
    h = capture(a, batch, list(layers))
    return sum(h[:, i] @ u[l] for i, l in enumerate(layers))


def test_two_stacked_requests_that_read_their_gates_ahead_each_get_their_own():
    """Two erasers with joint gates applied at once (`with e1.apply(a), e2.apply(a):`): each reads
    its own gate in a first pass from the top and steers with it, as if handed its gate. It used to
    raise "the gate pass never reached layer 2" (the second request's gate pass started inside the
    first's)."""
    a = tiny_adapter("llava", layers=3)
    batch = _batch(a)
    r, u = _vectors(a)
    r2, u2 = _vectors(a, seed=1)
    cfg1, cfg2 = SteeringConfig((2.0, 0.0, 0.0)), SteeringConfig((0.0, 1.5, 0.0))
    g1, g2 = _joint_gate(a, batch, u, (2,)), _joint_gate(a, batch, u2, (1, 2))
    with torch.no_grad():
        with steer(a, r, cfg1, u, gate_from=2) as h1, steer(a, r2, cfg2, u2, gate_from=(1, 2)) as h2:
            out = a.logits(batch)
        with steer(a, r, cfg1, lambda l, x: g1.to(x)), steer(a, r2, cfg2, lambda l, x: g2.to(x)):
            want = a.logits(batch)
        plain = a.logits(batch)
    assert torch.allclose(out, want, atol=1e-5) and not torch.allclose(out, plain, atol=1e-3)
    assert torch.allclose(h1.gates[0], g1, atol=1e-5) and torch.allclose(h2.gates[1], g2, atol=1e-5)
    assert hook_count(a) == 0


@pytest.mark.parametrize("floor, layers", [(0.0, [1]), (None, [1, 2])])
def test_capture_under_a_gate_read_ahead_reads_the_steered_model(floor, layers):
    """Activations captured while a request steers with a gate read over deeper layers are the steered
    model's: the unsteered passes that read the gate (read-ahead, scouting) are not recorded. They
    used to be: a capture at layer 1 returned the read-ahead's unsteered activations, and with a
    floor that opened on some rows of three a capture at layers 1-2 raised an IndexError."""
    a = tiny_adapter("llava", layers=3)
    batch = a.encode(["what is this ?", "who is the person ?", "a b c ?"], [random_image(i) for i in range(3)])
    r, u = _vectors(a)
    g = _joint_gate(a, batch, u, (1, 2))
    if floor is None:  # a floor between the rows' gates: scouting would rerun the rows it opens on only
        u, g = (u, g) if g.max() > 0 else (-u, -g)
        floor = float(g.max()) * 0.9 if g.max() < 1 else 0.5
        assert bool((g > floor).any()) and bool((g <= floor).any())
    cfg = SteeringConfig((2.0, 0.0, 0.0), floor=floor)
    plain = capture(a, batch, layers)
    with steer(a, r, cfg, u, gate_from=(1, 2)):
        got = capture(a, batch, layers)
    with steer(a, r, cfg, lambda l, x: g.to(x)):
        want = capture(a, batch, layers)
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    assert hook_count(a) == 0


def test_a_prompt_after_cached_tokens_is_refused_under_a_gate_read_ahead():
    """A pass of several new tokens after cached ones (a later turn on a kept cache) cannot read a
    gate over the whole prompt: a clear error, not a shape error from the mask."""
    from transformers import DynamicCache
    a = tiny_adapter("llava", layers=3)
    batch = _batch(a)
    r, u = _vectors(a)
    inputs = a.forward_inputs(batch)
    cache = DynamicCache()
    with torch.no_grad(), steer(a, r, SteeringConfig((2.0, 0.0, 0.0)), u, gate_from=2):
        a.model(**inputs, past_key_values=cache, use_cache=True)
        more = torch.ones(2, 3, dtype=torch.long)
        mask = torch.cat([inputs["attention_mask"], torch.ones(2, 3, dtype=inputs["attention_mask"].dtype)], 1)
        with pytest.raises(ValueError, match="whole prompt in one pass from an empty KV cache"):
            a.model(input_ids=more, attention_mask=mask, past_key_values=cache, use_cache=True)
    assert hook_count(a) == 0


def test_vectors_of_another_width_are_refused_before_the_forward_pass():
    """steer() took a direction of the wrong width and failed mid-forward with a size mismatch."""
    a = tiny_adapter("llava")
    n, d = a.num_layers, a.hidden_size
    with pytest.raises(ValueError, match=f"width {d + 1} do not fit a model of width {d}"):
        steer(a, torch.zeros(n, d + 1), SteeringConfig(strengths=(1.0,) * n))
    assert hook_count(a) == 0


def test_strength_maps_with_text_keys_and_numpy_or_tensor_scalars_steer_as_numbers():
    """{"1": 2.0} (a map read from JSON) passed the range check and then steered nothing; a numpy
    scalar raised "not iterable"."""
    import numpy as np
    assert layer_strengths(4, {"1": 2.0}) == layer_strengths(4, {1: 2.0}) == (0.0, 2.0, 0.0, 0.0)
    assert layer_strengths(3, np.float32(1.5)) == layer_strengths(3, torch.tensor(1.5)) == (1.5, 1.5, 1.5)
    with pytest.raises(ValueError, match=r"layer\(s\) \[7\]"):
        layer_strengths(4, {"7": 1.0})


def test_a_stale_entry_for_a_reused_model_id_does_not_leave_the_new_model_unhooked():
    """The hooks are kept per id(blocks): a handle dropped without remove() on a freed model left an
    entry that a later model with the same id took as its own (no hook installed, nothing steered)."""
    import weakref

    from core.steering import _INSTALLED, _Installed
    a = tiny_adapter("llava")
    other = torch.nn.ModuleList([torch.nn.Linear(1, 1)])
    stale = _Installed.__new__(_Installed)
    stale.count, stale.handles, stale.blocks = 1, [], weakref.ref(other)
    _INSTALLED[id(a.layers)] = stale
    try:
        with add_vector(a, torch.ones(a.num_layers, a.hidden_size), 1.0):
            assert hook_count(a) > 0
        assert hook_count(a) == 0 and id(a.layers) not in _INSTALLED
    finally:
        _INSTALLED.pop(id(a.layers), None)


def test_latched_steering_refuses_a_one_token_step_after_a_prompt_of_other_rows():
    """A one-token prompt after a prompt of two rows was read as a decode step: the two rows' gate
    broadcast over it and the batch grew to two."""
    a = tiny_adapter("llava")
    g = torch.Generator().manual_seed(0)
    r, u = torch.randn(a.num_layers, a.hidden_size, generator=g) * 3, torch.randn(a.num_layers, a.hidden_size,
                                                                                     generator=g) * 0.5
    two = a.encode(["who is the person ?", "describe it"], [random_image(0), random_image(1)])
    one = torch.tensor([[a.tokenizer.convert_tokens_to_ids("who")]])
    with torch.no_grad(), steer(a, r, SteeringConfig((1.0,) * a.num_layers, "latched"), u):
        a.model(**a.forward_inputs(two), use_cache=False)
        with pytest.raises(RuntimeError, match="a one-token prompt is read as a decode step"):
            a.model(input_ids=one, use_cache=False)


@pytest.fixture(scope="module")
def shipped():
    from core.eraser import Eraser
    from core.models.load import load_adapter
    a = load_adapter("assets/toy-llava", device="cpu")
    return a, Eraser.from_pretrained("assets/toy-llava-eraser", adapter=a)


def _portraits(n_forget: int, n_retain: int):
    import json

    import numpy as np

    from core.toyworld.train import load_world
    w = load_world("assets/toy-llava")
    subjects = set(json.load(open("assets/toy-llava-eraser/eraser_config.json"))["subjects"])
    rng = np.random.default_rng(0)
    return ([w.render(p, rng) for p in w.people if p.id in subjects][:n_forget],
            [w.render(p, rng) for p in w.people if p.id not in subjects][:n_retain])


def test_a_pass_from_a_submodule_is_refused_when_the_gate_is_read_before_steering(shipped):
    """The gate read before the steered layer is set by the hook on the model's top: a pass run from
    a submodule steered a retained person's prompt with the previous prompt's gate (0.69, its own
    0.13 under the floor), changing its hidden states by 5.9."""
    a, e = shipped
    (f,), (r,) = _portraits(1, 1)
    with torch.no_grad(), e.apply(a):
        a.model(**a.forward_inputs(a.encode(["Who is this person?"], [f])), use_cache=False)
        with pytest.raises(RuntimeError, match="run the model itself"):
            a.model.model(**a.forward_inputs(a.encode(["Who is this person?"], [r])), use_cache=False)


def test_a_static_kv_cache_steers_as_the_dynamic_one_when_some_rows_gates_open(shipped):
    """The rerun of only the rows whose gate opened wrote prompt-length keys into a static cache
    layer allocated to its full length: a shape mismatch."""
    a, e = shipped
    forget, retain = _portraits(2, 2)
    qs = ["Who is this person?", "What is the name of the person in this picture, please tell me?"]
    b = a.encode([qs[0], qs[1], qs[0], qs[1]], [forget[0], retain[0], retain[1], forget[1]])

    def gen(**kw):
        out = a.model.generate(**b.inputs, max_new_tokens=6, do_sample=False, pad_token_id=a.tokenizer.pad_token_id,
                               **kw)
        return a.tokenizer.batch_decode(out[:, b.input_ids.shape[1]:], skip_special_tokens=True)
    with e.apply(a):
        dynamic = gen()
    with e.apply(a):
        static = gen(cache_implementation="static")
    assert static == dynamic and len(set(dynamic)) > 1  # some rows steered, some not
