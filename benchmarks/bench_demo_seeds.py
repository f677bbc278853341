"""The demo's final table over several seeds, under the installed transformers: how much of a difference between two
runs of ``fastformers-hf demo`` is noise.

The demo's recipe is short (150 teacher steps, 300 distillation steps, 200 re-distillation steps on 4,800 generated
sentences, scored on 500): a different seed draws other data, another initialisation of the task head and another
batch order, and moves the student's accuracy by points. This script runs the demo once per seed (each stage cached
under ``--out/transformers-<version>/seed-<n>``), then writes mean, standard deviation and range of each column.
Run it under each transformers major version and merge the reports side by side:

    .venv/bin/python benchmarks/bench_demo_seeds.py --seeds 0 1 2
    .venv5/bin/python benchmarks/bench_demo_seeds.py --seeds 0 1 2
    python benchmarks/bench_demo_seeds.py --merge         # runs/demo-seeds/report.md from every version's report
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

COLUMNS = (("teacher", "teacher accuracy"), ("pytorch", "student accuracy"), ("onnx", "int8 student accuracy"))


@dataclass
class SeedArgs:
    out: str = field(default="runs/demo-seeds", metadata={"help": "Stages and reports go here."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "One demo run per seed."})
    merge: bool = field(default=False, metadata={"help": "Only merge the per-version reports found under --out."})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def run_seeds(args: SeedArgs) -> dict:
    import transformers

    from fastformers_hf.commands.compress import parse, recipe_to_argv
    from fastformers_hf.commands.demo import DEMO_DEFAULTS, bundled_minilm
    from fastformers_hf.measurements import machine_description
    from fastformers_hf.pipeline.compress import CompressPipeline

    version_dir = Path(args.out) / f"transformers-{transformers.__version__}"
    rows = []
    for seed in args.seeds:
        recipe = dict(DEMO_DEFAULTS, model_name_or_path=bundled_minilm(), seed=seed,
                      output_dir=str(version_dir / f"seed-{seed}"))
        log(f"[seed {seed}] fastformers-hf demo --seed {seed}")
        pipeline = CompressPipeline(parse(recipe_to_argv(recipe)), log=log)
        pipeline.run()
        final = pipeline.records["5-final"]["results"]
        rows.append({"seed": seed, **{key: final["points"][key] for key, _ in COLUMNS},
                     "speedup_int8": final["speedup_onnx_vs_teacher"],
                     "variant": pipeline.records["4-onnx"]["results"].get("chosen"),
                     "other_load_cores": final["load"].get("other_load_cores")})
    report = {"transformers": transformers.__version__, "machine": machine_description(), "rows": rows,
              "spread": {key: spread([r[key] for r in rows]) for key, _ in COLUMNS + (("speedup_int8", ""),)},
              "command": f"python benchmarks/bench_demo_seeds.py --seeds {' '.join(map(str, args.seeds))}"}
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def markdown(reports: list[dict]) -> str:
    from fastformers_hf.measurements import machine_text

    lines = ["# The demo over seeds, per transformers version", "",
             "`python benchmarks/bench_demo_seeds.py`: one `fastformers-hf demo --seed N` per seed; accuracy in points "
             "on the demo's 500 validation sentences; speed-up of the int8 student over the teacher at batch 1.", "",
             "| transformers | seeds | " + " | ".join(label for _, label in COLUMNS) + " | int8 speed-up |",
             "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for rep in reports:
        s = rep["spread"]
        cells = [f"{s[k]['mean']:.2f} ± {s[k]['sd']:.2f} ({s[k]['min']:.1f}–{s[k]['max']:.1f})" for k, _ in COLUMNS]
        sp = s["speedup_int8"]
        lines.append(f"| {rep['transformers']} | {', '.join(str(r['seed']) for r in rep['rows'])} | "
                     + " | ".join(cells) + f" | {sp['mean']:.1f}x ({sp['min']:.1f}–{sp['max']:.1f}) |")
    lines += ["", "Mean ± standard deviation over seeds (range in brackets).", "", "Per seed:", "",
              "| transformers | seed | teacher | student | int8 student | speed-up | variant | other load (cores) |",
              "|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        for r in rep["rows"]:
            load = r.get("other_load_cores")
            lines.append(f"| {rep['transformers']} | {r['seed']} | {r['teacher']:.1f} | {r['pytorch']:.1f} | "
                         f"{r['onnx']:.1f} | {r['speedup_int8']:.1f}x | {r['variant']} | "
                         f"{'-' if load is None else f'{load:.2f}'} |")
    lines += [""] + [f"Machine ({rep['transformers']}): {machine_text(rep['machine'])}" for rep in reports]
    return "\n".join(lines) + "\n"


def main() -> None:
    (args,) = HfArgumentParser(SeedArgs).parse_args_into_dataclasses()
    if not args.merge:
        run_seeds(args)
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(args.out).glob("transformers-*/report.json"))]
    if not reports:
        raise SystemExit(f"no per-version report under {args.out}: run without --merge first.")
    text = markdown(reports)
    (Path(args.out) / "report.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
