"""Shared, read-only resources of the app and the handlers' logic, free of Gradio.

Why separate from the UI: every handler is a plain function of (workbench, inputs) that tests
call directly; the Gradio layer only wires components to them. The model and eraser are shared
by all users and never mutated: steering settings live in a ContextVar per request (see
core.steering), so concurrent users cannot see each other's strengths.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
import uuid
import zipfile
import zlib
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from PIL import Image, UnidentifiedImageError

from core.activations import Prompt, collect
from core.data.folder import upright_rgb
from core.data.records import name_key
from core.data.source import HUB_FOLDERS, SPLITS, ForgetData
from core.eraser import (CONFIG_NAME, MAX_FLOOR_FOLDS, STATE_NAME, WEIGHTS_NAME, Eraser, EraserConfig,
                         FloorFoldsError, ModelMismatchError, recipe_of)
from core.models.base import VLMAdapter
from core.models.load import ModelNotFoundError, load_adapter, resolve
from core.nullspace import gate_scores
from core.pgd import PGDConfig, amplify, pgd, to_image

from app import limits

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "assets" / "toy-llava"
DEFAULT_ERASER = ROOT / "assets" / "toy-llava-eraser"

class UserError(ValueError):
    """Bad input from the user: the message is shown in the UI as is."""


def upload_path(f):
    """The file path of an upload: a Gradio file object's `.name`; a path, bytes or a PIL image as
    given (a `pathlib.Path` has a `.name` too: the bare file name, which opened nothing)."""
    return f if isinstance(f, (str, os.PathLike, bytes, Image.Image)) else f.name


def upload_split(filename: str) -> str | None:
    """The split an uploaded parquet file is named after: forget_10.parquet, retain_90.parquet,
    test_10.parquet, real.parquet as `world --export` writes them, and MLLMU-Bench's Test_Set
    (test) and Retain_Set (its real celebrities: `real`; read as `retain` before, it clashed with
    retain_90 or kept the celebrities as retained people)."""
    path = Path(filename)
    if path.suffix != ".parquet":
        return None
    stem = re.sub(r"\s*\(\d+\)$", "", path.stem).casefold()  # "Retain_Set (1).parquet": a browser's 2nd download
    hub = {folder.casefold(): split for split, folder in HUB_FOLDERS.items()}
    split = hub.get(stem, stem.split("_")[0])
    return split if split in SPLITS else None


def read_image(source) -> Image.Image:
    """A PIL image from an upload (path, bytes or PIL), refusing non-images, corrupt and huge files.
    The file size is checked before reading, the pixel count and shape from the header before
    any pixel is decoded."""
    if source is None:
        raise UserError("No image: upload a picture or pick a person from the gallery.")
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            if isinstance(source, (str, os.PathLike)):
                if Path(source).stat().st_size > limits.IMAGE_BYTES:
                    raise UserError(f"The image file is over {limits.IMAGE_BYTES // limits.MB} MB: upload a smaller one.")
                data = Path(source).read_bytes()
            else:
                data = bytes(source)
        except OSError as exc:
            raise UserError(f"Could not read the uploaded file ({exc.strerror}).") from exc
        if len(data) > limits.IMAGE_BYTES:
            raise UserError(f"The image file is over {limits.IMAGE_BYTES // limits.MB} MB: upload a smaller one.")
        try:
            img = Image.open(io.BytesIO(data))  # lazy: the size is known before any pixel is decoded
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
            raise UserError("That file is not a readable image. Upload a PNG, JPEG or WebP picture.") from exc
    w, h = img.size
    if w * h > limits.IMAGE_PIXELS:
        raise UserError(f"The image is {w}x{h} pixels; the limit is "
                        f"{limits.IMAGE_PIXELS // 1_000_000} megapixels. Please upload a smaller image.")
    if min(w, h) < 1 or max(w, h) > limits.IMAGE_ASPECT * min(w, h):
        raise UserError(f"The image is {w}x{h} pixels, a strip rather than a picture: the longer side may be "
                        f"at most {limits.IMAGE_ASPECT} times the shorter. Crop it and upload it again.")
    try:
        return upright_rgb(img)  # decodes the pixels: truncated files fail here
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError("That file is not a readable image. Upload a PNG, JPEG or WebP picture.") from exc


def check_question(question: str | None, adapter: VLMAdapter | None = None,
                   answer_tokens: int = limits.ANSWER_TOKENS) -> str:
    """The stripped question, or a clear error when it is empty, too long in characters or, with
    an adapter, too long in tokens for the model's context (image tokens and answer included)."""
    q = (question or "").strip()
    if not q:
        raise UserError("The question is empty: type a question about the image.")
    if len(q) > limits.QUESTION_CHARS:
        raise UserError(f"The question is {len(q)} characters long; keep it under {limits.QUESTION_CHARS}.")
    if adapter is not None:
        try:
            adapter.check_user_text([q])
        except ValueError as exc:  # "<image>" typed in the box: a plain message, before anything runs
            raise UserError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
        room = adapter.context_length - adapter.num_image_tokens() - answer_tokens - 32  # 32: the chat template
        n = len(adapter.tokenizer(q, add_special_tokens=False)["input_ids"])
        if n > room:
            raise UserError(f"The question is {n} tokens long; this model's context leaves room for {max(room, 0)} "
                            "with the image and the answer. Shorten it.")
    return q


def check_strength(strength) -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise UserError(f"Strength must be a number, got {strength!r}.") from None
    if not -10 <= s <= 10:
        raise UserError(f"Strength {s} is outside the useful range [-10, 10].")
    return s


def check_ramp(value, what: str) -> float:
    """The playground's gate floor or full value, or a clear error (a floor of 1 or more would
    never steer; a full value above 1 would never steer whole)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"Gate {what} must be a number, got {value!r}.") from None
    if not 0 <= v <= 1 or (what == "floor" and v == 1):
        raise UserError(f"Gate {what} {v} is outside [0, 1{')' if what == 'floor' else ']'}.")
    return v


def ramp_of(eraser: Eraser, floor=None, full=None) -> tuple[float, float]:
    """The gate ramp (floor, full value) asked for, the eraser's where None, or a clear error."""
    f = eraser.config.gate_floor if floor is None else check_ramp(floor, "floor")
    t = eraser.config.gate_full if full is None else check_ramp(full, "full value")
    if not f < t:
        raise UserError(f"Gate floor {f} must stay under the gate full value {t}: lower the floor or raise "
                        "the full value.")
    return f, t


def check_pgd(eps_255, step_255, steps) -> PGDConfig:
    """PGD settings from the UI (eps and step size in 1/255 pixel units) or a clear error."""
    try:
        eps, step, n = float(eps_255), float(step_255), int(steps)
    except (TypeError, ValueError):
        raise UserError("PGD settings must be numbers (eps and step size in 1/255 units, steps a count).") from None
    if not 0 < eps <= 255:
        raise UserError(f"eps {eps:g}/255 is outside (0, 255]; the paper uses 16/255.")
    if not 0 < step <= eps:
        raise UserError(f"The step size {step:g}/255 must be > 0 and at most eps ({eps:g}/255).")
    if not 1 <= n <= limits.PGD_STEPS:
        raise UserError(f"Steps must be between 1 and {limits.PGD_STEPS}, got {n}.")
    return PGDConfig(eps=eps / 255, step_size=step / 255, steps=n, random_start=True, seed=0)


def subject_id(kind: str, name: str) -> str:
    """The id of a person added by upload ("upload-oskar-draper"): long names end in a digest of
    the whole name, so that two names sharing their first 40 characters stay two people."""
    slug = name_key(name).replace(" ", "-")  # names compared as everywhere else (core.data.records.name_key)
    if len(slug) > 40:
        slug = slug[:33] + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{kind}-{slug}"


