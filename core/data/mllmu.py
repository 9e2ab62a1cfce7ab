"""MLLMU-Bench parquet files: write records in the benchmark's exact row schema, and load real
MLLMU-Bench files (or ours) into the evaluation dataclasses.

Why: one evaluation runner for both the toy world and the real benchmark. Real files vary
(extra columns, nulls, nested fields sometimes serialised as strings, the test split keeping
several images per person), so the loader is tolerant of everything except a missing `ID` or
image column, which it reports by name.
"""

from __future__ import annotations

import ast
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from .folder import FolderError, decode_image, read_image
from .records import (IMAGE_TEXTUAL, LETTERS, PURE_TEXT, ClassificationItem, GenerationItem, MaskItem, PersonRecord,
                      QAPair)

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
OPTIONS_STRUCT = pa.struct([(letter, pa.string()) for letter in LETTERS])
CLASSIFICATION_ITEM = pa.struct([("Question", pa.string()), ("Options", OPTIONS_STRUCT),
                                 ("Correct_Answer", pa.string())])
QUESTION_ITEM = pa.struct([("Question", pa.string()), ("Ground_Truth", pa.string()),
                           ("Type", pa.string())])
CLASSIFICATION_TASK = pa.struct([("Image_Textual_Questions", pa.list_(CLASSIFICATION_ITEM)),
                                 ("Pure_Text_Questions", pa.list_(CLASSIFICATION_ITEM))])


def mllmu_schema(test: bool) -> pa.Schema:
    """The MLLMU-Bench row schema; the test split has `images` (a list) instead of `image`."""
    image_field = (pa.field("images", pa.list_(IMAGE_STRUCT)) if test
                   else pa.field("image", IMAGE_STRUCT))
    return pa.schema([
        pa.field("ID", pa.string()),
        image_field,
        pa.field("Classification_Task", CLASSIFICATION_TASK),
        pa.field("Generation_Task", pa.list_(QUESTION_ITEM)),
        pa.field("Mask_Task", pa.list_(QUESTION_ITEM)),
        pa.field("metadata", pa.string()),
        pa.field("biography", pa.string()),
        pa.field("name", pa.string()),
    ])


def png_bytes(img: Image.Image) -> bytes:
    """Deterministic PNG encoding (same pixels -> same bytes)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def record_to_row(rec: PersonRecord, test: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"ID": rec.id}
    imgs = [{"bytes": png_bytes(im), "path": None} for im in rec.images]
    if test:
        row["images"] = imgs
    else:
        row["image"] = imgs[0] if imgs else None
    row["Classification_Task"] = {
        "Image_Textual_Questions": [c.to_dict() for c in rec.classification_image],
        "Pure_Text_Questions": [c.to_dict() for c in rec.classification_text],
    }
    row["Generation_Task"] = [g.to_dict() for g in rec.generation]
    row["Mask_Task"] = [m.to_dict() for m in rec.mask]
    row["metadata"] = json.dumps([q.to_dict() for q in rec.qa], ensure_ascii=False)
    row["biography"] = rec.biography
    row["name"] = rec.name
    return row


def export_records(records: Sequence[PersonRecord], path: str | Path, test: bool = False) -> Path:
    """Write records as one MLLMU-schema parquet file (test=True: `images` list column)."""
    for rec in records:  # the schema's options are A-D: an option E was dropped while the answer stayed "E"
        for c in [*rec.classification_image, *rec.classification_text]:
            if set(c.options) - set(LETTERS):
                raise ValueError(f"{rec.id}: the MCQ {c.question[:60]!r} has options {sorted(c.options)}; MLLMU-Bench "
                                 f"files hold options {', '.join(LETTERS)} only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([record_to_row(r, test) for r in records], schema=mllmu_schema(test))
    pq.write_table(table, path, compression="snappy")
    return path


# ---------------------------------------------------------------- loading

def _maybe_parse(value: Any, where: str | None = None) -> Any:
    """Nested fields are sometimes stored as JSON (or Python-repr) strings: decode them. With
    `where` (a scored column), a string that decodes as neither is an error naming it: a cut-off
    cell was read as empty, and the subject's questions vanished without a word."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            return json.loads(s)
        except (ValueError, RecursionError):  # RecursionError: nested beyond anything MLLMU-Bench holds
            try:
                return ast.literal_eval(s)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                if where is not None:
                    raise ValueError(f"{where}: the cell is text that is neither JSON nor a Python literal "
                                     f"({s[:60]!r}...); fix or drop that row") from None
                return None
    return value


