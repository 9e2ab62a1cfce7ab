"""Command line: `python -m core COMMAND --help` for every command."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

from core.files import write_atomic

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_models(args: argparse.Namespace) -> int:
    """List supported families and the models found locally."""
    from core.models.registry import find_local_models, supported_families
    families = supported_families()
    found = find_local_models(extra=args.path)
    if args.json:
        print(json.dumps({"families": families, "local": found}, indent=2))
        return 0
    print("Supported families (model_type -> class, example hub id):")
    for f in families:
        print(f"  {f['model_type']:<11} {f['class']:<37} {f['example']}")
    print("\nFound locally:" if found else "\nNo supported model found locally "
          "(looked in assets/, the Hugging Face cache and any --path).")
    for m in found:
        toy = "  (toy world: fits and evaluates without --data)" if m.get("toy_world") else ""
        print(f"  {m['family']:<11} {m['source']:<8} {m['path']}{toy}")
    return 0


def _given(**options) -> dict:
    """The options the user set: the rest keep their dataclass defaults, stated in one place."""
    return {k: v for k, v in options.items() if v is not None}


def cmd_train_toy(args: argparse.Namespace) -> int:
    """Train the embedded tiny LLaVA on a generated world (and optionally its retain-only twin)."""
    from dataclasses import replace

    import torch
    from tqdm import tqdm
    from core.toyworld.train import ToyModelConfig, check_batches, train_toy
    from core.toyworld.world import WorldConfig
    torch.set_num_threads(args.threads)
    world = WorldConfig(seed=args.seed, n_people=args.people,
                        **_given(option_drills=args.option_drills, option_lookups=args.option_lookups,
                               private_requests=args.private_requests, mcq_per_question=args.mcq_per_question))
    cfg = ToyModelConfig(seed=args.seed, steps=args.steps, identity_steps=args.identity_steps,
                         **_given(lr=args.lr, text_heads=args.text_heads, focus_steps=args.focus_steps,
                                  focus_name_mcqs=args.focus_name_mcqs, focus_other_mcqs=args.focus_other_mcqs,
                                  focus_name_drills=args.focus_name_drills))
    text_init = args.text_init or (None if args.init_from else DEFAULT_TEXT_MODEL)
    text_init = None if text_init == "none" else text_init
    runs = [(args.out, args.forget if args.retain_only else None)]
    if args.retain_only_out:
        runs.append((args.retain_only_out, args.forget))
    for _, exclude in runs[1:]:  # found before the first model trains (train_toy checks its own run)
        check_batches(world, replace(cfg, identity_steps=0) if args.init_from else cfg, exclude)
    for out, exclude in runs:
        label = "retain-only" if exclude else "vanilla"
        with tqdm(total=cfg.steps + cfg.focus_steps, desc=f"train {label}", unit="step") as bar:
            def progress(step, total, loss):
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}")
            path = train_toy(out, world, cfg, exclude_forget=exclude, progress=progress, init_from=args.init_from,
                             text_init=text_init)
        print(f"saved {label} model to {path}")
    return 0


def cmd_pretrain_text(args: argparse.Namespace) -> int:
    """Pretrain the toy model's text model on option drills and refusals (train-toy --text-init reads it)."""
    import torch
    from tqdm import tqdm
    from core.toyworld.pretrain import TextPretrainConfig, pretrain_text
    from core.toyworld.vocab import build_tokenizer, world_vocabulary
    from core.toyworld.world import WorldConfig, make_world
    torch.set_num_threads(args.threads)
    cfg = TextPretrainConfig(seed=args.seed, **_given(steps=args.steps, lr=args.lr, heads=args.heads,
                                                      refusals=args.refusals, name_drills=args.name_drills))
    tok = build_tokenizer(world_vocabulary(make_world(WorldConfig(seed=args.seed, n_people=args.people))))
    shown = {"drills": "not measured (under 250 steps)"}
    with tqdm(total=cfg.steps, desc="pretrain text", unit="step") as bar:
        def progress(step, total, loss, accuracy):
            if accuracy is not None:
                shown["drills"] = f"{accuracy:.1%}"
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}", held_out_drills=shown["drills"])
        pretrain_text(args.out, tok, cfg, progress)
    curve = json.loads((Path(args.out) / "pretraining.json").read_text())["held_out_drills"]
    more = f", lookups {curve[-1]['lookup_accuracy']:.1%}, names {curve[-1]['name_drill_accuracy']:.1%}" if curve else ""
    print(f"saved the text model to {args.out} (held-out drill accuracy {shown['drills']}{more})")
    return 0


DEFAULT_MODEL = str(Path(__file__).resolve().parents[1] / "assets" / "toy-llava")
DEFAULT_ERASER = str(Path(DEFAULT_MODEL).parent / "toy-llava-eraser")
DEFAULT_TEXT_MODEL = str(Path(DEFAULT_MODEL).parent / "toy-text")


def _has_world(model: str) -> bool:
    from core.models.load import resolve
    try:
        return (resolve(model) / "world.json").is_file()
    except Exception:  # not a folder here: no toy world either
        return False


def _load_data(args, adapter=None, limit: int | None = None):
    """The forget set of a command: --data / --forget-dir files for any model, else the toy world
    of a model folder that carries one. --forget picks subjects (a toy-world split, or ids)."""
    from core.data.source import load_data
    spec = getattr(args, "forget", None)
    keep = getattr(args, "retain_dir", None)
    if args.data or getattr(args, "forget_dir", None):
        data = load_data(args.data, getattr(args, "forget_dir", None), keep)
        if spec:
            if spec.startswith("forget_"):
                raise ValueError(f"--forget {spec} names a toy-world split; with --data / --forget-dir pass subject "
                                 f"ids (e.g. --forget {','.join(data.forget_ids[:2])}) or leave it out")
            data = data.pick([s.strip() for s in spec.split(",") if s.strip()])
        if adapter is not None:
            data.for_tokenizer(adapter.tokenizer)
        return data
    if keep:
        raise ValueError("--retain-dir adds people to keep to a forget set you bring: pass it with --forget-dir "
                         "FOLDER or --data forget=PATH")
    model = getattr(args, "model", None)
    model = model[0] if isinstance(model, list) else model
    if not _has_world(model):
        raise ValueError(f"{model} carries no toy world (world.json): pass your forget set with --data forget=PATH "
                         "[--data retain=PATH --data real=PATH] (MLLMU-Bench parquet, or a folder of them) or "
                         "--forget-dir FOLDER (photos, one sub-folder per subject)")
    from core.toyworld.fitsets import forget_spec, toy_data
    from core.toyworld.train import load_world
    from core.models.load import resolve
    return toy_data(load_world(resolve(model)), forget_spec(spec or "forget_10"), limit)


def _eval_data(args, adapter, config=None):
    """Splits to evaluate and private-data request sets (when there is a forget set to ask about);
    with an eraser's `config`, its own forget set unless one is given (as attack and sweep do: an
    eraser of forget_5 was scored on forget_10)."""
    from core.contrast import refusal_sets
    from core.data.source import parse_specs
    specs = parse_specs(args.data)
    if specs and "forget" not in specs and not args.forget_dir:  # splits to score, no forget set to ask about
        if args.forget or getattr(args, "retain_dir", None):  # they pick and add subjects of a forget set
            raise ValueError("--forget / --retain-dir work on a forget set: add --data forget=PATH or --forget-dir "
                             "FOLDER, or leave them out to score the splits given")
        from core.data.mllmu import load_parquet
        from core.data.source import MLLMU_FILES
        return {k: load_parquet(v, MLLMU_FILES.get(k))[: args.limit] for k, v in specs.items()}, {}
    data = _load_data(args, adapter, args.limit) if config is None else eraser_data(args, adapter, config, args.limit)
    return data.splits(args.limit), refusal_sets(data, args.limit)


def data_options(p: argparse.ArgumentParser, toy_help: str = "") -> None:
    """Where the forget set comes from (every command that fits, evaluates or attacks)."""
    p.add_argument("--forget", default=None,
                   help="toy world: a forget split (forget_5 / forget_10 / forget_15, default forget_10); any "
                        "source: comma-separated subject ids to forget (the others are retained)" + toy_help)
    p.add_argument("--data", action="append", default=[], metavar="SPLIT=PATH",
                   help="MLLMU-Bench parquet file of a split (forget, retain, test, real; repeatable), or a folder "
                        "holding the files `world --export` writes")
    p.add_argument("--forget-dir", default=None, metavar="FOLDER",
                   help="a photo folder to forget: one sub-folder per subject with 1-10 photos and an optional "
                        "facts.json (see core/data/folder.py); add retained subjects with --data retain=PATH or "
                        "--retain-dir")
    p.add_argument("--retain-dir", default=None, metavar="FOLDER",
                   help="a photo folder of people to keep, laid out as --forget-dir (a name and 1-10 photos each): "
                        "without any retained people the gate learns 'a person' rather than who, and other "
                        "people's questions are refused too (docs/open-world.md)")


class _StageBars:
    """One tqdm bar per named stage (activation sets, splits): progress(stage, done, total)."""

    def __init__(self, prefix: str):
        self.prefix, self.bars = prefix, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm
        bar = self.bars.get(stage) or self.bars.setdefault(stage, tqdm(total=total, desc=f"{self.prefix} {stage}"))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def _parse_layers(text: str | None) -> list[int] | None:
    if text in (None, "", "all"):
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--layers expects comma-separated layer numbers such as 4,5 (or 'all'), got {text!r}")


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def count(text: str) -> int:
    """An argparse type for a number of things (threads, people, rows, tokens): at least 1. Why:
    `--limit -1` sliced away the last row of every split and `--limit 0` scored nothing, each
    written out as if it were a result."""
    return _whole(text, 1)


def count0(text: str) -> int:
    """As `count`, with 0 allowed (rounds, rows withdrawn, facts in a prefix: none is a choice)."""
    return _whole(text, 0)


