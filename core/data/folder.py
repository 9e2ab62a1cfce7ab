"""A photo folder as a forget (or retain) set: one sub-folder per subject.

    forget/
      mara_quill/            # the folder name is the subject id
        1.png 2.jpg ...      # 1-10 photos (png, jpg, jpeg, webp, bmp)
        facts.json           # optional: {"name": ..., "qa": [...], "mcq": [...], "cloze": [...]}

`facts.json` (or `facts.jsonl`, one item per line with a "kind" key) holds, all optional:
- "name": the subject's name (default: the folder name, "_" read as a space);
- "qa": [{"question", "answer", "image": true}] open questions (scored by ROUGE-L);
- "mcq": [{"question", "options": {"A": ..., "B": ...}, "answer": "B", "image": true}];
- "cloze": [{"question": "... __ ...", "answer", "image": true}].
"image" says whether the question is asked with a photo ("this person") or by name (true or
false, default true). Questions are text, answers and options text or numbers, each at most 500
characters; an MCQ has 2-8 options keyed by capital letters; at most 200 items per subject and
1 MB per file; other keys are refused (anything else is refused, naming what to fix). Photos are
turned upright by their EXIF orientation; hidden files ("._1.png") and __MACOSX are skipped.

A subject with photos and a name only is valid: it is asked the project's standard name
questions (an open question, a cloze and a four-way MCQ whose other options are the names of
the other subjects, or of built-in names when there are fewer than four).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .records import (IMAGE_TEXTUAL, LETTERS, PURE_TEXT, ClassificationItem, GenerationItem, MaskItem, PersonRecord,
                      name_key)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
OTHER_PICTURES = (".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")  # pictures a folder may hold that are not read
FACTS_FILES = ("facts.json", "facts.jsonl")
FACT_KEYS = ("name", "qa", "mcq", "cloze")
# what `save_folder` leaves at the root of a folder it wrote: `world --export-folder` empties a folder
# before writing it again only when this is there (a user's own photo folder has the same layout)
EXPORT_MARK = ".toy-world-export"
# copies of a file made by a desktop or a phone ("Oskar_Draper (1).jpg", "Oskar_Draper copy.jpg")
COPY_WORDS = re.compile(r"\s*(\(\d+\)|\bcopy\b)\s*", re.IGNORECASE)
MAX_IMAGES = 10
MAX_IMAGE_BYTES = 20 * 2**20
MAX_PIXELS = 4096 * 4096
# a decoded picture is kept at most this long on its longer side: above every supported processor's input
# (SmolVLM's longest edge, 1536), and a 4096 x 4096 upload no longer holds 50 MB for as long as its forget set lives
KEEP_SIDE = 1536
MAX_FACTS_BYTES = 2**20  # a facts file or the app's facts box: what one person's facts need, many times over
MAX_FACT_ITEMS = 200  # qa + cloze + mcq items of one subject (MLLMU-Bench has a few dozen per person)
MAX_FACT_CHARS = 500  # one question, answer or option
SPARE_NAMES = ("Alex Morgan", "Sam Rivers", "Jordan Lee", "Taylor Brooks")
NAME_QUESTION, NAME_CLOZE = "Who is this person?", "This person's name is __."
CAMERA_NAMES = ("img", "dsc", "dscn", "dcim", "pxl", "photo", "image", "screenshot", "whatsapp", "signal", "pic")


class FolderError(ValueError):
    """A photo folder that cannot be used; the message says what to fix."""


def rgb(image: Image.Image) -> Image.Image:
    """RGB with transparent pixels on white: transformers' own `convert_to_rgb`, what the models'
    processors apply (a plain convert("RGB") turned them black, another picture than the processor's)."""
    from transformers.image_transforms import convert_to_rgb
    return Image.fromarray(convert_to_rgb(eight_bit(image), return_numpy=True))


def eight_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey pictures (modes I;16*, I, F) as 8-bit grey "L": converted to RGB as
    they are, every value above 255 was clipped (a 16-bit grey photo came out almost white).
    16-bit values are scaled by 1/257; 32-bit integers too when they exceed 255; floats in [0, 1]
    by 255."""
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    a = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0
    elif image.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def upright_rgb(image: Image.Image) -> Image.Image:
    """A photo file's picture as every viewer shows it: turned by its EXIF orientation (a phone
    photo reached the model on its side), then `rgb`."""
    return rgb(ImageOps.exif_transpose(image))


def read_image(path: Path) -> Image.Image:
    """An RGB image, refusing files too large to be photos before they are decoded."""
    return _capped(path, path.stat().st_size, path.name)


def decode_image(data: bytes, name: str) -> Image.Image:
    """An RGB image from encoded bytes (a parquet cell), with `read_image`'s caps."""
    return _capped(io.BytesIO(data), len(data), name)


