"""The ``fastformers-hf`` console script: one subcommand per recipe, each parsed with ``HfArgumentParser``.

Subcommands live in ``fastformers_hf/commands/<name>.py`` and expose ``main(argv)``; they are imported only when
called, so ``fastformers-hf --help`` is instant.
"""
from __future__ import annotations

import importlib
import sys

from .errors import FastFormersError

# name -> (module, one-line help)
COMMANDS = {
    "demo": ("fastformers_hf.commands.demo", "compress on an offline default: MiniLM fine-tuned on generated data -> fast student"),
    "distill": ("fastformers_hf.commands.distill", "distil a fine-tuned teacher into a smaller student"),
    "cascade": ("fastformers_hf.commands.cascade", "calibrate / predict / bench a two-tier confidence cascade"),
    "prune": ("fastformers_hf.commands.prune", "remove attention heads and FFN neurons (first-order importance)"),
    "compress": ("fastformers_hf.commands.compress", "distil, prune, quantize, measure and card a model in one go"),
    "onnx": ("fastformers_hf.commands.onnx", "export to ONNX Runtime and keep the fastest variant within a tolerance"),
    "push": ("fastformers_hf.commands.push", "push a compressed model (+ ONNX variants) with its model card"),
    "plan": ("fastformers_hf.commands.plan", "time candidate student shapes on this machine before training"),
    "bench": ("fastformers_hf.commands.bench", "tune serving (instances x threads x batch) / FastFormers ablation table"),
    "serve": ("fastformers_hf.commands.serve", "serve a model folder over HTTP on Ray Serve; `serve bench` load-tests it"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: fastformers-hf <command> [--help] [options]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"fastformers-hf: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except FastFormersError as err:  # user-fixable: a clear message, no traceback
        print(f"fastformers-hf {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