@dataclass
class Session:
    """Per-browser-tab state (held in gr.State, never shared between users): the eraser this
    user fitted or uploaded (None = the shared default), the PGD images they kept, the model
    they loaded (None = the shared default)."""

    eraser: Eraser | None = None
    data: ForgetData | None = None  # the forget set this user brought ("Forget someone"), None = the model's own
    recall_images: list[tuple[Image.Image, str]] = field(default_factory=list)
    last_pgd: tuple[Image.Image, str] | None = None
    workbench: "Workbench | None" = None
    names: dict[str, str] = field(default_factory=dict)  # subject id -> name of people this user added
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class ActivationSets:
    """Last-prompt-token activations (N, L, d) of the prompt sets an eraser was fitted on."""

    forget: list[Prompt]
    retain: list[Prompt]
    recall: list[Prompt]
    erase: list[Prompt]
    H_forget: torch.Tensor
    H_retain: torch.Tensor
    H_recall: torch.Tensor
    H_erase: torch.Tensor


@dataclass
class PGDFrame:
    step: int
    image: Image.Image
    perturbation: Image.Image
    losses: list[float]
    target_logprobs: list[float]


@dataclass
class Comparison:
    original: str
    steered: str
    gates: dict[int, float]  # per-layer gate value of this input (read at the last prompt token)


_LOADED: "OrderedDict[str, Workbench]" = OrderedDict()  # models loaded by "Load model", shared
_LOADED_LOCK = threading.Lock()
_UMAP_FITS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="umap")  # heavy: one at a time, for every session