def threads(text: str) -> int:
    """torch CPU threads: 1 to 4 x the cores (100000 crashed with a segmentation fault)."""
    top = 4 * (os.cpu_count() or 1)
    value = _whole(text, 1)
    if value > top:
        raise argparse.ArgumentTypeError(f"at most {top} (4 x this machine's {os.cpu_count()} cores), got {value}")
    return value


def rate(text: str) -> float:
    """A learning rate: a finite number in (0, 1] (inf trained a model of NaN weights and saved it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"a learning rate in (0, 1], got {text}")
    return value


def _check_eps(eps: float) -> None:
    if not 0 < eps <= 255:
        raise ValueError(f"--eps is a PGD budget in 1/255 pixel steps, in (0, 255]; got {eps:g}")


def _numbers(text: str, kind, flag: str) -> list:
    """Comma-separated numbers of a flag, with an error naming the flag."""
    try:
        out = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise ValueError(f"{flag} expects comma-separated numbers such as 8,16,32, got {text!r}")
    return out


def _parse_task_strengths(specs: list[str]) -> dict[str, float]:
    from core.evaluation import TASKS
    out = {}
    for spec in specs:
        task, _, value = spec.partition("=")
        try:
            if task not in TASKS:
                raise ValueError
            out[task] = float(value)
            if not math.isfinite(out[task]):  # found only after part of an evaluation had run
                raise ValueError
        except ValueError:
            raise ValueError(f"--task-strength expects TASK=STRENGTH with TASK one of {', '.join(TASKS)} "
                             f"(e.g. classification=1.0), got {spec!r}")
    return out


def _parse_modes(text: str, config) -> list[str]:
    from core.eraser import gate_position_of
    from core.steering import MODES
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise ValueError(f"--tune-modes expects steering modes from {', '.join(MODES)}, comma-separated; got {text!r}")
    if gate_position_of(config) == "mean" and "every_step" in modes:
        raise ValueError("a prompt-mean gate is read once per prompt: --tune-modes cannot include every_step")
    if (config.joint_gate or config.gate_layer is not None) and "every_step" in modes:
        raise ValueError("a gate read at --gate-layer / --joint-gate is latched at the prompt: --tune-modes cannot "
                         "include every_step (use prefill,latched)")
    return modes


def _tune_tasks(args, data, adapter, eraser, best, strengths) -> dict:
    """Per-task strengths for the tuned layers and mode, on a larger held-out draw (each task gets
    about a third of it); stored where they differ from the tuned default (they replace a
    --task-strength; a task the tuner cannot settle keeps it)."""
    from tqdm import tqdm
    from core.contrast import heldout_sets, retain_groups
    from core.tuner import tune_tasks
    forget, retain = heldout_sets(data, args.seed, per_person=12, n_retain=288, draw=2)
    with tqdm(desc="tuning strength per task") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        per_task = tune_tasks(adapter, eraser, forget, retain, best.layers, best.mode, strengths,
                              min_retain=args.min_retain, min_fluency=args.min_fluency, progress=progress,
                              retain_groups=retain_groups(data, retain))
    for task, r in per_task.items():
        if r.best is None:
            print(f"tuner: {task}: no strength kept retain answers; keeping {eraser.strength_for(task)}")
        else:
            print(f"tuner: {task}: strength {r.best.strength} -> forget answers gone {r.best.forget:.2f}, "
                  f"retain unchanged {r.best.retain:.2f}")
            eraser.config.task_strengths[task] = r.best.strength
            if r.best.strength == best.strength:
                del eraser.config.task_strengths[task]
    return per_task


def _preset_config(args, num_layers: int):
    """The EraserConfig of a fit: the preset's values, then every flag the user set."""
    from dataclasses import asdict
    from core.eraser import GATE_POSITIONS, PRESETS, EraserConfig
    # refuses an unknown preset; the paper's steered layers 1..L-1 only when every layer is fitted
    pre = asdict(EraserConfig.from_preset(args.preset, num_layers if args.layers is None else None))
    tune = PRESETS[args.preset]["tune"]
    given = _given(ratio=args.ratio, gamma=args.gamma, retain_weight=args.retain_weight,
                   subject_gates=args.subject_gates, gate_retain=args.gate_retain, mode=args.mode,
                   strength=args.strength, gate_layer=args.gate_layer, joint_gate=_joint(args),
                   gate_floor=args.gate_floor, gate_full=args.gate_full, gate_ramp=args.gate_ramp or None,
                   floor_folds=args.floor_folds or None,
                   position=None if args.gate_position is None else
                   {v: k for k, v in GATE_POSITIONS.items()}[args.gate_position])
    values = {**pre, **given}
    if args.threshold is not None:
        if args.ratio is not None:  # the ratio was dropped without a word
            raise ValueError("--ratio and --threshold are two ways to size the null space: give one")
        values["ratio"] = None
    steer = _parse_layers(args.steer_layers)
    values.update(threshold=args.threshold, layers=_parse_layers(args.layers),
                  task_strengths=_parse_task_strengths(args.task_strength), seed=args.seed,
                  direction_kind=args.direction, gate_variants=args.gate_variants, pgd_eps=args.eps,
                  **({} if steer is None else {"steer_layers": steer}))
    cfg = EraserConfig(**values)
    return cfg, (tune if args.tune is None else args.tune)


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit an eraser (direction + null-space gate) for a model and a forget set, and save it."""
    import torch
    from tqdm import tqdm
    from core.contrast import direction_pgd, fit_sets
    from core.eraser import Eraser, check_layers
    torch.set_num_threads(args.threads)
    if args.gate_retain is not None and args.gate_retain < 1:
        raise ValueError(f"--gate-retain must be at least 1, got {args.gate_retain}")
    from core.eraser import MAX_ADVERSARIAL_ROUNDS
    for flag, v in (("--min-retain", args.min_retain), ("--min-fluency", args.min_fluency)):
        if not 0 <= v <= 1:  # above 1 no setting passes: tuning was silently off
            raise ValueError(f"{flag} is a share of answers, in [0, 1]; got {v:g}")
    if args.adversarial_rounds > MAX_ADVERSARIAL_ROUNDS:  # the eraser saved would be refused on load
        raise ValueError(f"--adversarial-rounds is at most {MAX_ADVERSARIAL_ROUNDS}, got {args.adversarial_rounds}")
    _check_eps(args.eps)
    adapter = load_model(args)
    cfg, do_tune = _preset_config(args, adapter.num_layers)
    if args.tune_tasks and not do_tune:
        raise ValueError("--tune-tasks tunes a strength per task for the layers and mode --tune picks: add --tune")
    if args.tune_strengths is not None:  # read before the fit (it failed after minutes of activations, unnamed)
        args.tune_strengths = _numbers(args.tune_strengths, float, "--tune-strengths")
        if not all(math.isfinite(x) and 0 <= x <= 1e6 for x in args.tune_strengths):
            raise ValueError(f"--tune-strengths are steering strengths of 0 or more, got {args.tune_strengths}")
    modes = _parse_modes(args.tune_modes or cfg.mode, cfg) if do_tune else []  # fail fast
    check_layers(cfg, adapter.num_layers)
    if args.gate_ramp and (args.gate_floor is not None or args.gate_full is not None):
        raise ValueError("--gate-ramp reads the floor and full value off the fit's rows: give it or --gate-floor / "
                         "--gate-full, not both")
    if args.gate_ramp and not cfg.subject_gates:
        raise ValueError("--gate-ramp reads the fit's rows, which a fit keeps with one gate per subject: use it with "
                         "--subject-gates (the workbench preset)")
    if args.adversarial_open and not args.adversarial_rounds:
        raise ValueError("--adversarial-open adds rows to the rounds of --adversarial-rounds: give both")
    if (args.adversarial_keep != "last" or args.adversarial_per_person != 8) and not args.adversarial_rounds:
        raise ValueError("--adversarial-keep / --adversarial-per-person set the rounds of --adversarial-rounds: give both")
    if args.adversarial_per_person > 1000:
        raise ValueError(f"--adversarial-per-person is at most 1000, got {args.adversarial_per_person}")
    if args.adversarial_rounds and not cfg.subject_gates:  # was found after the whole fit
        raise ValueError("--adversarial-rounds adds attacked images as rows of each forget person's gate: "
                         "use it with --subject-gates (the workbench preset)")
    data = _load_data(args, adapter)
    cfg.forget_split = (args.forget or "forget_10") if data.builder is not None else ",".join(data.forget_ids)
    if data.builder is not None:
        cfg.data_source = data.name
    else:
        from core.data.source import parse_specs
        cfg.data_source = " ".join([f"{k}={v}" for k, v in parse_specs(args.data).items()]
                                   + ([f"forget-dir={args.forget_dir}"] if args.forget_dir else [])
                                   + ([f"retain-dir={args.retain_dir}"] if args.retain_dir else []))
    if not data.retain:
        print("warning: no retained subjects: the gate only learns to stay quiet on scene pictures and general "
              "questions, not on other people or their private-data requests (it then refuses many of them); add "
              "--retain-dir FOLDER (photos and a name of a few other people) or --data retain=PATH for a selective "
              "eraser", file=sys.stderr)
    print(f"fitting on {data.name}: {len(data.forget)} subjects to forget, {len(data.retain)} retained, "
          f"{len(data.real)} general rows; preset {args.preset}{' + tuning' if do_tune else ''}")
    sets = fit_sets(data, adapter, args.direction, seed=args.seed, variants=args.gate_variants,
                    n_retain=cfg.gate_retain, pgd_cfg=direction_pgd(args.eps))
    sets.fold_for(cfg)
    eraser = Eraser.fit(adapter, sets.forget, sets.retain, sets.recall, sets.erase, cfg,
                        progress=_StageBars("activations"))
    eraser.config.model["name_or_path"] = args.model
    if args.adversarial_rounds:
        from core.hardening import harden, hardening_retain_rows, hardening_rows
        from core.pgd import PGDConfig
        rows = hardening_rows(sets.forget, args.adversarial_per_person)
        opening = hardening_retain_rows(sets.retain, args.adversarial_open, seed=args.seed)
        eraser = harden(eraser, adapter, rows, args.adversarial_rounds,
                        PGDConfig(eps=args.eps / 255, step_size=2 / 255, steps=40, seed=args.seed), log=print,
                        retain_prompts=opening, keep=args.adversarial_keep)
        eraser.config.adversarial_rounds = args.adversarial_rounds
        eraser.config.adversarial_keep = args.adversarial_keep
        eraser.config.adversarial_per_person = args.adversarial_per_person
        eraser.config.adversarial_open = len(opening)
    if args.gate_ramp:  # Eraser.fit and every hardening round read it off the rows (EraserConfig.gate_ramp)
        eraser.ramp_from_rows()  # rows that do not separate: a clear error, nothing written

    if do_tune:
        from core.tuner import STRENGTHS, fitted_candidates, tune_fit
        strengths = STRENGTHS if args.tune_strengths is None else args.tune_strengths
        tuned_tasks = {}
        total = len(modes) * len(fitted_candidates(eraser, adapter.num_layers)) * len(strengths)
        with tqdm(total=total, desc="tuning mode x layers x strength") as bar:
            res = tune_fit(adapter, eraser, data, args.seed, strengths, modes, args.min_retain, args.min_fluency,
                           progress=lambda d, t: bar.update(d - bar.n))
        if res.best is None:
            print(f"tuner: no setting kept retain answers >= {args.min_retain} with fluency >= {args.min_fluency}; "
                  "keeping --strength/--layers/--mode")
        else:
            print(f"tuner: mode {res.best.mode}, layers {res.best.layers}, strength {res.best.strength} -> "
                  f"forget answers gone {res.best.forget:.2f} ("
                  + (f"worst task group; {res.best.forget_pooled:.2f} of all, " if res.best.forget_groups else "")
                  + f"refusals {res.best.refusals:.2f}), "
                  f"retain unchanged {res.best.retain:.2f} (worst group), fluency {res.best.fluency:.2f}")
            if args.tune_tasks:
                per_task = _tune_tasks(args, data, adapter, eraser, res.best, strengths)
                tuned_tasks = {t: r.to_json() for t, r in per_task.items()}
    if args.gate_ramp:  # after tuning: its layers' gate is the one the ramp was read for
        under = (f"95% of {len(eraser.config.floor_subjects)} retained subjects' rows under it, each read by a gate "
                 f"fitted without its fold of {eraser.config.floor_folds}" if eraser.config.floor_folds
                 else "95% of the retain rows' gates under it")
        print(f"gate ramp from the fit's rows: floor {eraser.config.gate_floor} ({under}), full steering from "
              f"{eraser.config.gate_full} (95% of the forget rows' gates above it)")
    out = eraser.save_pretrained(args.out, state=eraser.state is not None and not args.no_state)
    if do_tune:
        write_atomic(out / "tuning.json", json.dumps({**res.to_json(), "tasks": tuned_tasks}, indent=2))
    else:  # fitted over an earlier eraser: its tuner's record would describe another fit
        (out / "tuning.json").unlink(missing_ok=True)
    d = eraser.diagnostics
    print("layer  k    leakage  forget-energy  gate(forget)  gate(retain)")
    for l in eraser.fitted_layers:
        print(f"{l:>5}  {int(d['k'][l]):<4} {float(d['leakage'][l]):.4f}   {float(d['forget_energy'][l]):.4f}"
              f"         {float(d['forget_gates'][l].mean()):+.3f}        {float(d['retain_gates'][l].mean()):+.3f}")
    print(f"saved eraser to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """MLLMU-style evaluation of a model (optionally steered by an eraser)."""
    import torch
    from core.evaluation import EvalConfig, evaluate, format_table
    torch.set_num_threads(args.threads)
    steer_flags = [f"--{k.replace('_', '-')}" for k in ("strength", "layers", "mode", "gate_layer", "gate_floor",
                                                        "gate_full", "task_strength") if getattr(args, k, None)
                   not in (None, [], "")]
    if steer_flags and not args.eraser:  # they were accepted and ignored: the model was scored unsteered
        raise ValueError(f"{', '.join(steer_flags)} set how an eraser steers: pass --eraser ERASER too, or leave "
                         "them out to score the model as it is")
    adapter = load_model(args)
    steering, info, eraser = None, None, None
    if args.eraser:
        from core.eraser import Eraser
        eraser = _eraser_options(Eraser.from_pretrained(args.eraser, adapter=adapter), args, adapter.num_layers)
    splits, refusals = _eval_data(args, adapter, None if eraser is None else eraser.config)
    if eraser is not None:
        strength = eraser.config.strength if args.strength is None else args.strength
        layers = _parse_layers(args.layers) or eraser.config.steer_layers or eraser.config.layers
        mode = args.mode or eraser.config.mode
        # --strength replaces the stored per-task strengths too; --task-strength sets some on top
        per_task = {**(eraser.config.task_strengths if args.strength is None else {}),
                    **_parse_task_strengths(args.task_strength)}
        steering = eraser.task_steering(adapter, layers, mode, strength, per_task)
        info = {"path": args.eraser, "strength": strength, "task_strengths": per_task, "layers": layers, "mode": mode,
                "direction": eraser.config.direction_kind, "ratio": eraser.config.ratio,
                "gamma": eraser.config.gamma, "retain_weight": eraser.config.retain_weight,
                "subject_gates": eraser.config.subject_gates, "gate_position": eraser.config.position,
                "gate_layer": eraser.config.gate_layer, "joint_gate": eraser.config.joint_gate,
                "gate_floor": eraser.config.gate_floor, "gate_full": eraser.config.gate_full}
    result = evaluate(adapter, splits, refusals, EvalConfig(max_new_tokens=args.max_new_tokens,
                                                            batch_size=args.batch_size),
                      steering=steering, eraser_info=info, progress=_StageBars("eval"))
    print(format_table(result))
    if args.json:
        write_atomic(args.json, json.dumps(result.to_json(), indent=2))
        print(f"wrote {args.json}")
    return 0


def _joint(args: argparse.Namespace) -> list[int] | None:
    """--joint-gate: the layers of one gate fitted over them together (at least two)."""
    text = getattr(args, "joint_gate", None)
    return None if text is None else _numbers(text, int, "--joint-gate")


def ramp_options(p: argparse.ArgumentParser) -> None:
    """--gate-floor / --gate-full (the gate ramp, core.steering.SteeringConfig.coefficient)."""
    p.add_argument("--gate-floor", type=float, default=None, metavar="F",
                   help="the gate steers by (g - F)+ / (T - F): inputs whose gate stays under F are left exactly as "
                        "they are (default: the eraser's, 0 when fitted without it)")
    p.add_argument("--gate-full", type=float, default=None, metavar="T",
                   help="the gate value that steers fully, capped there when under 1 (default: the eraser's, 1)")


def _eraser_options(eraser, args: argparse.Namespace, num_layers: int):
    """Apply --gate-layer (read the gate at that layer, before the steered ones) and --gate-floor to
    a loaded eraser."""
    from dataclasses import replace

    from core.eraser import check_layers
    ramp = {k: getattr(args, k, None) for k in ("gate_floor", "gate_full")}
    if any(v is not None for v in ramp.values()):  # validated again (__post_init__)
        eraser.config = replace(eraser.config, **{k: v for k, v in ramp.items() if v is not None})
    if getattr(args, "gate_layer", None) is None:
        return eraser
    # a joint gate's eraser then reads that layer's own gate instead
    cfg = replace(eraser.config, gate_layer=args.gate_layer, joint_gate=None)
    check_layers(cfg, num_layers)
    eraser.config = cfg
    return eraser


def _where(args: argparse.Namespace) -> str:
    """The options of a report command that say what it ran on and differ from the defaults (model,
    eraser, data, subjects, seed), for its "Produced by" line: the line must reproduce the run."""
    out = "".join(f" --{k} {v}" for k, v, default in (("model", args.model, DEFAULT_MODEL),
                                                     ("eraser", args.eraser, DEFAULT_ERASER)) if v != default)
    out += "".join(f" --data {d}" for d in getattr(args, "data", None) or [])
    for flag in ("forget_dir", "retain_dir", "forget"):
        if getattr(args, flag, None):
            out += f" --{flag.replace('_', '-')} {getattr(args, flag)}"
    if getattr(args, "seed", 0):
        out += f" --seed {args.seed}"
    if getattr(args, "prefix_facts", 4) != 4:
        out += f" --prefix-facts {args.prefix_facts}"
    return out


def eraser_data(args, adapter, config, limit: int | None = None):
    """The forget set of a report on an eraser: --data / --forget-dir, else the toy world with the
    eraser's own forget split. From files without --forget: the eraser's own subjects when the
    files hold them all (an eraser of some of a file's subjects is attacked and scored on those,
    not on the file's first rows)."""
    if not (args.data or args.forget_dir or args.forget) and config.forget_split and _has_world(args.model):
        args = argparse.Namespace(**{**vars(args), "forget": config.forget_split})  # not the caller's: its
        # "Produced by" line records what was typed
    data = _load_data(args, adapter, limit)
    if (args.data or args.forget_dir) and not args.forget and config.subjects:
        known = {r.id for r in [*data.forget, *data.retain]}
        if set(config.subjects) <= known and set(config.subjects) != set(data.forget_ids):
            data = data.pick(list(config.subjects))
    return data


def cmd_sweep(args: argparse.Namespace) -> int:
    """Ablation report: strength, PGD eps, direction construction, layers, null space on/off."""
    import torch
    from core.eraser import Eraser
    from core.sweep import SweepConfig, report, run_sweep, tradeoff_figure
    torch.set_num_threads(args.threads)
    adapter = load_model(args)
    base = Eraser.from_pretrained(args.eraser, adapter=adapter).config
    data = eraser_data(args, adapter, base)
    cfg = SweepConfig(n_people=args.people, seed=args.seed)
    rows = run_sweep(adapter, data, base, cfg, progress=print)
    text = report(rows, f"MLLMEraser ablations on {Path(args.model).name} ({data.name})",
                  f"python -m core sweep{_where(args)} --people {args.people} --out {args.out}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure = Path(args.out).with_suffix(".png")
    text = text.replace("\n\n", f"\n\n![forget vs retain trade-offs]({figure.name})\n\n", 1)
    # the rows first: a figure that fails to draw must not lose an hour of evaluation
    write_atomic(Path(args.out).with_suffix(".json"), json.dumps([r.__dict__ for r in rows], indent=2))
    write_atomic(Path(args.out), text)
    tradeoff_figure(rows, figure)
    print(f"wrote {args.out}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """Input-side robustness report of an eraser: image rephrasings, a benign prefix, adaptive PGD."""
    import torch
    from core.eraser import Eraser
    from core.robustness import (RobustnessConfig, attack_report, budget_curve, format_curve, format_report,
                                 prefix_facts)
    torch.set_num_threads(args.threads)
    _check_eps(args.eps)  # before the model loads
    if args.steps > 2000:  # as --curve-steps: a budget beyond it is hours of PGD per question
        raise ValueError(f"--steps is at most 2000 PGD steps, got {args.steps}")
    adapter = load_model(args)
    eraser = _eraser_options(Eraser.from_pretrained(args.eraser, adapter=adapter), args, adapter.num_layers)
    data = eraser_data(args, adapter, eraser.config)
    if not data.retain:
        raise ValueError("the attack report scores retained subjects too: pass --data retain=PATH (MLLMU parquet) "
                         "or --retain-dir FOLDER (photos and a name of a few people)")
    cfg = RobustnessConfig(eps=args.eps / 255, steps=args.steps, seed=args.seed, keep=args.pgd_keep)
    budgets = []
    if args.curve:
        eps, steps = _numbers(args.curve_eps, float, "--curve-eps"), _numbers(args.curve_steps, int, "--curve-steps")
        if any(not 0 < e <= 255 for e in eps) or any(not 1 <= n <= 2000 for n in steps) or not 1 <= args.eot <= 64:
            raise ValueError("--curve-eps must lie in (0, 255], --curve-steps in [1, 2000] and --eot in [1, 64]")
        budgets = [(e / 255, n, k) for k in sorted({1, args.eot}) for n in steps for e in eps]
    if args.curve_only and not args.curve:
        raise ValueError("--curve-only runs the budget curve alone: add --curve")
    facts = prefix_facts(data, args.prefix_facts, adapter.tokenizer)
    forget = data.forget[:args.people]
    if args.held_out:  # adversarial gate fitting attacks the fit's own pictures: this asks whether it carries over
        forget = [r for r in data.test if r.id in set(data.forget_ids)][:args.people]
        if not forget:
            raise ValueError("--held-out attacks the forget people's test split: this forget set has none (pass "
                             "--data test=PATH, or leave --held-out out)")
    rows = [] if args.curve_only else attack_report(
        adapter, eraser, forget, data.retain[:args.people], facts, cfg,
        progress=lambda name, done, total: print(f"attack {done + 1}/{total}: {name}", flush=True))
    curve = budget_curve(adapter, eraser, forget, data.retain[:args.people], budgets, cfg,
                         progress=lambda name, done, total: print(f"budget {done + 1}/{total}: {name}", flush=True))
    cmd = (f"python -m core attack{_where(args)} --people {args.people} --eps {args.eps:g} --steps {args.steps} "
           + ("--held-out " if args.held_out else "") + ("--pgd-keep best " if args.pgd_keep == "best" else "")
           + (f"--curve {'--curve-only ' if args.curve_only else ''}--curve-eps {args.curve_eps} "
              f"--curve-steps {args.curve_steps} --eot {args.eot} " if curve else "")
           + (f"--gate-layer {args.gate_layer} " if args.gate_layer is not None else "")
           + (f"--gate-floor {args.gate_floor:g} " if args.gate_floor is not None else "")
           + (f"--gate-full {args.gate_full:g} " if args.gate_full is not None else "")
           + f"--out {args.out}")
    text = (f"# Input-side attacks on the eraser\n\nProduced by `{cmd}`. Image+text cloze questions of "
            f"{args.people} forget and {args.people} retain people"
            + (" (the forget people's held-out pictures and wordings: their test split)" if args.held_out else "")
            + "; % whose reply contains the correct answer.\n\n"
            + (format_report(rows) + "\n" if rows else ""))
    if curve:
        text += ("\n## The adaptive attack's budget\n\nPGD on each image lowering the eraser's gate where it is read "
                 "(`Eraser.gate_layers`) while keeping the answer likely, run against this eraser; with EOT each step averages the "
                 "loss over random rephrasings (noise, brightness, contrast, resize, crop). \"After a rephrasing\": "
                 "the attacked forget image passed through one of the report's image rephrasings first.\n\n"
                 + format_curve(curve) + "\n")
    write_atomic(Path(args.out).with_suffix(".json"), json.dumps({"attacks": rows, "budget_curve": curve} if curve
                                                              else rows, indent=2))
    write_atomic(Path(args.out), text)
    print(text)
    print(f"wrote {args.out}")
    return 0


def cmd_relearn(args: argparse.Namespace) -> int:
    """Relearning attack on weight-edited models, under one fixed budget each."""
    import torch
    from core.baselines import RELEARN_ATTRIBUTES, RelearnConfig, relearn
    torch.set_num_threads(args.threads)
    cfg = RelearnConfig(steps=args.steps, lr=args.lr, seed=args.seed)
    rows = []
    data = _load_data(args)
    for model in args.model:
        rows.append(relearn(model, data, cfg))
        print(f"relearned {model}", flush=True)
    lines = [f"Fine-tuned {cfg.steps} steps (lr {cfg.lr:g}) on the forget people's {', '.join(RELEARN_ATTRIBUTES)} "
             "facts; cloze (%) on their other attributes, which the attack never shows.", "",
             "| model | held-out before | held-out after | shown before | shown after |", "|---|---|---|---|---|"]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['model']} | {100 * b['held_out']:.1f} | {100 * a['held_out']:.1f} | "
                     f"{100 * b['shown']:.1f} | {100 * a['shown']:.1f} |")
    print("\n".join(lines))
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    """A training-based unlearning baseline (GA, GA_Diff, KL_Min, NPO, IdkNLL, MMUnlearner, SMFA, VKD) on a toy model."""
    import torch
    from tqdm import tqdm
    from core.baselines import BaselineConfig, unlearn
    torch.set_num_threads(args.threads)
    if args.reference and args.method != "npo":  # only NPO's loss reads a reference model
        raise ValueError(f"--reference is NPO's reference model; {args.method} does not use one")
    data = _load_data(args)
    cfg = BaselineConfig(args.method, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         retain_weight=args.retain_weight, kl_weight=args.kl_weight, beta=args.beta, seed=args.seed)
    with tqdm(desc=f"unlearn {args.method}", unit="step") as bar:
        def progress(step, total, loss):
            bar.total = total
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.3f}")
        out = unlearn(args.model, args.out, data, cfg, args.reference, progress)
    print(f"saved {args.method} model to {out}; evaluate it with: python -m core evaluate --model {out}")
    return 0


def _check_earlier_export(folder: Path) -> None:
    """An export folder is written whole: an earlier export there is replaced, or its people would
    sit beside the new ones as one forget set. Only a folder that `save_folder` marked as its own
    (core.data.folder.EXPORT_MARK), holding nothing but what the mark lists, is replaced: a user's
    photo folder has the same layout and was deleted, and so was a person a user added to an
    export. An empty folder is used as it is; anything else is refused, before any work."""
    from core.data.folder import EXPORT_MARK, export_files, viewer_clutter
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    mark = folder / EXPORT_MARK
    if not mark.is_file():
        raise ValueError(f"--export-folder {folder} holds files and was not written by --export-folder (it has no "
                         f"{EXPORT_MARK} file): nothing was removed; pass a new or empty folder")
    try:
        listed = json.loads(mark.read_text())
        written = set(listed["subjects"])
    except (ValueError, KeyError, TypeError):  # a mark of an earlier version listed nothing: the export wrote
        listed, written = {}, None              # toy-world person ids (p001...) only
    if isinstance(listed.get("files"), dict):  # file by file: a photo added to a subject, an edited facts.json
        now = export_files(folder)
        changed = sorted(k for k in set(now) | set(listed["files"]) if now.get(k) != listed["files"].get(k))
        if changed:
            raise ValueError(f"--export-folder {folder}: {', '.join(changed[:5])} changed since the earlier export "
                             "(added, edited or removed): nothing was removed; move your files out, or pass "
                             "another folder")
    added = sorted(p.name for p in folder.iterdir() if p.name != EXPORT_MARK and not viewer_clutter(p.name) and (
        p.name not in written if written is not None else not re.fullmatch(r"p\d{3,}", p.name)))
    if added:
        raise ValueError(f"--export-folder {folder} holds {', '.join(added[:5])}, which the earlier export did not "
                         "write: nothing was removed; move them out, or pass another folder")


def _swap_in_export(staged: Path, folder: Path) -> None:
    """Replace an earlier export (checked by `_check_earlier_export`) by the staged one."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staged, folder)


def cmd_world(args: argparse.Namespace) -> int:
    """Generate a toy world: a portrait grid picture and MLLMU-Bench parquet files."""
    import numpy as np
    from core.toyworld.mllmu import export_parquet
    from core.toyworld.portraits import portrait_grid
    from core.toyworld.world import WorldConfig, make_world
    if args.forget and not re.fullmatch(r"forget_\d+", args.forget):
        raise ValueError(f"--forget names a forget split such as forget_10, got {args.forget!r}")
    world = make_world(WorldConfig(seed=args.seed, n_people=args.people))
    world.forget_people(args.forget)  # a split this world has, before anything is written or cleared
    if args.export_folder:
        from core.data.folder import MAX_IMAGES
        if args.renders > MAX_IMAGES:  # a folder every other command refuses
            raise ValueError(f"--renders is at most {MAX_IMAGES} photos per person, got {args.renders}")
        _check_earlier_export(Path(args.export_folder))
    print(f"world seed {args.seed}: {len(world.people)} people; forget splits "
          + ", ".join(f"{k}%: {len(v)}" for k, v in sorted(world.forget_ids.items())))
    if args.grid:
        people = world.people[: args.grid_people]
        rng = np.random.default_rng(args.seed)
        rows = [world.canonical_image(p) for p in people] + [world.render(p, rng) for p in people]
        Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
        portrait_grid([im.resize((128, 128)) for im in rows], cols=len(people)).save(args.grid)
        print(f"wrote {args.grid} (top: canonical portraits; bottom: random renders of the same people)")
    if args.export:
        pct = int(args.forget.split("_")[-1])
        for split in (f"forget_{pct}", f"retain_{100 - pct}", f"test_{pct}", "real"):
            path = export_parquet(world, split, Path(args.export) / f"{split}.parquet")
            print(f"wrote {path}")
    if args.export_folder:
        from core.data.folder import save_folder
        people = world.forget_people(args.forget)[: args.folder_people]
        rng = np.random.default_rng([args.seed, 29])
        records = []
        for p in people:
            rec = world.person_record(p)
            rec.images = [world.render(p, rng) for _ in range(args.renders)]
            records.append(rec)
        target = Path(args.export_folder)
        staged = target.with_name(f".{target.name}.writing")  # the earlier export stays until this one is whole
        shutil.rmtree(staged, ignore_errors=True)
        try:
            save_folder(records, staged, facts=not args.no_facts)
            _swap_in_export(staged, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        print(f"wrote {args.export_folder}: {len(records)} subjects of {args.forget}, {args.renders} fresh renders "
              f"each{', name only' if args.no_facts else ', with facts.json'}")
    # after a photo export, the people it wrote (the world's first people were listed, as if exported)
    for p in (people if args.export_folder else world.people)[: args.show]:
        print(f"  {p.id}  {p.name}: {p.biography}")
    return 0


def device_options(p: argparse.ArgumentParser) -> None:
    """Where and in what precision a command loads its model (core.models.load.load_adapter)."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the first GPU if any, else cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto: the checkpoint's dtype on a GPU, float32 on a CPU")
    p.add_argument("--device-map", default=None,
                   help="shard the model with accelerate: auto, balanced, sequential, or a JSON object "
                        '{"module": "cuda:0" | "cpu" | "disk", ...} (or a file holding one)')
    p.add_argument("--offload-folder", default=None, help="where --device-map puts blocks mapped to disk")


def load_model(args: argparse.Namespace):
    """The adapter of --model on --device / --dtype / --device-map."""
    from core.models.load import load_adapter
    device_map = getattr(args, "device_map", None)
    try:
        if device_map and device_map.strip().startswith("{"):
            device_map = json.loads(device_map)
        elif device_map and Path(device_map).is_file():
            device_map = json.loads(Path(device_map).read_text())
    except ValueError as exc:
        raise ValueError(f"--device-map is not valid JSON ({exc}): pass auto, a JSON object such as "
                         '\'{"model.language_model.layers.0": 0}\', or a file holding one') from None
    return load_adapter(args.model, device=getattr(args, "device", None), dtype=getattr(args, "dtype", "auto"),
                        device_map=device_map, offload_folder=getattr(args, "offload_folder", None))


def _report_options(p: argparse.ArgumentParser, people_help: str, out: str) -> None:
    """Options shared by the commands that write a report about an eraser (sweep, attack)."""
    p.add_argument("--model", default=DEFAULT_MODEL)
    device_options(p)
    p.add_argument("--eraser", default=DEFAULT_ERASER)
    data_options(p, " (default: the eraser's own)")
    p.add_argument("--people", type=count, default=10, help=people_help)
    p.add_argument("--out", default=out)
    p.add_argument("--seed", type=count0, default=0)
    p.add_argument("--threads", type=threads, default=2)


def cmd_forget(args: argparse.Namespace) -> int:
    """A forget request on a live eraser: add subjects (their prompts are the only ones run through
    the model) or withdraw them; the eraser's history records it (core.requests)."""
    import shutil
    import time

    import torch
    from core.contrast import eraser_gate_sets
    from core.eraser import Eraser
    from core.requests import add_subjects, collect_state, contrast_for, remove_subjects
    torch.set_num_threads(args.threads)
    if bool(args.add) == bool(args.remove):
        raise ValueError("say what the request is: --add IDS (subjects to forget too) or --remove IDS (to withdraw)")
    source = Path(args.eraser).resolve()
    out = Path(args.out).resolve() if args.out else source  # resolved: "." has no name to write beside
    adapter = load_model(args)
    eraser = Eraser.from_pretrained(args.eraser, adapter=adapter)
    ids = [s.strip() for s in (args.add or args.remove).split(",") if s.strip()]
    if eraser.state is None and any(r.get("action") == "harden" for r in eraser.config.requests):
        raise ValueError(f"{args.eraser} was hardened (adversarial gate fitting) and saved without its fit state: "
                         "its attacked rows cannot be rebuilt, and a request would drop them from every gate. Fit it "
                         "again without --no-state, then make the request")
    if eraser.state is None and eraser.config.subject_gates:
        # the fitting activations were not saved: collect the eraser's own gate sets once
        # the eraser's own forget set: with --data / --forget-dir by its subject ids (its toy-world split name was
        # refused there as if the user had typed --forget)
        given = bool(args.data or getattr(args, "forget_dir", None))
        args.forget = (",".join(eraser.config.subjects) if given else eraser.config.forget_split) or None
        f, r = eraser_gate_sets(_load_data(args, adapter), eraser.config)
        print(f"{args.eraser} holds no fit state: collecting its gate sets once ({len(f)} forget, {len(r)} retain "
              "prompts); later requests reuse them")
        eraser.state = collect_state(eraser, adapter, f, r)
    start = time.perf_counter()
    if args.add:
        args.forget = ",".join(ids)
        data = _load_data(args, adapter)
        prompts = eraser_gate_sets(data, eraser.config)[0]
        new = add_subjects(eraser, adapter, [p for p in prompts if p.tag in set(ids)],
                           contrast=contrast_for(eraser, data, adapter, ids))
    else:
        new = remove_subjects(eraser, ids)
    took = time.perf_counter() - start
    tmp, old = out.with_name(out.name + ".writing"), out.with_name(out.name + ".replaced")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    new.save_pretrained(tmp, state=True)  # complete before the old eraser is touched
    _carry_extras(source, tmp)  # the source eraser's tuning.json and notes, never those of what --out held
    if out.exists():
        if out != source:
            print(f"replacing the eraser that was in {out}")
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    last = new.config.requests[-1]
    print(f"{last['action']} {', '.join(last['subjects'])}: {took:.1f} s. {out} now forgets "
          f"{len(new.config.subjects)} subject(s): {', '.join(new.config.subjects)}")
    return 0


def sequential_settings(shipped, args: argparse.Namespace) -> dict:
    """The eraser recipe a sequential run fits with: the given eraser's, one gate per subject, and
    the gate reading / ramp flags given. A cross-fitted floor's folds only when set (the result
    files written before the field existed lack it, and --merge compares settings)."""
    from core.eraser import recipe_of
    settings = {**recipe_of(shipped), "subject_gates": True}
    if args.gate_layer is not None:
        settings.update(gate_layer=args.gate_layer, joint_gate=None)
    given = {k: v for k in ("gate_floor", "gate_full") if (v := getattr(args, k)) is not None}
    if given:  # with the recipe's ramp read off the rows, every fit and refit overwrote them
        settings.update(given, gate_ramp=False)
    if args.joint_gate is not None:
        settings.update(gate_layer=None, joint_gate=_joint(args))
    if not (settings["floor_folds"] and settings["gate_ramp"]):  # none, or no ramp read off the rows to cross-fit
        del settings["floor_folds"]
    return settings


def cmd_sequential(args: argparse.Namespace) -> int:
    """The forget people as sequential requests, for the eraser and training baselines (core.sequential)."""
    import torch
    from core.eraser import Eraser
    from core.sequential import SequentialConfig, figure, run_baseline, run_eraser, run_vanilla, table
    torch.set_num_threads(args.threads)
    if args.gate_layer is not None and args.joint_gate is not None:  # the joint gate silently won
        raise ValueError("give --gate-layer (one layer) or --joint-gate (several), not both")
    settings = sequential_settings(Eraser.from_pretrained(args.eraser).config, args)
    cfg = SequentialConfig(group=args.group, methods=tuple(m for m in args.methods.split(",") if m),
                           limit=args.limit, withdraw=args.withdraw, eraser=settings)
    data = _load_data(args)
    if "eraser" in cfg.methods and cfg.withdraw >= len(data.forget_ids):  # found out only after the whole run
        raise ValueError(f"--withdraw {cfg.withdraw}: the eraser's run withdraws that many of the "
                         f"{len(data.forget_ids)} people it forgot at the end and must keep one; pass a smaller "
                         "--withdraw (0: none)")
    config = {"group": cfg.group, "limit": cfg.limit, "gate_layer": settings.get("gate_layer"),
              "joint_gate": settings.get("joint_gate"), "gate_floor": settings.get("gate_floor", 0.0),
              "gate_full": settings.get("gate_full", 1.0),
              # what --merge must also match: runs of another forget set, withdrawal or recipe were merged
              "forget": [data.name, list(data.forget_ids)], "withdraw": cfg.withdraw, "eraser": settings}
    config = json.loads(json.dumps(config))  # as it reads back from the file (tuples are lists there)
    results = {}
    partial = None if not args.json else Path(args.json).with_suffix(".partial.json")
    # keep the methods measured before: the last finished run's, then those of a run that stopped half-way
    for earlier in ([Path(args.json), partial] if args.merge and args.json else []):
        if not earlier.is_file():
            continue
        before = json.loads(earlier.read_text())
        if before.get("config") != config:  # their rows would be filed under settings they were not run with
            raise ValueError(f"--merge: {earlier} was run with {before.get('config')}, this run is {config}; "
                             "merge runs of the same settings, or write another --json")
        results.update(before["results"])
    for method in cfg.methods:
        run = {"eraser": run_eraser, "vanilla": run_vanilla}.get(method)
        results[method] = run(args.model, data, cfg) if run else run_baseline(method, args.model, data, cfg)
        # after every method, beside the file: a long run leaves what it measured, and a run that fails
        # half-way leaves --json as it was
        if partial is not None:
            write_atomic(partial, json.dumps({"config": config, "results": results}, indent=2))
    if partial is not None:
        os.replace(partial, args.json)
    print(table(results))
    if args.figure:
        print(f"wrote {figure(results, args.figure)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Costs of the method as ratios measured in one run (core.bench)."""
    import torch
    from core.bench import PARTS, BenchConfig, run, table
    torch.set_num_threads(args.threads)
    parts = tuple(p.strip() for p in args.parts.split(",")) if args.parts else PARTS
    if args.layers is not None and not args.shape:  # it was ignored: the shipped model has its own layers
        raise ValueError("--layers sets the depth of a --shape model: add --shape llava-1.5-7b or qwen2.5-vl-7b")
    data = None  # the forget set the eraser was fitted on, for the portrait and build rows: a toy world's
    if {"steering", "build"} & set(parts) and not args.shape and _has_world(args.model):
        from core.eraser import Eraser
        args.data, args.forget_dir, args.forget = [], None, None  # bench takes no forget-set flags: the eraser's own
        data = eraser_data(args, None, Eraser.from_pretrained(args.eraser).config)
    res = run(BenchConfig(model=args.model, eraser=args.eraser, shape=args.shape, layers=args.layers,
                          quick=args.quick, repeats=args.repeats, baseline=not args.no_baseline, parts=parts,
                          data=data))
    print(table(res))
    if args.json:
        write_atomic(args.json, json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=(
        "MLLMEraser workbench engine: test-time unlearning in vision-language models by "
        "input-aware activation steering."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("models", help="list supported model families and models found locally",
                       description="List supported model families and the supported models found in "
                                   "assets/, the local Hugging Face cache and any --path folders.")
    p.add_argument("--path", action="append", default=[], help="also check this folder (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train-toy", help="train the tiny LLaVA on a generated toy world",
                       description="Generate the toy world for --seed and train the tiny LLaVA on it, its text "
                                   "model started from the shipped assets/toy-text (CPU; 75 min on one thread). "
                                   "With --retain-only-out also train the RETAIN-ONLY model without the --forget "
                                   "people: the gold standard unlearning tries to match.")
    p.add_argument("--out", required=True, help="output folder (Hugging Face format)")
    p.add_argument("--seed", type=count0, default=0, help="world and training seed")
    p.add_argument("--people", type=count, default=100, help="number of fictitious people")
    p.add_argument("--steps", type=count0, default=9000, help="optimizer steps of the main phase (ToyModelConfig.steps)")
    p.add_argument("--identity-steps", type=count0, default=400,
                   help="of which the first are a warm-up on naming the person in a picture")
    p.add_argument("--forget", default="forget_10", help="forget split left out of the retain-only model")
    p.add_argument("--retain-only", action="store_true",
                   help="train the retain-only model (without the --forget people) into --out")
    p.add_argument("--retain-only-out", default=None, help="also train the retain-only model into this folder")
    p.add_argument("--lr", type=rate, default=None, help="peak learning rate (default 5e-4)")
    p.add_argument("--init-from", default=None, help="continue training a saved toy model of the same world")
    p.add_argument("--text-heads", type=count, default=None, help="attention heads of the text model (default 16)")
    p.add_argument("--text-init", default=None,
                   help="start the text model from this text-only Llama (toy tokenizer, same shape); default: "
                        "the shipped assets/toy-text (python -m core pretrain-text), 'none' to start from scratch")
    p.add_argument("--option-drills", type=int, default=None,
                   help="MCQ drills (\"Which option reads X?\") per pass over the data (default 1500)")
    p.add_argument("--option-lookups", type=int, default=None,
                   help="reverse MCQ drills (\"What is option B?\") per pass over the data (default 1500)")
    p.add_argument("--private-requests", type=int, default=None,
                   help="grammar-drawn private-data requests (answered with the refusal) per pass (default 1000)")
    p.add_argument("--mcq-per-question", type=int, default=None,
                   help="MCQs per person question per pass, each with fresh options (default 3)")
    p.add_argument("--focus-steps", type=count0, default=None,
                   help="then a second phase of this many steps on the mix plus extra picture MCQs; run it alone "
                        "on a saved model with --init-from DIR --steps 0 (default 2000; 0 = none)")
    p.add_argument("--focus-name-mcqs", type=int, default=None,
                   help="focus phase: extra MCQs per 'who is this?' question per pass (default 6)")
    p.add_argument("--focus-other-mcqs", type=int, default=None,
                   help="focus phase: extra MCQs per other picture question per pass (default 3)")
    p.add_argument("--focus-name-drills", type=int, default=None,
                   help="focus phase: text drills matching full names per pass (default 1500)")
    p.add_argument("--threads", type=threads, default=2, help="torch CPU threads")
    p.set_defaults(func=cmd_train_toy)

    p = sub.add_parser("pretrain-text", help="pretrain the tiny text model on MCQ drills (for train-toy --text-init)",
                       description="Train a text-only Llama of the toy model's text shape on option drills, "
                                   "reverse lookups and private-data requests it must refuse (no fact about "
                                   "anyone): the 'base language model' that train-toy --text-init starts from.")
    p.add_argument("--out", required=True, help="output folder (Hugging Face format)")
    p.add_argument("--seed", type=count0, default=0, help="training seed, and the world whose tokenizer is used")
    p.add_argument("--people", type=count, default=100, help="people in that world (use train-toy's --seed/--people)")
    p.add_argument("--steps", type=count, default=None, help="optimizer steps (default 5000)")
    p.add_argument("--lr", type=rate, default=None, help="peak learning rate (default 5e-4)")
    p.add_argument("--heads", type=count, default=None, help="attention heads (default 16; train-toy needs the same)")
    p.add_argument("--refusals", type=int, default=None,
                   help="private-data requests (answered with the refusal) added to each batch (default 8)")
    p.add_argument("--name-drills", type=float, default=None,
                   help="share of the drills whose options are full names (default 0)")
    p.add_argument("--threads", type=threads, default=2, help="torch CPU threads")
    p.set_defaults(func=cmd_pretrain_text)

    p = sub.add_parser("fit", help="fit an eraser for any supported model and forget set",
                       description="Build contrast and gate prompt sets from the forget set (the model's toy world, "
                                   "MLLMU-Bench files or a photo folder), collect activations, fit d_erase and the "
                                   "null-space gate per layer, optionally tune layers and strength, and save "
                                   "safetensors + JSON in --out. Starts from --preset; every flag overrides it.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model folder or hub id (default: the shipped toy model)")
    device_options(p)
    data_options(p)
    p.add_argument("--out", required=True, help="output folder for the eraser")
    p.add_argument("--no-state", action="store_true", help="do not save the gate's fitting activations (then "
                   "`python -m core forget` collects them again before its first request)")
    p.add_argument("--preset", default="workbench", choices=["workbench", "paper"],
                   help="workbench: the best measured recipe (prompt-mean gate, one gate per forget subject with "
                        "retain rows, 6400 retain prompts, tuned); paper: the paper's fit (null space ratio 0.3, "
                        "gamma 0.1, last-token gate, layers 1..L-1 at 0.3, no tuning)")
    p.add_argument("--direction", default="recall", choices=["recall", "refusal", "text_only", "image_only"],
                   help="contrast construction for d_erase")
    p.add_argument("--eps", type=float, default=16,
                   help="PGD budget in 1/255 pixel steps for the refusal and image_only constructions (30 steps)")
    p.add_argument("--ratio", type=float, default=None, help="null-space size as a fraction of the width")
    p.add_argument("--threshold", type=float, default=None, help="eigenvalue-threshold mode instead of ratio")
    p.add_argument("--gamma", type=float, default=None, help="ridge regulariser")
    p.add_argument("--retain-weight", type=float, default=None,
                   help="weight of the retain activations as target-0 rows of the gate's ridge (0: the paper's "
                        "fit, which relies on the null space alone)")
    p.add_argument("--gate-layer", type=int, default=None,
                   help="read the gate at this (deeper) layer before steering and apply it at the steered "
                        "layers: deeper layers tell people apart, early ones see the picture (docs/sequential.md)")
    ramp_options(p)
    p.add_argument("--joint-gate", default=None, metavar="L1,L2,...",
                   help="one gate fitted over these layers together (their activations side by side), read in "
                        "the prompt pass before the steered layers; instead of --gate-layer (docs/sequential.md)")
    p.add_argument("--adversarial-rounds", type=count0, default=0,
                   help="adversarial gate fitting (core.hardening): rounds of PGD that closes the gate on 8 image "
                        "prompts per forget person, added as forget rows (default 0: off)")
    p.add_argument("--gate-ramp", action="store_true",
                   help="read the gate floor and full value off the fit's own rows: floor at the 95th percentile of "
                        "the retain rows' gates, full steering from the 5th percentile of the forget rows' "
                        "(instead of --gate-floor / --gate-full)")
    p.add_argument("--floor-folds", type=count0, default=0, metavar="K",
                   help="with --gate-ramp, read the floor off retained people the gate was not fitted on: the "
                        "retained people in K folds, the gate refitted without each fold and read on its rows "
                        "(cross-fitted; default 0: off). Keeps people missing from the retain set answered; an "
                        "adaptive attacker gets more through (docs/results.md)")
    p.add_argument("--adversarial-keep", choices=("last", "best"), default="last",
                   help="which PGD step of each attacked image the rounds add: its last, or its best (lowest gate: "
                        "the image an attacker who keeps its best step would send); default last")
    p.add_argument("--adversarial-per-person", type=count, default=8, metavar="N",
                   help="image prompts attacked per forget person each round (default 8; 1-1000)")
    p.add_argument("--adversarial-open", type=count0, default=0, metavar="N",
                   help="two-sided hardening: each round also perturbs N retained people's image prompts to OPEN "
                        "the gate and adds them as retain rows, so that the hardened gate keeps quiet on retained "
                        "people (default 0: off; needs --adversarial-rounds)")
    p.add_argument("--subject-gates", action=argparse.BooleanOptionalAction, default=None,
                   help="one gate per forget subject, the steering gate being the largest (a workbench option; "
                        "the paper fits one gate for the whole forget set)")
    p.add_argument("--gate-retain", type=int, default=None,
                   help="retained prompts sampled for the gate's fit (with per-subject gates, 6400 keeps more "
                        "retained people that look or sound like a forget person out of the gate)")
    p.add_argument("--layers", default=None, help="layers to fit, comma-separated (default: all)")
    p.add_argument("--steer-layers", default=None,
                   help="layers steered by default, comma-separated (default: every fitted layer; --tune replaces it)")
    p.add_argument("--strength", type=float, default=None, help="default steering strength stored with the eraser")
    p.add_argument("--task-strength", action="append", default=[], metavar="TASK=S",
                   help="strength stored for one MLLMU task, e.g. classification=1.0 (repeatable; the public "
                        "code sets one per task)")
    p.add_argument("--mode", default=None, choices=["prefill", "latched", "every_step"])
    p.add_argument("--gate-position", default=None, choices=["last", "mean"],
                   help="where the gate reads the prompt: its last token (the method) or the mean of its "
                        "tokens (a workbench option; needs mode prefill or latched)")
    p.add_argument("--gate-variants", type=float, default=0.0,
                   help="add this share of the gate prompts again in later-turn formats (multi-turn, prefilled "
                        "reply, general-fact prefix, instruction), so the gate holds when the prompt format changes "
                        "(toy worlds)")
    p.add_argument("--tune", action=argparse.BooleanOptionalAction, default=None,
                   help="sweep layers x strength on held-out prompts and store the best setting (default: the "
                        "preset's; --no-tune keeps --strength / --steer-layers as given, and the workbench "
                        "preset's own, 0.3 at every layer, forgets little on a model it was not tuned for)")
    p.add_argument("--tune-strengths", default=None,
                   help="strengths the tuner tries, comma-separated (default: core.tuner.STRENGTHS, 0.25 to 2)")
    p.add_argument("--tune-tasks", action="store_true",
                   help="after --tune, pick a strength per MLLMU task (classification / generation / cloze) for the "
                        "tuned layers and mode")
    p.add_argument("--tune-modes", default=None,
                   help="steering modes the tuner tries, comma-separated, e.g. prefill,latched (default: --mode)")
    p.add_argument("--min-retain", type=float, default=0.98,
                   help="tuner constraint: share of held-out retain answers that must stay unchanged in each retain "
                        "group (0.98: a point of margin over the 97%% target, as about a hundred held-out prompts "
                        "per group under-measured the evaluation's retain cost by 1-3 points on both world seeds)")
    p.add_argument("--min-fluency", type=float, default=0.95,
                   help="tuner constraint: share of well-formed replies, on forget and on retain prompts each")
    p.add_argument("--seed", type=count0, default=0)
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("sweep", help="ablation report (strength, eps, direction, layers, null space)",
                       description="Run the method's ablations on a toy model with an eraser as the base setting and "
                                   "write a markdown report (and JSON) of forget-vs-utility metrics.")
    _report_options(p, "rows per split evaluated", "runs/ablations.md")  # never the shipped docs by default
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("attack", help="input-side robustness report of an eraser (rephrased images, prompts, "
                                      "role-play, prefilling, multi-turn, adaptive PGD)",
                       description="Attack an eraser from the input side (docs/robustness.md): image rephrasings, a benign "
                                   "prefix, an instruction injection, a role-play request, answer prefilling, a "
                                   "multi-turn follow-up, and PGD that keeps the gate shut; score forget and retain "
                                   "cloze recovery with the eraser on and off.")
    _report_options(p, "forget and retain people attacked", "runs/robustness.md")  # never the shipped docs by default
    p.add_argument("--eps", type=float, default=16, help="adaptive PGD budget, in 1/255 pixel steps")
    p.add_argument("--steps", type=count, default=40, help="adaptive PGD steps")
    p.add_argument("--prefix-facts", type=count0, default=4, help="general facts in the benign prefix")
    p.add_argument("--curve", action="store_true",
                   help="also run the adaptive attack at every budget of --curve-eps x --curve-steps, plain and "
                        "with EOT over --eot image rephrasings (a table: budget -> forget recovered, retain kept)")
    p.add_argument("--curve-only", action="store_true", help="run the budget curve only, not the attack table")
    p.add_argument("--held-out", action="store_true",
                   help="attack the forget people's test split (pictures and wordings no gate row, direction row or "
                        "hardening round saw) instead of their forget split")
    p.add_argument("--curve-eps", default="8,16,32,64", help="budgets of the curve, in 1/255 pixel steps")
    p.add_argument("--curve-steps", default="40,200", help="PGD steps of the curve")
    p.add_argument("--eot", type=count, default=4, help="rephrasings averaged per PGD step in the curve's EOT rows")
    p.add_argument("--pgd-keep", choices=("last", "best"), default="last",
                   help="the adaptive attack's image: PGD's last step (the published tables), or each image at the "
                        "step where its own objective was lowest (a stronger attacker)")
    p.add_argument("--gate-layer", type=int, default=None,
                   help="attack the eraser with its gate read at this layer (see evaluate --gate-layer)")
    ramp_options(p)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("relearn", help="relearning attack on weight-edited models (fixed fine-tuning budget)",
                       description="Fine-tune each model briefly on some facts of the forget people and score cloze on "
                                   "their other facts: knowledge that comes back was hidden, not removed. Compare "
                                   "with the retain-only model under the same budget.")
    p.add_argument("--model", action="append", required=True, help="model folder (repeatable)")
    data_options(p)
    p.add_argument("--steps", type=count, default=40, help="fine-tuning steps (the attacker's budget)")
    p.add_argument("--lr", type=rate, default=1e-4)
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--seed", type=count0, default=0)
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_relearn)

    from core.baselines import METHODS, BaselineConfig
    d = BaselineConfig()
    p = sub.add_parser("unlearn", help="training-based unlearning baseline (ga, ga_diff, kl_min, npo, idk, mmunlearner, smfa, vkd)",
                       description="Fine-tune a copy of a toy model with a training-based unlearning baseline "
                                   "and save it as a model folder that `evaluate` scores like any other.")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--model", default=DEFAULT_MODEL, help="model folder (default: the shipped toy model)")
    data_options(p)
    p.add_argument("--out", required=True, help="output folder for the unlearned model")
    p.add_argument("--reference", default=None,
                   help="NPO reference model (e.g. assets/toy-llava-retain-only; default: the original)")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over the forget examples")
    p.add_argument("--lr", type=rate, default=d.lr)
    p.add_argument("--batch-size", type=count, default=d.batch_size)
    p.add_argument("--retain-weight", type=float, default=d.retain_weight, help="c: weight of the retain NLL")
    p.add_argument("--kl-weight", type=float, default=d.kl_weight, help="a: weight of the retain KL (kl_min)")
    p.add_argument("--beta", type=float, default=d.beta, help="b: NPO temperature")
    p.add_argument("--seed", type=count0, default=0)
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("world", help="generate a toy world: portrait grid and MLLMU parquet files",
                       description="Generate the synthetic world for --seed: print people, save a portrait grid, "
                                   "export forget / retain / test / real splits as MLLMU-Bench parquet files.")
    p.add_argument("--seed", type=count0, default=0)
    p.add_argument("--people", type=count, default=100)
    p.add_argument("--grid", default=None, help="save a PNG grid of portraits here")
    p.add_argument("--grid-people", type=count, default=8, help="people shown in the grid")
    p.add_argument("--export", default=None, help="write MLLMU-Bench parquet files into this folder")
    p.add_argument("--forget", default="forget_10", help="forget split to export")
    p.add_argument("--export-folder", default=None,
                   help="write the forget split's people as a photo folder (one sub-folder each, fresh renders, "
                        "facts.json): the shape `fit --forget-dir` reads")
    p.add_argument("--folder-people", type=count, default=None, help="only the first N people of the split")
    p.add_argument("--renders", type=count, default=4, help="fresh portrait renders per person in the photo folder")
    p.add_argument("--no-facts", action="store_true", help="photo folder: the name only, no questions")
    p.add_argument("--show", type=count0, default=3, help="print the first N profiles")
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("forget", help="a forget request on a live eraser: add or withdraw subjects",
                       description="Add subjects to an eraser with one gate per subject (only their prompts are run "
                                   "through the model; the retain side is reused) or withdraw them (their answers "
                                   "come back). The eraser's config keeps the history of requests.")
    p.add_argument("--model", default=DEFAULT_MODEL)
    device_options(p)
    p.add_argument("--eraser", required=True, help="the eraser folder to update")
    p.add_argument("--add", default="", help="comma-separated subject ids to forget too (of --data, --forget-dir "
                                            "or the model's toy world)")
    p.add_argument("--remove", default="", help="comma-separated subject ids to withdraw")
    data_options(p)
    p.add_argument("--out", default=None, help="write the updated eraser here (default: update --eraser in place)")
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("sequential", help="the forget people as one-at-a-time requests: eraser vs baselines",
                       description="Forget the people of the forget set in sequential requests of --group people; "
                                   "after each, evaluate the people requested so far, those not yet requested, "
                                   "retained people and general questions, with the update's time and memory. "
                                   "Training baselines fine-tune the previous request's model. The eraser then "
                                   "withdraws the last --withdraw people.")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--eraser", default=DEFAULT_ERASER, help="whose settings the sequential eraser uses")
    data_options(p)
    p.add_argument("--group", type=count, default=1, help="people per request")
    p.add_argument("--methods", default="vanilla,eraser,idk,ga_diff,npo",
                   help="comma-separated: vanilla, eraser and any of the unlearn baselines")
    p.add_argument("--merge", action="store_true", help="keep the other methods already in --json")
    p.add_argument("--limit", type=count, default=10, help="retained people and general rows evaluated per request")
    p.add_argument("--withdraw", type=count0, default=3)
    p.add_argument("--gate-layer", type=int, default=None,
                   help="the eraser reads its gates at this layer (see evaluate --gate-layer)")
    ramp_options(p)
    p.add_argument("--joint-gate", default=None, metavar="L1,L2,...",
                   help="the eraser fits one gate over these layers together (see fit --joint-gate)")
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="PNG: forgetting and utility vs requests")
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_sequential)

    p = sub.add_parser("bench", help="what the method costs: ratios measured in one run",
                       description="Steering overhead on greedy generation (each mode, batch 1 and 8), capture "
                                   "throughput (batch 16 vs 1), the gate fit vs the paper's formula at real widths, "
                                   "a PGD step vs a forward pass, the eraser's size vs the public code's matrices, "
                                   "and building an eraser vs training IdkNLL. Prints a table; --json writes it.")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--eraser", default=DEFAULT_ERASER)
    p.add_argument("--shape", choices=["llava-1.5-7b", "qwen2.5-vl-7b"], default=None,
                   help="a model of that real width with random weights instead of --model")
    p.add_argument("--layers", type=count, default=None, help="decoder layers of the --shape model (default: 2 on a "
                                                            "CPU, all on a GPU)")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: checks that every part runs")
    p.add_argument("--repeats", type=count, default=None,
                   help="steering timings: each of 2 x REPEATS rounds times the eraser off and on (default 5; 1 with "
                        "--quick)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the build part (training IdkNLL and the eraser builds compared with it); --shape "
                        "models skip it anyway")
    p.add_argument("--parts", default=None,
                   help="comma-separated measurements to run, among steering, capture, shared_starts, pgd, fit, "
                        "artefact, build (default: all; the whole bench takes about 6 min on the shipped model and "
                        "27 min at 7B width on 2 CPU cores)")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.add_argument("--threads", type=threads, default=2)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="MLLMU-style evaluation (forget / test / retain / real)",
                       description="Greedy MLLMU-style evaluation: MCQ accuracy (first letter), ROUGE-L F1 "
                                   "(stemmed), cloze substring match and refusal rate, image+text and text-only.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model folder or hub id (default: the shipped toy model)")
    device_options(p)
    data_options(p)
    p.add_argument("--limit", type=count, default=None, help="evaluate only the first N rows of each split")
    p.add_argument("--max-new-tokens", type=count, default=50)
    p.add_argument("--batch-size", type=count, default=32)
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--eraser", default=None, help="evaluate with this eraser folder active")
    p.add_argument("--strength", type=float, default=None,
                   help="steering strength for every task (default: the eraser's, per task where it stores one)")
    p.add_argument("--task-strength", action="append", default=[], metavar="TASK=S",
                   help="strength for one MLLMU task, e.g. classification=1.0 (repeatable)")
    p.add_argument("--layers", default=None, help="comma-separated layers to steer (default: the eraser's)")
    p.add_argument("--gate-layer", type=int, default=None,
                   help="read the eraser's gate at this layer, before steering, and apply it at the steered "
                        "layers (default: the eraser's setting; each steered layer reads its own)")
    ramp_options(p)
    p.add_argument("--mode", default=None, choices=["prefill", "latched", "every_step"],
                   help="when to steer (default: the eraser's)")
    p.add_argument("--threads", type=threads, default=2, help="torch CPU threads")
    p.set_defaults(func=cmd_evaluate)
    return parser


FOLDER_OUT = {"fit", "unlearn", "train-toy", "pretrain-text", "forget"}  # commands whose --out is a folder
REPORT_OUT = {"attack", "sweep"}  # commands whose --out is a markdown report with its JSON beside it


def _carry_extras(old: Path, new: Path) -> None:
    """Copy what an eraser folder holds besides the eraser (the tuner's tuning.json, a user's
    notes) into its replacement: `forget` writes a new folder and swaps it in whole."""
    import shutil
    from core.eraser import CONFIG_NAME, STATE_NAME, WEIGHTS_NAME
    for entry in old.iterdir():
        if (entry.name not in (CONFIG_NAME, WEIGHTS_NAME, STATE_NAME) and not entry.name.endswith(".writing")
                and not (new / entry.name).exists()):  # not a save's leftover part (Eraser.save_pretrained)
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, new / entry.name)


def _check_forget_out(out: str | None) -> None:
    """`forget` replaces the folder it writes: one that exists must hold an eraser. Why: `--out`
    naming a folder of other files deleted them all."""
    from core.eraser import CONFIG_NAME
    folder = Path(out) if out else None
    if folder and folder.is_dir() and any(folder.iterdir()) and not (folder / CONFIG_NAME).is_file():
        raise ValueError(f"--out {out} is a folder that holds no eraser, and this command replaces the folder it "
                         "writes: pass a new folder, or the eraser folder itself to update it in place")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path of the wrong kind before any work: a fit of minutes used to end in a
    FileExistsError traceback when --out named an existing file."""
    folders = [("--export", getattr(args, "export", None)), ("--export-folder", getattr(args, "export_folder", None)),
               ("--retain-only-out", getattr(args, "retain_only_out", None))]
    files = [("--json", getattr(args, "json", None)), ("--figure", getattr(args, "figure", None)),
             ("--grid", getattr(args, "grid", None))]
    out = getattr(args, "out", None)
    (folders if args.command in FOLDER_OUT else files).append(("--out", out))
    for flag, path in folders + files:  # a file where a folder above it should be: refused now, not after the work
        if isinstance(path, str):
            above = next((p for p in Path(path).absolute().parents if p.exists()), None)
            if above is not None and not above.is_dir():
                raise ValueError(f"{flag} {path}: {above} is a file, not a folder; pass a path inside a folder")
    if args.command in REPORT_OUT and isinstance(out, str) and Path(out).suffix.lower() in (".json", ".png"):
        raise ValueError(f"--out {out}: this command writes a markdown report there and its JSON beside it "
                         f"({Path(out).with_suffix('.json').name}); pass a .md path such as runs/report.md")
    for flag, path in folders:
        if isinstance(path, str) and Path(path).exists() and not Path(path).is_dir():
            raise ValueError(f"{flag} {path} is a file; this command writes a folder there: pass a new folder path")
    for flag, path in files:
        if isinstance(path, str) and Path(path).is_dir():
            raise ValueError(f"{flag} {path} is a folder; this command writes a file there: pass a file path "
                             "such as runs/report.md")
    if args.command == "forget":
        _check_forget_out(out)
    _check_outputs_spare_inputs(args, folders + files)


def _check_outputs_spare_inputs(args: argparse.Namespace, outputs: list[tuple[str, object]]) -> None:
    """Refuse an output that is, or lies inside, the model, eraser or photo folder the command
    reads, or that names the same place as another output. Why: `attack --out
    ERASER/eraser_config.md` wrote its JSON over the eraser's config, and `train-toy --out X
    --retain-only-out X` saved the retain-only model over the vanilla one."""
    paths = [(flag, Path(p).absolute().resolve()) for flag, p in outputs if isinstance(p, str)]
    if getattr(args, "command", None) in REPORT_OUT and isinstance(getattr(args, "out", None), str):
        report = Path(args.out).absolute().resolve()
        paths += [("--out (its .json)", report.with_suffix(".json")), ("--out (its .png)", report.with_suffix(".png"))]
    # a photo folder too: a folder written inside it is read as one more person next time
    inputs = [(flag, getattr(args, name, None)) for flag, name in (("--model", "model"), ("--eraser", "eraser"),
                                                                   ("--init-from", "init_from"),
                                                                   ("--forget-dir", "forget_dir"),
                                                                   ("--retain-dir", "retain_dir"))]
    in_forget_place = getattr(args, "command", None) == "forget"  # forget rewrites its eraser in place on purpose
    for flag, given in inputs:
        if not isinstance(given, str) or not Path(given).exists() or (in_forget_place and flag == "--eraser"):
            continue
        src = Path(given).absolute().resolve()
        for out_flag, out in paths:
            if out == src or src in out.parents:
                raise ValueError(f"{out_flag} {out} would write into {flag} {given}, which this command reads: pass an "
                                 "output path outside it")
    seen: dict[Path, str] = {}
    for flag, out in paths:
        if out in seen and not flag.startswith("--out ("):
            raise ValueError(f"{flag} and {seen[out]} name the same place ({out}): give each its own path")
        seen.setdefault(out, flag)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_outputs(args)
        return args.func(args)
    except (ValueError, OSError) as exc:  # OSError: a file that cannot be read or written (permissions, a full disk)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # a defect or an input no check foresaw: one line, not a traceback
        if os.environ.get("MLLMERASER_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc}\n(an unexpected failure: set MLLMERASER_DEBUG=1 for the traceback, "
              "and please report it with the command)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
