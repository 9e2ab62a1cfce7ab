"""A forget set and what to retain, from any source: MLLMU-Bench parquet files, a photo folder,
records built in code, or the toy world (which brings its own prompt builders).

    data = load_data(mllmu={"forget": "forget_10.parquet", "retain": "retain_90.parquet"})
    data = load_data(forget_dir="photos/", mllmu={"retain": "retain_90.parquet"})

Split names follow MLLMU-Bench: forget, retain, test (the forget subjects with new images and
wordings), real (general knowledge that must survive). Anything else given is evaluated too.
"""

from __future__ import annotations

import re
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .records import PersonRecord, name_key
from .wordings import PLAIN_ENGLISH, Wordings

RETAIN_GROUPS = ("people, image", "people, by name", "general")  # the tuner's retain groups
SPLITS = ("forget", "retain", "test", "real")
SCENE_ROWS = 20  # scored scenes for a forget set with nothing to retain (ForgetData.splits)
NAMED_RETAIN = 60  # named retained subjects the gate should see; made-up names make up the rest (decoy_names)
MLLMU_FILES = {"forget": "forget_*.parquet", "retain": "retain_*.parquet", "test": "test_*.parquet",
               "real": "real.parquet"}  # what `python -m core world --export` writes (forget_10, retain_90...)
# MLLMU-Bench as downloaded from its Hub repository: one folder per config, each holding shards
# (forget_10/train-00000-of-00001.parquet); Retain_Set holds the real celebrities, the benchmark's
# check that general knowledge survives, so it is read as the `real` split
HUB_FOLDERS = {"test": "Test_Set", "real": "Retain_Set"}