class Workbench:
    """The loaded model, its world (if it is a toy model) and the current default eraser."""

    def __init__(self, adapter: VLMAdapter, eraser: Eraser | None, world=None):
        self.adapter = adapter
        self.eraser = eraser
        self.world = world
        self.note = ""  # said once at start-up (e.g. why no eraser is loaded)
        self.key = ""  # the resolved folder it was loaded from by `shared` ("" for the default)
        self._acts: dict[tuple, ActivationSets] = {}
        self._umaps: dict[tuple, object] = {}  # fitted UMAP per activation set and layer
        self._umap_fits: dict[tuple, Future] = {}  # those being fitted (`_umap_fit`)
        self._acts_lock = threading.Lock()

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, eraser: str | Path | None = DEFAULT_ERASER,
             **load: object) -> "Workbench":
        """The workbench of a model folder (keyword arguments go to `load_adapter`: device,
        dtype, device_map, ...) with the eraser folder when it fits that model."""
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        try:
            adapter = load_adapter(model, **load)
        except (ModelNotFoundError, OSError, ValueError) as exc:
            raise UserError(f"Could not load the model {str(model)!r}: {exc}") from exc
        world, note = None, ""
        folder = resolve(model)
        if (folder / "world.json").is_file():
            from core.toyworld.train import load_world
            try:
                world = load_world(folder)
            except ValueError as exc:  # the model still loads: its views then work on a forget set you bring
                note = f"The model's toy world was not loaded: {exc}. "
        er = None
        if eraser and Path(eraser).is_dir():
            try:
                er = Eraser.from_pretrained(eraser, adapter=adapter)
            except ModelMismatchError as exc:
                note += f"The default eraser does not fit this model, so none is loaded ({exc})"
        wb = cls(adapter, er, world)
        wb.note = note
        return wb

    @classmethod
    def shared(cls, model: str | Path, default: "Workbench | None" = None) -> "Workbench":
        """The workbench of `model` for every session that asks for it: a model is loaded once
        and shared read-only (steering and capture are request-scoped), at most
        `limits.LOADED_MODELS` of them besides the default, the least recently asked dropped.
        In public mode only the allow-list's folders load, asked for by folder name."""
        from app import deploy
        name = str(model).strip()
        if not name:
            raise UserError("Type a model folder (or, where the hub cache is used, a hub id) to load.")
        if deploy.public():
            allowed = deploy.allowed_models(DEFAULT_MODEL if default is None else default.adapter.name_or_path)
            folder = allowed.get(Path(name).name)
            if folder is None:
                raise UserError(f"This public workbench loads only: {', '.join(sorted(allowed))}. Run the app on "
                                "your own machine (README, quick start) to load your own model.")
            name = str(folder)
        try:
            key = str(resolve(name).resolve())
        except (ModelNotFoundError, OSError, ValueError) as exc:
            raise UserError(deploy.scrub(f"Could not load the model {name!r}: {exc}")) from exc
        if default is not None and key == str(resolve(default.adapter.name_or_path).resolve()):
            return default
        with _LOADED_LOCK:
            if key in _LOADED:
                _LOADED.move_to_end(key)
                return _LOADED[key]
        try:
            wb = cls.load(key, eraser=None)  # loaded outside the lock: other sessions keep working
        except UserError as exc:
            raise UserError(deploy.scrub(str(exc))) from exc
        wb.key = key
        with _LOADED_LOCK:
            wb = _LOADED.setdefault(key, wb)
            _LOADED.move_to_end(key)
            while len(_LOADED) > limits.LOADED_MODELS:
                _LOADED.popitem(last=False)
        return wb

    @classmethod
    def current(cls, wb: "Workbench", default: "Workbench") -> "Workbench":
        """A session's loaded model as it stands: `wb` while it is among the loaded ones, else loaded
        again (and another dropped). Why: a session holding on to a dropped model kept it in memory,
        so with more models asked for than `limits.LOADED_MODELS` every one stayed loaded."""
        with _LOADED_LOCK:
            if _LOADED.get(wb.key) is wb:
                return wb
        return cls.shared(wb.key, default)

    @property
    def eraser_split(self) -> str:
        return (self.eraser.config.forget_split if self.eraser else "") or "forget_10"

    @property
    def layers(self) -> list[int]:
        return list(range(self.adapter.num_layers))

    def eraser_for(self, session: Session | None) -> Eraser:
        er = (session.eraser if session is not None else None) or self.eraser
        if er is None:
            raise UserError("No eraser is loaded: fit one in the Model & data tab (a split of the toy world, or "
                            "'Forget someone' with photos and a name, for any model), or upload one in the "
                            "Evaluate tab (`python -m core fit` writes them).")
        return er

    def _world(self):
        if self.world is None:
            raise UserError("This model has no toy world next to it, so there is no people table: use "
                            "'Forget someone' in the Model & data tab to bring photos and a name.")
        return self.world

    def data_for(self, eraser: Eraser | None, session: Session | None = None) -> ForgetData:
        """The forget set the views work on: the one this session brought, else the toy world's
        split of the eraser (the model's own data)."""
        if session is not None and session.data is not None:
            return session.data
        if self.world is None:
            raise UserError("No forget set yet: this model has no toy world, so bring one in the Model & data tab "
                            "('Forget someone': 1-10 photos and a name) and fit an eraser there.")
        from core.toyworld.fitsets import toy_data
        return toy_data(self.world, self._world_spec(eraser))

    def _world_spec(self, eraser: Eraser | None, fallback: bool = True):
        """The toy-world people an eraser forgets: its split, or its ids that are people of the world
        (a person added by upload is not one). An eraser none of whose ids is a world person gives
        the world's forget_10 as data to work on (`fallback`), or no one (what it forgets: the
        gallery marked ten retained people FORGET after 'Forget someone')."""
        from core.toyworld.fitsets import forget_spec
        spec = forget_spec((eraser.config.forget_split if eraser else "") or "forget_10")
        if isinstance(spec, list):
            known = {p.id for p in self.world.people}
            spec = [i for i in spec if i in known] or ("forget_10" if fallback else [])
        return spec

    def compare(self, image, question: str, strength: float, layers: list[int] | None, mode: str | None = None,
                max_new_tokens: int = 40, session: Session | None = None,
                gate_layer: int | None | str = "stored", floor: float | None = None,
                full: float | None = None) -> Comparison:
        """Original and steered greedy answers to one input, and the per-layer gates.
        gate_layer: where the gate is read (None: at each steered layer; "stored": the eraser's);
        floor / full: the gate ramp (None: the eraser's)."""
        eraser = self.eraser_for(session)
        q = check_question(question, self.adapter, max_new_tokens)
        s = check_strength(strength)
        check_mode(eraser, mode, gate_layer)
        img = None if image is None else read_image(image)
        batch = self.adapter.encode([q], None if img is None else [img])
        original = self.adapter.generate(batch, max_new_tokens)[0]
        chosen = eraser.config.steer_layers if layers is None else layers
        with self._steering(eraser, s, chosen, mode, gate_layer, floor, full)() as h:
            steered = self.adapter.generate(batch, max_new_tokens)[0]
        gates = {l: float(g[0]) for l, g in sorted(h.gates.items()) if l in eraser.fitted_layers}
        return Comparison(original, steered, gates)

    # ------------------------------------------------------------------ model & data
    def people_rows(self, session: Session | None = None) -> list[list[str]]:
        """One row per person of the toy world: name, forget/retain for the current eraser, profile."""
        world = self._world()
        er = (session.eraser if session else None) or self.eraser
        spec = self._world_spec(er, fallback=False)
        forget = {p.id for p in world.forget_people(spec)} if spec else set()
        return [[p.name, "FORGET" if p.id in forget else "retain", p.birthplace, p.occupation, p.hobby, p.pet,
                 p.favourite_food, p.birth_year, p.id] for p in world.people]

    def fit_eraser(self, forget: str | list[str], kind: str = "recall", session: Session | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, gate_variants: float = 0.0,
                   recipe: EraserConfig | None = None) -> Eraser:
        """Fit a new eraser for a forget split or hand-picked people, with the current eraser's
        null-space and steering settings (and the session's kept PGD images in the recall set).
        gate_variants: share of gate prompts added in later-turn formats (`fit --gate-variants`).
        recipe: the settings to fit with instead (default: the current eraser's; for a model with
        no eraser yet, the workbench preset, then tuned on the forget set's held-out rows as `fit`
        does: untuned, its 0.3 at every layer left a forgotten person's MCQ answers all standing
        on the toy model without its world)."""
        from core.contrast import fit_sets
        if isinstance(forget, ForgetData):
            data = forget
            spec = ",".join(data.forget_ids)
        else:
            from core.toyworld.fitsets import toy_data
            world = self._world()
            if not forget:
                raise UserError("Choose a forget split or tick at least one person to forget.")
            try:
                people = world.forget_people(forget)
            except (ValueError, KeyError) as exc:
                raise UserError(str(exc)) from exc
            if len(people) >= len(world.people):
                raise UserError("Everyone is in the forget set: keep at least one person to retain.")
            data = toy_data(world, forget)
            spec = forget if isinstance(forget, str) else ",".join(p.id for p in people)
        base = (session.eraser if session else None) or self.eraser
        tune = recipe is None and base is None
        if recipe is not None:
            cfg = EraserConfig(**recipe_of(recipe))
        elif base is None:  # a model with no eraser yet (one the project does not ship): the measured recipe
            cfg = EraserConfig.from_preset("workbench", self.adapter.num_layers)
        else:
            cfg = EraserConfig(**recipe_of(base.config))
        cfg.direction_kind = kind
        cfg.forget_split = spec
        cfg.data_source = data.name
        cfg.gate_variants = gate_variants
        try:
            sets = fit_sets(data, self.adapter, kind, seed=cfg.seed, variants=gate_variants, n_retain=cfg.gate_retain,
                            should_stop=should_stop)  # the PGD of the refusal / image_only directions
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if session is not None and session.recall_images:
            sets.recall += [Prompt(q, img, "pgd") for img, q in session.recall_images]
        sets.fold_for(cfg)  # a cross-fitted floor folds this forget set's retained people, not the last one's
        H: dict[str, torch.Tensor] = {}
        try:
            eraser = Eraser.fit(self.adapter, sets.forget, sets.retain, sets.recall, sets.erase, cfg,
                                progress=progress, should_stop=should_stop, activations=H)
        except UserError:
            raise
        except ValueError as exc:  # e.g. a gate ramp read off rows that do not separate
            raise UserError(f"{exc}.") from exc
        if tune:
            from core.tuner import tune_fit
            tune_fit(self.adapter, eraser, data, cfg.seed, should_stop=should_stop,
                     progress=None if progress is None else lambda d, t: progress("tuning", d, t))
        if session is not None:  # the views of this session now work on this forget set
            session.data = None if data.builder is not None else data
        if kind == "recall" and not (session is not None and session.recall_images):
            # exactly the sets the inspector would collect again: keep them for the map and the refit
            with self._acts_lock:
                self._remember(self._acts_key(eraser, data), ActivationSets(
                    sets.forget, sets.retain, sets.recall, sets.erase, H["forget"], H["retain"], H["recall"],
                    H["erase"]))
        return eraser

    def _remember(self, key: tuple, sets: ActivationSets) -> None:
        """Cache activation sets (caller holds the lock), the oldest dropped beyond limits.CACHED_SETS:
        uploads make new forget sets, and each costs tens of MB at the toy model's size."""
        self._acts.pop(key, None)
        self._acts[key] = sets
        while len(self._acts) > limits.CACHED_SETS:
            self._acts.pop(next(iter(self._acts)))

    def _acts_key(self, eraser: Eraser, data: ForgetData) -> tuple:
        """Which cached activation sets an eraser's views use: its forget people (not how its split is
        named: a hardened or extended eraser names them one by one, and the sets are the same), the
        source and what builds the gate sets."""
        c = eraser.config
        source = "toy" if data.builder is not None else data.key
        people = tuple(sorted(r.id for r in data.forget))
        return (source, people, c.seed, eraser.gate_position, c.gate_retain, c.gate_variants, self.contrast_kind(eraser))

    def forget_someone(self, photos, name: str, facts_json: str = "", session: Session | None = None,
                       progress: Callable[[str, int, int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None, add: bool = False,
                       keep=None) -> Eraser:
        """Fit an eraser that forgets one person known from 1-10 uploaded photos and a name
        (optionally facts, as JSON in the photo-folder schema). The toy world's people (all but
        anyone of that name) are the retained set when the model has one, and `keep`, photos of
        other people each named after the person ("Oskar_Draper.jpg"), join it; built-in scene
        questions and private-data requests always do. Why `keep`: with no retained people the
        gate learns "a person" rather than who (docs/open-world.md). The session then works on
        this data. With `add`, the person joins the current eraser as one more forget request
        instead (core.requests: only their prompts are run through the model)."""
        import json as _json
        from core.data.folder import MAX_FACTS_BYTES, MAX_IMAGES, FolderError, names_of_photos, subject_from
        files = [f for f in (photos or []) if f is not None]
        if not 1 <= len(files) <= MAX_IMAGES:
            raise UserError(f"Upload between 1 and {MAX_IMAGES} photos of the person (got {len(files)}).")
        name = (name or "").strip()
        if not name or len(name) > 80:
            raise UserError("Type the person's name (1-80 characters): the eraser also forgets questions by name.")
        if len(facts_json or "") > MAX_FACTS_BYTES:
            raise UserError(f"The facts are over {MAX_FACTS_BYTES // 2**20} MB of text: one person's facts fit in far less.")
        try:
            facts = _json.loads(facts_json) if (facts_json or "").strip() else None
        except (ValueError, RecursionError) as exc:  # RecursionError: nested far beyond the schema
            raise UserError(f"The facts are not valid JSON ({exc}). Leave the box empty or use the schema shown "
                            "under it.") from None
        images = [read_image(upload_path(f)) for f in files]
        subject = subject_id("upload", name)
        keep_files = [upload_path(f) for f in (keep or []) if f is not None]
        if keep_files and add:
            raise UserError("People to keep join a new fit: untick *Add this person to the current eraser*, or "
                            "remove the photos of people to keep.")
        try:
            kept = names_of_photos(keep_files)
        except FolderError as exc:
            raise UserError(str(exc)) from exc
        if len(kept) > limits.KEEP_PEOPLE or any(len(v) > MAX_IMAGES for v in kept.values()):
            raise UserError(f"Give at most {limits.KEEP_PEOPLE} people to keep, {MAX_IMAGES} photos each (got "
                            f"{len(kept)} people, at most {max(map(len, kept.values()))} photos of one).")
        if name_key(name) in {name_key(k) for k in kept}:
            raise UserError(f"{name} is both the person to forget and one of the people to keep: remove their "
                            "photos from the people to keep.")
        retain, real = [], []
        if self.world is not None:
            retain = [self.world.person_record(p) for p in self.world.people if name_key(p.name) != name_key(name)]
            real = self.world.eval_items("real")
        names = [*kept, *(r.name for r in retain[:3] if r.name)]
        try:
            retain = [subject_from(subject_id("keep", k), [read_image(p) for p in ps], k, None,
                                   [name, *names]) for k, ps in kept.items()] + retain
            rec = subject_from(subject, images, name, facts, names)
            data = ForgetData([rec], retain, real=real, name=f"upload: {name}").for_tokenizer(self.adapter.tokenizer)
        except (FolderError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        if add:
            from core.contrast import eraser_gate_sets
            from core.requests import RequestError, add_subjects, contrast_for
            live = self.live_eraser(session, progress, should_stop)
            known = [(r.id, r.name) for r in (session.data.retain if session is not None and session.data else [])]
            known += [(p.id, p.name) for p in (self.world.people if self.world is not None else [])]
            same = [i for i, n in known if n and name_key(n) == name_key(name)]  # retained until now as a record
            try:
                new = add_subjects(live, self.adapter, eraser_gate_sets(data, live.config)[0], progress=(
                    None if progress is None else lambda d, t: progress("the new person's prompts", d, t)),
                    should_stop=should_stop, contrast=contrast_for(live, data, self.adapter, [subject]),
                    same_as=same)
            except (RequestError, FloorFoldsError) as exc:  # e.g. an uploaded eraser with folds and nobody to fold
                raise UserError(str(exc)) from exc
            if session is not None:
                session.names[subject] = name
                session.eraser = new
            return new
        return self.fit_eraser(data, "recall", session, progress, should_stop)

    # ------------------------------------------------------------------ forget requests
    def live_eraser(self, session: Session | None, progress: Callable[[str, int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Eraser:
        """This session's eraser with its fit state, which forget requests need: an eraser loaded
        without one gets it from its gate sets' activations (collected once, or the cached ones)."""
        from core.eraser import FitState
        er = self.eraser_for(session)
        if not er.config.subject_gates:
            raise UserError("This eraser has one gate for its whole forget set: people can be added or withdrawn "
                            "only with one gate per person (the shipped preset; tick it in the Null space view and "
                            "refit).")
        if er.state is not None:
            return er
        sets = self.activation_sets(er, progress, should_stop, session=session)
        tags = [p.tag for p in sets.forget]
        if sorted(set(tags)) != sorted(er.config.subjects):
            raise UserError("This eraser's gate sets no longer match its people: refit it in the Model & data tab.")
        live = Eraser(er.direction, er.gate, er.config, er.diagnostics,
                      FitState(sets.H_forget.float(), tags, sets.H_retain.float(), [p.tag for p in sets.retain],
                               sets.H_recall.float(), [p.tag for p in sets.recall],
                               sets.H_erase.float(), [p.tag for p in sets.erase]),
                      er.joint)
        if session is not None:
            session.eraser = live
        return live

    def harden(self, session: Session | None, rounds, steps, progress: Callable[[str, int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> tuple[Eraser, list[str]]:
        """This session's eraser after `rounds` of adversarial gate fitting (core.hardening): PGD
        that closes the gate (eps 16/255, `steps` steps) on 8 image prompts per forget person, the
        attacked images added as that person's forget rows, the gates solved again; its gate ramp
        read again off the grown rows when it follows them. Returns it and one line per round.
        Stopped part-way, nothing changes."""
        from core.hardening import harden, hardening_rows
        try:
            r, n = int(rounds), int(steps)
        except (TypeError, ValueError):
            raise UserError("The rounds and the PGD steps must be whole numbers.") from None
        if not 1 <= r <= limits.HARDEN_ROUNDS:
            raise UserError(f"Hardening rounds must be between 1 and {limits.HARDEN_ROUNDS}, got {r}.")
        if not 1 <= n <= limits.HARDEN_STEPS:
            raise UserError(f"PGD steps per round must be between 1 and {limits.HARDEN_STEPS}, got {n}.")
        live = self.live_eraser(session, progress, should_stop)
        rows = hardening_rows(self.activation_sets(live, progress, should_stop, session=session).forget)
        if not rows:
            raise UserError("Hardening perturbs pictures: this forget set has no image prompts.")
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if progress is not None:
                progress("hardening round", len(lines), r)
        cfg = PGDConfig(eps=16 / 255, step_size=2 / 255, steps=n, seed=live.config.seed)
        try:
            hardened = harden(live, self.adapter, rows, r, cfg, log=log, should_stop=should_stop)
        except FloorFoldsError as exc:  # its ramp is read again each round
            raise UserError(str(exc)) from exc
        if should_stop is not None and should_stop():  # a round's PGD cut short: keep the eraser as it was
            raise InterruptedError("hardening stopped")
        hardened.config.adversarial_rounds = live.config.adversarial_rounds + r
        if session is not None:
            session.eraser = hardened
        return hardened, lines

    def forgotten(self, session: Session | None = None) -> list[list[str]]:
        """[subject, name, forgotten since] for each subject the session's eraser forgets."""
        er = self.eraser_for(session)
        since: dict[str, str] = {}
        for r in er.config.requests:
            for s in r["subjects"]:
                if r["action"] == "remove":
                    since.pop(s, None)
                elif r["action"] in ("fit", "add"):  # "harden" adds rows, not people
                    since[s] = f"{r['action']}, {r.get('at', '')}"
        return [[s, self.name_of(s, session), since.get(s, "the first fit")] for s in
                (er.config.subjects or [er.config.forget_split or "(the forget set)"])]

    def name_of(self, subject: str, session: Session | None = None) -> str:
        """A subject's name: one this session added or brought, else the toy world's, else its id."""
        if session is not None:
            if subject in session.names:
                return session.names[subject]
            if session.data is not None:
                for rec in (*session.data.forget, *session.data.retain):
                    if rec.id == subject and rec.name:
                        return rec.name
        if self.world is not None:
            try:
                return self.world.person(subject).name
            except KeyError:
                pass
        return subject

    def withdraw(self, subject: str, session: Session | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Eraser:
        """The session's eraser without `subject`: their answers come back (core.requests)."""
        from core.requests import RequestError, remove_subjects
        if not subject:
            raise UserError("Pick the person to withdraw from the list of who this eraser forgets.")
        live = self.live_eraser(session, progress, should_stop)
        try:
            new = remove_subjects(live, [subject])
        except RequestError as exc:
            raise UserError(str(exc)) from exc
        if session is not None:
            session.eraser = new
        return new

    def use_mllmu_files(self, files, forget_ids: str = "", session: Session | None = None,
                        progress: Callable[[str, int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> Eraser:
        """Fit an eraser on uploaded MLLMU-Bench parquet files, named by split as `world --export`
        writes them (forget_*.parquet, retain_*.parquet, test_*.parquet, real.parquet); optional
        comma-separated subject ids pick whom to forget among them."""
        from core.data.mllmu import load_parquet
        from core.data.source import from_splits
        paths = [Path(upload_path(f)) for f in (files or []) if f is not None]
        if not paths:
            raise UserError("Upload MLLMU-Bench parquet files: forget_*.parquet and retain_*.parquet at least.")
        try:
            too_big = any(p.stat().st_size > limits.PARQUET_BYTES for p in paths)
        except OSError as exc:  # an upload removed meanwhile (temporary files are cleared after an hour)
            raise UserError(f"Could not read an uploaded file ({exc.__class__.__name__}): upload it again.") from None
        if len(paths) > limits.PARQUET_FILES or too_big:
            raise UserError(f"Upload at most {limits.PARQUET_FILES} parquet files of at most {limits.PARQUET_BYTES // 2**20} MB each.")
        named = {}
        for p in paths:
            split = upload_split(p.name)
            if split is None and p.name.startswith("train-"):  # MLLMU-Bench's download names every shard so
                raise UserError(f"{p.name}: the MLLMU-Bench download names every split's file so, in a folder named "
                                "after the split: rename each file after its folder (forget_10.parquet, "
                                "retain_90.parquet, Retain_Set.parquet) and upload them again. Files over "
                                f"{limits.PARQUET_BYTES // 2**20} MB are refused here (the download's retain "
                                "splits and Test_Set are about that size or larger): for those, run `python -m core "
                                "fit --data DOWNLOAD_FOLDER ...` on your own machine.")
            if split is None:
                raise UserError(f"{p.name}: name each file after its split (forget_10.parquet, retain_90.parquet, "
                                "test_10.parquet, real.parquet; MLLMU-Bench's Test_Set and Retain_Set too).")
            if split in named:  # the earlier file was dropped without a word
                raise UserError(f"{named[split].name} and {p.name} are both the {split} split: upload one file per split.")
            named[split] = p
        if "forget" not in named:
            raise UserError("Upload the forget split too (forget_*.parquet): it names the people to forget.")
        try:
            split = {k: load_parquet(v, max_rows=limits.PARQUET_ROWS, max_bytes=limits.PARQUET_UNCOMPRESSED)
                     for k, v in named.items()}
            data = from_splits(split, "uploaded MLLMU files")
            ids = [i.strip() for i in (forget_ids or "").split(",") if i.strip()]
            if ids:
                data = data.pick(ids)
            data.for_tokenizer(self.adapter.tokenizer)
        except (OSError, ValueError) as exc:
            raise UserError(f"Could not use those files: {exc}") from exc
        return self.fit_eraser(data, "recall", session, progress, should_stop)

    # ------------------------------------------------------------------ PGD studio
    def pgd_frames(self, image, question: str, target: str, eps_255, step_255, steps,
                   should_stop: Callable[[], bool] | None = None) -> Iterator[PGDFrame]:
        """Stream PGD toward `target`: the perturbed image, the amplified perturbation and the
        loss / target log-prob history at every step (stoppable between steps)."""
        cfg = check_pgd(eps_255, step_255, steps)
        q = check_question(question, self.adapter, limits.TARGET_TOKENS)
        t = (target or "").strip()
        if not t:
            raise UserError("The target is empty: type the answer PGD should make the model give.")
        if len(t) > limits.TARGET_CHARS:
            raise UserError(f"The target is {len(t)} characters long; keep it under {limits.TARGET_CHARS} (a short "
                            "answer: every PGD step runs the model over it).")
        n = len(self.adapter.tokenizer(t, add_special_tokens=False)["input_ids"])
        if n > limits.TARGET_TOKENS:
            raise UserError(f"The target is {n} tokens long; keep it under {limits.TARGET_TOKENS} (a short answer).")
        img = read_image(image)
        losses, logps = [], []
        for st in pgd(self.adapter, [img], [q], [t], cfg, should_stop=should_stop):
            losses.append(st.loss)
            logps.append(float(st.target_logprob[0]))
            yield PGDFrame(st.step, to_image(st.image[0]), amplify(st.delta[0], cfg.eps), list(losses), list(logps))

    # ------------------------------------------------------------------ activations
    def activation_sets(self, eraser: Eraser, progress: Callable[[str, int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        session: Session | None = None) -> ActivationSets:
        """The gate sets (forget / retain) and recall / erase contrast of `eraser`'s forget set,
        with activations; computed once per forget set and seed, then shared read-only."""
        from core.contrast import direction_sets, eraser_gate_sets
        data = self.data_for(eraser, session)
        pos = eraser.gate_position
        c = eraser.config
        key = self._acts_key(eraser, data)
        with self._acts_lock:
            if key in self._acts:
                return self._acts[key]
        # collected without the lock: other users keep working (two first requests for the same
        # set both collect it, once, and the results are equal: collection is deterministic)
        f, r = eraser_gate_sets(data, c)
        # the eraser's own contrast where it needs no PGD (a drawing must not run an attack); PGD-built
        # directions are drawn over the recall construction's clouds, and the map's title says so
        rec, era = direction_sets(data, None, self.contrast_kind(eraser), seed=eraser.config.seed)
        H = {}
        for name, prompts in (("forget", f), ("retain", r), ("recall", rec), ("erase", era)):
            cb = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
            H[name] = collect(self.adapter, prompts, progress=cb, should_stop=should_stop,
                              position=pos if name in ("forget", "retain") else "last")
        sets = ActivationSets(f, r, rec, era, H["forget"], H["retain"], H["recall"], H["erase"])
        with self._acts_lock:
            self._remember(key, sets)
        return sets

    def _clouds_note(self, eraser: Eraser) -> str:
        kind = eraser.config.direction_kind
        return "" if self.contrast_kind(eraser) == kind else f"; recall / erase clouds: the recall construction, " \
            f"d_erase: its own {kind} one"

    @staticmethod
    def contrast_kind(eraser: Eraser) -> str:
        """The direction construction whose recall / erase clouds the views draw."""
        return eraser.config.direction_kind if eraser.config.direction_kind in ("recall", "text_only") else "recall"

    def input_activation(self, image, question: str, position: str = "last") -> torch.Tensor:
        """(L, d) activation of one input where the gate reads it (last prompt token or mean)."""
        q = check_question(question, self.adapter, 0)
        img = None if image is None else read_image(image)
        return collect(self.adapter, [Prompt(q, img)], position=position)[0]

    def activation_map(self, eraser: Eraser, layer, method: str = "PCA", image=None, question: str | None = None,
                       progress: Callable[[str, int, int], None] | None = None, session: Session | None = None,
                       should_stop: Callable[[], bool] | None = None):
        """Forget / retain / recall / erase activations at one layer in 2-D (PCA with the
        d_erase arrow, or UMAP), points coloured by gate value, the current input starred.
        The UMAP of a set and layer is fitted once and kept; the input is placed on it."""
        from app.plots import activation_map
        from core.projection import pca_2d
        l = self._layer(eraser, layer)
        sets = self.activation_sets(eraser, progress, should_stop, session=session)
        H = {"forget": sets.H_forget[:, l], "retain": sets.H_retain[:, l], "recall": sets.H_recall[:, l],
             "erase": sets.H_erase[:, l]}
        prompts = {"forget": sets.forget, "retain": sets.retain, "recall": sets.recall, "erase": sets.erase}
        hover = {k: [self._describe(p) for p in v] for k, v in prompts.items()}
        gates = {k: gate_scores(H[k].double(), eraser.gate[l]) for k in ("forget", "retain")}
        cur = None
        if question and question.strip():
            cur = self.input_activation(image, question, eraser.gate_position)[l]
        if method == "UMAP":  # a seeded sample of each set: UMAP's cost grows faster than the points
            keep = _sample_sets({k: len(v) for k, v in H.items()}, limits.UMAP_POINTS, eraser.config.seed)
            H = {k: v[keep[k]] for k, v in H.items()}
            hover = {k: [v[i] for i in keep[k].tolist()] for k, v in hover.items()}
            gates = {k: v[keep[k]] for k, v in gates.items()}
            total = sum(len(v) for v in prompts.values())
            shown = sum(len(v) for v in keep.values())
            key = self._acts_key(eraser, self.data_for(eraser, session)) + (l,)
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped before UMAP")
            reducer = _await(self._umap_fit(key, torch.cat([H[k] for k in H]), eraser.config.seed), should_stop)
            xy = torch.from_numpy(reducer.embedding_).double()
            star = None if cur is None else torch.from_numpy(reducer.transform(cur[None].double().numpy()))[0].double()
            coords, i = {}, 0
            for k in H:
                coords[k], i = xy[i:i + len(H[k])], i + len(H[k])
            sample = f", a sample of {shown} of {total} points" if shown < total else ""
            return activation_map(coords, hover, gates, None, star,
                                  f"Layer {l}: UMAP of {_where(eraser)} activations{sample}{self._clouds_note(eraser)}",
                                  ("UMAP 1", "UMAP 2"))
        proj = pca_2d(torch.cat([H["forget"], H["retain"]]), direction=eraser.direction[l])
        coords = {k: proj.project(v) for k, v in H.items()}
        start = coords["recall"].mean(0)
        pct = [f"PC {i + 1} ({100 * float(e):.0f}% var.)" for i, e in enumerate(proj.explained)]
        return activation_map(coords, hover, gates, (start, proj.arrow),
                              None if cur is None else proj.project(cur[None])[0],
                              f"Layer {l}: PCA of forget + retain {_where(eraser)} activations (arrow: d_erase from the "
                              f"recall mean{self._clouds_note(eraser)})",
                              (pct[0], pct[1]))

    def nullspace_view(self, eraser: Eraser, layer, floor=None, full=None):
        """Spectrum and gate histogram at one layer, the histogram of the gate that decides the
        steering with the gate ramp over it (floor / full: the playground's, else the eraser's),
        and the per-layer diagnostics table."""
        from app.plots import gate_histogram, spectrum
        l = self._layer(eraser, layer)
        d = eraser.diagnostics
        if "eigenvalues" not in d:
            raise UserError("This eraser was saved without diagnostics; refit it here to inspect its null space.")
        exact = d.get("exact_null_space", torch.zeros(len(d["k"]), dtype=torch.bool))
        # "exact": fewer retain rows than the width, so k grew to the whole exact null space (core.nullspace)
        rows = [[i, f"{int(d['k'][i])} (exact null space)" if bool(exact[i]) else int(d["k"][i]),
                 round(float(d["leakage"][i]), 4), round(float(d["forget_energy"][i]), 4),
                 round(float(d["forget_gates"][i].mean()), 3), round(float(d["retain_gates"][i].mean()), 3),
                 round(float(d["retain_gates"][i].abs().max()), 3), round(float(d["direction_norm"][i]), 3),
                 round(gate_auc(d["forget_gates"][i], d["retain_gates"][i]), 3)]
                for i in eraser.fitted_layers]
        return (spectrum(d["eigenvalues"][l], int(d["k"][l]), l),
                gate_histogram(d["forget_gates"][l], d["retain_gates"][l], f"Layer {l}: gate values"),
                self.decision_view(eraser, floor, full), rows)

    def decision_view(self, eraser: Eraser, floor=None, full=None):
        """The gate that decides the steering (`Eraser.gate_layers`: the joint gate, a gate layer or
        the steered layers' own) on the fit's rows, with the ramp's floor and full value: where the
        defence settings fall among the rows the gate was fitted on."""
        from app.plots import gate_histogram
        rows = eraser.row_gates()
        if rows is None:
            raise UserError("This eraser was saved without diagnostics; refit it here to inspect its gate.")
        f, t = ramp_of(eraser, floor, full)
        layers = eraser.gate_layers
        where = (f"joint gate over layers {', '.join(map(str, layers))}" if eraser.config.joint_gate
                 else f"gate of layer{'s' if len(layers) > 1 else ''} {', '.join(map(str, layers))}")
        return gate_histogram(*rows, f"The gate that decides the steering ({where}) on the fit rows, with the ramp",
                              (f, t))

    def _umap_fit(self, key: tuple, X: torch.Tensor, seed: int) -> Future:
        """The UMAP of one activation set and layer: kept once fitted, and while it is being fitted
        every request for it waits on that one fit. Fits run one at a time in the background
        (`_UMAP_FITS`), and one a visitor stopped waiting for still lands in the cache: Draw, Stop,
        Draw again neither starts a second fit nor piles up threads past the one-heavy-job limit."""
        with self._acts_lock:
            if key in self._umaps:
                kept: Future = Future()
                kept.set_result(self._umaps[key])
                return kept
            fut = self._umap_fits.get(key)
            if fut is not None:
                return fut
            from core.projection import umap_model
            fut = self._umap_fits[key] = _UMAP_FITS.submit(umap_model, X, seed=seed)

        def landed(done: Future) -> None:
            with self._acts_lock:
                self._umap_fits.pop(key, None)
                if done.exception() is None:
                    self._umaps[key] = done.result()
                    while len(self._umaps) > 2 * limits.CACHED_SETS:
                        self._umaps.pop(next(iter(self._umaps)))
        fut.add_done_callback(landed)  # outside the lock: it runs at once when the fit already ended
        return fut

    def _layer(self, eraser: Eraser, layer) -> int:
        try:
            l = int(layer)
        except (TypeError, ValueError):
            raise UserError(f"Pick a layer (got {layer!r}).") from None
        if l not in eraser.fitted_layers:
            raise UserError(f"Layer {l} is not fitted by this eraser (fitted: {eraser.fitted_layers}).")
        return l

    def _describe(self, p: Prompt) -> str:
        who = p.tag
        if self.world is not None:
            try:
                who = self.world.person(p.tag).name
            except KeyError:
                pass  # a scene, a general fact or a refusal prompt: the tag says which
        img = "image + text" if p.image is not None else "text only"
        return f"{who} ({img})<br>{p.question.splitlines()[0][:80]}"

    def refit(self, eraser: Eraser, ratio, gamma, retain_weight=None, per_person=None,
              session: Session | None = None, progress: Callable[[str, int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None, joint_layers=None, floor_folds=None) -> Eraser:
        """The eraser with its gate refitted at another null-space ratio, gamma, retain weight,
        one gate per forget person or one for all, one gate over `joint_layers` read before
        the steered layers or (empty) each steered layer's own (None keeps the eraser's), and a
        gate floor cross-fitted in `floor_folds` folds of the retained people (0: read off the
        gate's own rows; None keeps the eraser's). An eraser with a fit state is refitted on its
        own rows: refitting on its data's gate sets dropped the people added by requests and the
        rows of hardening rounds (while the config still said hardened)."""
        try:
            r, g = float(ratio), float(gamma)
            w = eraser.config.retain_weight if retain_weight is None else float(retain_weight)
        except (TypeError, ValueError):
            raise UserError("ratio, gamma and the retain weight must be numbers") from None
        if not 0 < r <= 1:
            raise UserError(f"The null-space ratio must be in (0, 1], got {r:g}.")
        if not 0 <= g <= 1e6:
            raise UserError(f"gamma must be between 0 and 1e6, got {g:g}.")
        if not 0 <= w <= 1e6:
            raise UserError(f"The retain weight must be between 0 (the paper's fit) and 1e6, got {w:g}.")
        joint = None
        if joint_layers is not None:
            try:
                joint = sorted({int(l) for l in joint_layers})
            except (TypeError, ValueError):
                raise UserError("The joint gate's layers must be layer numbers.") from None
            try:
                eraser.config_reading(joint)  # checked before any activation is collected
            except ValueError:
                raise UserError(f"A joint gate reads at least two of the eraser's fitted layers "
                                f"({', '.join(map(str, eraser.fitted_layers))}), got {joint}; leave it empty for "
                                "each steered layer's own gate.") from None
        folds = None
        if floor_folds is not None:
            try:
                folds = int(floor_folds)
            except (TypeError, ValueError, OverflowError):
                raise UserError("The cross-fitted floor's folds must be a whole number (0: off).") from None
            if folds == 1 or not 0 <= folds <= MAX_FLOOR_FOLDS or folds != float(floor_folds):
                raise UserError(f"The cross-fitted floor's folds must be 0 (off) or 2-{MAX_FLOOR_FOLDS}, got "
                                f"{floor_folds}.")
        if (eraser.config.floor_folds if folds is None else folds) and not (
                eraser.config.subject_gates if per_person is None else per_person):
            raise UserError("A cross-fitted floor refits the gate on the fit's rows, kept with one gate per forget "
                            "person: tick that box too, or set the folds to 0.")
        state = eraser.state
        if state is not None:  # its own rows: people added by requests and hardening rounds' rows stay
            H_forget, H_retain, tags = state.H_forget.double(), state.H_retain.double(), state.forget_tags
            retain_tags = state.retain_tags
        else:  # the gate sets of its data (what the eraser was fitted on)
            sets = self.activation_sets(eraser, progress, should_stop, session=session)
            H_forget, H_retain, tags = sets.H_forget, sets.H_retain, [p.tag for p in sets.forget]
            retain_tags = [p.tag for p in sets.retain]
        who = None
        if folds:
            from core.contrast import retained_subjects
            who = eraser.config.floor_subjects or retained_subjects(self.data_for(eraser, session), eraser.config.seed)
        try:
            new = eraser.refit_gate(H_forget, H_retain, ratio=r, gamma=g, retain_weight=w,
                                    subject_gates=None if per_person is None else bool(per_person),
                                    forget_subjects=tags, joint_gate=joint, retain_tags=retain_tags,
                                    floor_folds=folds, floor_subjects=who)
        except ValueError as exc:  # e.g. fewer retained people than folds
            raise UserError(f"{exc}.") from exc
        new.state = state  # later requests and hardening rounds start from the same rows
        return new

    # ------------------------------------------------------------------ selectivity
    def examples(self, eraser: Eraser, per_side: int = 3, session: Session | None = None) -> list[tuple[str, Prompt]]:
        """A few forget and retain questions (first photos) to show selectivity at once."""
        data = self.data_for(eraser, session)
        qs = ("What is this person's occupation?", "Where was this person born?", "What is this person's hobby?")
        if data.builder is None:  # a subject may be known by photos and a name only: ask who it is first
            qs = ("Who is this person?",) + qs[:2]
        out = []
        for side, recs in (("forget", data.forget), ("retain", data.retain)):
            for i, r in enumerate([r for r in recs if r.images][:per_side]):
                image = self.world.canonical_image(self.world.person(r.id)) if data.builder is not None else r.images[0]
                out.append((f"{side}: {r.name or r.id}", Prompt(qs[i % len(qs)], image, r.id)))
        return out

    def _steering(self, eraser: Eraser, strength: float, layers: list[int] | None, mode: str | None,
                  gate_layer: int | None | str, floor: float | None, full: float | None) -> Callable:
        """The playground's whole setting as a steering context (strength, layers, mode, where the
        gate is read, its ramp), for the comparison and the views that steer many prompts. Why: the
        examples and the heat-map took strength, layers and mode only, so under a gate floor the
        comparison answered as the model and the examples refused the same portrait."""
        f, t = ramp_of(eraser, floor, full)

        def steering():
            try:
                return eraser.apply(self.adapter, strength=strength, layers=layers, mode=mode, gate_layer=gate_layer,
                                    floor=f, full=t)
            except ValueError as exc:  # a gate layer without a gate, a latched gate in every_step mode
                raise UserError(f"{exc}.") from exc
        return steering

    def selectivity(self, eraser: Eraser, strength, layers: list[int] | None, mode: str | None = None,
                    max_new_tokens: int = 16, session: Session | None = None, gate_layer: int | None | str = "stored",
                    floor: float | None = None, full: float | None = None) -> list[list[str]]:
        """[example, question, original, steered] for forget and retain examples, batched, at the
        playground's setting (gate_layer / floor / full as in `compare`)."""
        from core.evaluation import replies
        s = check_strength(strength)
        check_mode(eraser, mode, gate_layer)
        steering = self._steering(eraser, s, layers, mode, gate_layer, floor, full)
        ex = self.examples(eraser, session=session)
        prompts = [p for _, p in ex]
        before = replies(self.adapter, prompts, max_new_tokens)
        after = replies(self.adapter, prompts, max_new_tokens, steering=steering)
        return [[label, p.question, a, b] for (label, p), a, b in zip(ex, before, after)]

    def heatmap(self, eraser: Eraser, image, question: str, strengths: list[float], mode: str | None = None,
                max_new_tokens: int = 16, progress: Callable[[str, int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, gate_layer: int | None | str = "stored",
                floor: float | None = None, full: float | None = None
                ) -> tuple[list[int], list[float], list[list[str]]]:
        """Steered answer of one input for every (single layer, strength): (layers, strengths, answers).
        One generation per cell (7 x 32 on a 7B model): `progress` after each, `should_stop()` between.
        The gate is read and ramped as the playground sets it (gate_layer / floor / full)."""
        q = check_question(question, self.adapter, max_new_tokens)
        check_mode(eraser, mode, gate_layer)
        values = [check_strength(s) for s in strengths]
        img = None if image is None else read_image(image)
        batch = self.adapter.encode([q], None if img is None else [img])
        layers = eraser.fitted_layers
        grid: list[list[str]] = []
        for l in layers:
            row = []
            for s in values:
                if should_stop is not None and should_stop():
                    raise InterruptedError("heat-map stopped")
                with self._steering(eraser, s, [l], mode, gate_layer, floor, full)():
                    row.append(self.adapter.generate(batch, max_new_tokens)[0])
                if progress is not None:
                    progress("answers", len(grid) * len(values) + len(row), len(layers) * len(values))
            grid.append(row)
        return layers, list(strengths), grid

    # ------------------------------------------------------------------ evaluate, save, load
    def evaluate(self, eraser: Eraser | None, limit: int | None = 3,
                 progress: Callable[[str, int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, session: Session | None = None,
                 source: str = "forget set"):
        """MLLMU-style evaluation of the model with (or, eraser=None, without) the eraser, on the
        session's forget set (source "forget set") or on the toy world's forget_10 split ("toy world")."""
        from core.contrast import refusal_sets
        from core.evaluation import EvalConfig, evaluate
        if source == "toy world":
            from core.toyworld.fitsets import toy_data
            data = toy_data(self._world(), "forget_10")
        else:
            data = self.data_for(eraser, session)
        if limit is not None and not 1 <= int(limit) <= limits.EVAL_ROWS:
            raise UserError(f"Rows per split must be between 1 and {limits.EVAL_ROWS}, got {limit}.")
        steering = None if eraser is None else eraser.task_steering(self.adapter)
        return evaluate(self.adapter, data.splits(limit), refusal_sets(data, limit),
                        EvalConfig(), steering, None if eraser is None else eraser_summary(eraser),
                        progress, should_stop)

    def attack(self, eraser: Eraser, people: int = 2, steps: int = 20,
               progress: Callable[[str, int, int], None] | None = None,
               should_stop: Callable[[], bool] | None = None, session: Session | None = None,
               eps: float = 16) -> list[dict]:
        """Input-side attacks on the eraser (core.robustness.attack_report: image rephrasings, text
        and conversation attacks, adaptive PGD on the gate with budget `eps` in 1/255) on the first
        `people` forget and retain people."""
        from core.robustness import RobustnessConfig, attack_report, prefix_facts
        data = self.data_for(eraser, session)
        if not 1 <= int(people) <= limits.ATTACK_PEOPLE:
            raise UserError(f"People per split must be between 1 and {limits.ATTACK_PEOPLE}, got {people}.")
        if not 1 <= int(steps) <= limits.ATTACK_STEPS:
            raise UserError(f"PGD steps must be between 1 and {limits.ATTACK_STEPS}, got {steps}.")
        if not 1 <= float(eps) <= limits.ATTACK_EPS:
            raise UserError(f"The PGD budget must be between 1/255 and {limits.ATTACK_EPS}/255, got {eps:g}/255.")
        if not data.retain:
            raise UserError("The attacks also score retained people, and this forget set has none: fit with "
                            "retained people (the toy world's, or MLLMU retain files) first.")
        from core.robustness import cloze_queries
        for name, rows in (("forget", data.forget[:int(people)]), ("retained", data.retain[:int(people)])):
            if not cloze_queries(rows, name):  # the attacks score fill-in-the-blank questions asked with a picture
                raise UserError(f"The attacks score fill-in-the-blank questions asked with a picture, and the {name} "
                                "people here have none: add cloze facts with \"image\": true (Forget someone's facts "
                                "box, or MLLMU files with Mask_Task), or raise 'people per split'.")
        return attack_report(self.adapter, eraser, data.forget[:int(people)], data.retain[:int(people)],
                             prefix_facts(data, 4, self.adapter.tokenizer),
                             RobustnessConfig(eps=float(eps) / 255, steps=int(steps)), progress, should_stop)

    def adopt_eraser(self, session: Session, eraser: Eraser) -> str:
        """Make an uploaded eraser this session's. The forget set the session brought stays only when
        it holds every subject the eraser forgets (an eraser downloaded from this session); otherwise
        the views go back to the model's own data, so that they never score one eraser on another's
        people. Returns a note saying which."""
        session.eraser = eraser
        data = session.data
        if data is None:
            return ""
        ids = {r.id for r in (*data.forget, *data.retain)} | set(session.names)  # names: people added since
        cfg = eraser.config
        people = set(cfg.subjects) or {s for s in (cfg.forget_split or "").split(",") if s}
        if people and people <= ids:
            return f" The views keep your forget set ({data.name})."
        session.data, session.names = None, {}
        return (" Its people are not in the forget set you brought, so the views are back on the model's own "
                "data" + ("." if self.world is not None else " (none: bring a forget set in Model & data)."))

    def load_eraser_zip(self, path) -> Eraser:
        """An eraser from a zip of its folder (safetensors + JSON), checked against this model."""
        if path is None:
            raise UserError("No file: upload the .zip written by 'Download eraser'.")
        p = Path(path)
        if not p.is_file():
            raise UserError("The uploaded file is gone: upload the .zip again.")
        if p.stat().st_size > limits.ERASER_ZIP:
            raise UserError("That file is too large to be an eraser of this model.")
        try:
            with zipfile.ZipFile(p) as z, tempfile.TemporaryDirectory() as tmp:
                entries = [i for i in z.infolist() if not i.filename.endswith("/")]
                names = [i.filename for i in entries]
                allowed = {WEIGHTS_NAME, CONFIG_NAME, "tuning.json", STATE_NAME}
                if not names or len(names) > limits.ERASER_ENTRIES or any(
                        Path(n).name not in allowed or ".." in n or n.startswith("/") for n in names):
                    raise UserError("That zip does not hold an eraser (expected its safetensors and JSON files).")
                if sum(i.file_size for i in entries) > limits.ERASER_UNZIPPED:  # refused before anything is unpacked
                    raise UserError("That zip unpacks to more than an eraser can hold; it was not opened.")
                for info in entries:
                    try:
                        with z.open(info) as src:  # the sizes in the zip's directory can lie: read at most the cap
                            data = src.read(limits.ERASER_UNZIPPED + 1)
                    # encrypted, compressed another way, or damaged data
                    except (RuntimeError, NotImplementedError, EOFError, zlib.error):
                        raise UserError("That zip cannot be read (encrypted, compressed in an unsupported way, or "
                                        "damaged): upload the .zip written by 'Download eraser', as it was "
                                        "written.") from None
                    if len(data) > limits.ERASER_UNZIPPED:
                        raise UserError("That zip unpacks to more than an eraser can hold; it was not opened.")
                    (Path(tmp) / Path(info.filename).name).write_bytes(data)
                return Eraser.from_pretrained(tmp, adapter=self.adapter)
        except zipfile.BadZipFile:
            raise UserError("That file is not a zip: upload the .zip written by 'Download eraser'.") from None
        except ModelMismatchError as exc:
            raise UserError(f"That eraser belongs to another model: {exc}") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"Could not read that eraser: {exc}") from exc


def _await(fut: Future, should_stop: Callable[[], bool] | None, poll: float = 0.1):
    """The result of `fut` (a computation with no stop hook of its own, such as UMAP's fit, running
    in the background), or InterruptedError as soon as `should_stop()` says so: the visitor's job
    ends at once; the computation goes on and its result is kept by whoever started it."""
    while should_stop is not None:
        try:
            return fut.result(timeout=poll)
        except FutureTimeout:
            if should_stop():
                raise InterruptedError("stopped") from None
    return fut.result()


def _sample_sets(sizes: dict[str, int], at_most: int, seed: int) -> dict[str, torch.Tensor]:
    """Sorted indices of a seeded sample of each set, each in proportion to its size, `at_most`
    in all (every set keeps at least one point)."""
    total = sum(sizes.values())
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, n in sizes.items():
        k = n if total <= at_most else max(1, min(n, round(n * at_most / total)))
        out[name] = torch.randperm(n, generator=g)[:k].sort().values
    return out


def gate_auc(forget: torch.Tensor, retain: torch.Tensor) -> float:
    """ROC AUC of the gate separating forget from retain rows (scikit-learn): 1.0 = every forget
    row gates above every retain row, 0.5 = chance. Scale-free, unlike a threshold at 0.5."""
    from sklearn.metrics import roc_auc_score
    scores = torch.cat([forget, retain]).double().numpy()
    labels = [1] * len(forget) + [0] * len(retain)
    return float(roc_auc_score(labels, scores))


def check_mode(eraser: Eraser, mode: str | None, gate_layer: int | None | str = "stored") -> None:
    """A steering mode this eraser can run with its gate read where `gate_layer` says ("stored": the
    eraser's own reading), said in words (not a bare error from the hooks)."""
    if mode == "every_step" and eraser.gate_position == "mean":
        raise UserError("This eraser reads its gate at the mean of the prompt tokens, once per prompt, so it cannot "
                        "recompute it at every generated token: choose 'prefill' or 'latched'.")
    ahead = eraser.config.joint_gate or eraser.config.gate_layer is not None
    if mode == "every_step" and ((gate_layer == "stored" and ahead) or isinstance(gate_layer, int)):
        raise UserError("This eraser's gate is read before the steered layer and latched at the prompt, so it cannot "
                        "be recomputed at every generated token: choose 'prefill' or 'latched' (or, in the "
                        "playground, read the gate at each steered layer).")


def eraser_zip(eraser: Eraser, directory: str | Path) -> Path:
    """Zip an eraser folder (save_pretrained) for download, with its fit state when it has one (so
    that forget requests can go on after it is uploaded again). A public app names the model by its
    folder only: the config carried the server's absolute path (the fingerprint is what is checked)."""
    from app import deploy
    if deploy.public():
        import copy
        import dataclasses
        model = dict(eraser.config.model)
        model["name_or_path"] = Path(str(model.get("name_or_path") or "")).name
        eraser = copy.copy(eraser)
        eraser.config = dataclasses.replace(eraser.config, model=model)
    folder = eraser.save_pretrained(Path(directory) / "eraser", state=eraser.state is not None)
    out = Path(directory) / "eraser.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    return out


def eraser_summary(eraser: Eraser) -> dict:
    c = eraser.config
    return {"direction": c.direction_kind, "forget": c.forget_split, "strength": c.strength,
            **({"task_strengths": dict(c.task_strengths)} if c.task_strengths else {}),
            "layers": c.steer_layers if c.steer_layers is not None else c.layers, "mode": c.mode,
            "ratio": c.ratio, "gamma": c.gamma, **({"retain_weight": c.retain_weight} if c.retain_weight else {})}


def _where(eraser: Eraser) -> str:
    return "last-token" if eraser.gate_position == "last" else "prompt-mean (forget/retain)"
