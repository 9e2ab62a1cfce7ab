"""`python -m core bench`: what the method costs, as ratios measured in one run.

Every timing is paired with its reference in the same process and reported as a ratio (absolute
seconds mean something only on the machine that printed them): steering on vs off during greedy
generation, capture at batch 16 vs batch 1, capture of several questions per picture with each
picture's start run once vs every prompt whole, the gate fit vs the paper's formula, a PGD step vs a
forward pass, an eraser's size vs the public code's matrices, and building an eraser vs training
the cheapest baseline that forgets as much (IdkNLL). Peak memory is the resident set's growth
during the call (the kernel's high-water mark, reset before each call; before session 34 a
5 ms sample, which missed brief calls and read memory kept from earlier work as free), or on a
GPU the largest growth of the memory torch allocated there.

The shipped model runs where `load_adapter` puts it (the first GPU if there is one). `--shape
llava-1.5-7b` (or `qwen2.5-vl-7b`) builds a model of that width with random weights and
`--layers` decoder layers: on a CPU 2 by default, in float32 (the whole 32 would not fit next to
the test suite); on a GPU all of them, built on the GPU in bfloat16, as a 7B checkpoint is
served. On a GPU every timer waits for the queued kernels before it stops
(`scripts/gpu_bench.sh` is the prepared run for a GPU machine).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from core.activations import Prompt, collect
from core.data.source import ForgetData
from core.models.base import VLMAdapter

# width, MLP width, heads, KV heads, vocabulary, layers of the real checkpoints
SHAPES = {
    "llava-1.5-7b": dict(family="llava", hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32064,
                         layers=32, image=(336, 14)),
    "qwen2.5-vl-7b": dict(family="qwen2_5_vl", hidden=3584, intermediate=18944, heads=28, kv_heads=4,
                          vocab=152064, layers=28, image=(448, 14)),  # a 448 px picture: 256 tokens
}


@dataclass
class Timing:
    seconds: float
    peak_mb: float = 0.0


def _sync() -> None:
    """Wait for the GPU's queued work: a CUDA call returns before its kernels finish, so a timer
    stopped without this would time the launches, not the work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _release_freed_memory() -> None:
    """Give memory freed by earlier work back to the system before a CPU measurement, so that the
    growth of the resident set counts what the measured call allocates, not what the allocator
    happened to keep from earlier work."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _high_water_mb() -> float | None:
    """The process's peak resident set since the last reset (Linux VmHWM), None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return None


