"""Sequential forget requests, measured: the forget people arrive one request at a time (PULSE's
"long-term sustainability" protocol, arXiv 2507.01271), and some are withdrawn.

After each request every method is evaluated on: the people requested so far (forgotten?), the
people not requested yet (still known?), retained people and general questions (utility), with
the time and memory the update took. The eraser grows by `core.requests.add_subjects` (only
the new person's prompts are run through the model); a training baseline fine-tunes the
previous request's model on the new person's data (`core.baselines.unlearn`, as a user would).
At the end the eraser withdraws the last `withdraw` people: their answers must come back exactly
as the unsteered model's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from core.contrast import fit_sets
from core.data.source import ForgetData
from core.eraser import Eraser, EraserConfig
from core.evaluation import EvalConfig, evaluate, replies
from core.models.load import load_adapter

METRICS = (("forgotten", "classification"), ("forgotten", "cloze"), ("pending", "classification"),
           ("retain", "classification"), ("retain", "cloze"), ("real", "cloze"))


@dataclass
class SequentialConfig:
    group: int = 1  # people per request
    methods: tuple[str, ...] = ("vanilla", "eraser", "idk", "ga_diff", "npo")
    limit: int = 10  # retained people and general rows evaluated after each request
    withdraw: int = 3  # people the eraser withdraws at the end
    max_new_tokens: int = 24
    eraser: dict = field(default_factory=dict)  # EraserConfig fields (the shipped eraser's settings)
    final: bool = True  # the full batch evaluation after the last request (`_final`)

    def __post_init__(self) -> None:
        # Why: the CLI checks its flags, Python callers were not: withdraw -1 withdrew everyone but the first
        # person (done[1:]) and limit -1 dropped the last retained and general row, both without a word
        for name, low in (("group", 1), ("limit", 1), ("withdraw", 0), ("max_new_tokens", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"SequentialConfig.{name} must be at least {low}, got {getattr(self, name)}")
        from core.baselines import METHODS
        unknown = [m for m in self.methods if m not in ("vanilla", "eraser", *METHODS)]
        if unknown or not self.methods:  # a misspelt method failed after the ones before it had run (minutes)
            raise ValueError(f"unknown method(s) {', '.join(unknown) or '(none given)'}: choose among vanilla, eraser, "
                             f"{', '.join(METHODS)}")


def requests_of(ids: list[str], group: int) -> list[list[str]]:
    return [ids[i:i + group] for i in range(0, len(ids), group)]


def _scores(adapter, data: ForgetData, done: list[str], pending: list[str], cfg: SequentialConfig,
            steering=None) -> dict:
    """Image+text metrics of the forgotten, pending, retained and general splits."""
    splits = {"forgotten": data.pick(done).forget, "retain": data.retain[:cfg.limit], "real": data.real[:cfg.limit]}
    if pending:
        splits["pending"] = data.pick(pending).forget
    splits = {k: v for k, v in splits.items() if v}  # no general rows (photo folders): that column stays empty
    res = evaluate(adapter, splits, {}, EvalConfig(max_new_tokens=cfg.max_new_tokens, modalities=("image_text",)),
                   steering)
    return {f"{s} {m}": res.splits[s]["image_text"].get(m) for s, m in METRICS if s in res.splits}


def _final(adapter, data: ForgetData, steering=None) -> dict:
    """After the last request, the batch evaluation (`python -m core evaluate`: every split, both
    modalities, its defaults): the bars "as the batch eraser" are checked on the same numbers,
    not on the per-request subset of 10 rows."""
    return evaluate(adapter, data.splits(), {}, EvalConfig(), steering).to_json()["splits"]


def run_eraser(model_dir: str | Path, data: ForgetData, cfg: SequentialConfig,
               log: Callable[[str], None] = print) -> dict:
    """The eraser under sequential requests, then the withdrawal of the last `cfg.withdraw` people.

    Each person's prompts are the ones the batch fit of all of them uses (`fit_sets` of `data`):
    before their request, their gate prompts are retained rows like anyone else's; a request
    moves them to the forget side and brings their contrast prompts, so the direction is built
    again from everyone requested. After the last request the eraser is the batch eraser of the
    same prompts (`final_vs_batch` measures how far, after a batch fit of the same sets)."""
    from core.requests import add_subjects, remove_subjects
    adapter = load_adapter(model_dir)
    ids = data.forget_ids
    steps, eraser, done = [], None, []
    config = EraserConfig(**dict(cfg.eraser))
    sets = fit_sets(data, adapter, "recall", seed=config.seed, n_retain=config.gate_retain)

    def recipe() -> EraserConfig:
        """The settings of a fit here; a cross-fitted floor folds the retained people and those whose
        request has not come (retained rows until then)."""
        c = EraserConfig(**dict(cfg.eraser))
        if c.floor_folds:
            c.floor_subjects = sets.retained + list(ids)  # those not yet requested are retained until then
        return c

    def of(prompts, people):
        return [p for p in prompts if p.tag in set(people)]
    from core.bench import measure
    for k, req in enumerate(requests_of(ids, cfg.group)):
        box = {}
        if eraser is None:  # the first request is a fit: the retain side is collected once, here
            def update():
                pending = [p for p in sets.forget if p.tag not in set(req)]  # retained until their request
                box["e"] = Eraser.fit(adapter, of(sets.forget, req), sets.retain + pending, of(sets.recall, req),
                                      of(sets.erase, req), recipe())
        else:  # later requests: the new person's prompts only, then every gate solved again
            def update():
                box["e"] = add_subjects(eraser, adapter, of(sets.forget, req),
                                        contrast=(of(sets.recall, req), of(sets.erase, req)))
        cost = measure(update, repeats=1, warm_up=False)
        eraser = box["e"]
        if k == 0:
            first_direction = eraser.direction
        done += req
        row = {"request": k + 1, "people": len(done), "update_s": cost.seconds, "update_peak_mb": cost.peak_mb,
               "gate_floor": eraser.config.gate_floor, "gate_full": eraser.config.gate_full,
               **_scores(adapter, data, done, [i for i in ids if i not in done], cfg,
                         steering=lambda: eraser.apply(adapter))}
        log(f"eraser, request {k + 1}: {row}")
        steps.append(row)
    final = _final(adapter, data, steering=lambda: eraser.apply(adapter)) if cfg.final else None
    batch = Eraser.fit(adapter, sets.forget, sets.retain, sets.recall, sets.erase, recipe())
    final_vs_batch = {name: float(max((getattr(eraser, name)[l] - getattr(batch, name)[l]).norm()
                                      / getattr(batch, name)[l].norm().clamp_min(1e-30) for l in batch.fitted_layers))
                      for name in ("direction", "gate")}
    if batch.joint is not None:
        final_vs_batch["joint"] = float((eraser.joint - batch.joint).norm() / batch.joint.norm())
    log(f"after the last request vs the batch fit of the same prompts, largest relative difference: {final_vs_batch}")
    gone = done[-cfg.withdraw:] if cfg.withdraw else []
    withdrawal, history = {}, eraser.config.requests
    if gone:
        back = remove_subjects(eraser, gone)
        probe = [q for rec in data.pick(gone).forget for q in _image_prompts(rec)]
        kept = [q for rec in data.pick(done[:-cfg.withdraw]).forget for q in _image_prompts(rec)]
        plain = replies(adapter, probe + kept, cfg.max_new_tokens)
        before = replies(adapter, probe + kept, cfg.max_new_tokens, steering=lambda: eraser.apply(adapter))
        after = replies(adapter, probe + kept, cfg.max_new_tokens, steering=lambda: back.apply(adapter))
        n = len(probe)

        def share(pairs) -> float | None:  # None, not 0.0 or a division by zero, when nobody has image questions
            pairs = list(pairs)
            return sum(a == b for a, b in pairs) / len(pairs) if pairs else None
        withdrawal = {"withdrawn": gone, "questions": n,
                      "withdrawn_equal_to_vanilla": share(zip(after[:n], plain[:n])),
                      "withdrawn_equal_to_vanilla_before": share(zip(before[:n], plain[:n])),
                      "others_unchanged": share(zip(after[n:], before[n:]))}
        log(f"withdrawal: {withdrawal}")
        history = back.config.requests
    # how far the direction moved from the first request's (it is built again at every request)
    cosine = torch.nn.functional.cosine_similarity(first_direction, eraser.direction, dim=-1).tolist()
    log(f"direction of the first request vs all requests, cosine per layer: {[round(c, 3) for c in cosine]}")
    return {"steps": steps, "final": final, "final_vs_batch": final_vs_batch, "withdrawal": withdrawal,
            "requests": history, "direction_cosine_first_vs_all": cosine}


def run_vanilla(model_dir: str | Path, data: ForgetData, cfg: SequentialConfig,
                log: Callable[[str], None] = print) -> dict:
    """The unsteered model on the same splits after each request (nothing changes but which
    people count as requested): the reference line."""
    adapter = load_adapter(model_dir)
    ids, steps, done = data.forget_ids, [], []
    for k, req in enumerate(requests_of(ids, cfg.group)):
        done += req
        row = {"request": k + 1, "people": len(done), "update_s": 0.0,
               **_scores(adapter, data, done, [i for i in ids if i not in done], cfg)}
        log(f"vanilla, request {k + 1}: {row}")
        steps.append(row)
    return {"steps": steps, "final": _final(adapter, data) if cfg.final else None}


def _image_prompts(rec) -> list:
    from core.evaluation import record_queries
    return [q.prompt for q in record_queries(rec, "forget") if q.modality == "image_text"]


def run_baseline(method: str, model_dir: str | Path, data: ForgetData, cfg: SequentialConfig,
                 log: Callable[[str], None] = print) -> dict:
    """A training baseline fine-tuned once more at every request, on that request's people."""
    from core.baselines import BaselineConfig, unlearn
    ids = data.forget_ids
    steps, done = [], []
    work = Path(tempfile.mkdtemp(prefix=f"sequential-{method}-"))
    current = Path(model_dir)
    try:
        for k, req in enumerate(requests_of(ids, cfg.group)):
            start = time.perf_counter()
            out = work / f"request{k + 1}"
            # people forgotten by earlier requests are not retain targets: the retain loss would teach them again
            unlearn(current, out, data.pick(req), BaselineConfig(method, not_retained=tuple(done)))
            took = time.perf_counter() - start
            if current != Path(model_dir):
                shutil.rmtree(current, ignore_errors=True)
            current = out
            done += req
            adapter = load_adapter(current)
            row = {"request": k + 1, "people": len(done), "update_s": took,
                   **_scores(adapter, data, done, [i for i in ids if i not in done], cfg)}
            log(f"{method}, request {k + 1}: {row}")
            steps.append(row)
        final = _final(adapter, data) if cfg.final else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"steps": steps, "final": final}


