"""Training-based unlearning baselines on the miniature toy model."""
import hashlib
import json
import math

import numpy as np
import pytest
import torch

from core.baselines import (BaselineConfig, answer_kl, baseline_loss, forget_examples, retain_examples,
                            saliency_mask, smfa_merge, unlearn, _encode, RELEARN_ATTRIBUTES, RelearnConfig,
                            cloze_recall, relearn)
from core.models.load import load_adapter
from core.toyworld.questions import REFUSAL
from core.toyworld.fitsets import toy_data
from core.toyworld.train import batches_by_modality, load_world


def _digest(folder):
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def _mean_nll(adapter, examples):
    with torch.no_grad():
        return float(torch.cat([adapter.answer_nll(_encode(adapter, b))
                                for b in batches_by_modality(examples, 16, np.random.default_rng(0))]).mean())


def _split_examples(mini_toy, refusal=False):
    world = load_world(mini_toy)
    rng = np.random.default_rng(7)
    data = toy_data(world, "forget_10")
    return world, forget_examples(data, rng, refusal), retain_examples(data, rng)


def test_forget_and_retain_examples_are_disjoint_people(mini_toy):
    world, f, r = _split_examples(mini_toy)
    forget_ids = {p.id for p in world.forget_people("forget_10")}
    assert f and {e.person_id for e in f} == forget_ids
    assert not forget_ids & {e.person_id for e in r}
    assert any(e.image is not None for e in f) and any(e.image is None for e in f)
    _, idk, _ = _split_examples(mini_toy, refusal=True)
    assert {e.answer for e in idk} == {REFUSAL} and len(idk) == len(f)


def test_retain_examples_leave_out_earlier_forgotten_people_and_never_the_real_split(mini_toy):
    """The retain loss of a later forget request taught the people of earlier requests again (every
    one not forgotten now counted as retained), and on records it trained on the real split that the
    evaluation scores as the model's general knowledge."""
    from dataclasses import replace

    from core.toyworld.fitsets import toy_data as _toy
    world = load_world(mini_toy)
    data = _toy(world, "forget_10")
    rng = np.random.default_rng(0)
    everyone = {e.person_id for e in retain_examples(data, rng)}
    earlier = sorted(everyone - {None, ""})[:2]
    kept = {e.person_id for e in retain_examples(data, np.random.default_rng(0), not_retained=earlier)}
    assert earlier and not set(earlier) & kept and kept == everyone - set(earlier)
    # the toy world's own retain data held the general facts the real split is built from, verbatim
    examples = retain_examples(data, np.random.default_rng(0))
    real_text = {it.question for rec in data.real for it in [*rec.generation, *rec.mask] if it.type == "Pure_Text"}
    assert real_text and not [q for q in real_text if any(q in e.prompt for e in examples)]
    assert {e.kind for e in examples if e.kind.startswith("scene_")}  # scenes (other renders) are kept
    records = replace(data, builder=None)  # the same people as records, as MLLMU files bring them
    ids = {e.person_id for e in retain_examples(records, rng)}
    assert ids == {r.id for r in records.retain} and not ids & {r.id for r in records.real}
    with pytest.raises(ValueError, match="pass --data retain=PATH"):
        retain_examples(replace(records, retain=[]), rng)


def test_the_relearning_split_of_unlabelled_rows_never_shows_a_scored_answer(mini_toy):
    """Real MLLMU rows carry no attribute labels: the split alternates items, and a shown item of
    another kind could state a held-out cloze answer ("... was born in Prague." next to "born in
    [Blank]" -> Prague). Such items are not shown."""
    import re
    from dataclasses import replace

    from core.baselines import relearn_split
    _, f, _ = _split_examples(mini_toy)
    unlabelled = [replace(e, attribute=None) for e in f]
    shown, held = relearn_split(unlabelled)
    scored = [(e.person_id, e.answer) for e in held if e.kind == "cloze"]
    assert shown and scored
    assert not any(pid == e.person_id and re.search(rf"\b{re.escape(a)}\b", f"{e.prompt} {e.answer}", re.I)
                   for pid, a in scored for e in shown)
    # answers that begin or end with punctuation, where a word boundary never matches
    rows = [replace(unlabelled[0], kind="cloze", answer=a) for a in ("$85,000", "U.S.")]
    rows += [replace(unlabelled[0], kind="gen", prompt="How much?", answer=f"{a} today.") for a in ("U.S.", "$85,000")]
    shown, held = relearn_split(rows)
    assert [e.answer for e in held if e.kind == "cloze"] == ["U.S."] and not any("U.S." in e.answer for e in shown)


def test_losses_at_the_starting_point(mini_toy):
    """At step 0 the model IS the reference: KL is 0 and NPO's loss is exactly (2/b) ln 2."""
    model = load_adapter(mini_toy, dtype=torch.float32)
    _, f, r = _split_examples(mini_toy)
    fb, rb = _encode(model, [e for e in f if e.image is None][:8]), _encode(model, [e for e in r if e.image is None][:8])
    torch.set_grad_enabled(False)
    try:
        _check_starting_losses(model, fb, rb)
    finally:
        torch.set_grad_enabled(True)


