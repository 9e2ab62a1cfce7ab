"""Loading a model from a local folder or a hub id, and telling the user what to do when it fails."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from core.models.base import VLMAdapter
from core.models.families import ADAPTERS

# model_type in config.json -> (family, model class name, image processor class path)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "llava": ("llava", "LlavaForConditionalGeneration", "transformers.models.clip.CLIPImageProcessorPil"),
    "qwen2_vl": ("qwen2_vl", "Qwen2VLForConditionalGeneration", "transformers.models.qwen2_vl.Qwen2VLImageProcessorPil"),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration",
                   "transformers.models.qwen2_vl.Qwen2VLImageProcessorPil"),
    "idefics3": ("idefics3", "Idefics3ForConditionalGeneration",
                 "transformers.models.idefics3.Idefics3ImageProcessorPil"),
    "smolvlm": ("smolvlm", "SmolVLMForConditionalGeneration",
                "transformers.models.idefics3.Idefics3ImageProcessorPil"),
    "paligemma": ("paligemma", "PaliGemmaForConditionalGeneration",
                  "transformers.models.siglip.SiglipImageProcessorPil"),
}

EXAMPLE_IDS = {
    "llava": "llava-hf/llava-1.5-7b-hf",
    "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "idefics3": "HuggingFaceM4/Idefics3-8B-Llama3",
    "smolvlm": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "paligemma": "google/paligemma-3b-mix-224",
}


class ModelNotFoundError(FileNotFoundError):
    """Raised with a message that says what to do next."""


class ModelLoadError(ValueError):
    """A model folder whose files are there but cannot be used (a config that is not JSON, weights
    missing or cut short, no tokenizer); the message names the folder and what to copy again.
    A ValueError, so that the CLI and the app report it instead of a library traceback."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _import(path: str):
    module, _, name = path.rpartition(".")
    mod = __import__(module, fromlist=[name])
    return getattr(mod, name)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A local folder for `name_or_path`: the folder itself, or a snapshot in the local HF cache."""
    path = Path(name_or_path).expanduser()
    shipped = Path(__file__).resolve().parents[2] / path  # "assets/toy-llava" from any working directory
    if not path.is_dir() and not path.is_absolute() and shipped.is_dir():
        path = shipped
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but holds no config.json: point at the folder "
                                     "that save_pretrained wrote (config.json, *.safetensors, tokenizer files).")
        return path
    if path.is_file():  # it said "does not exist" of a file that does
        raise ModelNotFoundError(f"{name_or_path!s} is a file: pass the model's folder (the one holding config.json)")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(name_or_path)) or str(name_or_path).startswith("."):
        raise ModelNotFoundError(f"model folder {name_or_path!s} does not exist. Pass an existing folder "
                                 "or a hub id such as llava-hf/llava-1.5-7b-hf.")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelNotFoundError(
            f"{name_or_path} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1). "
            f"Download it on a connected machine (`hf download {name_or_path} --local-dir DIR`) and pass "
            "--model DIR, or unset HF_HUB_OFFLINE where the hub is reachable.")
    try:
        return Path(snapshot_download(str(name_or_path)))
    except Exception as exc:  # network errors come in many types
        raise ModelNotFoundError(
            f"could not download {name_or_path} ({type(exc).__name__}: {exc}). Check the id and your network, "
            "or pass a local folder with --model DIR.") from exc


def detect_family(folder: Path) -> str:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{folder / 'config.json'} is not valid JSON ({_first_line(exc)}): copy config.json "
                             "again from the checkpoint") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{folder / 'config.json'} holds no model configuration: copy it again from the checkpoint")
    model_type = cfg.get("model_type", "")
    if model_type not in FAMILIES:
        raise ValueError(f"{folder}: model_type {model_type!r} is not supported; supported: {sorted(FAMILIES)}")
    return FAMILIES[model_type][0]


def _chat_template(folder: Path, tokenizer) -> str | None:
    """The chat template of a checkpoint folder: its own file, the processor's config, else the
    tokenizer's. A file that holds none is a ModelLoadError naming it."""
    for name in ("chat_template.jinja", "chat_template.json", "processor_config.json"):
        f = folder / name
        if not f.is_file():
            continue
        text = f.read_text()
        if name.endswith(".jinja"):
            return text
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ModelLoadError(f"{f} is not valid JSON ({_first_line(exc)}): copy it again from the checkpoint") \
                from None
        tmpl = raw.get("chat_template") if isinstance(raw, dict) else None
        if name == "chat_template.json" and not isinstance(tmpl, str):
            raise ModelLoadError(f"{f} holds no chat_template text: copy it again from the checkpoint")
        if isinstance(tmpl, str) and tmpl:
            return tmpl
    return getattr(tokenizer, "chat_template", None)