def _reset_high_water() -> bool:
    """Reset VmHWM to the current resident set (Linux 4.0+: "5" to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _high_water_mb() is not None
    except OSError:
        return False


def measure(fn: Callable[[], object], repeats: int = 3, warm_up: bool = True) -> Timing:
    """Median seconds of `fn` over `repeats` runs (after one warm-up run), and the largest growth
    of the resident set during them (MB); on a GPU, of the memory torch allocated there.

    On the CPU the peak is the kernel's high-water mark, reset before each run after freed memory
    is handed back (Linux); elsewhere a thread samples the resident set every 5 ms. Why: sampled,
    a fit of 16 ms was seen at 0 MB next to the reference formula's 86 MB (a fit alone: 18.6 MB),
    both because samples missed it and because memory kept from earlier work was reused."""
    import psutil
    proc = psutil.Process()
    gpu = torch.cuda.is_available()
    if warm_up:
        fn()
    times, peak = [], [0.0]
    for _ in range(repeats):
        _sync()
        done = threading.Event()
        exact = False
        if gpu:
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            _release_freed_memory()
            base = proc.memory_info().rss
            exact = _reset_high_water()
            if not exact:
                def sample():
                    while not done.is_set():
                        peak[0] = max(peak[0], (proc.memory_info().rss - base) / 2**20)
                        done.wait(0.005)
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
        done.set()
        if gpu:
            peak[0] = max(peak[0], (torch.cuda.max_memory_allocated() - base) / 2**20)
        elif exact:
            peak[0] = max(peak[0], _high_water_mb() - base / 2**20)
        else:
            sampler.join()
    return Timing(statistics.median(times), peak[0])


# ---------------------------------------------------------------- the fit
def fit_rows(n_f: int, n_r: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic forget / retain activations of width d (retain of lower effective rank, as real
    activations are)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(min(n_r, d), d, generator=g, dtype=torch.float64)
    H_r = torch.randn(n_r, len(basis), generator=g, dtype=torch.float64) @ basis / d ** 0.5
    H_f = H_r[:n_f] * 0.5 + torch.randn(n_f, d, generator=g, dtype=torch.float64) * 0.3
    return H_f, H_r


def bench_fit(sizes: list[tuple[int, int, int]], ratio: float = 0.8, gamma: float = 0.1,
              layers: int = 32) -> list[dict]:
    """fit_gate against the paper's full-matrix formula at each (N_f, N_r, d): time, peak memory,
    their ratio and the relative difference of the gates (the reference is well defined at
    ratio 0.8 for these sizes: the null space asked for is larger than the exact one)."""
    from core.nullspace import fit_gate, full_matrix
    rows = []
    for n_f, n_r, d in sizes:
        H_f, H_r = fit_rows(n_f, n_r, d)
        r = torch.ones(d, dtype=torch.float64)
        got: dict = {}
        ours = measure(lambda: got.__setitem__("u", fit_gate(H_f, H_r, ratio, gamma).u), repeats=3)
        ref = measure(lambda: got.__setitem__("W", full_matrix(H_f, H_r, r, ratio, gamma)), repeats=1, warm_up=False)
        u, W = got["u"], got["W"]
        diff = float((torch.outer(u, r) - W).norm() / W.norm())
        rows.append({"forget_rows": n_f, "retain_rows": n_r, "width": d, "fit_s": ours.seconds,
                     "reference_s": ref.seconds, "speedup": ref.seconds / ours.seconds, "relative_diff": diff,
                     "fit_peak_mb": ours.peak_mb, "reference_peak_mb": ref.peak_mb,
                     f"fit_{layers}_layers_s": ours.seconds * layers})
    return rows


# ---------------------------------------------------------------- artefacts
def artefact_sizes(layers: int, width: int) -> dict:
    """Bytes of a saved eraser (direction + one gate, float32, no diagnostics) against the public
    code's per-layer d x d matrices in fp16."""
    from core.eraser import Eraser, EraserConfig
    g = torch.Generator().manual_seed(0)
    e = Eraser(torch.randn(layers, width, generator=g, dtype=torch.float64),
               torch.randn(layers, width, generator=g, dtype=torch.float64), EraserConfig())
    with tempfile.TemporaryDirectory() as tmp:
        e.save_pretrained(tmp, diagnostics=False)
        ours = sum(f.stat().st_size for f in Path(tmp).iterdir())
    public = layers * width * width * 2
    return {"layers": layers, "width": width, "eraser_bytes": ours, "public_code_bytes": public,
            "ratio": public / ours}


# ---------------------------------------------------------------- steering, capture, PGD on a model
def _prompts(adapter: VLMAdapter, n: int, with_image: bool = True) -> list[Prompt]:
    from PIL import Image
    import numpy as np
    rng = np.random.RandomState(0)
    qs = ["who is the person in this picture ?", "what is this ?", "describe the image please"]
    return [Prompt(qs[i % len(qs)], Image.fromarray((rng.rand(64, 64, 3) * 255).astype("uint8")) if with_image
                   else None) for i in range(n)]


def _fixed_length(adapter: VLMAdapter, batch, new_tokens: int) -> None:
    """Greedy generation of exactly `new_tokens` tokens (so that steering, which changes what is
    said, cannot change how much is generated)."""
    with torch.no_grad():
        adapter.model.generate(**batch.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               do_sample=False, num_beams=1, use_cache=True,
                               pad_token_id=adapter.tokenizer.pad_token_id)


def _seconds(fn: Callable[[], object], runs: int = 3) -> float:
    """Wall time of `runs` back-to-back calls, without measure()'s memory sampler: a Python thread
    polling every 5 ms competes for the interpreter with the short generations timed here."""
    _sync()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    _sync()
    return time.perf_counter() - start