def _decode_image(obj: Any, where: str, folder: Path) -> Image.Image | None:
    """The picture of an image cell: its bytes, else a file named by its path inside the parquet
    file's own folder (never elsewhere: an uploaded file must not read the server's pictures).
    An unreadable or oversized picture is an error naming the row, not a row silently lost."""
    if obj is None:
        return None
    if isinstance(obj, (bytes, bytearray)):
        data, p = bytes(obj), None
    elif isinstance(obj, dict):
        data, p = obj.get("bytes"), obj.get("path")
    elif isinstance(obj, str):  # a path written as plain text
        data, p = None, obj
    else:
        raise ValueError(f"{where}: the image cell holds {type(obj).__name__}, not a picture (its bytes, or a "
                         "{bytes, path} object as Hugging Face datasets write them); fix or drop that row")
    try:
        if data:
            return decode_image(bytes(data), "the image")
        if not p:
            return None
        target = (folder / p).resolve()
        if not target.is_relative_to(folder.resolve()):
            raise ValueError(f"{where}: the image path {p!r} lies outside the folder of the parquet file; store the "
                             "image's bytes in the file, or put the image next to it")
        if not target.is_file():  # silently None lost every picture question of the subject
            raise ValueError(f"{where}: the image {p!r} is not in {folder} and the cell holds no bytes; put the "
                             "picture next to the parquet file, or store its bytes in the file")
        return read_image(target)
    except FolderError as exc:
        raise ValueError(f"{where}: {exc}; make the picture smaller or drop that row") from None
    except (OSError, Image.DecompressionBombError) as exc:
        why = "its bytes are not a picture" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ValueError(f"{where}: the image cannot be read ({why}); fix or drop that row") from None


def _answer(value: Any, key: str, question: Any, where: str) -> str:
    """An item's answer, refused when blank. Why: a blank cloze answer is contained in every reply
    (the item scored 1.0 against a refusal) and a blank MCQ answer matches no letter (scored 0,
    which reads as forgetting)."""
    text = str(value if value is not None else "").strip()
    if not text:
        raise ValueError(f"{where}: the question {str(question)[:80]!r} has no {key}; fill it in or drop the "
                         "question")
    return text


def _options(value: Any, where: str) -> dict[str, str]:
    """An MCQ's options as letter -> text: an object, or a list read as A, B, C... (it raised an
    AttributeError)."""
    opts = _maybe_parse(value, where) or {}
    if isinstance(opts, (list, tuple)):
        opts = dict(zip("ABCDEFGH", opts))
    if not isinstance(opts, dict):
        raise ValueError(f"{where}: an MCQ's Options are an object of letter -> text (or a list); got "
                         f"{type(opts).__name__}")
    return {str(k).strip(): str(v) for k, v in opts.items() if v is not None}


def _letter(answer: str, opts: dict[str, str], question: Any, where: str) -> str:
    """The option letter an MCQ's Correct_Answer names: "B", "B." or "(B)", or the option's own
    text. Why: anything else loaded, and every reply scored 0 against it, which reads as forgetting."""
    m = re.fullmatch(r"\(?([A-Za-z])[.)]?", answer)
    if m and m.group(1).upper() in opts:
        return m.group(1).upper()
    same = [k for k, v in opts.items() if v.strip().casefold() == answer.casefold()]
    if len(same) == 1:
        return same[0]
    raise ValueError(f"{where}: the MCQ {str(question)[:80]!r} has Correct_Answer {answer[:40]!r}, which is none of its "
                     f"options {', '.join(sorted(opts)) or '(none)'}; give the letter of the right option")


def _items(value: Any, where: str) -> list:
    """A scored column's list of questions (parsed when stored as text); anything else is an error
    naming the row (a number there raised a TypeError deep inside)."""
    items = _maybe_parse(value, where)
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{where}: a task column holds {type(items).__name__} {str(items)[:40]!r}, not a list of "
                         "questions; fix or drop that row")
    return list(items)


def _classification(items: Any, where: str) -> list[ClassificationItem]:
    out = []
    for it in _items(items, where):
        if not isinstance(it, dict) or it.get("Question") is None:
            continue
        opts = _options(it.get("Options"), where)
        answer = _answer(it.get("Correct_Answer"), "Correct_Answer", it["Question"], where)
        out.append(ClassificationItem(question=it["Question"], options=opts,
                                      correct_answer=_letter(answer, opts, it["Question"], where)))
    return out