def _cpu_only(device_map) -> bool:
    """A device_map that puts nothing on a GPU ({"": "cpu"}, or blocks on "cpu" / "disk")."""
    if isinstance(device_map, str):
        return device_map in ("cpu", "disk")
    if isinstance(device_map, dict):
        return all(str(v) in ("cpu", "disk") for v in device_map.values())
    return False


def load_adapter(name_or_path: str | os.PathLike, *, dtype: torch.dtype | str = "auto",
                 device: str | None = None, device_map: str | dict | None = None,
                 max_memory: dict | None = None, offload_folder: str | os.PathLike | None = None,
                 image_size: int | None = None) -> VLMAdapter:
    """Load any supported model (folder or hub id) behind the adapter interface, in eval mode.

    device: "cpu", "cuda", "cuda:1", ... (default: the first GPU when there is one, else the
    CPU). dtype: "auto" keeps the checkpoint's dtype on a GPU (a bfloat16 7B model loads straight
    to the GPU in bfloat16, with no float32 copy on the CPU first) and uses float32 on a CPU,
    where half-precision matmuls are slow; or "float32", "bfloat16", "float16". device_map
    ("auto", "balanced", or a {module: device} dict, "disk" included) shards the model with
    accelerate, within `max_memory` ({0: "20GiB", "cpu": "60GiB"}), offloading to
    `offload_folder`; steering, capture and PGD follow each block to its device."""
    import transformers
    folder = resolve(name_or_path)
    family = detect_family(folder)
    _, model_cls, proc_path = FAMILIES[family]
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)} (or 'auto')")
        dtype = DTYPES[dtype]
    if device_map is None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        _check_device(device)
    elif device is not None:  # it was ignored without a word
        raise ValueError("give device (one device) or device_map (blocks spread over devices), not both")
    on_cpu = (torch.device(device).type == "cpu" if device_map is None
              else not torch.cuda.is_available() or _cpu_only(device_map))
    if dtype == "auto" and on_cpu:
        dtype = torch.float32  # half-precision matmuls are slow (or crash) on CPUs, with a device_map too
    kwargs: dict = {"dtype": dtype}
    if device_map is not None:
        kwargs.update(device_map=device_map, max_memory=max_memory,
                      offload_folder=None if offload_folder is None else str(offload_folder))
    elif torch.device(device).type != "cpu":
        kwargs["device_map"] = device  # loaded straight onto the device, in the checkpoint's dtype
    from safetensors import SafetensorError
    try:
        model, info = getattr(transformers, model_cls).from_pretrained(folder, output_loading_info=True, **kwargs)
    except (OSError, SafetensorError) as exc:  # no weights file, a file cut short or not safetensors
        raise ModelLoadError(
            f"the weights in {folder} cannot be loaded ({_first_line(exc)}): the folder needs the whole checkpoint "
            "as save_pretrained wrote it (model.safetensors, or its shards and model.safetensors.index.json); "
            "download or copy the weights again if a file was cut short") from exc
    except torch.OutOfMemoryError:
        raise  # a device too small is not a damaged config
    except (RuntimeError, TypeError) as exc:  # shapes the weights do not have, or fields of the wrong type
        raise ModelLoadError(f"the weights in {folder} do not fit its config.json, or it is malformed "
                             f"({_first_line(exc)[:300]}): copy config.json and the weights from the same "
                             "checkpoint") from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # transformers starts them from random values and only prints a report
        raise ModelLoadError(
            f"the weights in {folder} lack {len(missing)} tensor(s) the model needs ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}), which would start from random values: the checkpoint is "
            "incomplete or belongs to another model; download or copy the whole checkpoint again")
    model.eval()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        processor = _import(proc_path).from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"the tokenizer or image processor of {folder} cannot be loaded ({_first_line(exc)}): copy "
            "tokenizer.json, tokenizer_config.json and preprocessor_config.json from the checkpoint") from exc
    template = _chat_template(folder, tokenizer)
    cls = ADAPTERS[family]
    if template is None and cls.plain_prompt is VLMAdapter.plain_prompt and cls.prompt is VLMAdapter.prompt:
        raise ModelLoadError(f"{folder} has no chat template (chat_template.jinja, chat_template.json or the "
                             f"tokenizer's) and {family} prompts need one: copy it from the checkpoint's repository")
    return cls(model, tokenizer, processor, name_or_path=str(name_or_path), chat_template=template,
               image_size=image_size)


def _check_device(device: str) -> None:
    """A device this machine has, said before the weights are read (torch's own errors come from
    deep inside the load: an AssertionError for a CPU-only build asked for CUDA)."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device name: use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asks for a GPU, but this torch sees none (a CPU-only build, or no "
                         "visible GPU): use --device cpu, or install a CUDA build of torch on a GPU machine")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def adapter_from_model(model, tokenizer, image_processor, family: str | None = None, **kw) -> VLMAdapter:
    """Wrap an in-memory model (e.g. a tiny test instance) without touching disk."""
    family = family or FAMILIES[model.config.model_type][0]
    return ADAPTERS[family](model, tokenizer, image_processor, **kw)