def bench_steering(adapter: VLMAdapter, eraser, new_tokens: int = 16, repeats: int = 3,
                   portraits: dict[str, list[Prompt]] | None = None) -> list[dict]:
    """Greedy generation with the eraser on / off, for each steering mode and batch 1 and 8, on
    random pictures and, for the eraser's own mode, on each named set of `portraits` (the people
    to forget, whose gate opens: a gate read deeper than the steered layer then runs the blocks
    from the steered layer to it twice on the prompt for the rows whose gate opens,
    `core.steering._scout`; retained people, whose gate should stay shut; and one of each kind
    in a batch).
    Each row says on what share of its prompts the gate opened. Each of 2 x `repeats` rounds
    times off, on, on, off (two generations each): a drifting machine slows both alike, and
    neither side always runs first (an off/off check of this order once gave 1.04x on this CPU);
    each ratio is the median of the per-round ratios."""
    from core.activations import encode_prompts
    rows = []
    inputs = [("random pictures", lambda n: _prompts(adapter, n))]
    for label, ps in (portraits or {}).items():
        inputs.append((label, lambda n, ps=ps: [ps[i % len(ps)] for i in range(n)]))
    own = type(eraser)(eraser.direction, eraser.gate, replace(eraser.config, gate_layer=None, joint_gate=None),
                       eraser.diagnostics)
    for label, make in inputs:
        for batch_size in (1, 8):
            if batch_size == 1 and label == MIXED:  # a batch of one holds one person: the forget row again
                continue
            prompts = make(batch_size)
            batch = encode_prompts(adapter, prompts)
            _fixed_length(adapter, batch, new_tokens)  # warm-up
            runs = [("prefill", eraser), ("latched", eraser), ("every_step", own)]
            if eraser.gate_layers != eraser.steered_layers:  # what the gate pass costs: the same tensors, each layer's own gate
                runs.insert(1, ("prefill", own))
            if label != "random pictures":
                runs = runs[:1]
            for mode, er in runs:
                if mode == "every_step" and er.gate_position == "mean":
                    # the same tensors read at the last token: the cost of a per-token gate
                    er = type(er)(er.direction, er.gate, replace(er.config, position="last_prompt_token"), er.diagnostics)

                def on(er=er, mode=mode):
                    with er.apply(adapter, mode=mode):
                        _fixed_length(adapter, batch, new_tokens)

                def off(batch=batch):
                    _fixed_length(adapter, batch, new_tokens)
                on()  # warm-up
                pairs = []
                for _ in range(2 * repeats):  # off, on, on, off: a drift or the first run's advantage cancels
                    t_off = _seconds(off, 2)
                    t_on = _seconds(on, 2) + _seconds(on, 2)
                    t_off += _seconds(off, 2)
                    pairs.append((t_off / 2, t_on / 2))
                joint = er.config.joint_gate
                rows.append({"inputs": label, "batch": batch_size, "mode": mode,
                             "gate_layer": ",".join(map(str, joint)) if joint else er.config.gate_layer,
                             "gate_open": _share_open(adapter, er, prompts),
                             "off_s": statistics.median(p[0] for p in pairs),
                             "on_s": statistics.median(p[1] for p in pairs),
                             "overhead": statistics.median(b / a for a, b in pairs)})
    return rows


def _share_open(adapter: VLMAdapter, eraser, prompts: list[Prompt]) -> float:
    """Share of the prompts whose steering coefficient is above zero (the gate past its floor)."""
    from core.activations import encode_prompts
    with torch.no_grad(), eraser.apply(adapter) as h:
        adapter.logits(encode_prompts(adapter, prompts))
    layer = eraser.steered_layers[0]
    return float((h.config.coefficient(h.gates[layer]) > 0).float().mean())


MIXED = "one person to forget among seven retained people"  # timed at batch 8 only


def portrait_prompts(data: ForgetData | None) -> dict[str, list[Prompt]] | None:
    """A profile question on a picture of each of the forget set's people, of 40 retained people,
    and of one person to forget among seven retained (a batch whose gate opens on one row); None
    without a forget set with pictures (the bench then times random pictures only)."""
    if data is None:
        return None
    ask = lambda recs: [Prompt("What does this person do for work?", r.images[0]) for r in recs if r.images]  # noqa: E731
    forget, retained = ask(data.forget), ask(data.retain[:40])
    if not forget or len(retained) < 7:
        return None
    # mixed traffic: a batch of 8 with one row whose gate opens (that row alone runs the blocks again)
    return {"people to forget": forget, "retained people": retained, MIXED: [forget[0], *retained[:7]]}


