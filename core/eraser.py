"""The user-facing MLLMEraser object: fit, apply (reversibly), inspect, save, load.

    eraser = Eraser.fit(adapter, forget=..., retain=..., recall=..., erase=...)
    with eraser.apply(adapter, strength=0.3):
        answer = adapter.ask("Who is this?", image)

Polarity: `direction[l] = mean h_l(D_erase) - mean h_l(D_recall)` points from "recall" toward
"erase/refuse", so a POSITIVE strength erases. The public code stores the opposite vector and
uses a negative lambda; `paper_lambda = -strength` converts between the two.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.activations import SITE, Prompt, collect, collect_layers
from core.evaluation import TASKS
from core.models.base import VLMAdapter
from core.nullspace import fit_gate, gate_scores, joint_gate_scores
from core.steering import MODES, SteeringConfig, SteeringHandle, layer_strengths, steer

GATE_POSITIONS = {"last_prompt_token": "last", "mean_prompt_tokens": "mean"}  # config name -> collect()'s


def gate_position_of(config: "EraserConfig") -> str:
    """collect()'s position ("last" / "mean") for a config, with a clear error for unknown names."""
    try:
        return GATE_POSITIONS[config.position]
    except KeyError:
        raise ValueError(f"unknown gate position {config.position!r}; "
                         f"expected one of {sorted(GATE_POSITIONS)}") from None
POLARITY = ("direction = mean(D_erase) - mean(D_recall): a positive strength steers toward "
            "erasure/refusal; the public code's lambda is the negative of this strength")
WEIGHTS_NAME = "eraser.safetensors"
CONFIG_NAME = "eraser_config.json"
FORMAT = 1  # the newest eraser artefact format this code reads and writes (EraserConfig.version)
MAX_ADVERSARIAL_ROUNDS = 20  # hardening rounds an eraser records (each an attack: more is not a fit, a siege)


# Named starting points for a fit; every CLI flag still overrides. "tune": sweep mode x layers x
# strength on held-out prompts after fitting (core.tuner).
PRESETS: dict[str, dict] = {
    # the best measured recipe (the shipped eraser; docs/method-notes.md, items 5-7): a prompt-mean gate, one
    # ridge gate per forget subject with retain rows (no hard null space), a large retain sample, tuned
    "workbench": {"ratio": 1.0, "gamma": 10.0, "retain_weight": 0.3, "subject_gates": True, "gate_retain": 6400,
                  "position": "mean_prompt_tokens", "mode": "prefill", "strength": 0.3, "tune": True},
    # the paper's fit (method.md, public code): null space at ratio 0.3, gamma 0.1, one last-token gate,
    # every layer fitted and layers 1..L-1 steered at 0.3, prefill only, no tuning
    "paper": {"ratio": 0.3, "gamma": 0.1, "retain_weight": 0.0, "subject_gates": False, "gate_retain": 1600,
              "position": "last_prompt_token", "mode": "prefill", "strength": 0.3, "tune": False,
              "steer_from_layer": 1},
}


def check_layers(config: "EraserConfig", num_layers: int) -> None:
    """Refuse layer indices the model does not have, before any activation is collected."""
    for what, layers in (("layers", config.layers), ("steer_layers", config.steer_layers)):
        bad = [l for l in layers or [] if not 0 <= int(l) < num_layers]
        if bad:
            raise ValueError(f"{what} {bad} out of range: the model has {num_layers} decoder layers "
                             f"(0-{num_layers - 1}); pick layers in that range")
    g = config.gate_layer
    if g is not None and (not 0 <= g < num_layers or (config.layers is not None and g not in config.layers)):
        raise ValueError(f"gate_layer {g} must be a fitted layer of this {num_layers}-layer model (its gate is read "
                         "there)")
    bad = [l for l in config.joint_gate or [] if not 0 <= l < num_layers or (config.layers is not None
                                                                             and l not in config.layers)]
    if bad:
        raise ValueError(f"joint_gate layer(s) {bad} must be fitted layers of this {num_layers}-layer model")


# config fields every saved eraser names (format 1 has written them from the start; fields added since default as
# they did before, so older files load): an empty JSON loaded as a default eraser that steered
REQUIRED_FIELDS = ("version", "site", "model", "layers", "mode", "position", "strength", "polarity")


class ModelMismatchError(ValueError):
    """An eraser was fitted on another model than the one it is applied to."""


