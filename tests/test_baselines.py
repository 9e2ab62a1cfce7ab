"""Training-based unlearning baselines on the miniature toy model."""
import hashlib
import math

import numpy as np
import pytest
import torch

from core.baselines import (BaselineConfig, answer_kl, baseline_loss, forget_examples, retain_examples, unlearn,
                            _encode)
from core.models.load import load_adapter
from core.toyworld.questions import REFUSAL
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
    return world, forget_examples(world, "forget_10", rng, refusal), retain_examples(world, "forget_10", rng)


def test_forget_and_retain_examples_are_disjoint_people(mini_toy):
    world, f, r = _split_examples(mini_toy)
    forget_ids = {p.id for p in world.forget_people("forget_10")}
    assert f and {e.person_id for e in f} == forget_ids
    assert not forget_ids & {e.person_id for e in r}
    assert any(e.image is not None for e in f) and any(e.image is None for e in f)
    _, idk, _ = _split_examples(mini_toy, refusal=True)
    assert {e.answer for e in idk} == {REFUSAL} and len(idk) == len(f)


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


@pytest.mark.parametrize("method", ["ga", "ga_diff", "kl_min", "npo", "idk"])
def test_unlearning_moves_the_forget_answers_and_leaves_the_source_untouched(mini_toy, tmp_path, method):
    torch.set_num_threads(2)
    before = _digest(mini_toy)
    _, f, _ = _split_examples(mini_toy, refusal=method == "idk")
    nll_before = _mean_nll(load_adapter(mini_toy, dtype=torch.float32), f)
    seen = []
    out = unlearn(mini_toy, tmp_path / method, "forget_10", BaselineConfig(method, epochs=1, lr=3e-3),
                  progress=lambda step, total, loss: seen.append((step, total)))
    assert _digest(mini_toy) == before  # the source model is never written
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]
    nll_after = _mean_nll(load_adapter(out), f)
    if method == "idk":
        assert nll_after < nll_before  # the refusal became more likely on forget prompts
    else:
        assert nll_after > nll_before  # the forget answers became less likely
    assert (out / "tokenizer.json").is_file() and (out / "world.json").is_file()
    assert '"method": "%s"' % method in (out / "unlearning.json").read_text()


def test_bad_configs_are_refused(mini_toy, tmp_path):
    with pytest.raises(ValueError, match="unknown baseline"):
        BaselineConfig("rmu")
    with pytest.raises(ValueError, match="positive"):
        BaselineConfig("ga", lr=0)
    with pytest.raises(ValueError, match="never overwritten"):
        unlearn(mini_toy, mini_toy, "forget_10", BaselineConfig("ga", epochs=0.01))
    assert load_adapter(mini_toy).num_layers == 2  # still loadable