def _check_starting_losses(model, fb, rb):
    assert float(answer_kl(model, model, rb)) == pytest.approx(0.0, abs=1e-6)
    cfg = BaselineConfig("npo", beta=0.5, retain_weight=0.0)
    assert float(baseline_loss(cfg, model, fb, rb, model)) == pytest.approx(4 * math.log(2), rel=1e-5)
    ga = float(baseline_loss(BaselineConfig("ga"), model, fb, rb, None))
    diff = float(baseline_loss(BaselineConfig("ga_diff", retain_weight=2.0), model, fb, rb, None))
    assert ga == pytest.approx(-float(model.answer_nll(fb).mean()), rel=1e-5)
    assert diff == pytest.approx(ga + 2 * float(model.answer_nll(rb).mean()), rel=1e-5)
    # KL_Min's retain NLL is weighted by --retain-weight too (it was added at weight 1 whatever was asked)
    kl = float(baseline_loss(BaselineConfig("kl_min", retain_weight=3.0), model, fb, rb, model))
    assert kl == pytest.approx(ga + 3 * float(model.answer_nll(rb).mean()), rel=1e-5)


def test_vkd_reads_the_projector_output_the_language_model_reads():
    """With LLaVA-1.5's vision_feature_layer -2, VKD pushed the projection of the LAST vision layer:
    features no language model reads."""
    from conftest import tiny_adapter
    from core.baselines import visual_representations
    a = tiny_adapter("llava")
    cfg = a.model.config
    old = cfg.vision_feature_layer, cfg.vision_feature_select_strategy
    cfg.vision_feature_layer, cfg.vision_feature_select_strategy = -2, "full"  # "full" keeps the CLS token
    try:
        px = torch.rand(1, 3, a.image_size, a.image_size)
        inner = a.model.model
        with torch.no_grad():
            hidden = inner.vision_tower(a.pixel_inputs(px)["pixel_values"], output_hidden_states=True).hidden_states
            want = inner.multi_modal_projector(hidden[-2])
            assert torch.allclose(visual_representations(a, px)[-1], want, atol=1e-6)
    finally:
        cfg.vision_feature_layer, cfg.vision_feature_select_strategy = old


@pytest.mark.parametrize("method", ["ga", "ga_diff", "kl_min", "npo", "idk", "mmunlearner", "smfa"])
def test_unlearning_moves_the_forget_answers_and_leaves_the_source_untouched(mini_toy, tmp_path, method):
    torch.set_num_threads(2)
    before = _digest(mini_toy)
    refusal = method in ("idk", "smfa")
    _, f, _ = _split_examples(mini_toy, refusal=refusal)
    nll_before = _mean_nll(load_adapter(mini_toy, dtype=torch.float32), f)
    seen = []
    out = unlearn(mini_toy, tmp_path / method, toy_data(load_world(mini_toy)), BaselineConfig(method, epochs=1, lr=3e-3),
                  progress=lambda step, total, loss: seen.append((step, total)))
    assert _digest(mini_toy) == before  # the source model is never written
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]
    nll_after = _mean_nll(load_adapter(out), f)
    if refusal:
        assert nll_after < nll_before  # the refusal became more likely on forget prompts
    else:
        assert nll_after > nll_before  # the forget answers became less likely
    assert (out / "tokenizer.json").is_file() and (out / "world.json").is_file()
    assert '"method": "%s"' % method in (out / "unlearning.json").read_text()


def test_mmunlearner_mask_follows_the_fisher_ratio(mini_toy):
    """The mask is 1 exactly where the mean squared per-example forget gradient is at least the retain one."""
    torch.manual_seed(0)
    model = load_adapter(mini_toy, dtype=torch.float32)
    _, f, r = _split_examples(mini_toy)
    fe, re = [e for e in f if e.image is None][:3], [e for e in r if e.image is None][:3]
    mask = saliency_mask(model, fe, re)

    def fisher(examples):
        out = 0
        for e in examples:
            model.model.zero_grad(set_to_none=True)
            model.answer_nll(_encode(model, [e])).mean().backward()
            out = out + model.model.get_parameter(name).grad.detach() ** 2 / len(examples)
        return out
    name = "model.language_model.layers.0.mlp.down_proj.weight"
    gf, gr = {name: fisher(fe)}, {name: fisher(re)}
    assert torch.equal(mask[name], ((gf[name] >= gr[name]) & (gf[name] > 0)).float())
    share = float(mask[name].mean())
    assert 0.05 < share < 0.95  # a real selection, neither nothing nor everything
    vision = [n for n in mask if "vision_tower" in n]
    assert vision and all(float(mask[n].sum()) == 0 for n in vision)  # text-only batches: no vision gradient