def bench_capture(adapter: VLMAdapter, n: int = 64, layers: list[int] | None = None) -> dict:
    """Prompts per second collecting last-token activations, batch 16 against batch 1."""
    prompts = _prompts(adapter, n)
    b16 = measure(lambda: collect(adapter, prompts, layers, batch_size=16), repeats=1)
    b1 = measure(lambda: collect(adapter, prompts, layers, batch_size=1), repeats=1, warm_up=False)
    return {"prompts": n, "batch16_per_s": n / b16.seconds, "batch1_per_s": n / b1.seconds,
            "speedup": b1.seconds / b16.seconds, "batch16_peak_mb": b16.peak_mb}


def bench_shared_starts(adapter: VLMAdapter, pictures: int = 4, questions: int = 6,
                        layers: list[int] | None = None) -> dict:
    """Prompts per second collecting prompt-mean activations of several questions (at most 6)
    about each picture (what a fit asks), each picture's start run once against every prompt run whole
    (`collect(share_starts=...)`), at `collection_batch`'s size for the model (64 under a billion
    parameters, 16 above), and the largest difference between the two."""
    from core.activations import shared_starts
    base = _prompts(adapter, pictures)
    qs = ["who is the person in this picture ?", "what is this ?", "describe the image please",
          "what is the name of this person ?", "who is it ?", "what is in the picture ?"]
    prompts = [Prompt(q, p.image) for p in base for q in qs[:questions]]
    box: dict = {}
    whole = measure(lambda: box.update(w=collect(adapter, prompts, layers, position="mean", share_starts=False)), 1)
    shared = measure(lambda: box.update(s=collect(adapter, prompts, layers, position="mean")), 1)
    groups, _ = shared_starts(adapter, prompts, layers)
    return {"prompts": len(prompts), "pictures": pictures, "image_tokens": adapter.num_image_tokens(),
            "shared": bool(groups), "whole_per_s": len(prompts) / whole.seconds,
            "shared_per_s": len(prompts) / shared.seconds, "speedup": whole.seconds / shared.seconds,
            "max_relative_diff": float(((box["s"] - box["w"]).norm(dim=-1) / box["w"].norm(dim=-1)).max())}


def bench_pgd(adapter: VLMAdapter, steps: int = 5) -> dict:
    """One PGD step (forward + backward to the pixels) against one forward pass."""
    from core.activations import encode_prompts
    from core.pgd import PGDConfig, run_pgd
    p = _prompts(adapter, 1)[0]
    batch = encode_prompts(adapter, [p])

    def forward():
        with torch.no_grad():
            adapter.logits(batch)
    fwd = measure(forward, 3)
    run = measure(lambda: run_pgd(adapter, [p.image], [p.question], ["red"],
                                  PGDConfig(eps=16 / 255, step_size=2 / 255, steps=steps, seed=0)), 1)
    # `steps` steps run steps + 1 forward passes (the last one scores the final image) and `steps`
    # backward ones: the extra forward is taken off, or each step carried 1/steps of a forward more
    step = (run.seconds - fwd.seconds) / steps
    return {"step_s": step, "forward_s": fwd.seconds, "step_over_forward": step / fwd.seconds}