def _ordered(results: dict) -> list[tuple[str, dict]]:
    """The unsteered reference first, then the methods in the order they were run."""
    return sorted(results.items(), key=lambda kv: kv[0] != "vanilla")


def figure(results: dict, path: str | Path) -> Path:
    """Forgetting and utility against the number of requests, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (("forgotten classification", "forget MCQ of the people requested so far (%)"),
              ("pending classification", "MCQ of the people not requested yet (%)"),
              ("retain cloze", "retained people's cloze (%)"))
    for ax, (key, title) in zip(axes, panels):
        for method, res in _ordered(results):
            xs = [s["request"] for s in res["steps"] if s.get(key) is not None]
            ys = [100 * s[key] for s in res["steps"] if s.get(key) is not None]
            ax.plot(xs, ys, marker="o", label=method)
        ax.set(title=title, xlabel="requests")
        ax.set_ylim(-5, 105)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def table(results: dict, first: bool = True) -> str:
    """Markdown: each method after the first (unless `first` is False) and the last request."""
    lines = ["| method | after request | forgotten MCQ | forgotten cloze | pending MCQ | retain MCQ | retain cloze | "
             "real cloze | update (s) |", "|---|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"
    for method, res in _ordered(results):
        for s in ([res["steps"][0]] if first else []) + [res["steps"][-1]]:
            lines.append(f"| {method} | {s['request']} ({s['people']} people) | {pct(s.get('forgotten classification'))} | "
                         f"{pct(s.get('forgotten cloze'))} | {pct(s.get('pending classification'))} | "
                         f"{pct(s.get('retain classification'))} | {pct(s.get('retain cloze'))} | "
                         f"{pct(s.get('real cloze'))} | {s['update_s']:.1f} |")
    return "\n".join(lines)


UTILITY = [(s, m, k) for s in ("retain", "real") for m in ("image_text", "text_only")
           for k in ("classification", "cloze", "generation_rougeL")]


def final_table(results: dict) -> str:
    """Markdown: every method's full evaluation after the last request (`_final`), with its
    lowest retained / general metric as a share of vanilla's (the bar is 97%)."""
    van = (results.get("vanilla") or {}).get("final")
    lines = ["| method | forget MCQ (image / text) | test MCQ (image / text) | retain MCQ | retain cloze | real cloze "
             "| lowest retain / real metric, % of vanilla |", "|---|---|---|---|---|---|---|"]

    def get(f, split, mod, key):
        v = f.get(split, {}).get(mod, {}).get(key)
        return "-" if v is None else f"{100 * v:.1f}"
    for method, res in _ordered(results):
        f = res.get("final")
        if not f:
            continue
        low = "-"
        if van and method != "vanilla":
            shares = [(f[s][m][k] / van[s][m][k], f"{s} {'image' if m == 'image_text' else 'text'} {k.split('_')[0]}")
                      for s, m, k in UTILITY if van.get(s, {}).get(m, {}).get(k) and k in f.get(s, {}).get(m, {})]
            if shares:
                share, name = min(shares)
                low = f"{100 * share:.1f} ({name})"
        lines.append(f"| {method} | {get(f, 'forget', 'image_text', 'classification')} / "
                     f"{get(f, 'forget', 'text_only', 'classification')} | {get(f, 'test', 'image_text', 'classification')} / "
                     f"{get(f, 'test', 'text_only', 'classification')} | {get(f, 'retain', 'image_text', 'classification')} | "
                     f"{get(f, 'retain', 'image_text', 'cloze')} | {get(f, 'real', 'image_text', 'cloze')} | {low} |")
    return "\n".join(lines)
