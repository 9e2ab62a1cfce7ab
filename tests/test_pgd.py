"""PGD: bounded, stoppable, reproducible, and it really lowers the target loss on every family."""
import pytest
import torch

from conftest import random_image, tiny_adapter
from core.models.weights import state_hash
from core.pgd import PGDConfig, amplify, pgd, rephrase, run_pgd, to_image


def test_pgd_lowers_target_loss_within_budget(family):
    a = tiny_adapter(family)
    before = state_hash(a.model)
    cfg = PGDConfig(eps=32 / 255, step_size=4 / 255, steps=8, seed=1)
    imgs = [random_image(0), random_image(1)]
    steps = list(pgd(a, imgs, ["what is this ?"] * 2, ["red circle", "blue"], cfg))
    assert [s.step for s in steps] == list(range(9))
    assert steps[-1].loss < steps[0].loss
    x = torch.stack([a.to_pixels(im) for im in imgs])
    for s in steps:
        assert s.delta.abs().max() <= cfg.eps + 1e-6
        assert s.image.min() >= 0 and s.image.max() <= 1
        assert torch.allclose(s.image, x + s.delta, atol=1e-6)
    assert steps[-1].target_logprob.shape == (2,)
    assert state_hash(a.model) == before
    assert all(p.requires_grad for p in a.model.parameters())


def test_pgd_is_seeded_and_stoppable():
    a = tiny_adapter("llava")
    cfg = PGDConfig(steps=3, seed=4)
    one = run_pgd(a, [random_image(0)], ["what ?"], ["red"], cfg)
    two = run_pgd(a, [random_image(0)], ["what ?"], ["red"], cfg)
    assert torch.equal(one.delta, two.delta)
    stopped = list(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=50), should_stop=lambda: True))
    assert len(stopped) == 1
    early = list(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=50, early_stop_nll=1e9)))
    assert len(early) == 1
    # the stop reads the answer's NLL, not the total objective (an extra term of -10 stopped it at once)
    lowered = list(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=3, early_stop_nll=1e-3),
                       extra_loss=lambda b: torch.full((1,), -10.0), nll_weight=1.0))
    assert len(lowered) == 4 and lowered[0].loss < 1e-3


def test_a_gate_only_objective_runs_no_answer_forward_and_moves_as_before(monkeypatch):
    """Hardening weighs the answer 0: each step still ran the model to the logits and back for it.
    The steps are the same without it (its gradient was exactly 0); its log-probabilities are NaN."""
    a = tiny_adapter("llava")
    extra = lambda b: b.inputs["pixel_values"].flatten(1).mean(-1)  # noqa: E731
    cfg = PGDConfig(steps=2, seed=2, step_size=2 / 255)
    with_nll = list(pgd(a, [random_image(0)], ["what ?"], ["red"], cfg, extra_loss=extra, nll_weight=1e-30))
    calls = []
    real = type(a).answer_nll
    monkeypatch.setattr(type(a), "answer_nll", lambda self, b: calls.append(1) or real(self, b))
    gate_only = list(pgd(a, [random_image(0)], ["what ?"], ["red"], cfg, extra_loss=extra, nll_weight=0.0))
    assert calls == [] and torch.isnan(gate_only[0].target_logprob).all()
    assert all(torch.equal(x.delta, y.delta) for x, y in zip(with_nll, gate_only))
    with pytest.raises(ValueError, match="nothing to optimise"):
        next(pgd(a, [random_image(0)], ["what ?"], ["red"], cfg, nll_weight=0.0))


def test_extra_objective_is_added_and_followed():
    """extra_loss joins the weighted NLL; with the NLL weighted 0, PGD follows the extra term alone."""
    a = tiny_adapter("llava")
    extra = lambda b: b.inputs["pixel_values"].flatten(1).mean(-1)  # noqa: E731  (drive the pixels down)
    plain = next(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=1, seed=2)))
    both = next(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=1, seed=2),
                    extra_loss=extra, nll_weight=0.5))
    batch = a.encode(["what ?"], both.image)
    assert both.loss == pytest.approx(0.5 * plain.loss + float(extra(batch).mean()), rel=1e-4)
    steps = list(pgd(a, [random_image(0)], ["what ?"], ["red"], PGDConfig(steps=4, seed=2, step_size=2 / 255),
                     extra_loss=extra, nll_weight=0.0))
    assert [round(s.loss, 6) for s in steps] == sorted((round(s.loss, 6) for s in steps), reverse=True)
    assert steps[-1].loss < steps[0].loss


