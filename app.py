"""Launch the MLLMEraser workbench (Gradio). Hugging Face Spaces run this file."""
import argparse
import json
import logging
import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("MLLMERASER_PUBLIC", "").strip().lower() in ("1", "true", "yes", "on"):
    os.environ["HF_HUB_OFFLINE"] = "1"  # a public Space never downloads what a visitor names

from app.ui import CSS, build, launch_options  # noqa: E402
from app.workbench import DEFAULT_ERASER, DEFAULT_MODEL, UserError, Workbench  # noqa: E402
from core.projection import warm_umap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="MLLMEraser workbench")
    parser.add_argument("--model", default=os.environ.get("MLLMERASER_MODEL", str(DEFAULT_MODEL)),
                        help="model folder or hub id (env MLLMERASER_MODEL)")
    parser.add_argument("--eraser", default=os.environ.get("MLLMERASER_ERASER", str(DEFAULT_ERASER)),
                        help="eraser folder (env MLLMERASER_ERASER)")
    parser.add_argument("--device", default=os.environ.get("MLLMERASER_DEVICE"),
                        help="cpu, cuda, ... (default: the first GPU if any; env MLLMERASER_DEVICE)")
    parser.add_argument("--dtype", default=os.environ.get("MLLMERASER_DTYPE", "auto"),
                        choices=["auto", "float32", "bfloat16", "float16"], help="env MLLMERASER_DTYPE")
    parser.add_argument("--device-map", default=None, help="accelerate device map for a model larger than one "
                        "device: auto, balanced, or a JSON object (as `python -m core fit --device-map`)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("MLLMERASER_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        device_map = json.loads(args.device_map) if args.device_map and args.device_map.startswith("{") \
            else args.device_map
        # MLLMERASER_DEVICE is a default for one device: with --device-map it does not apply (only a typed --device
        # is refused next to a device map)
        device = None if device_map and args.device == os.environ.get("MLLMERASER_DEVICE") else args.device
        wb = Workbench.load(args.model, args.eraser, device=device, dtype=args.dtype, device_map=device_map)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    if wb.note:
        print(wb.note)
    if os.environ.get("MLLMERASER_WARM_UMAP", "1") == "1":  # numba's JIT off the first visitor's path
        threading.Thread(target=warm_umap, name="warm-umap", daemon=True).start()
    build(wb).launch(server_name=args.host, server_port=args.port, css=CSS, **launch_options())


if __name__ == "__main__":
    main()