@dataclass
class ForgetData:
    """Records by split, the wordings to ask them with, and (toy world only) a builder of the
    prompt sets the shipped eraser was fitted on (`core.contrast` uses it when present)."""

    forget: list[PersonRecord]
    retain: list[PersonRecord] = field(default_factory=list)
    test: list[PersonRecord] = field(default_factory=list)
    real: list[PersonRecord] = field(default_factory=list)
    extra: dict[str, list[PersonRecord]] = field(default_factory=dict)
    wordings: Wordings = PLAIN_ENGLISH
    name: str = "records"
    builder: Any = None  # toy world: an object with the World-based prompt builders
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # identity for caches of derived activations
    # every row of a test file shared by several forget sets (MLLMU-Bench's): `test` keeps the forget
    # people's, and `pick` draws a newly picked person's from here (their rows were lost before)
    test_pool: list[PersonRecord] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.forget:
            raise ValueError("the forget set is empty: give at least one subject to forget")
        ids = [r.id for r in self.forget]
        clash = sorted(set(ids) & {r.id for r in self.retain})
        if clash:
            raise ValueError(f"subjects in both the forget and the retain set: {', '.join(clash[:5])}")
        # the same person under another id (a photo folder named after them, an id in other case) would
        # put their questions on both sides of the gate: forgotten and kept at once
        forget_ids = {r.id.casefold(): r.id for r in self.forget}
        forget_names = {name_key(r.name): r.id for r in self.forget if r.name}
        same = [(r.id, forget_ids.get(r.id.casefold()) or (r.name and forget_names.get(name_key(r.name))))
                for r in self.retain]
        same = [(keep, gone) for keep, gone in same if gone]
        if same:
            pairs = ", ".join(f"{keep} = {gone}" for keep, gone in same[:5])
            raise ValueError(f"the retain set holds people of the forget set under other ids ({pairs}, by name or by "
                             "id in another case): remove them from the retain files or folder")

    def splits(self, limit: int | None = None) -> dict[str, list[PersonRecord]]:
        """What `evaluate` scores: every non-empty split, at most `limit` records each. A forget set
        that brings nothing to retain (a few photos and a name) is scored on built-in scene
        pictures as well (`scenes`, SCENE_ROWS of them), so that an evaluation always shows what
        the eraser costs."""
        if limit is not None and limit < 1:  # v[:-1] would drop each split's last row without a word
            raise ValueError(f"limit must be at least 1 record per split (or None for all), got {limit}")
        out = {"forget": self.forget, "test": self.test, "retain": self.retain, "real": self.real, **self.extra}
        if not self.retain and not self.real and "scenes" not in out:
            from .scenes import scene_records
            out["scenes"] = scene_records(SCENE_ROWS if limit is None else min(limit, SCENE_ROWS))
        return {k: v[:limit] for k, v in out.items() if v}

    @property
    def forget_ids(self) -> list[str]:
        return [r.id for r in self.forget]

    @property
    def unnamed(self) -> list[str]:
        """The ids of the people to forget who have no name (MLLMU-Bench's files have none)."""
        return [r.id for r in self.forget if not r.name]

    @property
    def names(self) -> list[str]:
        return [r.name for r in [*self.forget, *self.retain] if r.name]

    def decoy_names(self, seed: int = 0) -> list[str]:
        """Made-up full names, enough to bring the named retained subjects up to NAMED_RETAIN: the
        gate's retain rows ask about them by name (core.contrast). Why: with three photos and a
        name and nobody else, every name question the gate saw was about the forgotten person, and
        it refused two thirds of other people's questions by name; 60 made-up names brought that
        to 3% (docs/open-world.md). First and last words come from the wordings' lists (spellable
        by the model's tokenizer after `for_tokenizer`) and the retained subjects' names, never from
        a forgotten subject's name; no subject's own name is one."""
        need = NAMED_RETAIN - sum(1 for r in self.retain if r.name)
        if need <= 0:
            return []
        taken = {w.lower() for r in self.forget if r.name for w in r.name.split()}
        kept = [r.name.split() for r in self.retain if r.name]
        firsts = [w for w in dict.fromkeys([*self.wordings.decoy_first, *(n[0] for n in kept)]) if w.lower() not in taken]
        lasts = [w for w in dict.fromkeys([*self.wordings.decoy_last, *(n[-1] for n in kept)]) if w.lower() not in taken]
        names = {n.lower() for n in self.names}
        pool = [f"{f} {l}" for f in firsts for l in lasts if f != l and f"{f} {l}".lower() not in names]
        rng = np.random.default_rng([seed, 37])
        return [pool[i] for i in sorted(rng.permutation(len(pool))[:need].tolist())]

    def for_tokenizer(self, tokenizer: Any) -> "ForgetData":
        """Keep the wordings this tokenizer can spell; refuse a forget subject's name it cannot
        (Wordings.usable). Returns self, so that loading and checking read as one line."""
        self.wordings = self.wordings.usable(tokenizer, [r.name for r in self.forget if r.name])
        return self

    def pick(self, ids: Sequence[str]) -> "ForgetData":
        """Forget only the subjects `ids` (of the forget or retain records); the rest is retained.
        A source with its own prompt builder (a toy world) rebuilds itself for those subjects."""
        if self.builder is not None and hasattr(self.builder, "pick"):
            return self.builder.pick(list(ids))
        pool = {r.id: r for r in [*self.forget, *self.retain]}
        unknown = [i for i in ids if i not in pool]
        if unknown:
            raise ValueError(f"unknown subject id(s) {', '.join(unknown)}; known: {', '.join(sorted(pool)[:12])}...")
        ids = list(dict.fromkeys(ids))  # an id given twice is one subject, counted once
        forget = [pool[i] for i in ids]
        retain = [r for r in pool.values() if r.id not in set(ids)]
        test = [r for r in (self.test_pool or self.test) if r.id in set(ids)]
        return ForgetData(forget, retain, test, self.real, dict(self.extra), self.wordings, self.name, self.builder,
                          test_pool=self.test_pool)