def _type(value: Any, question: str, where: str) -> str:
    """A question's Type, matched without case, spaces, hyphens or underscores. Anything else is
    refused: it was asked text-only ("Image-Textual", a missing Type: picture questions without
    their picture)."""
    def key(t: str) -> str:
        return "".join(ch for ch in t.casefold() if ch.isalnum())
    found = {key(t): t for t in (IMAGE_TEXTUAL, PURE_TEXT)}.get(key(str(value or "")))
    if found is None:
        raise ValueError(f"{where}: question {str(question)[:60]!r} has Type {value!r}; set it to {IMAGE_TEXTUAL!r} "
                         f"(asked with the picture) or {PURE_TEXT!r} (asked without)")
    return found


def _questions(items: Any, cls: type, where: str) -> list:
    out = []
    for it in _items(items, where):
        if not isinstance(it, dict) or it.get("Question") is None:
            continue
        out.append(cls(question=it["Question"],
                       ground_truth=_answer(it.get("Ground_Truth"), "Ground_Truth", it["Question"], where),
                       type=_type(it.get("Type"), it["Question"], where)))
    return out


def _qa(value: Any) -> list[QAPair]:
    out = []
    for it in _maybe_parse(value) or []:
        if isinstance(it, dict) and it.get("Question") is not None:
            out.append(QAPair(question=it["Question"], answer=str(it.get("Answer") or "")))
    return out


def _one_qa(row: dict) -> list[QAPair]:
    """The row's own `question` / `answer` columns as QA pairs (one each, or lists of them, stored
    as such or JSON-encoded): MLLMU-Bench's Hub files carry these instead of `metadata`, and the
    pairs were dropped (the training baselines then had no QA pair of the subject)."""
    qs, ans = _maybe_parse_text(row.get("question")), _maybe_parse_text(row.get("answer"))
    if not isinstance(qs, list) or not isinstance(ans, list):
        qs, ans = [qs], [ans]
    return [QAPair(question=str(q).strip(), answer=str(a).strip()) for q, a in zip(qs, ans)
            if q is not None and a is not None and str(q).strip() and str(a).strip()]


def _maybe_parse_text(value: Any) -> Any:
    """A list (or a JSON-encoded one) as a list; any other value as it is (a question is text that
    may itself parse as JSON, "42" or "null", and stays text)."""
    if isinstance(value, str) and value.strip().startswith("["):
        parsed = _maybe_parse(value)
        return parsed if isinstance(parsed, list) else value
    return list(value) if isinstance(value, (list, tuple)) else value


def _parquet_files(path: Path, pattern: str | None = None) -> list[Path]:
    """A file, or a folder's parquet files (a split in shards). With `pattern` (the split's file
    name, e.g. forget_*.parquet), a folder that holds such files gives only those: `--data
    forget=DIR` on a folder of every split read them all as the forget set."""
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no .parquet files in {path}")
        mine = [f for f in files if pattern is not None and f.match(pattern)]
        return mine or files
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass an MLLMU-Bench parquet file or a folder of them "
                                "(`python -m core world --export DIR` writes a set)")
    return [path]


MAX_TEXT_CHARS = 4000  # one question, answer or option (MLLMU-Bench's longest are a few hundred)


def _check_text(rec: PersonRecord, where: str) -> None:
    """Why: a question is a prompt, and an uploaded file with a megabyte question would be run
    through the model as one."""
    texts: list[tuple[str, str]] = []
    for it in [*rec.classification_image, *rec.classification_text]:
        texts += [("question", it.question), *(("option", o) for o in it.options.values())]
    texts += [(k, v) for it in [*rec.generation, *rec.mask] for k, v in (("question", it.question),
                                                                          ("answer", it.ground_truth))]
    texts += [(k, v) for it in rec.qa for k, v in (("question", it.question), ("answer", it.answer))]
    long = next(((k, v) for k, v in texts if len(str(v)) > MAX_TEXT_CHARS), None)
    if long is not None:
        raise ValueError(f"{where}: a {long[0]} of {len(str(long[1]))} characters (at most {MAX_TEXT_CHARS}); "
                         "shorten it or drop that row")


MAX_NAME_CHARS = 80  # a person's name, as a photo folder's (core.data.folder)


