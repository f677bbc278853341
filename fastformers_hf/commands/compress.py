"""``fastformers-hf compress``: distil, prune, re-distil, pick the fastest accurate ONNX Runtime variant, measure
against the teacher, write the model card, optionally push. Settings come from a YAML/JSON recipe (``--recipe``)
and/or flags (flags win); ``--dry_run`` validates everything in seconds.

    fastformers-hf compress --model_name_or_path ../shared/models/sst2-minilm-teacher --data ../shared/data/sst2 \
        --output_dir runs/sst2-compressed --student_layers 3 --heads_per_layer 6 --ffn_width 768
"""
from __future__ import annotations

from ..pipeline.config import CompressConfig, read_recipe
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)


def recipe_to_argv(recipe: dict) -> list[str]:
    argv = []
    for key, value in recipe.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, list):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def parse(argv: list[str]) -> CompressConfig:
    argv = list(argv)
    if "--recipe" in argv:
        i = argv.index("--recipe")
        if i + 1 >= len(argv):
            from ..errors import FastFormersError

            raise FastFormersError("--recipe needs a file path.")
        recipe = read_recipe(argv[i + 1])
        argv = recipe_to_argv(recipe) + argv[:i] + argv[i + 2:]  # flags after the recipe's: they win
    (config,) = HfArgumentParser(CompressConfig).parse_args_into_dataclasses(args=argv)
    return config


def main(argv=None) -> int:
    import sys

    config = parse(sys.argv[2:] if argv is None else argv)
    from ..pipeline.compress import CompressPipeline, format_summary  # heavy: only after the flags are parsed

    pipeline = CompressPipeline(config)
    if config.dry_run:
        summary = pipeline.validate()
        print(f"recipe OK: teacher {summary['teacher']}, data rows {summary['rows']}, stages {summary['stages']}")
        return 0
    summary = pipeline.run()
    print(format_summary(summary))
    return 0