def _capped(source, size: int, name: str) -> Image.Image:
    """Why: the header gives the size before any pixel is decoded, so a decompression bomb or a
    poster-sized scan is refused at no cost. A phone photo is turned upright by its EXIF
    orientation, as every viewer shows it (the model saw it on its side)."""
    if size > MAX_IMAGE_BYTES:
        raise FolderError(f"{name} is over {MAX_IMAGE_BYTES // 2**20} MB")
    with Image.open(source) as im:
        if im.width * im.height > MAX_PIXELS:
            raise FolderError(f"{name} is {im.width}x{im.height} pixels (at most {MAX_PIXELS} in all)")
        if max(im.size) > KEEP_SIDE:
            im.draft("RGB", (KEEP_SIDE, KEEP_SIDE))  # a JPEG decodes at a reduced scale straight away
        out = upright_rgb(im)
    if max(out.size) > KEEP_SIDE:
        out.thumbnail((KEEP_SIDE, KEEP_SIDE), Image.Resampling.LANCZOS)
    return out


def read_images(paths: Iterable[Path], subject: str) -> list[Image.Image]:
    """The readable images among `paths`; unreadable ones are skipped with a warning that names them."""
    out = []
    for p in paths:
        try:
            out.append(read_image(p))
        except (OSError, UnidentifiedImageError, FolderError, Image.DecompressionBombError) as exc:
            warnings.warn(f"{subject}: skipped {p.name}, which is not a readable image ({exc})", stacklevel=2)
    return out


def _facts(folder: Path) -> dict[str, Any]:
    for name in FACTS_FILES:
        f = folder / name
        if not f.is_file():
            continue
        if f.stat().st_size > MAX_FACTS_BYTES:
            raise FolderError(f"{f} is over {MAX_FACTS_BYTES // 2**20} MB: one person's facts fit in far less")
        try:
            if name.endswith(".jsonl"):
                facts: dict[str, Any] = {}
                for line in f.read_text().splitlines():
                    if line.strip():
                        item = json.loads(line)
                        if not isinstance(item, dict):  # a list line crashed in pop() with no file named
                            raise FolderError(f"{f}: each line is one JSON object ({{\"kind\": \"qa\", ...}}); "
                                              f"got {line.strip()[:40]!r}")
                        kind = item.pop("kind", "qa")
                        if kind not in FACT_KEYS:
                            raise FolderError(f"{f}: an item's kind is one of {', '.join(FACT_KEYS)}; got {str(kind)[:40]!r}")
                        if kind == "name":
                            facts["name"] = item.get("name")
                        else:
                            facts.setdefault(kind, []).append(item)
                return facts
            facts = json.loads(f.read_text())
        except (ValueError, AttributeError, RecursionError) as exc:  # RecursionError: nested beyond any schema
            raise FolderError(f"{f} is not valid JSON ({type(exc).__name__}: {str(exc)[:200]}); see "
                              "core/data/folder.py for the schema") from None
        if not isinstance(facts, dict):
            raise FolderError(f"{f} must hold one JSON object with name / qa / mcq / cloze keys")
        return facts
    return {}