def parse_specs(specs: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """`["forget=PATH", "retain=PATH"]` (the CLI's --data) or a mapping, or one folder holding the
    files `world --export` writes (`["DIR"]`), as split -> path."""
    if isinstance(specs, Mapping):
        return _known_splits(dict(specs))
    out: dict[str, str] = {}
    hub = False
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and not Path(spec).is_dir():  # a folder named "runs/a=b" is a folder, not the split "runs/a"
            if name.strip() in out:  # the first file was dropped without a word
                raise ValueError(f"--data names the split {name.strip()!r} twice; give one file (or one folder of "
                                 "shards) per split")
            out[name.strip()] = path
        elif Path(spec).is_dir():
            found = {}
            for k, pattern in MLLMU_FILES.items():
                files = sorted(Path(spec).glob(pattern))
                if len(files) > 1:
                    raise ValueError(f"{spec} holds several {pattern} files ({', '.join(f.name for f in files)}): "
                                     f"name them with --data {k}=PATH")
                if files:
                    found[k] = str(files[0])
            if "forget" not in found:  # the download's folders: the export's names found nothing to forget
                found = {**hub_splits(Path(spec)), **found}
                hub = hub or "forget" in found
            if not found:
                raise ValueError(f"{spec} holds none of {', '.join(MLLMU_FILES.values())}, nor the MLLMU-Bench "
                                 "download's forget_N folders: pass files as --data forget=PATH --data retain=PATH")
            ignored = sorted({f.name for f in Path(spec).glob("*.parquet")}
                             - {Path(v).name for v in found.values()})
            if ignored:  # e.g. retain.parquet or Test_10.parquet: read as nothing, without a word
                warnings.warn(f"{spec}: {', '.join(ignored[:5])} match none of {', '.join(MLLMU_FILES.values())} and "
                              f"are not read; name them with --data SPLIT=PATH", stacklevel=2)
            twice = sorted(set(found) & set(out))
            if twice:  # the folder's file replaced the one named before it without a word
                raise ValueError(f"--data names the split(s) {', '.join(map(repr, twice))} twice (the folder {spec} "
                                 f"holds {', '.join(Path(found[k]).name for k in twice)}); give one file per split")
            out.update(found)
        else:
            raise ValueError(f"--data expects SPLIT=PATH (e.g. forget=forget_10.parquet) or a folder of MLLMU "
                             f"files, got {spec!r}")
    if hub and "retain" not in out:  # another split's retain set holds this one's forget people: none is read
        warnings.warn(f"{Path(out['forget']).name} has no {_retain_of(Path(out['forget']).name)} folder beside it: no "
                      "retain split is read; give one with --data retain=PATH", stacklevel=2)
    return _known_splits(out)


def unnamed_note(ids: Sequence[str], total: int) -> str:
    """What a forget set without names loses, and the fix. Why: MLLMU-Bench's own files have no
    `name` column, and the project's questions by name were then left out without a word."""
    return (f"{len(ids)} of the {total} people to forget have no name ({', '.join(ids[:3])}"
            f"{'...' if len(ids) > 3 else ''}): the project's own questions by name are not asked, so the gate "
            "learns their names only from the files' own text questions. MLLMU-Bench's files have no name "
            "column: add one (each ID's full name) to ask them")


def hub_splits(folder: Path) -> dict[str, str]:
    """The splits of an MLLMU-Bench download (`huggingface-cli download MLLMMU/MLLMU-Bench
    --repo-type dataset`): forget_N, its retain_(100-N) when there, Test_Set as the test split
    and Retain_Set as `real`, each a folder of shards. Empty when `folder` holds no forget_N
    folder. Why: every shard there is named train-00000-of-00001.parquet, so the download's own
    folder matched none of the export's file names and was refused as holding no split."""
    subs = {p.name: p for p in folder.iterdir() if p.is_dir()}
    forgets = sorted((n for n in subs if re.fullmatch(r"forget_\d+", n)), key=lambda n: int(n[7:]))
    if len(forgets) > 1:  # the full download: forget_5, forget_10 and forget_15
        paired = [f for f in forgets if _retain_of(f) in subs]
        pick = "forget_10" if "forget_10" in paired else (paired or forgets)[0]
        example = " ".join(f"--data {k}={v}" for k, v in _hub_split(subs, pick).items())
        raise ValueError(f"{folder} is an MLLMU-Bench download with {len(forgets)} forget splits "
                         f"({', '.join(forgets)}): choose one, e.g. {example}")
    return _hub_split(subs, forgets[0]) if forgets else {}


def _retain_of(forget: str) -> str:
    return f"retain_{100 - int(forget[7:])}"  # MLLMU-Bench pairs forget_5 with retain_95


def _hub_split(subs: dict[str, Path], forget: str) -> dict[str, str]:
    pairs = {"forget": forget, "retain": _retain_of(forget), **HUB_FOLDERS}
    return {k: str(subs[v]) for k, v in pairs.items() if v in subs}


def _known_splits(specs: dict[str, str]) -> dict[str, str]:
    """Why: a misspelt split ("retian=...") was read and then never used, so a fit ran without the
    retained people it was given."""
    unknown = sorted(set(specs) - set(MLLMU_FILES))
    if unknown:
        raise ValueError(f"unknown split name(s) {', '.join(map(repr, unknown))}: name each file as one of "
                         f"{', '.join(MLLMU_FILES)} (e.g. --data retain=retain_90.parquet)")
    return specs


def load_data(mllmu: Sequence[str] | Mapping[str, str] = (), forget_dir: str | Path | None = None,
              retain_dir: str | Path | None = None, wordings: Wordings = PLAIN_ENGLISH) -> ForgetData:
    """Records from MLLMU-Bench parquet files (split -> path) and/or photo folders. A forget
    folder replaces a forget file; at least one forget source is needed."""
    from .folder import load_folder
    from .mllmu import load_parquet
    files = parse_specs(mllmu)
    if forget_dir is not None:
        if "forget" in files:
            raise ValueError("give the forget set once: --forget-dir or --data forget=..., not both")
        if "test" in files:  # it was dropped without a word: it asks about the file's forget people
            raise ValueError("--data test=... holds new pictures of the forget FILE's people; with --forget-dir, "
                             "drop it (a photo folder has no test split)")
    split = {k: load_parquet(p, MLLMU_FILES.get(k)) for k, p in files.items()}
    if forget_dir is not None:
        split["forget"] = load_folder(forget_dir)
    if retain_dir is not None:
        split["retain"] = [*split.get("retain", []), *load_folder(retain_dir)]
    name = str(forget_dir) if forget_dir is not None else files.get("forget", "records")
    return from_splits(split, name, wordings)


def from_splits(split: dict[str, list[PersonRecord]], name: str = "records",
                wordings: Wordings = PLAIN_ENGLISH) -> ForgetData:
    """ForgetData from records by split name (what `load_data` and the app's MLLMU upload read).
    The test split keeps the forget people's rows only: MLLMU-Bench's test file is shared by
    forget_5/10/15, and its evaluation filters it so (other people's rows were scored as the
    forget set's)."""
    split = dict(split)
    if not split.get("forget"):
        raise ValueError("no forget set: pass --data forget=PATH (MLLMU parquet) or --forget-dir FOLDER (photos)")
    forget = split.pop("forget")
    test = split.get("test", [])
    ids = {r.id for r in forget}
    if test and not ids & {r.id for r in test}:  # a test file of other people was scored as the forget people's
        raise ValueError(f"the test split holds none of the forget set's people (it has "
                         f"{', '.join(sorted(r.id for r in test)[:5])}...): it is the forget people's new pictures "
                         "and wordings; pass the test file that goes with this forget set")
    extra = {k: v for k, v in split.items() if k not in SPLITS}
    return ForgetData(forget, split.get("retain", []), [r for r in test if r.id in ids], split.get("real", []), extra,
                      wordings, name, test_pool=list(test))