def test_mmunlearner_changes_only_the_masked_weights(mini_toy, tmp_path):
    """Entries outside the Fisher mask keep their exact values (Adam with zero gradient, no decay)."""
    from safetensors.torch import load_file
    torch.set_num_threads(2)
    out = unlearn(mini_toy, tmp_path / "mm", toy_data(load_world(mini_toy)), BaselineConfig("mmunlearner", epochs=0.5, lr=3e-3))
    before, after = load_file(mini_toy / "model.safetensors"), load_file(out / "model.safetensors")
    changed = sum(int((before[k] != after[k]).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    meta = json.loads((out / "unlearning.json").read_text())
    assert 0 < changed <= round(meta["updated_fraction"] * total) + 1
    assert meta["updated_fraction"] < 0.9 and meta["steps"] % 2 == 0


def test_smfa_merge_zeroes_only_large_conflicting_entries():
    """rho rescales the anchor to the forgetting update's size; an entry is dropped when its sign
    opposes the anchor's AND it is more than k * rho times the anchor entry."""
    forget = {"w": torch.tensor([8.0, -8.0, 8.0, 0.5, -8.0])}
    anchor = {"w": torch.tensor([-1.0, 1.0, 1.0, -1.0, -0.1])}
    rho = float(forget["w"].norm() / anchor["w"].norm())
    assert 7.9 < rho < 8.1
    kept = smfa_merge(forget, anchor, k=0.5)["w"]  # threshold 0.5 * rho * |anchor| ~ 4
    assert kept.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # same sign kept; small conflict kept
    assert smfa_merge(forget, anchor, k=2.0)["w"].tolist() == [1.0] * 5  # 8 < 2 * rho * 1


def test_vkd_edits_only_the_visual_side_and_moves_forget_portraits_away(mini_toy, tmp_path):
    from safetensors.torch import load_file
    from core.baselines import visual_representations
    torch.set_num_threads(2)
    out = unlearn(mini_toy, tmp_path / "vkd", toy_data(load_world(mini_toy)), BaselineConfig("vkd", epochs=4, lr=3e-3))
    before, after = load_file(mini_toy / "model.safetensors"), load_file(out / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower" in k or "multi_modal_projector" in k for k in changed)
    assert any("multi_modal_projector" in k for k in changed)
    world, f, r = _split_examples(mini_toy)
    orig, new = load_adapter(mini_toy, dtype=torch.float32), load_adapter(out, dtype=torch.float32)

    def cosine(examples):
        px = torch.stack([orig.to_pixels(e.image) for e in examples if e.image is not None][:16])
        with torch.no_grad():
            a, b = visual_representations(orig, px)[-1], visual_representations(new, px)[-1]
        return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
    assert cosine(f) < cosine(r) - 0.05  # forget portraits moved away more than retained images


def test_relearning_attack_shows_some_attributes_and_scores_the_others(mini_toy):
    torch.set_num_threads(2)
    before = _digest(mini_toy)
    seen = []
    res = relearn(mini_toy, toy_data(load_world(mini_toy)), RelearnConfig(steps=6, lr=3e-3),
                  progress=lambda step, total, loss: seen.append((step, total, loss)))
    assert _digest(mini_toy) == before  # in memory only
    assert [s[0] for s in seen] == list(range(1, 7)) and seen[-1][2] < seen[0][2]  # the shown facts are fitted
    assert res["relearned_attributes"] == list(RELEARN_ATTRIBUTES)
    for when in ("before", "after"):
        assert set(res[when]) == {"held_out", "shown"} and all(0 <= v <= 1 for v in res[when].values())
    # "before" is the unchanged model on the same split, and the held-out facts are never the shown attributes
    from core.baselines import relearn_split
    cfg = RelearnConfig(steps=6, lr=3e-3)
    shown, held = relearn_split(forget_examples(toy_data(load_world(mini_toy)), np.random.default_rng(cfg.seed)))
    assert held and not {e.attribute for e in held} & set(RELEARN_ATTRIBUTES)
    model = load_adapter(mini_toy, dtype=torch.float32)
    assert res["before"] == {"held_out": cloze_recall(model, held), "shown": cloze_recall(model, shown)}
    with pytest.raises(ValueError, match="relearning needs"):
        RelearnConfig(steps=0)


def test_cloze_recall_scores_substring_answers(mini_toy):
    world, f, _ = _split_examples(mini_toy)
    model = load_adapter(mini_toy, dtype=torch.float32)
    cloze = [e for e in f if e.kind == "cloze"][:6]
    from core.evaluation import replies
    from core.activations import Prompt
    got = replies(model, [Prompt(e.prompt, e.image) for e in cloze], max_new_tokens=8)
    want = sum(e.answer.lower() in r.lower() for e, r in zip(cloze, got)) / len(cloze)
    assert cloze_recall(model, cloze) == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="no cloze"):
        cloze_recall(model, [e for e in f if e.kind == "qa"][:2])


def test_bad_configs_are_refused(mini_toy, tmp_path):
    with pytest.raises(ValueError, match="unknown baseline"):
        BaselineConfig("rmu")
    with pytest.raises(ValueError, match="positive"):
        BaselineConfig("ga", lr=0)
    with pytest.raises(ValueError, match="never overwritten"):
        unlearn(mini_toy, mini_toy, toy_data(load_world(mini_toy)), BaselineConfig("ga", epochs=0.01))
    assert load_adapter(mini_toy).num_layers == 2  # still loadable