# ---------------------------------------------------------------- eraser vs the cheapest baseline
def bench_build(model_dir: str | Path, eraser_dir: str | Path, data: ForgetData, out: Path) -> dict:
    """Building the shipped eraser from scratch (prompt sets, activations, the fit; no tuning)
    against training IdkNLL (the baseline that forgets as much at the same retain cost) on the
    same forget set (`data`, the one the eraser was fitted on): seconds, peak memory, and their
    ratio. Two builds: as shipped (every layer fitted, for the inspector's per-layer views) and at
    the layers it uses only (those it steers and the one its gate is read at), whose gate and
    direction there are those of the shipped eraser (their difference is reported), so it steers
    the same."""
    from core.baselines import BaselineConfig, unlearn
    from core.contrast import fit_sets
    from core.eraser import Eraser
    from core.models.load import load_adapter
    adapter = load_adapter(model_dir)
    shipped = Eraser.from_pretrained(eraser_dir, adapter=adapter)
    steered = sorted(set(shipped.steered_layers) | set(shipped.gate_layers))
    box: dict = {}

    def build(config):
        adapter.clear_prompt_cache()  # from scratch: no prompt built by an earlier repeat
        sets = fit_sets(data, adapter, config.direction_kind, seed=config.seed, n_retain=config.gate_retain)
        box["e"] = Eraser.fit(adapter, sets.forget, sets.retain, sets.recall, sets.erase, config)
    full = measure(lambda: build(replace(shipped.config, requests=[])), repeats=1, warm_up=False)
    only = measure(lambda: build(replace(shipped.config, layers=steered, requests=[])), repeats=3, warm_up=False)
    e = box["e"]
    diff = max(((e.gate[l] - shipped.gate[l]).norm() / shipped.gate[l].norm()).item() for l in steered)
    # the direction where it steers (elsewhere the shipped file stores zeros: 0 / 0 there hid the figure)
    ddiff = max(((e.direction[l] - shipped.direction[l]).norm() / shipped.direction[l].norm()).item()
                for l in shipped.steered_layers)
    out_rows = {}
    first = min(shipped.steered_layers)
    if max(shipped.gate_layers) > first:
        # the same eraser with each steered layer reading its own gate: the collection stops earlier
        own = measure(lambda: build(replace(shipped.config, layers=[first], steer_layers=[first], gate_layer=None,
                                            joint_gate=None, requests=[])), repeats=3, warm_up=False)
        out_rows = {"own_gate_s": own.seconds, "own_gate_layer": first}
    idk = measure(lambda: unlearn(model_dir, out / "idk", data, BaselineConfig("idk")), repeats=1, warm_up=False)
    if out_rows:
        out_rows["idk_over_own_gate"] = idk.seconds / out_rows["own_gate_s"]
    return {"eraser_s": full.seconds, "eraser_peak_mb": full.peak_mb, "steered_s": only.seconds,
            "steered_peak_mb": only.peak_mb, "steered_layers": steered, "steered_gate_diff": diff,
            "steered_direction_diff": ddiff, "idk_s": idk.seconds, "idk_peak_mb": idk.peak_mb,
            "idk_over_eraser": idk.seconds / full.seconds, "idk_over_steered": idk.seconds / only.seconds,
            **out_rows}


# ---------------------------------------------------------------- a model of real shape
def real_shape(name: str, layers: int | None = None, seed: int = 0, real_image: bool = False,
               device: str | None = None, dtype: torch.dtype | None = None) -> VLMAdapter:
    """A model of a real checkpoint's width with random weights (`layers` decoder layers, the
    checkpoint's number by default; a small vision tower: the text side is what steering and
    capture touch). `real_image`: the tower cuts a picture into as many tokens as the
    checkpoint's (LLaVA-1.5: 576 patches), for the parts whose cost is the prompt's length.
    `device` (default: the first GPU if any, else the CPU): the weights are drawn there, not
    drawn on the CPU and copied (a 7B model in float32 is 28 GB); `dtype` (default bfloat16 on a
    GPU, as a 7B checkpoint is served, float32 on the CPU)."""
    from core.models.load import adapter_from_model
    from core.models.tiny import build_tiny
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {sorted(SHAPES)}")
    s = SHAPES[name]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    with torch.device(device):
        model, tokenizer, processor = build_tiny(s["family"], seed=seed, layers=layers or s["layers"], text_shape=dict(
            hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_attention_heads=s["heads"],
            num_key_value_heads=s["kv_heads"], vocab_size=s["vocab"]), image=s.get("image") if real_image else None)
    return adapter_from_model(model.to(dtype), tokenizer, processor)


def random_eraser(adapter: VLMAdapter, seed: int = 0, position: str = "mean_prompt_tokens"):
    """An eraser with random direction and gate of the adapter's shape (costs as a fitted one)."""
    from core.eraser import Eraser, EraserConfig
    g = torch.Generator().manual_seed(seed)
    L, d = adapter.num_layers, adapter.hidden_size
    cfg = EraserConfig(position=position, steer_layers=list(range(L)), strength=1.0)
    return Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) / d ** 0.5,
                  torch.randn(L, d, generator=g, dtype=torch.float64) / d ** 0.5, cfg)


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- the whole run
PARTS = ("steering", "capture", "shared_starts", "pgd", "fit", "artefact", "build")