def test_keep_best_returns_each_images_lowest_objective_step():
    """Sign steps of a fixed size need not end at their best point: keep="best" returns each image
    at the step where its own objective was lowest (what an attacker keeps)."""
    a = tiny_adapter("llava")
    imgs, qs, ts = [random_image(0), random_image(1)], ["what is this ?"] * 2, ["red circle", "blue"]
    cfg = PGDConfig(eps=32 / 255, step_size=32 / 255, steps=6, seed=2)  # steps as large as the budget overshoot
    steps = list(pgd(a, imgs, qs, ts, cfg))
    assert all(s.losses.shape == (2,) and s.loss == pytest.approx(float(s.losses.mean()), rel=1e-5) for s in steps)
    best = run_pgd(a, imgs, qs, ts, cfg, keep="best")
    for i in range(2):
        at = min(range(len(steps)), key=lambda k: float(steps[k].losses[i]))
        assert torch.equal(best.image[i], steps[at].image[i]) and float(best.losses[i]) == float(steps[at].losses[i])
    assert float(best.losses[1]) < float(steps[-1].losses[1])  # here image 1 was best at step 1, not the last
    assert torch.equal(run_pgd(a, imgs, qs, ts, cfg).image, steps[-1].image)  # "last", the default
    with pytest.raises(ValueError, match="'last' or 'best'"):
        run_pgd(a, imgs, qs, ts, cfg, keep="first")


def test_images_for_display():
    d = torch.zeros(3, 8, 8)
    assert to_image(torch.ones(3, 8, 8)).getpixel((0, 0)) == (255, 255, 255)
    assert amplify(d, 16 / 255).getpixel((0, 0)) == (128, 128, 128)


def test_bad_parameters():
    with pytest.raises(ValueError, match="eps"):
        PGDConfig(eps=0)
    with pytest.raises(ValueError, match="eps"):
        PGDConfig(eps=64.0)
    with pytest.raises(ValueError, match="steps"):
        PGDConfig(steps=0)
    a = tiny_adapter("llava")
    with pytest.raises(ValueError, match="one question and one target"):
        next(pgd(a, [random_image(0)], ["a", "b"], ["x"]))


def test_rephrase_is_a_differentiable_image_of_the_same_shape_and_reaches_every_kind():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    outs = [rephrase(x, gen) for _ in range(40)]
    for o in outs:
        assert o.shape == x.shape and o.min() >= 0 and o.max() <= 1
    (grad,) = torch.autograd.grad(sum(o.sum() for o in outs), x)
    assert grad.abs().sum() > 0
    # noise, brightness, contrast, resize and crop give different outputs: at least 5 distinct ones
    assert len({round(float((o - x).detach().abs().mean()), 5) for o in outs}) >= 5


def test_eot_pgd_is_seeded_bounded_and_lowers_the_loss():
    a = tiny_adapter("llava")
    cfg = PGDConfig(eps=32 / 255, step_size=4 / 255, steps=4, seed=3, eot=3)
    one = list(pgd(a, [random_image(0)], ["what is this ?"], ["red circle"], cfg))
    two = run_pgd(a, [random_image(0)], ["what is this ?"], ["red circle"], cfg)
    assert torch.equal(one[-1].delta, two.delta)
    assert one[-1].delta.abs().max() <= cfg.eps + 1e-6
    assert one[-1].loss < one[0].loss
    plain = run_pgd(a, [random_image(0)], ["what is this ?"], ["red circle"], PGDConfig(eps=32 / 255, step_size=4 / 255,
                                                                                       steps=4, seed=3))
    assert not torch.equal(plain.delta, two.delta)  # the rephrasings change the gradient it follows
    with pytest.raises(ValueError, match="eot"):
        PGDConfig(eot=0)