def _item_type(item: dict, where: str) -> str:
    """Why a real boolean: "image": "false" is a non-empty string, and was read as true."""
    image = item.get("image", True)
    if not isinstance(image, bool):
        raise FolderError(f"{where}: an item's \"image\" is true or false (asked with a photo or by name); "
                          f"got {str(image)[:40]!r}")
    return IMAGE_TEXTUAL if image else PURE_TEXT


def _items(facts: dict[str, Any], kind: str, where: str) -> list:
    items = facts.get(kind, [])
    if not isinstance(items, list):
        raise FolderError(f"{where}: {kind!r} must be a list of objects, got {type(items).__name__}")
    return items


def _text(value: Any, key: str, where: str) -> str:
    """A question must be text; an answer or option may be a number. Why: a number where text
    belongs used to fail deep inside with a TypeError, and a megabyte question became a prompt."""
    ok = isinstance(value, str) or (key != "question" and isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok or len(str(value)) > MAX_FACT_CHARS:
        raise FolderError(f"{where}: {key} must be a text of at most {MAX_FACT_CHARS} characters; got {str(value)[:60]!r}")
    return str(value)


def _blank(value: Any) -> bool:
    """Missing or empty; 0 is an answer ("answer": 0 was refused as missing)."""
    return value is None or (isinstance(value, (str, dict, list)) and not (value.strip() if isinstance(value, str)
                                                                           else value))


def _need(item: Any, keys: tuple[str, ...], where: str) -> dict:
    if not isinstance(item, dict) or any(_blank(item.get(k)) for k in keys):  # " " matched every reply with a space
        raise FolderError(f"{where}: each item needs {', '.join(keys)}; got {str(item)[:200]}")
    out = dict(item)
    for k in keys:
        if k != "options":
            out[k] = _text(item[k], k, where)
        elif (not isinstance(item[k], dict) or not 2 <= len(item[k]) <= 8
              or not all(isinstance(o, str) and re.fullmatch("[A-H]", o) for o in item[k])):
            # keys other than letters were kept, and a reply naming the right option scored 0
            raise FolderError(f"{where}: an MCQ's options are one object of 2-8 capital letters -> text, such as "
                              f'{{"A": "Oslo", "B": "Lima"}}; got {str(item[k])[:60]}')
        else:
            out[k] = {_text(o, "option", where): _text(v, "option", where) for o, v in item[k].items()}
    return out


def _warn_unread(folder: Path, why: str, paths: list[Path]) -> None:
    """Name what a folder holds and the loader does not read (it was dropped without a word)."""
    if paths:
        warnings.warn(f"{folder}: skipped {', '.join(sorted(p.name for p in paths)[:5])}; {why}", stacklevel=3)


def subject_record(folder: Path, other_names: list[str] = ()) -> PersonRecord:
    """One subject folder as a record (see the module docstring for the layout)."""
    facts = _facts(folder)
    name = _subject_name(folder, facts)
    # "._1.png" is macOS's metadata beside a copied 1.png, not a photo
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise FolderError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): add 1-{MAX_IMAGES} photos "
                          "of the subject")
    if len(files) > MAX_IMAGES:
        raise FolderError(f"{folder} holds {len(files)} images; use at most {MAX_IMAGES} per subject")
    _warn_unread(folder, "photos in it are not read: move them into the subject's folder itself",
                 [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and not viewer_clutter(p.name)])
    _warn_unread(folder, f"only {', '.join(IMAGE_SUFFIXES)} photos are read: convert them (e.g. to .png)",
                 [p for p in folder.iterdir() if p.suffix.lower() in OTHER_PICTURES and not p.name.startswith(".")])
    images = read_images(files, folder.name)
    if not images:
        raise FolderError(f"none of the {len(files)} images in {folder} could be read")
    return subject_from(folder.name, images, name, facts, other_names, str(folder / "facts"))


