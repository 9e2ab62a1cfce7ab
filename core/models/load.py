"""Loading a model from a local folder or a hub id, and telling the user what to do when it fails."""

from __future__ import annotations

import hashlib
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
    cfg = json.loads((folder / "config.json").read_text())
    model_type = cfg.get("model_type", "")
    if model_type not in FAMILIES:
        raise ValueError(f"{folder}: model_type {model_type!r} is not supported; supported: {sorted(FAMILIES)}")
    return FAMILIES[model_type][0]


def _chat_template(folder: Path, tokenizer) -> str | None:
    for name in ("chat_template.jinja", "chat_template.json"):
        f = folder / name
        if f.is_file():
            text = f.read_text()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    pc = folder / "processor_config.json"
    if pc.is_file():
        tmpl = json.loads(pc.read_text()).get("chat_template")
        if tmpl:
            return tmpl
    return getattr(tokenizer, "chat_template", None)


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
    if dtype == "auto" and (device_map is None and torch.device(device).type == "cpu"):
        dtype = torch.float32  # half-precision matmuls are slow (or crash) on CPUs
    kwargs: dict = {"dtype": dtype}
    if device_map is not None:
        kwargs.update(device_map=device_map, max_memory=max_memory,
                      offload_folder=None if offload_folder is None else str(offload_folder))
    elif torch.device(device).type != "cpu":
        kwargs["device_map"] = device  # loaded straight onto the device, in the checkpoint's dtype
    model = getattr(transformers, model_cls).from_pretrained(folder, **kwargs).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    processor = _import(proc_path).from_pretrained(folder)
    adapter = ADAPTERS[family](model, tokenizer, processor, name_or_path=str(name_or_path),
                               chat_template=_chat_template(folder, tokenizer), image_size=image_size)
    return adapter


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def named_weights(model: torch.nn.Module):
    """(name, tensor) of every parameter, sorted by name, with the real values of parameters that
    accelerate offloaded (they sit on the meta device; their values live in the offload hook)."""
    for name, p in sorted(model.named_parameters()):
        if p.device.type == "meta":
            module_name, _, local = name.rpartition(".")
            hook = getattr(model.get_submodule(module_name), "_hf_hook", None)
            weights = getattr(hook, "weights_map", None)
            if weights is None:
                raise ValueError(f"{name} is on the meta device with no offloaded copy")
            p = weights[local]
        yield name, p


def fingerprint(model: torch.nn.Module) -> str:
    """A short identity of a model's weights, the same whatever dtype or device they are loaded on.

    Every parameter tensor contributes its name, its shape and a strided sample of up to 256 of
    its values rounded to bfloat16 (a checkpoint loaded in float32 or in bfloat16 gives one
    print): a model whose vision tower alone was fine-tuned (VKD) differs from the vanilla one.
    Offloaded parameters count with their offloaded values."""
    text_cfg = model.config.get_text_config()
    h = hashlib.sha256()
    h.update(json.dumps({"type": model.config.model_type, "hidden": text_cfg.hidden_size,
                         "layers": text_cfg.num_hidden_layers, "vocab": text_cfg.vocab_size}).encode())
    for name, p in named_weights(model):
        h.update(f"{name}{tuple(p.shape)}".encode())
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 256)
        h.update(flat[::step][:256].to(torch.bfloat16).float().cpu().numpy().tobytes())
    return "w1-" + h.hexdigest()[:16]


def legacy_fingerprint(model: torch.nn.Module) -> str:
    """The print of erasers saved before every parameter counted (a sample of the input
    embeddings in the loaded dtype): still accepted for those erasers, never written."""
    text_cfg = model.config.get_text_config()
    h = hashlib.sha256()
    h.update(json.dumps({"type": model.config.model_type, "hidden": text_cfg.hidden_size,
                         "layers": text_cfg.num_hidden_layers, "vocab": text_cfg.vocab_size}).encode())
    emb = dict(named_weights(model))[next(n for n, p in model.named_parameters()
                                          if p is model.get_input_embeddings().weight)].detach().flatten()
    step = max(1, emb.numel() // 4096)
    h.update(emb[::step][:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def state_hash(model: torch.nn.Module) -> str:
    """Hash of every parameter and buffer: proves that steering never edits the weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if t.dtype != torch.bool else t.cpu().numpy().tobytes())
    return h.hexdigest()


def adapter_from_model(model, tokenizer, image_processor, family: str | None = None, **kw) -> VLMAdapter:
    """Wrap an in-memory model (e.g. a tiny test instance) without touching disk."""
    family = family or FAMILIES[model.config.model_type][0]
    return ADAPTERS[family](model, tokenizer, image_processor, **kw)
