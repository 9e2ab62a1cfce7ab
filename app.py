"""Launch the MLLMEraser workbench (Gradio). Hugging Face Spaces run this file."""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.ui import CSS, build  # noqa: E402
from app.workbench import DEFAULT_ERASER, DEFAULT_MODEL, UserError, Workbench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="MLLMEraser workbench")
    parser.add_argument("--model", default=os.environ.get("MLLMERASER_MODEL", str(DEFAULT_MODEL)),
                        help="model folder or hub id (env MLLMERASER_MODEL)")
    parser.add_argument("--eraser", default=os.environ.get("MLLMERASER_ERASER", str(DEFAULT_ERASER)),
                        help="eraser folder (env MLLMERASER_ERASER)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = parser.parse_args()
    try:
        wb = Workbench.load(args.model, args.eraser)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    if wb.note:
        print(wb.note)
    build(wb).queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port, css=CSS)


if __name__ == "__main__":
    main()
