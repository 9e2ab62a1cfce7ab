"""Command line: `python -m core COMMAND --help` for every command."""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_models(args: argparse.Namespace) -> int:
    """List supported families and the models found locally."""
    from core.models.registry import find_local_models, supported_families
    families = supported_families()
    found = find_local_models(extra=args.path)
    if args.json:
        print(json.dumps({"families": families, "local": found}, indent=2))
        return 0
    print("Supported families (model_type -> class, example hub id):")
    for f in families:
        print(f"  {f['model_type']:<11} {f['class']:<37} {f['example']}")
    print("\nFound locally:" if found else "\nNo supported model found locally "
          "(looked in assets/, the Hugging Face cache and any --path).")
    for m in found:
        print(f"  {m['family']:<11} {m['source']:<8} {m['path']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=(
        "MLLMEraser workbench engine: test-time unlearning in vision-language models by "
        "input-aware activation steering."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("models", help="list supported model families and models found locally",
                       description="List supported model families and the supported models found in "
                                   "assets/, the local Hugging Face cache and any --path folders.")
    p.add_argument("--path", action="append", default=[], help="also check this folder (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