def _subject_name(folder: Path, facts: dict[str, Any]) -> str:
    """facts.json's name, else the folder's ("_" read as a space; an all-lower-case folder name is
    capitalised, or in the name MCQ it was the one option written differently from the others)."""
    if str(facts.get("name") or "").strip():  # a blank name falls back to the folder's, as a missing one
        return " ".join(str(facts["name"]).split())
    name = " ".join(folder.name.replace("_", " ").split())
    return name.title() if name == name.lower() else name


def subject_from(subject_id: str, images: list[Image.Image], name: str, facts: dict[str, Any] | None = None,
                 other_names: Iterable[str] = (), where: str = "facts") -> PersonRecord:
    """A subject from its photos, its name and optional facts (the facts.json schema above):
    what a photo folder and the app's "Forget someone" upload both build."""
    if not name or not name.strip():
        raise FolderError(f"{where}: the subject needs a name: the project asks about them by name too")
    if len(name.strip()) > 80:
        raise FolderError(f"{where}: the name {name.strip()[:40]!r}... is over 80 characters: give the person's name")
    facts = facts or {}
    if not isinstance(facts, dict):
        raise FolderError(f"{where}: facts must be one JSON object with qa / mcq / cloze lists")
    unknown = sorted(set(facts) - set(FACT_KEYS))
    if unknown:  # "MCQ" or "questions" were dropped, and the name questions asked instead of the user's facts
        raise FolderError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; the keys are "
                          f"{', '.join(FACT_KEYS)}")
    rec = PersonRecord(id=subject_id, images=list(images), name=" ".join(name.split()))
    qa, cloze, mcq = (_items(facts, kind, where) for kind in ("qa", "cloze", "mcq"))
    if len(qa) + len(cloze) + len(mcq) > MAX_FACT_ITEMS:
        raise FolderError(f"{where}: {len(qa) + len(cloze) + len(mcq)} facts; give at most {MAX_FACT_ITEMS} per subject")
    for it in qa:
        it = _need(it, ("question", "answer"), where)
        rec.generation.append(GenerationItem(it["question"], it["answer"], _item_type(it, where)))
    for it in cloze:
        it = _need(it, ("question", "answer"), where)
        if "__" not in it["question"]:
            raise FolderError(f"{where}: a cloze question marks its blank with __; got {it['question']!r}")
        rec.mask.append(MaskItem(it["question"], it["answer"], _item_type(it, where)))
    for it in mcq:
        it = _need(it, ("question", "options", "answer"), where)
        opts = it["options"]
        if it["answer"] not in opts:
            raise FolderError(f"{where}: MCQ answer {it['answer']!r} is not one of its options {sorted(opts)}")
        item = ClassificationItem(it["question"], opts, str(it["answer"]))
        by_image = _item_type(it, where) == IMAGE_TEXTUAL
        (rec.classification_image if by_image else rec.classification_text).append(item)
    if not (rec.generation or rec.mask or rec.classification_image or rec.classification_text):
        add_name_questions(rec, other_names)
    return rec


def add_name_questions(rec: PersonRecord, other_names: Iterable[str] = ()) -> None:
    """The standard questions for a subject known by photos and a name only."""
    rec.generation.append(GenerationItem(NAME_QUESTION, f"This person is {rec.name}.", IMAGE_TEXTUAL, "name"))
    rec.mask.append(MaskItem(NAME_CLOZE, str(rec.name), IMAGE_TEXTUAL, "name"))
    others = {name_key(n): " ".join(str(n).split()) for n in [*other_names, *SPARE_NAMES] if n}
    pool = [n for k, n in others.items() if k != name_key(rec.name)][:3]  # its own name once, however written
    slot = sum(map(ord, rec.id)) % 4  # deterministic, and not always the same letter
    names = pool[:slot] + [str(rec.name)] + pool[slot:]
    rec.classification_image.append(ClassificationItem(NAME_QUESTION, dict(zip(LETTERS, names)), LETTERS[slot],
                                                       "name"))