def _id(row: dict, f: Path, i: int, seen: set[str]) -> str:
    """A row's ID: present and once per split. Why: a null ID was read as the text 'None', and of two
    rows with one ID, picking that subject kept only one."""
    raw = row.get("ID")
    if raw is None or not str(raw).strip():
        raise ValueError(f"{f.name}, row {i}: the ID is empty; give every row its subject's ID")
    sid = str(raw).strip()
    if sid in seen:
        raise ValueError(f"{f.name}, row {i}: ID {sid!r} is on another row of this split too; merge the rows or "
                         "give each subject its own ID")
    seen.add(sid)
    return sid


def _check_record(rec: PersonRecord, where: str) -> None:
    """Why: a row whose image is missing lost every image question without a word (the evaluation
    skips a question with no picture), and a megabyte name was asked about by name."""
    asks_image = rec.classification_image or any(it.type == IMAGE_TEXTUAL for it in [*rec.generation, *rec.mask])
    if asks_image and not rec.images:
        raise ValueError(f"{where}: the row has image questions but no image; add the subject's picture or drop the "
                         "row")
    if rec.name is not None and len(rec.name) > MAX_NAME_CHARS:
        raise ValueError(f"{where}: the name {rec.name[:40]!r}... is over {MAX_NAME_CHARS} characters; give the "
                         "person's name")
    _check_text(rec, where)


def load_parquet(path: str | Path, pattern: str | None = None, max_rows: int | None = None,
                 max_bytes: int | None = None) -> list[PersonRecord]:
    """Read an MLLMU-Bench parquet file (or a directory of them) into PersonRecords.

    Required: `ID` and an image column (`image`, or `images` for the test split). Optional
    columns (Classification_Task, Generation_Task, Mask_Task, metadata, biography, name) may
    be missing or null: they become empty lists / None. Unknown columns are ignored. `pattern`:
    the split's file name, for a folder that holds several splits (`_parquet_files`).
    `max_rows` / `max_bytes`: refuse a file of more rows, or more uncompressed bytes, before
    reading it (the app's uploads: a few KB of parquet repeating one large picture decoded to
    hundreds of MB).
    """
    records: list[PersonRecord] = []
    seen: set[str] = set()
    for f in _parquet_files(Path(path), pattern):
        try:
            meta = pq.ParquetFile(f).metadata
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if (max_rows is not None and meta.num_rows > max_rows) or (max_bytes is not None and size > max_bytes):
                raise ValueError(f"{f.name} holds {meta.num_rows} rows, {size / 2**20:.0f} MB uncompressed: at most "
                                 f"{max_rows} rows and {(max_bytes or 0) / 2**20:.0f} MB here; split it, or run "
                                 "`python -m core fit --data ...` on your own machine")
            names = set(pq.read_schema(f).names)
            rows = pq.read_table(f).to_pylist() if "ID" in names else []
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{f.name} is not a readable parquet file ({exc}); MLLMU-Bench splits are parquet files "
                             "such as forget_10.parquet (`python -m core world --export DIR` writes a set)") from None
        if "ID" not in names:
            raise ValueError(f"{f}: missing required column 'ID'")
        if "image" not in names and "images" not in names:
            raise ValueError(f"{f}: missing required image column 'image' (or 'images' for the test split)")
        for i, row in enumerate(rows):
            sid = _id(row, f, i, seen)
            where = f"{f.name}, row {i} (ID {sid})"
            imgs: list[Image.Image | None] = []
            if row.get("images"):
                imgs = [_decode_image(o, where, f.parent) for o in row["images"]]
            if not any(imgs) and row.get("image") is not None:
                imgs = [_decode_image(row["image"], where, f.parent)]
            cls = _maybe_parse(row.get("Classification_Task"), where)
            if cls is not None and not isinstance(cls, dict):
                raise ValueError(f"{where}: Classification_Task holds {type(cls).__name__}, not an object with "
                                 "Image_Textual_Questions and Pure_Text_Questions; fix or drop that row")
            cls = cls or {}
            bio = row.get("biography", row.get("Biography"))
            name = row.get("name")
            records.append(PersonRecord(
                id=sid,
                images=[im for im in imgs if im is not None],
                classification_image=_classification(cls.get("Image_Textual_Questions"), where),
                classification_text=_classification(cls.get("Pure_Text_Questions"), where),
                generation=_questions(row.get("Generation_Task"), GenerationItem, where),
                mask=_questions(row.get("Mask_Task"), MaskItem, where),
                qa=_qa(row.get("metadata")) or _one_qa(row),
                biography=None if bio is None else str(bio),
                name=None if name is None or not str(name).strip() else " ".join(str(name).split()),
            ))
            _check_record(records[-1], where)
    return records