@dataclass
class EraserConfig:
    """Everything needed to reproduce or audit a fit; saved as JSON next to the tensors."""

    ratio: float | None = 0.3
    gamma: float = 0.1
    threshold: float | None = None
    # weight of the retain activations as target-0 rows of the ridge (0 = the paper's fit; see
    # core.nullspace for why and what it measured)
    retain_weight: float = 0.0
    # one gate per forget subject (Prompt.tag of the forget prompts; a person in the toy world),
    # the steering gate being their max (a workbench option, not the paper's; core.nullspace says why)
    subject_gates: bool = False
    subjects: list[str] = field(default_factory=list)  # the subjects, in gate order
    layers: list[int] | None = None  # layers fitted; None = all
    steer_layers: list[int] | None = None  # layers steered by default; None = every fitted layer
    strength: float = 0.3
    # MLLMU task (classification / generation / cloze) -> strength, as the public code sets lambda
    # per task; tasks not listed use `strength`. Why: a one-letter MCQ answer needs a stronger push
    # than a sentence (on the toy model with the paper-fit gate, 0.75 on layer 3 leaves 65% of text-only forget MCQs
    # answered correctly, 1.0 leaves 18%; docs/results.md, "A strength per task").
    task_strengths: dict[str, float] = field(default_factory=dict)
    mode: str = "prefill"
    seed: int = 0
    direction_kind: str = "custom"
    forget_split: str = ""  # the split whose people the eraser forgets (toy worlds)
    gate_variants: float = 0.0  # share of later-turn gate prompts added (toy worlds; toyworld.fitsets)
    gate_retain: int = 1600  # retained prompts sampled for the gate (contrast.gate_sets)
    pgd_eps: float = 16.0  # PGD budget in 1/255 of the refusal / image_only directions
    preset: str = ""  # the fit preset the settings started from (PRESETS), "" when set by hand
    data_source: str = ""  # what the prompt sets were built from: "toy world", MLLMU files, a photo folder
    site: str = SITE
    position: str = "last_prompt_token"  # or "mean_prompt_tokens" (a workbench option, not the paper's)
    polarity: str = POLARITY
    model: dict = field(default_factory=dict)
    data_hash: str = ""
    counts: dict = field(default_factory=dict)
    # every forget request since the first fit, oldest first: {"action": "fit" | "add" | "remove",
    # "subjects": [...], "at": ISO time (UTC), "data_hash": of the prompts it brought} (core.requests)
    requests: list = field(default_factory=list)
    # the gate steers by (g - floor)+ / (full - floor), capped at 1 when full < 1 (core.steering):
    # retained inputs whose gate stays under the floor are left exactly as they are, and a gate
    # pushed part of the way down still steers (fit / evaluate / attack --gate-floor / --gate-full)
    gate_floor: float = 0.0
    gate_full: float = 1.0
    # read the floor and full value off the fit's own rows (`ramp_from_rows`) at the fit and again at
    # each added subject and hardening round, so that they follow the rows (fit --gate-ramp); a
    # withdrawal keeps them (it must not move anyone else's answers: requests.refit_with(ramp=False))
    gate_ramp: bool = False
    # with gate_ramp, read the floor off retained subjects the gate was not fitted on: `floor_subjects`
    # (retain-row tags) in this many folds, the gate refitted without each fold and read on that fold's
    # rows (fit --floor-folds); 0 reads it off the fit's own retain rows. Why: on retained people it
    # never saw the gate reads higher than on the rows it was fitted to keep quiet, and the shipped
    # recipe refused about one question in ten of such people (docs/results.md)
    floor_folds: int = 0
    floor_subjects: list = field(default_factory=list)
    adversarial_rounds: int = 0  # rounds of adversarial gate fitting (core.hardening; fit --adversarial-rounds)
    # two-sided hardening: retained people's image prompts perturbed to open the gate, added as retain
    # rows each round (core.hardening; fit --adversarial-open)
    adversarial_open: int = 0
    # which PGD step of each attacked image the rounds add: "last", or "best" (its lowest gate; fit --adversarial-keep)
    adversarial_keep: str = "last"
    # image prompts attacked per forget person each round (core.hardening.hardening_rows; fit --adversarial-per-person)
    adversarial_per_person: int = 8
    # read the gate at this layer (on the way through the prompt pass, core.steering) and apply it at the steered layers;
    # None = each steered layer reads its own gate. Why: deeper layers tell people apart where the
    # steered layer sees the picture (docs/sequential.md, look-alikes); the blocks from the steered layer to
    # it run twice on a prompt whose gate opens (core.steering._scout)
    gate_layer: int | None = None
    # one gate fitted over these layers together (their activations side by side) and read in a first
    # prompt pass up to the deepest, instead of a gate per layer; each layer's `gate[l]` holds its part.
    # Why: it tells unseen people from forget people better than any single layer (docs/sequential.md)
    joint_gate: list[int] | None = None
    version: int = FORMAT  # the artefact format it was written in

    @classmethod
    def from_preset(cls, name: str, num_layers: int | None = None) -> "EraserConfig":
        """The settings of a fit preset (PRESETS) for a model of `num_layers` decoder layers (the
        paper's preset steers layers 1..L-1). Whether to tune afterwards is the caller's choice
        (`PRESETS[name]["tune"]`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {k: v for k, v in PRESETS[name].items() if k not in ("tune", "steer_from_layer")}
        first = PRESETS[name].get("steer_from_layer")
        steer = None if first is None or num_layers is None else list(range(first, num_layers))
        return cls(**values, steer_layers=steer, preset=name)

    def __post_init__(self) -> None:
        """Refuse values no fit produces, naming the field: an uploaded eraser's JSON is untrusted
        and a bad value would otherwise surface later as an IndexError inside a view."""
        unknown = sorted(set(self.task_strengths) - set(TASKS))
        if unknown:
            raise ValueError(f"task strengths are for the MLLMU tasks {', '.join(TASKS)}; got {', '.join(unknown)}")

        def number(name: str, lo: float, hi: float, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"eraser config field {name!r} must be a number in [{lo:g}, {hi:g}], got {v!r}")

        number("ratio", 1e-9, 1.0, optional=True)
        number("gamma", 0.0, 1e12)
        number("threshold", 1e-300, 1e12, optional=True)  # 0 keeps no direction: the fit refuses it
        number("retain_weight", 0.0, 1e12)
        number("strength", -1e6, 1e6)
        number("gate_variants", 0.0, 10.0)
        number("gate_floor", 0.0, 0.99)
        number("gate_full", 0.01, 1.0)
        if not isinstance(self.gate_ramp, bool):
            raise ValueError(f"eraser config field 'gate_ramp' must be true or false, got {self.gate_ramp!r}")
        if not self.gate_floor < self.gate_full:
            raise ValueError(f"eraser config field 'gate_full' ({self.gate_full}) must be above 'gate_floor' "
                             f"({self.gate_floor})")
        f, who = self.floor_folds, self.floor_subjects
        if isinstance(f, bool) or not isinstance(f, int) or f < 0 or f == 1 or f > MAX_FLOOR_FOLDS:
            raise ValueError(f"eraser config field 'floor_folds' must be 0 (off) or a number of folds from 2 to "
                             f"{MAX_FLOOR_FOLDS}, got {f!r}")
        if not isinstance(who, list) or not all(isinstance(t, str) for t in who):
            raise ValueError("eraser config field 'floor_subjects' must be a list of retained subjects' tags")
        if f and not self.gate_ramp:
            raise ValueError("eraser config: 'floor_folds' cross-fits the gate ramp's floor; set 'gate_ramp' too "
                             "(fit --gate-ramp)")
        if f and not self.subject_gates:  # the fit keeps its rows (the state the folds refit on) with those only
            raise ValueError("eraser config: 'floor_folds' refits the gate on the fit's rows, which a fit keeps with "
                             "one gate per subject: set 'subject_gates' too")
        number("pgd_eps", 1e-9, 255.0)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or not 1 <= self.version <= FORMAT:
            raise ValueError(f"eraser config field 'version' is {self.version!r}: this workbench reads erasers of "
                             f"format {FORMAT} and older; update the workbench, or fit the eraser again with this one")
        if self.site != SITE:  # an artefact of another tool or version: its vectors belong elsewhere in the model
            raise ValueError(f"eraser config field 'site' is {str(self.site)[:80]!r}: this workbench steers and reads "
                             f"gates at {SITE!r} only; fit the eraser again with this workbench")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"eraser config field 'seed' must be a whole number >= 0, got {self.seed!r}")
        for task, v in self.task_strengths.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) <= 1e6:
                raise ValueError(f"eraser config task strength {task!r} must be a number, got {v!r}")
        for name, low, top in (("adversarial_rounds", 0, MAX_ADVERSARIAL_ROUNDS), ("adversarial_open", 0, 100_000),
                               ("adversarial_per_person", 1, 1000)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= top:
                raise ValueError(f"eraser config field '{name}' must be an integer in [{low}, {top}], got {v!r}")
        if self.adversarial_keep not in ("last", "best"):
            raise ValueError(f"eraser config field 'adversarial_keep' must be 'last' or 'best', "
                             f"got {str(self.adversarial_keep)[:40]!r}")
        if isinstance(self.gate_retain, bool) or not isinstance(self.gate_retain, int) or self.gate_retain < 1:
            raise ValueError(f"eraser config field 'gate_retain' must be a positive integer, got {self.gate_retain!r}")
        for name in ("layers", "steer_layers"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, list) or any(isinstance(l, bool) or not isinstance(l, int)
                                                                 or l < 0 for l in v)):
                raise ValueError(f"eraser config field {name!r} must be null or a list of layer numbers, got {v!r}")
        if self.mode not in MODES:
            raise ValueError(f"eraser config field 'mode' must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.gate_layer is not None and (isinstance(self.gate_layer, bool) or not isinstance(self.gate_layer, int)
                                            or self.gate_layer < 0):
            raise ValueError(f"eraser config field 'gate_layer' must be null or a layer number, got {self.gate_layer!r}")
        j = self.joint_gate
        if j is not None and (not isinstance(j, list) or len(j) < 2 or any(
                isinstance(l, bool) or not isinstance(l, int) or l < 0 for l in j) or len(set(j)) != len(j)):
            raise ValueError(f"eraser config field 'joint_gate' must be null or a list of at least two distinct layer "
                             f"numbers, got {j!r}")
        if j is not None:
            self.joint_gate = sorted(j)
            if self.gate_layer is not None:
                raise ValueError("eraser config: set 'gate_layer' (one layer) or 'joint_gate' (several), not both")
        if (self.gate_layer is not None or j is not None) and self.mode == "every_step":
            raise ValueError("eraser config: a gate read at 'gate_layer' is latched at the prompt; use mode 'prefill' "
                             "or 'latched'")
        if self.position not in GATE_POSITIONS:
            raise ValueError(f"eraser config field 'position' must be one of {', '.join(GATE_POSITIONS)}, "
                             f"got {self.position!r}")
        if not isinstance(self.requests, list) or any(
                not isinstance(r, dict) or r.get("action") not in ("fit", "add", "remove", "harden")
                or not isinstance(r.get("subjects"), list) for r in self.requests):
            raise ValueError("eraser config field 'requests' must be a list of {action: fit|add|remove|harden, subjects: "
                             "[...], at, data_hash} entries")
        if not isinstance(self.subject_gates, bool) or not isinstance(self.subjects, list) or any(
                not isinstance(t, str) for t in self.subjects):
            raise ValueError("eraser config fields 'subject_gates' (true/false) and 'subjects' (a list of subject ids) "
                             "are malformed")
        for name in ("direction_kind", "data_source", "polarity", "data_hash"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"eraser config field {name!r} must be text, got {str(getattr(self, name))[:40]!r}")
        if self.preset is not None and not isinstance(self.preset, str):
            raise ValueError(f"eraser config field 'preset' must be null or text, got {str(self.preset)[:40]!r}")
        if not isinstance(self.counts, dict) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                    for v in self.counts.values()):
            raise ValueError(f"eraser config field 'counts' must map set names to row counts, got {str(self.counts)[:80]}")
        for name in ("layers", "steer_layers"):
            v = getattr(self, name)
            if v is not None and len(set(v)) != len(v):
                raise ValueError(f"eraser config field {name!r} names a layer twice: {v}")
        if self.layers is not None and self.steer_layers is not None and not set(self.steer_layers) <= set(self.layers):
            raise ValueError(f"steer_layers {sorted(set(self.steer_layers) - set(self.layers))} are not among the fitted "
                             f"layers {self.layers}: an eraser steers only layers it fits (add them to --layers, or "
                             "pick --steer-layers among them)")
        if self.mode == "every_step" and self.position != "last_prompt_token":
            raise ValueError("eraser config: a prompt-mean gate is read once per prompt, so mode 'every_step' cannot "
                             "use it; use mode 'prefill' or 'latched', or the position 'last_prompt_token'")
        m = self.model
        if not isinstance(m, dict) or any(m.get(k) is not None and not isinstance(m.get(k), str)
                                          for k in ("fingerprint", "name_or_path", "family")):
            raise ValueError("eraser config field 'model' must be an object whose 'fingerprint', 'name_or_path' and "
                             f"'family' are text, got {str(m)[:80]!r}; fit the eraser again")
        spec = self.forget_split
        if not isinstance(spec, str) or "/" in spec or "\\" in spec or ".." in spec or len(spec) > 10_000:
            raise ValueError(f"eraser config field 'forget_split' must be a split name or comma-separated subject "
                             f"ids, got {str(spec)[:80]!r}")


# How an eraser is fitted and steered, as opposed to what it was fitted on (subjects, counts,
# hashes, history): what a new fit in the app or the sequential benchmark takes over from an eraser.
RECIPE_FIELDS = ("ratio", "gamma", "threshold", "retain_weight", "subject_gates", "gate_retain", "layers",
                 "steer_layers", "strength", "mode", "seed", "position", "gate_layer", "joint_gate", "gate_floor",
                 "gate_full", "gate_ramp", "floor_folds")


def recipe_of(config: EraserConfig) -> dict:
    """The fit and steering settings of `config` (RECIPE_FIELDS), ready for EraserConfig(**...)."""
    return {k: getattr(config, k) for k in RECIPE_FIELDS}


def erase_direction(H_recall: torch.Tensor, H_erase: torch.Tensor) -> torch.Tensor:
    """(L, d) mean(H_erase) - mean(H_recall), from (N, L, d) activation sets, in float64."""
    if H_recall.shape[1:] != H_erase.shape[1:]:
        raise ValueError(f"contrast sets differ in shape: {tuple(H_recall.shape)} vs {tuple(H_erase.shape)}")
    if not len(H_recall) or not len(H_erase):  # the mean of no row is NaN: a direction of NaN steered every answer
        raise ValueError(f"a contrast set is empty ({len(H_recall)} recall, {len(H_erase)} erase rows): the direction "
                         "needs examples of both")
    return H_erase.double().mean(0) - H_recall.double().mean(0)


def prompts_hash(*sets: Sequence[Prompt]) -> str:
    """Content hash of the fitting data: questions and image pixels, in order."""
    h = hashlib.sha256()
    for s in sets:
        h.update(f"|{len(s)}|".encode())
        for p in s:
            h.update(p.question.encode())
            if p.history or p.prefill:  # only then, so hashes of single-turn sets stay as they were
                h.update(json.dumps([p.history, p.prefill]).encode())
            img = p.image
            if img is None:
                h.update(b"-")
            elif isinstance(img, torch.Tensor):
                h.update((img.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().tobytes())
            else:
                h.update(np.asarray(img.convert("RGB")).tobytes())
    return h.hexdigest()[:16]


def fit_gates(H_forget: torch.Tensor, H_retain: torch.Tensor, config: EraserConfig,
               subjects: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """The null-space gate u_l of every fitted layer ((L, d), or (L, K, d) with `subjects`, the
    forget rows' subject labels), the inspector's diagnostics, and with `config.joint_gate` the
    joint gate over those layers ((n, d) or (n, K, d): one ridge on their activations side by
    side, each layer's part), else None. Each layer's own gate is fitted either way."""
    L, d = H_forget.shape[1], H_forget.shape[2]
    K = None if subjects is None else int(subjects.max()) + 1
    gate = torch.zeros((L, d) if K is None else (L, K, d), dtype=torch.float64)
    evals = torch.zeros(L, d, dtype=torch.float64)
    fg = torch.zeros(L, H_forget.shape[0], dtype=torch.float64)
    rg = torch.zeros(L, H_retain.shape[0], dtype=torch.float64)
    k = torch.zeros(L, dtype=torch.int64)
    leak = torch.zeros(L, dtype=torch.float64)
    energy = torch.zeros(L, dtype=torch.float64)
    exact = torch.zeros(L, dtype=torch.bool)
    for l in range(L) if config.layers is None else config.layers:
        fit = fit_gate(H_forget[:, l], H_retain[:, l], config.ratio, config.gamma, config.threshold,
                       config.retain_weight, subjects)
        gate[l], evals[l], fg[l], rg[l] = fit.u, fit.eigenvalues, fit.forget_gates, fit.retain_gates
        k[l], leak[l], energy[l], exact[l] = fit.k, fit.leakage, fit.forget_energy, fit.exact_null_space
    out = {"eigenvalues": evals, "forget_gates": fg, "retain_gates": rg, "k": k, "leakage": leak,
           "forget_energy": energy, "exact_null_space": exact}
    if subjects is not None:
        out["forget_subject"] = subjects
    joint = None
    if config.joint_gate:  # one gate over these layers side by side
        S = config.joint_gate
        fit = fit_gate(H_forget[:, S].flatten(1), H_retain[:, S].flatten(1), config.ratio, config.gamma,
                       config.threshold, config.retain_weight, subjects)
        joint = fit.u.reshape(*fit.u.shape[:-1], len(S), d).movedim(-2, 0).contiguous()  # (n, [K,] d)
        out["joint_forget_gates"], out["joint_retain_gates"] = fit.forget_gates, fit.retain_gates
    return gate, out, joint


def subject_labels(tags: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """(the distinct subjects in sorted order, each forget row's index among them)."""
    if any(not t for t in tags):
        raise ValueError("one gate per forget subject needs every forget prompt tagged with its subject "
                         "(Prompt.tag, e.g. the person's id)")
    names = sorted(set(tags))
    index = {n: i for i, n in enumerate(names)}
    return names, torch.tensor([index[t] for t in tags], dtype=torch.int64)


STATE_NAME = "eraser_state.safetensors"


def request_entry(action: str, subjects: Sequence[str], data_hash: str) -> dict:
    """One line of an eraser's request history: what was asked, about whom, when, on what data."""
    from datetime import datetime, timezone
    return {"action": action, "subjects": list(subjects), "data_hash": data_hash,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


MAX_FLOOR_FOLDS = 20  # folds of a cross-fitted floor: each one is a refit of every fitted layer's gate


class FloorFoldsError(ValueError):
    """A cross-fitted floor that cannot be read (no retained subjects or tags to fold, no subject
    labels): never swallowed as rows that do not separate are, since the ramp would then stay at
    values the config no longer describes."""


@dataclass
class FitState:
    """The gate's fitting activations, kept so that forget requests can add or withdraw subjects
    without collecting the retain side again (core.requests). Each row carries its subject's tag
    ("" for scenes and general questions)."""

    H_forget: torch.Tensor  # (N_f, L, d)
    forget_tags: list[str]
    H_retain: torch.Tensor  # (N_r, L, d)
    retain_tags: list[str]
    # the direction's contrast rows (last prompt token, every layer) with their subjects, when kept:
    # a request then builds the direction again from everyone forgotten (core.requests)
    H_recall: torch.Tensor | None = None
    recall_tags: list[str] = field(default_factory=list)
    H_erase: torch.Tensor | None = None
    erase_tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        if (self.H_forget.ndim != 3 or self.H_retain.ndim != 3 or self.H_forget.shape[1:] != self.H_retain.shape[1:]
                or len(self.forget_tags) != len(self.H_forget) or len(self.retain_tags) != len(self.H_retain)):
            raise ValueError("an eraser's fit state holds (N, layers, width) forget and retain activations with one "
                             "tag per row")
        if (self.H_recall is None) != (self.H_erase is None) or (self.H_recall is not None and (
                self.H_recall.shape[1:] != self.H_forget.shape[1:] or self.H_erase.shape[1:] != self.H_forget.shape[1:]
                or len(self.recall_tags) != len(self.H_recall) or len(self.erase_tags) != len(self.H_erase))):
            raise ValueError("an eraser's fit state holds the direction's recall and erase activations both or "
                             "neither, (N, layers, width) with one tag per row")

    @property
    def has_contrast(self) -> bool:
        return self.H_recall is not None


class Eraser:
    """Per-layer direction r_l and gate u_l (the rank-one factors of W_l), plus diagnostics.
    With one gate per forget subject the gate is (num_layers, subjects, hidden_size). `state`
    (optional) keeps the gate's fitting activations for later forget requests."""

    def __init__(self, direction: torch.Tensor, gate: torch.Tensor, config: EraserConfig,
                 diagnostics: dict[str, torch.Tensor] | None = None, state: FitState | None = None,
                 joint: torch.Tensor | None = None):
        if direction.ndim != 2 or gate.ndim not in (2, 3) or (gate.shape[0], gate.shape[-1]) != direction.shape:
            raise ValueError("direction must be (num_layers, hidden_size) and gate (num_layers, hidden_size) "
                             "or (num_layers, subjects, hidden_size)")
        if config.joint_gate and (joint is None or joint.shape != (len(config.joint_gate), *gate.shape[1:])):
            raise ValueError(f"an eraser with a joint gate over layers {config.joint_gate} needs that gate, of shape "
                             f"{(len(config.joint_gate), *gate.shape[1:])}; got "
                             f"{None if joint is None else tuple(joint.shape)}")
        self.direction = direction.double()
        self.gate = gate.double()  # each layer's own gate
        self.joint = None if joint is None else joint.double()  # the joint gate's parts, (n, [K,] d)
        self.config = config
        self.diagnostics = diagnostics or {}
        self.state = state
        self._folds_cache: dict = {}  # a cross-fitted floor's fold gates (`_fold_gates`), shared by shallow copies

    @property
    def num_layers(self) -> int:
        return self.direction.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.direction.shape[1]

    @property
    def gate_position(self) -> str:
        """Where the gate reads its input: "last" (the method) or "mean" (prompt mean)."""
        return gate_position_of(self.config)

    @property
    def fitted_layers(self) -> list[int]:
        return list(range(self.num_layers)) if self.config.layers is None else list(self.config.layers)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def from_activations(cls, H_forget: torch.Tensor, H_retain: torch.Tensor, H_recall: torch.Tensor,
                         H_erase: torch.Tensor, config: EraserConfig | None = None,
                         forget_subjects: Sequence[str] | None = None,
                         retain_subjects: Sequence[str] | None = None,
                         contrast_subjects: tuple[Sequence[str], Sequence[str]] | None = None) -> "Eraser":
        """Fit from (N, L, d) activations at `blocks.{l}.hook_resid_pre`, last prompt token.
        `forget_subjects` (one per forget row) is needed when `config.subject_gates`; with them
        (and `retain_subjects`, one per retain row) the eraser keeps its fit state, so that
        subjects can be added or withdrawn later (core.requests); with `contrast_subjects` (the
        subject of every recall and of every erase row) it keeps the direction's rows too, so that
        a request builds the direction again from everyone forgotten."""
        config = config or EraserConfig()
        subjects = None
        if config.subject_gates:
            if forget_subjects is None or len(forget_subjects) != H_forget.shape[0]:
                raise ValueError("one gate per forget subject needs a subject for every forget row")
            config.subjects, subjects = subject_labels(forget_subjects)
        direction = erase_direction(H_recall, H_erase)
        if not config.data_hash:
            h = hashlib.sha256()
            for t in (H_forget, H_retain, H_recall, H_erase):
                h.update(t.float().contiguous().numpy().tobytes())
            config.data_hash = h.hexdigest()[:16]
        config.counts = {"forget": H_forget.shape[0], "retain": H_retain.shape[0],
                         "recall": H_recall.shape[0], "erase": H_erase.shape[0]}
        gate, diagnostics, joint = fit_gates(H_forget, H_retain, config, subjects)
        diagnostics["direction_norm"] = direction.norm(dim=-1)
        state = None
        if config.subject_gates:
            rec_tags, era_tags = contrast_subjects or (None, None)
            keep = rec_tags is not None and len(rec_tags) == len(H_recall) and len(era_tags) == len(H_erase)
            state = FitState(H_forget.float(), list(forget_subjects),
                             H_retain.float(), list(retain_subjects or [""] * len(H_retain)),
                             H_recall.float() if keep else None, list(rec_tags) if keep else [],
                             H_erase.float() if keep else None, list(era_tags) if keep else [])
            if not config.requests:
                config.requests = [request_entry("fit", config.subjects, config.data_hash)]
        return cls(direction, gate, config, diagnostics, state, joint).follow_ramp()

    def config_reading(self, joint_gate: Sequence[int] | None = None) -> EraserConfig:
        """A copy of this eraser's config with its gate read over `joint_gate` (empty: each
        steered layer's own; None: as it is), validated as a fitted config is: a caller can
        check a choice before collecting any activation."""
        changes = {}
        if joint_gate is not None:
            changes = {"joint_gate": sorted({int(l) for l in joint_gate}) or None,
                       "gate_layer": None if joint_gate else self.config.gate_layer}
        config = EraserConfig(**{**asdict(self.config), "model": dict(self.config.model),
                                 "counts": dict(self.config.counts), **changes})
        check_layers(config, self.num_layers)
        return config

    def refit_gate(self, H_forget: torch.Tensor, H_retain: torch.Tensor, ratio: float | None = None,
                   gamma: float | None = None, threshold: float | None = None,
                   retain_weight: float | None = None, subject_gates: bool | None = None,
                   forget_subjects: Sequence[str] | None = None,
                   joint_gate: Sequence[int] | None = None,
                   retain_tags: Sequence[str] | None = None, floor_folds: int | None = None,
                   floor_subjects: Sequence[str] | None = None) -> "Eraser":
        """A new eraser with the same direction and a gate refitted with another null-space
        ratio / threshold / ridge gamma / retain weight / per-subject choice / joint gate
        (d_erase does not depend on them). Used by the live null-space inspector; this eraser is
        left untouched. Per-subject gates use `forget_subjects`, else the subjects stored at
        fitting time. `joint_gate`: one gate over these layers side by side, read before the
        steered layers (an empty list: each steered layer reads its own gate; None keeps the
        eraser's reading). `retain_tags` (one per retain row): what a cross-fitted floor folds
        (without them such a floor stays as stored); `floor_folds` sets that floor's folds (more
        than 0 reads the ramp off the rows, `gate_ramp`), `floor_subjects` whom they hold out."""
        config = self.config_reading(joint_gate)
        if threshold is not None:
            config.ratio, config.threshold = None, threshold
        elif ratio is not None:
            config.ratio, config.threshold = ratio, None
        if gamma is not None:
            config.gamma = gamma
        if retain_weight is not None:
            config.retain_weight = retain_weight
        if subject_gates is not None:
            config.subject_gates = subject_gates
        folds = config.floor_folds if floor_folds is None else floor_folds
        # validated again with the gate choice above: folds without one gate per subject made an eraser that
        # saved and then failed to load
        config = replace(config, floor_folds=folds, gate_ramp=config.gate_ramp or bool(folds),
                         floor_subjects=list(config.floor_subjects if floor_subjects is None else floor_subjects))
        subjects = None
        if config.subject_gates:
            if forget_subjects is not None:
                config.subjects, subjects = subject_labels(forget_subjects)
            elif "forget_subject" in self.diagnostics and len(self.diagnostics["forget_subject"]) == H_forget.shape[0]:
                subjects = self.diagnostics["forget_subject"].long()
            else:
                raise ValueError("one gate per forget subject needs the subject of every forget row")
        else:
            config.subjects = []
        gate, diagnostics, joint = fit_gates(H_forget, H_retain, config, subjects)
        diagnostics["direction_norm"] = self.direction.norm(dim=-1)
        return Eraser(self.direction.clone(), gate, config, diagnostics, joint=joint).follow_ramp((H_forget, H_retain),
                                                                                                 retain_tags)

    @classmethod
    def fit(cls, adapter: VLMAdapter, forget: Sequence[Prompt], retain: Sequence[Prompt],
            recall: Sequence[Prompt], erase: Sequence[Prompt], config: EraserConfig | None = None,
            batch_size: int | None = None, progress: Callable[[str, int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            activations: dict[str, torch.Tensor] | None = None) -> "Eraser":
        """Collect activations for the four prompt sets on `adapter` and fit.

        forget/retain train the gate (forget -> 1, retain -> 0); recall/erase give the direction.
        `progress(stage, done, total)` reports each set; `should_stop()` cancels between batches.
        `activations`, when given, receives the collected (N, L, d) sets by name, so that a caller
        (the app's inspector) need not collect them again."""
        config = config or EraserConfig()
        gate_pos = gate_position_of(config)
        check_layers(config, adapter.num_layers)
        for name, s in (("forget", forget), ("retain", retain), ("recall", recall), ("erase", erase)):
            if not s:
                raise ValueError(f"the {name} set is empty: the eraser needs examples of every kind")
        acts = {}
        for name, s in (("forget", forget), ("retain", retain), ("recall", recall), ("erase", erase)):
            cb = None if progress is None else (lambda done, total, n=name: progress(n, done, total))
            # the direction is always a last-token difference (the method); only the gate reads the mean
            pos = gate_pos if name in ("forget", "retain") else "last"
            # the gate sets at the fitted layers only (all of them when the caller keeps the activations)
            layers = config.layers if name in ("forget", "retain") and activations is None else None
            acts[name] = collect_layers(adapter, s, layers, batch_size=batch_size, progress=cb,
                                        should_stop=should_stop, position=pos)
        if activations is not None:
            activations.update(acts)
        config.model = asdict(adapter.info())
        config.data_hash = prompts_hash(forget, retain, recall, erase)
        return cls.from_activations(acts["forget"], acts["retain"], acts["recall"], acts["erase"], config,
                                    [p.tag for p in forget] if config.subject_gates else None,
                                    [p.tag for p in retain], ([p.tag for p in recall], [p.tag for p in erase]))

    # ------------------------------------------------------------------ use
    def check_model(self, adapter: VLMAdapter, strict: bool = True) -> None:
        """Refuse a model of another shape always, and another checkpoint when `strict`."""
        if adapter.hidden_size != self.hidden_size or adapter.num_layers != self.num_layers:
            raise ModelMismatchError(
                f"this eraser was fitted on a model with {self.num_layers} layers of width {self.hidden_size} "
                f"({self.config.model.get('name_or_path', '?')}); {adapter.name_or_path} has {adapter.num_layers} "
                f"layers of width {adapter.hidden_size}. Fit a new eraser for this model.")
        want = self.config.model.get("fingerprint")
        if not strict or not want:
            return
        versioned = re.fullmatch(r"w(\d{1,3})-[0-9a-f]+", want)
        if not versioned:  # saved before every parameter counted
            from core.models.weights import legacy_fingerprint
            if want == legacy_fingerprint(adapter.model):
                return
        got = adapter.weights_print(int(versioned.group(1))) if versioned else adapter.info().fingerprint
        if want != got:  # each print is checked with its own version (an older eraser with the older print)
            raise ModelMismatchError(
                f"this eraser was fitted on {self.config.model.get('name_or_path', '?')} (weights fingerprint "
                f"{want}), not on {adapter.name_or_path} ({got}). Fit a new eraser, or pass "
                "strict=False (Eraser.from_pretrained / apply, in Python) if you know the weights are equivalent.")

    def strengths(self, strength: float | Sequence[float] | Mapping[int, float] | None = None,
                  layers: Iterable[int] | None = None) -> tuple[float, ...]:
        strength = self.config.strength if strength is None else strength
        fitted = set(self.fitted_layers)
        asked = set() if layers is None else {int(l) for l in layers}
        if isinstance(strength, Mapping):
            asked |= {int(l) for l, v in strength.items() if v}
        unfitted = sorted(l for l in asked - fitted if 0 <= l < self.num_layers)
        if unfitted:  # such a layer was set to 0 without a word: an unsteered model reported as steered
            raise ValueError(f"layer(s) {unfitted} were not fitted by this eraser, which can steer layer(s) "
                             f"{sorted(fitted)}; choose among those, or fit the eraser on the layers you want")
        if layers is None:
            layers = self.config.steer_layers
        vals = layer_strengths(self.num_layers, strength, fitted if layers is None else layers)
        return tuple(v if i in fitted else 0.0 for i, v in enumerate(vals))

    @property
    def steered_layers(self) -> list[int]:
        """The layers steered at the stored strength and layer choice."""
        return [l for l, s in enumerate(self.strengths()) if s != 0]

    @property
    def gate_layers(self) -> list[int]:
        """The layers whose gate decides the steering: the joint gate's or `gate_layer` when set,
        else the steered layers (each reads its own). What an adaptive attacker has to close."""
        if self.config.joint_gate:
            return list(self.config.joint_gate)
        if self.config.gate_layer is not None:
            return [self.config.gate_layer]
        return self.steered_layers

    def row_gates(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(forget, retain) values, on the fit's own rows, of the gate that decides the steering
        (`read_gate` at `gate_layers`), from the diagnostics; None when saved without them. Why:
        the inspector draws the gate ramp over them (where the floor and the full value fall
        among the rows the gate was fitted on), and they need no activation or fit state."""
        d = self.diagnostics
        if self.config.joint_gate:
            if "joint_forget_gates" not in d:
                return None
            return d["joint_forget_gates"].double(), d["joint_retain_gates"].double()
        if "forget_gates" not in d:
            return None
        layers = self.gate_layers
        return d["forget_gates"][layers].double().mean(0), d["retain_gates"][layers].double().mean(0)

    def crossfit_retain_gates(self, H_forget: torch.Tensor, H_retain: torch.Tensor,
                              tags: Sequence[str]) -> torch.Tensor:
        """The gate on the rows of the retained subjects `config.floor_subjects` (their tags among
        `tags`, one per retain row), each read by a gate fitted, with this eraser's settings,
        without that subject's fold (`config.floor_folds` folds, every k-th subject of
        `floor_subjects` in its order). What the cross-fitted floor is read off: how the gate reads
        people it was not fitted on."""
        folds, present = self.config.floor_folds, set(tags)
        people = [t for t in dict.fromkeys(self.config.floor_subjects) if t in present]
        if len(people) < folds:
            raise FloorFoldsError(f"a floor cross-fitted in {folds} folds needs rows of at least {folds} retained "
                                  f"subjects ('floor_subjects', core.contrast.retained_subjects); these rows hold "
                                  f"{len(people)}: give people to keep, or fewer folds")
        layers = self.gate_layers
        reads = []
        for held, gate, joint in self._fold_gates(H_forget, H_retain, tags, people):
            probe = Eraser(self.direction, gate, self.config, joint=joint)
            reads.append(probe.read_gate(H_retain[held][:, layers].double(), layers))
        return torch.cat(reads)

    def _fold_gates(self, H_forget: torch.Tensor, H_retain: torch.Tensor, tags: Sequence[str],
                    people: list[str]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(held-out rows, gate, joint gate) of each fold, fitted once per rows and settings: they do
        not depend on which layers are steered, and the tuner reads a ramp for every candidate
        layer set (refitted for each, a 32-layer model's tuning refitted every layer's gate a
        hundred times)."""
        c = self.config
        labels = self.diagnostics.get("forget_subject") if c.subject_gates else None
        if c.subject_gates and (labels is None or len(labels) != len(H_forget)):
            if self.state is None or len(self.state.forget_tags) != len(H_forget):
                raise FloorFoldsError("a cross-fitted floor refits one gate per forget subject: it needs the subject "
                                      "of every forget row (the eraser's diagnostics or fit state)")
            labels = subject_labels(self.state.forget_tags)[1]
        settings = (tuple(tags), tuple(people), c.floor_folds, c.ratio, c.gamma, c.threshold, c.retain_weight,
                    tuple(c.layers or ()), tuple(c.joint_gate or ()))
        hit = self._folds_cache.get("rows")  # the rows themselves are kept: identity, not an address, is compared
        if not (hit and hit[0] is H_forget and hit[1] is H_retain and hit[2] == (H_forget._version, H_retain._version)
                and hit[3] == settings):
            folds = []
            for k in range(c.floor_folds):
                fold = set(people[k::c.floor_folds])
                held = torch.tensor([t in fold for t in tags])
                gate, _, joint = fit_gates(H_forget, H_retain[~held], c, labels)
                folds.append((held, gate, joint))
            hit = (H_forget, H_retain, (H_forget._version, H_retain._version), settings, folds)
            self._folds_cache["rows"] = hit  # one set of rows at a time: the gates of every layer, per fold
        return hit[4]

    def ramp_from_rows(self, retain_q: float = 0.95, forget_q: float = 0.05,
                       rows: tuple[torch.Tensor, torch.Tensor] | None = None,
                       retain_tags: Sequence[str] | None = None) -> tuple[float, float]:
        """A gate ramp read off the fit's own rows (`state`): the floor at the `retain_q` quantile
        of the retain rows' gates (retained inputs the gate was fitted to keep quiet), full
        steering from the `forget_q` quantile of the forget rows' (attacked rows included after
        hardening). Data-driven, so that the ramp is not tuned on an evaluation. `rows`: (forget,
        retain) activations (N, L, d) to read it off instead of the fit state's. Without a fit state
        (one gate for the whole forget set, or saved with --no-state) the gates of the rows come
        from the diagnostics (`row_gates`), which the fit wrote from the same rows. With
        `config.floor_folds` the floor is read off `crossfit_retain_gates` instead, which needs the
        retain rows' tags (the fit state's, or `retain_tags` with `rows`)."""
        if not self.gate_layers:
            raise ValueError("no gate to read a ramp off: the eraser steers no layer at its strength and layers")
        if rows is not None or self.state is not None:
            H_forget, H_retain = rows if rows is not None else (self.state.H_forget, self.state.H_retain)
            tags = retain_tags if rows is not None else self.state.retain_tags
            layers = self.gate_layers
            if self.config.floor_folds and tags is None:
                raise FloorFoldsError("a cross-fitted floor holds retained subjects out of the gate: it needs the "
                                      "retain rows' tags")
            retain = (self.crossfit_retain_gates(H_forget, H_retain, tags) if self.config.floor_folds
                      else self.read_gate(H_retain[:, layers].double(), layers))
            forget = self.read_gate(H_forget[:, layers].double(), layers)
        elif self.config.floor_folds:
            raise FloorFoldsError("a cross-fitted floor is read off the fit's rows: this eraser holds no fit state; "
                                  "fit it again, or give --gate-floor / --gate-full")
        elif (gates := self.row_gates()) is not None:
            forget, retain = gates
        else:
            raise ValueError("the gate ramp is read off the fit's rows: this eraser holds neither its fit state nor "
                             "its diagnostics (saved without them); fit it again, or give --gate-floor / "
                             "--gate-full")
        if not len(retain) or not len(forget):
            raise ValueError("the gate ramp is read off the fit's rows: this eraser holds no row of one side")
        floor = max(0.0, float(retain.quantile(retain_q)))
        full = min(1.0, float(forget.quantile(forget_q)))
        if not floor + 0.01 < full:
            raise ValueError(f"the fit's rows overlap: {100 * retain_q:g}% of the retain rows' gates reach {floor:.3f}, "
                             f"{100 * forget_q:g}% of the forget rows' stay under {full:.3f}, so no ramp separates them")
        return round(floor, 3), round(full, 3)

    def follow_ramp(self, rows: tuple[torch.Tensor, torch.Tensor] | None = None,
                    retain_tags: Sequence[str] | None = None) -> "Eraser":
        """With `config.gate_ramp`, read the ramp again off the rows (the fit state's, or `rows`
        with their `retain_tags`) after a fit or refit; where the rows do not separate, the ramp
        the config holds stays (`fit --gate-ramp` refuses such rows itself); a cross-fitted floor
        that cannot be read is an error (FloorFoldsError). Returns this eraser."""
        if self.config.gate_ramp:
            try:
                self.config.gate_floor, self.config.gate_full = self.ramp_from_rows(rows=rows, retain_tags=retain_tags)
            except FloorFoldsError:
                raise
            except ValueError:
                pass
        return self

    def apply(self, adapter: VLMAdapter, strength: float | Sequence[float] | Mapping[int, float] | None = None,
              layers: Iterable[int] | None = None, mode: str | None = None, gated: bool = True,
              strict: bool = True, gate_index: torch.Tensor | None = None,
              gate_fn: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
              gate_layer: int | None | str = "stored", floor: float | None = None,
              full: float | None = None) -> SteeringHandle:
        """Steer `adapter` until the returned handle is removed (use it in a `with` block).

        gated=False drops the gate (plain d_erase addition: the 'null space off' ablation);
        gate_fn replaces the linear gate by another one (the MLP-gate ablation); gate_layer
        replaces where the stored gate is read (None: each steered layer reads its own gate);
        floor / full replace the stored gate floor and full-steering value."""
        self.check_model(adapter, strict=strict)
        cfg = SteeringConfig(self.strengths(strength, layers), mode or self.config.mode,
                             self.config.gate_floor if floor is None else floor,
                             self.config.gate_full if full is None else full)
        gate = gate_fn if gate_fn is not None else (self.gate if gated else None)
        chosen = self.config.gate_layer if gate_layer == "stored" else gate_layer
        if chosen is not None and chosen not in self.fitted_layers:
            raise ValueError(f"gate layer {chosen} has no fitted gate; this eraser fits layers {self.fitted_layers}")
        if gate_layer == "stored" and self.config.joint_gate and gate is self.gate:
            chosen, gate = self.config.joint_gate, self._joint_as_layers()
        gate_from = chosen if isinstance(gate, torch.Tensor) else None
        return steer(adapter, self.direction, cfg, gate, gate_index=gate_index,
                     gate_position=self.gate_position if gate is not None else "last", gate_from=gate_from)

    def _joint_as_layers(self) -> torch.Tensor:
        """The joint gate laid out like `gate` ((L, [K,] d), zero outside its layers): what `steer`
        reads. Built once per eraser, not at every `apply`."""
        if getattr(self, "_joint_full", None) is None:
            full = torch.zeros_like(self.gate)
            full[self.config.joint_gate] = self.joint
            self._joint_full = full
        return self._joint_full

    def read_gate(self, h: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """(N,) the gate that decides the steering, from activations h (N, n, d) at `layers`: the
        joint gate when `layers` are its layers, else the mean over them of each layer's own gate.
        Differentiable in h (the adaptive attack's target)."""
        layers = list(layers)
        if not layers:
            raise ValueError("no gate is read: the eraser steers no layer at this strength and layer choice")
        if self.config.joint_gate and layers == list(self.config.joint_gate):
            return joint_gate_scores(h, self.joint.to(h))
        u = self.gate[layers].to(h)
        return torch.stack([gate_scores(h[:, i], u[i]) for i in range(len(layers))], -1).mean(-1)

    def decision_gates(self, adapter: VLMAdapter, prompts: Sequence[Prompt], batch_size: int | None = None
                       ) -> torch.Tensor:
        """(N,) unsteered values of the gate that decides the steering (`read_gate` at `gate_layers`)."""
        layers = self.gate_layers
        acts = collect(adapter, prompts, layers, batch_size=batch_size, position=self.gate_position).double()
        return self.read_gate(acts, layers)

    def strength_for(self, task: str | None) -> float:
        """The stored strength for an MLLMU task; the default strength for anything else."""
        return float(self.config.task_strengths.get(task, self.config.strength))

    def task_steering(self, adapter: VLMAdapter, layers: Iterable[int] | None = None, mode: str | None = None,
                      strength: float | None = None, task_strengths: Mapping[str, float] | None = None
                      ) -> Callable[[], SteeringHandle] | dict[str, Callable[[], SteeringHandle]]:
        """What `evaluate(steering=)` takes: with per-task strengths, one steering factory per task
        (the MLLMU tasks and the private-data refusal prompts); without, one factory for all, so
        queries are batched exactly as before per-task strengths existed.
        `strength` / `task_strengths` replace the stored default / per-task values."""
        base = self.config.strength if strength is None else strength
        per = self.config.task_strengths if task_strengths is None else task_strengths
        if not per:
            return partial(self.apply, adapter, base, layers, mode)
        return {t: partial(self.apply, adapter, float(per.get(t, base)), layers, mode) for t in (*TASKS, "refusal")}

    def gate_values(self, adapter: VLMAdapter, prompts: Sequence[Prompt], batch_size: int | None = None
                    ) -> torch.Tensor:
        """(N, L) unsteered gate values c_l(h) = h_l . u_l (h at the eraser's gate position)."""
        acts = collect(adapter, prompts, batch_size=batch_size, position=self.gate_position).double()
        return torch.stack([gate_scores(acts[:, l], self.gate[l]) for l in range(self.num_layers)], 1)

    # ------------------------------------------------------------------ artefacts
    def save_pretrained(self, directory: str | Path, diagnostics: bool = True, state: bool = False) -> Path:
        """safetensors (direction, gate, diagnostics) + eraser_config.json. Never pickle.

        Stored in float32: steering casts the direction to the model's dtype and reads the gate in
        float32, so a float32 copy steers exactly as the float64 fit does, at half the size (at
        32 x 4096 the direction and one gate are 1 MB; the public code's d x d matrices in fp16 are
        1.07 GB). `diagnostics=False` leaves out the inspector's per-layer spectra and fitting-row
        gates (the Null space view then asks for a refit). `state=True` also writes the gate's
        fitting activations (eraser_state.safetensors: N x layers x width floats, tens of MB for
        the toy model, GBs at 7B width), which later forget requests need (core.requests)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"direction": self.direction, "gate": self.gate}
        if self.config.joint_gate:
            tensors["joint_gate"] = self.joint
        if diagnostics:
            tensors.update({f"diagnostics.{k}": v for k, v in self.diagnostics.items()})
        tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
        # Every file is written under a temporary name first and the set is swapped in at the end:
        # saved over an earlier eraser, an interrupted save (the fit state is GBs at 7B width) used
        # to leave new weights beside the old config.
        staged = {WEIGHTS_NAME: out / f".{WEIGHTS_NAME}.writing", CONFIG_NAME: out / f".{CONFIG_NAME}.writing"}
        try:
            save_file(tensors, str(staged[WEIGHTS_NAME]), metadata={"format": "pt", "site": self.config.site})
            staged[CONFIG_NAME].write_text(json.dumps(asdict(self.config), indent=2))
            if state and self.state is not None:
                st = self.state
                tensors = {"H_forget": st.H_forget, "H_retain": st.H_retain}
                meta = {"forget_tags": json.dumps(st.forget_tags), "retain_tags": json.dumps(st.retain_tags)}
                if st.has_contrast:
                    tensors.update(H_recall=st.H_recall, H_erase=st.H_erase)
                    meta.update(recall_tags=json.dumps(st.recall_tags), erase_tags=json.dumps(st.erase_tags))
                staged[STATE_NAME] = out / f".{STATE_NAME}.writing"
                save_file({k: v.float().contiguous() for k, v in tensors.items()}, str(staged[STATE_NAME]),
                          metadata=meta)
        except BaseException:
            for path in staged.values():
                path.unlink(missing_ok=True)
            raise
        if STATE_NAME not in staged:
            (out / STATE_NAME).unlink(missing_ok=True)  # a state left from an earlier save would not match these gates
        for name in (STATE_NAME, WEIGHTS_NAME, CONFIG_NAME):  # the config last: it names what the files hold
            if name in staged:
                os.replace(staged[name], out / name)
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, adapter: VLMAdapter | None = None,
                        strict: bool = True) -> "Eraser":
        """Load an eraser; with `adapter`, refuse it if it was fitted on another model."""
        folder = Path(directory)
        cfg_file, w_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not cfg_file.is_file() or not w_file.is_file():
            raise FileNotFoundError(f"{folder} is not an eraser folder: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
                                    "(written by Eraser.save_pretrained or `python -m core fit --out DIR`).")
        try:
            raw = json.loads(cfg_file.read_text())
            known = set(EraserConfig.__dataclass_fields__)
            missing = [k for k in REQUIRED_FIELDS if k not in raw]
            if missing:  # defaults would fill them: an empty JSON loaded as a default eraser that steered
                raise ValueError(f"its config lacks {', '.join(missing)}")
            config = EraserConfig(**{k: v for k, v in raw.items() if k in known})
            tensors = load_file(str(w_file))
        except Exception as exc:
            raise ValueError(f"{folder} holds a damaged eraser ({type(exc).__name__}: {exc})") from exc
        # the fit's float64 in memory (stored float32, or float64 by older versions)
        tensors = {k: v.double() if v.is_floating_point() else v for k, v in tensors.items()}
        diagnostics = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("diagnostics.")}
        for name in ("direction", "gate") + (("joint_gate",) if config.joint_gate else ()):
            t = tensors.get(name)
            if t is None or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise ValueError(f"{folder} holds an invalid eraser: its {name} tensor is missing, not floating "
                                 "point, or holds NaN / inf values")
        _check_tensors(folder, config, tensors)
        check_layers(config, tensors["direction"].shape[0])
        try:
            eraser = cls(tensors["direction"], tensors["gate"], config, diagnostics, _load_state(folder),
                         tensors.get("joint_gate") if config.joint_gate else None)
        except ValueError as exc:
            raise ValueError(f"{folder} holds an invalid eraser: {exc}") from exc
        st = eraser.state
        if st is not None and (st.H_forget.shape[1:] != (eraser.num_layers, eraser.hidden_size)
                               or sorted(set(st.forget_tags)) != sorted(config.subjects)):
            raise ValueError(f"{folder} holds an invalid eraser: its fit state does not match its gates")
        if config.subject_gates and (eraser.gate.ndim != 3 or eraser.gate.shape[1] != len(config.subjects)):
            raise ValueError(f"{folder} holds an invalid eraser: {len(config.subjects)} subjects for a gate of shape "
                             f"{tuple(eraser.gate.shape)}")
        if adapter is not None:
            if strict and not config.model.get("fingerprint"):  # the check below would pass on any model of its shape
                raise ModelMismatchError(f"{folder} names no weights fingerprint, so it cannot be checked against "
                                         f"{adapter.name_or_path}: fit the eraser again, or pass strict=False "
                                         "(Eraser.from_pretrained, in Python) if you know it was fitted on these weights")
            eraser.check_model(adapter, strict=strict)
        return eraser


def _check_tensors(folder: Path, config: EraserConfig, tensors: dict[str, torch.Tensor]) -> None:
    """The tensors agree with the config that describes them, and every diagnostic is finite. Why:
    a config naming another model's shape, no joint gate beside a joint-gate tensor (dropped, each
    layer then read its own gate) or a per-subject gate with subject_gates false all loaded and
    steered; a 0-d direction or a gate of no subject ended in an IndexError."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{folder} holds an invalid eraser: {why}")
    d, g = tensors["direction"], tensors["gate"]
    if d.ndim != 2 or 0 in d.shape:
        raise bad(f"its direction has shape {tuple(d.shape)}, not (layers, width)")
    if g.ndim not in (2, 3) or 0 in g.shape:
        raise bad(f"its gate has shape {tuple(g.shape)}, not (layers, width) or (layers, subjects, width)")
    m = config.model
    for key, have in (("num_layers", d.shape[0]), ("hidden_size", d.shape[1])):
        if m.get(key) is not None and m.get(key) != have:
            raise bad(f"its config says {key} {m.get(key)}, its tensors hold {have}")
    if "joint_gate" in tensors and not config.joint_gate:
        raise bad("it holds a joint gate its config does not name (joint_gate is null)")
    if g.ndim == 3 and not config.subject_gates:
        raise bad("its gate has one part per subject while subject_gates is false")
    broken = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise bad(f"{', '.join(broken)} hold NaN or inf values")


def _load_state(folder: Path) -> FitState | None:
    """The fit state saved next to an eraser, validated (None when there is none)."""
    f = folder / STATE_NAME
    if not f.is_file():
        return None
    from safetensors import safe_open
    try:
        with safe_open(str(f), "pt") as z:
            meta = z.metadata() or {}
            names = ("H_forget", "H_retain") + (("H_recall", "H_erase") if "recall_tags" in meta else ())
            tensors = {k: z.get_tensor(k) for k in names}
        state = FitState(tensors["H_forget"], json.loads(meta["forget_tags"]), tensors["H_retain"],
                         json.loads(meta["retain_tags"]), tensors.get("H_recall"), json.loads(meta.get("recall_tags", "[]")),
                         tensors.get("H_erase"), json.loads(meta.get("erase_tags", "[]")))
    except Exception as exc:
        raise ValueError(f"{folder} holds a damaged eraser state ({type(exc).__name__}: {exc})") from exc
    tags = state.forget_tags + state.retain_tags + state.recall_tags + state.erase_tags
    if not all(isinstance(t, str) for t in tags) or not all(
            bool(torch.isfinite(t).all()) for t in (state.H_forget, state.H_retain, state.H_recall, state.H_erase)
            if t is not None):
        raise ValueError(f"{folder} holds an invalid eraser state (tags must be strings, activations finite)")
    return state