def names_of_photos(paths: Iterable[str | Path]) -> dict[str, list[Path]]:
    """Photos named after the person they show, grouped by that name: "Oskar_Draper.jpg" and
    "oskar-draper 2.png" are two photos of "Oskar Draper" (separators read as spaces, number-only
    words dropped). How the app takes photos of people to keep, where a folder per person is not
    something a browser can upload."""
    groups: dict[str, list[Path]] = {}
    spelled: dict[str, str] = {}  # name_key -> the first spelling: "OSKAR_DRAPER.jpg" is Oskar Draper again
    for p in map(Path, paths):
        words = [w for w in re.split(r"[\s_\-.]+", COPY_WORDS.sub(" ", p.stem)) if w and not w.isdigit()]
        if not words or words[0].lower() in CAMERA_NAMES:
            raise FolderError(f"{p.name}: name each photo after the person it shows (e.g. Oskar_Draper.jpg, "
                              "Oskar_Draper_2.jpg)")
        name = spelled.setdefault(name_key(" ".join(words)), " ".join(w[:1].upper() + w[1:] for w in words))
        groups.setdefault(name, []).append(p)
    return groups


def load_folder(path: str | Path) -> list[PersonRecord]:
    """Every subject sub-folder of `path`, in name order."""
    root = Path(path)
    if not root.is_dir():
        raise FolderError(f"{root} is not a folder: pass a folder with one sub-folder of photos per subject")
    # __MACOSX: the metadata folder of a zip made on a Mac, not a subject
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")
    if not subs:
        raise FolderError(f"{root} has no sub-folders: put each subject's photos in a sub-folder named after them")
    _warn_unread(root, "photos beside the subjects' folders belong to nobody: move each into its subject's folder",
                 [p for p in root.iterdir() if p.suffix.lower() in (*IMAGE_SUFFIXES, *OTHER_PICTURES)
                  and not p.name.startswith(".")])
    names = [_subject_name(s, _facts(s)) for s in subs]
    return [subject_record(s, names) for s in subs]


def save_folder(records: Iterable[PersonRecord], path: str | Path, facts: bool = True) -> Path:
    """Write records as a photo folder (`world --export-folder`); facts=False writes the photos
    and the name only, as a user who brings a few photos of someone would."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    records = list(records)
    for rec in records:
        sub = root / rec.id
        sub.mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(rec.images):
            im.save(sub / f"{i + 1}.png")
        out: dict[str, Any] = {"name": rec.name}
        if facts:
            out["qa"] = [{"question": g.question, "answer": g.ground_truth, "image": g.type == IMAGE_TEXTUAL}
                         for g in rec.generation]
            out["cloze"] = [{"question": m.question, "answer": m.ground_truth, "image": m.type == IMAGE_TEXTUAL}
                            for m in rec.mask]
            out["mcq"] = ([{"question": c.question, "options": c.options, "answer": c.correct_answer}
                           for c in rec.classification_image]
                          + [{"question": c.question, "options": c.options, "answer": c.correct_answer,
                              "image": False} for c in rec.classification_text])
        (sub / "facts.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    # the mark names what the export wrote, file by file with its hash: a later export replaces those
    # and nothing a user added or edited (a photo added to a subject, facts.json filled in)
    (root / EXPORT_MARK).write_text(json.dumps({"written_by": "save_folder (python -m core world --export-folder)",
                                                "subjects": [rec.id for rec in records],
                                                "files": export_files(root)}) + "\n")
    return root


def viewer_clutter(name: str) -> bool:
    """Files a file browser leaves in a folder (the Finder's .DS_Store and ._ copies, Windows'
    Thumbs.db, a zip's __MACOSX): not a user's work, so an export may replace them. Any other
    hidden file (.git, notes) is the user's."""
    return name in (".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX") or name.startswith("._")


def export_files(root: Path) -> dict[str, str]:
    """Every file under `root` but the export mark and viewer clutter, as relative path -> sha256
    of its bytes."""
    import hashlib
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and f.name != EXPORT_MARK
            and not any(viewer_clutter(part) for part in f.relative_to(root).parts)}