@dataclass
class BenchConfig:
    model: str = "assets/toy-llava"
    eraser: str = "assets/toy-llava-eraser"
    shape: str | None = None  # a real checkpoint's width with random weights instead of --model
    layers: int | None = None  # decoder layers of the --shape model (default: 2 on a CPU, all on a GPU)
    quick: bool = False  # small sizes and few repeats: checks that every part runs
    repeats: int | None = None  # rounds of each steering timing (default 5, 1 with quick)
    baseline: bool = True  # also train IdkNLL to compare an eraser's build cost (shipped model only)
    new_tokens: int = 16
    parts: tuple[str, ...] = PARTS  # which measurements to run (the whole bench at 7B width: ~27 min on 2 cores)
    # the forget set the eraser was fitted on (the CLI passes a toy world's): portrait rows of the
    # steering part and the build part; None times random pictures and skips the build
    data: ForgetData | None = None


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Every measurement of the bench, as a JSON-ready dict."""
    from core.eraser import Eraser
    from core.models.load import load_adapter
    bad = sorted(set(cfg.parts) - set(PARTS))
    if bad:
        raise ValueError(f"unknown bench part(s) {bad}; choose among {', '.join(PARTS)}")
    gpu = torch.cuda.is_available()
    out: dict = {"device": "cuda" if gpu else "cpu", "threads": torch.get_num_threads(),
                 # what the figures were measured on, for the tables that quote them
                 "device_name": torch.cuda.get_device_name(0) if gpu else f"CPU, {os.cpu_count()} cores"}
    repeats = cfg.repeats or (1 if cfg.quick else 5)
    if cfg.shape:
        if cfg.shape not in SHAPES:
            raise ValueError(f"unknown shape {cfg.shape!r}; choose one of {sorted(SHAPES)}")
        layers = cfg.layers or (None if torch.cuda.is_available() else 2)
        out["model"] = {"shape": cfg.shape, "layers": layers or SHAPES[cfg.shape]["layers"],
                        "width": SHAPES[cfg.shape]["hidden"]}
        # built only for the parts that run it (shared starts at a picture's real length build their own)
        if {"steering", "capture", "pgd"} & set(cfg.parts) or ("shared_starts" in cfg.parts
                                                               and "image" not in SHAPES[cfg.shape]):
            log(f"building {cfg.shape} with random weights ({layers or 'all'} layers)...")
            adapter = real_shape(cfg.shape, layers)
            eraser = random_eraser(adapter)
    else:
        adapter = load_adapter(cfg.model)
        eraser = Eraser.from_pretrained(cfg.eraser, adapter=adapter)
        out["model"] = {"folder": str(cfg.model), "layers": adapter.num_layers, "width": adapter.hidden_size}
    if "steering" in cfg.parts:
        log("steering on / off during greedy generation...")
        portraits = None if cfg.shape else portrait_prompts(cfg.data)
        out["steering"] = bench_steering(adapter, eraser, 4 if cfg.quick else cfg.new_tokens, repeats, portraits)
    if "capture" in cfg.parts:
        log("capture throughput...")
        out["capture"] = bench_capture(adapter, 16 if cfg.quick else 64, eraser.fitted_layers)
    if "shared_starts" in cfg.parts:
        log("capture of several questions per picture, the picture's start run once...")
        if cfg.shape and "image" in SHAPES[cfg.shape]:  # the checkpoint's picture length; one block captured
            out["shared_starts"] = bench_shared_starts(real_shape(cfg.shape, 2, real_image=True), 2,
                                                       3 if cfg.quick else 6, [1])
        else:
            out["shared_starts"] = bench_shared_starts(adapter, 2 if cfg.quick else 4, 3 if cfg.quick else 6,
                                                       [1] if cfg.shape else eraser.fitted_layers)
    if "pgd" in cfg.parts:
        log("a PGD step...")
        out["pgd"] = bench_pgd(adapter, 2 if cfg.quick else 5)
    if "fit" in cfg.parts:
        log("the gate fit against the paper's formula...")
        sizes = [(16, 64, 256), (16, 512, 256)] if cfg.quick else [(256, 1024, 4096), (64, 256, 1024), (256, 4096, 1024)]
        out["fit"] = bench_fit(sizes)
    if "artefact" in cfg.parts:
        out["artefact"] = [artefact_sizes(out["model"]["layers"], out["model"]["width"]), artefact_sizes(32, 4096)]
    if "build" in cfg.parts and (cfg.shape or not cfg.baseline):
        log("build: skipped (" + ("a --shape model has no forget set to build from" if cfg.shape else "--no-baseline")
            + ")")
    if "build" in cfg.parts and cfg.baseline and not cfg.shape:
        if cfg.data is None:
            log("build: skipped, no forget set to build the eraser from (the model folder carries no toy world)")
        else:
            log("building the eraser from scratch, then training IdkNLL on the same forget set...")
            with tempfile.TemporaryDirectory() as tmp:
                out["build"] = bench_build(cfg.model, cfg.eraser, cfg.data, Path(tmp))
    return out


def gate_reading(gate_layer) -> str:
    """How a steering row read its gate: the row's `gate_layer` is a layer number or, for a
    joint gate, its layers joined by commas."""
    if "," in str(gate_layer):
        return f"one gate read over layers {gate_layer}"
    return f"gate read at layer {gate_layer}"


def table(res: dict) -> str:
    """The bench as markdown."""
    m = res["model"]
    name = m.get("shape") or Path(m.get("folder", "")).name
    where = res.get("device_name") or res["device"]
    lines = [f"Model: {name}, {m['layers']} layers of width {m['width']}, on {where} "
             f"({res['threads']} threads). Every figure is a ratio of two timings taken in the same run.", "",
             "| measurement | value |", "|---|---|"]
    for r in res.get("steering", []):
        gate = "" if r.get("gate_layer") is None else f", {gate_reading(r['gate_layer'])}"
        opened = "" if "gate_open" not in r else f" (gate open on {100 * r['gate_open']:g}% of them)"
        lines.append(f"| steering overhead, greedy generation, `{r['mode']}`{gate}, {r.get('inputs', 'random pictures')}"
                     f"{opened}, batch {r['batch']} | {r['overhead']:.3f}x |")
    c = res.get("capture")
    if c:
        lines.append(f"| capture, batch 16 vs batch 1 ({c['prompts']} prompts) | {c['speedup']:.1f}x more prompts/s |")
    sh = res.get("shared_starts")
    if sh and sh["shared"]:
        lines.append(f"| capture, {sh['prompts'] // sh['pictures']} questions about each of {sh['pictures']} pictures "
                     f"({sh['image_tokens']} image tokens each), each picture's start run once vs every prompt whole"
                     f" | {sh['speedup']:.1f}x more prompts/s (relative difference {sh['max_relative_diff']:.0e}) |")
    if "pgd" in res:
        lines.append(f"| a PGD step vs a forward pass | {res['pgd']['step_over_forward']:.1f}x |")
    for f in res.get("fit", []):
        lines.append(f"| gate fit, N_f {f['forget_rows']}, N_r {f['retain_rows']}, d {f['width']}: paper's formula / "
                     f"ours | {f['speedup']:.0f}x faster (relative difference {f['relative_diff']:.1e}; peak "
                     f"{f['fit_peak_mb']:.0f} MB vs {f['reference_peak_mb']:.0f} MB) |")
    for a in res.get("artefact", []):
        lines.append(f"| eraser file at {a['layers']} x {a['width']} (float32, no diagnostics) | "
                     f"{a['eraser_bytes'] / 1e6:.2f} MB; the public code's fp16 matrices "
                     f"{a['public_code_bytes'] / 1e9:.2f} GB ({a['ratio']:.0f}x) |")
    if "build" in res:
        b = res["build"]
        lines.append(f"| building the eraser (every layer fitted) vs training IdkNLL | IdkNLL "
                     f"{b['idk_over_eraser']:.1f}x slower (peak {b['eraser_peak_mb']:.0f} MB vs {b['idk_peak_mb']:.0f} MB) |")
        if "idk_over_steered" in b:
            layers = ", ".join(map(str, b["steered_layers"]))
            lines.append(f"| building the eraser at the layers it uses ({layers}) only vs training IdkNLL | IdkNLL "
                         f"{b['idk_over_steered']:.1f}x slower (peak {b['steered_peak_mb']:.0f} MB; gate there and "
                         f"direction where it steers equal to the shipped eraser's within {max(b['steered_gate_diff'], b['steered_direction_diff']):.0e} relative) |")
        if "idk_over_own_gate" in b:
            lines.append(f"| building it at layer {b['own_gate_layer']} only, its gate read there (an eraser that "
                         f"reads its gate at the steered layer) vs training IdkNLL | IdkNLL {b['idk_over_own_gate']:.1f}x "
                         "slower |")
    return "\n".join(lines)
