"""Do the model folders we save load in the other major version of transformers? The cross-version loading table.

Two halves, each run in one environment: :func:`build_cases` prunes tiny models of every shape x model type x head
(random weights), saves them the way every stage does (:func:`~fastformers_hf.hub_code.save_model_folder`) with
inputs and outputs; :func:`load_cases` loads each folder with ``AutoModelFor<head>.from_pretrained(...,
trust_remote_code=True)`` (and natively where the config alone describes the shape), runs it and compares. The
table runs both directions between this interpreter and another one:

    python -m fastformers_hf.benchmarks.cross_version table --other_python .venv5/bin/python --out runs/cross-version
    python -m fastformers_hf.benchmarks.cross_version build DIR    # one half, in this environment
    python -m fastformers_hf.benchmarks.cross_version load DIR     # the other half, in another

The load half needs only torch, transformers and numpy (and this package on ``PYTHONPATH``), so it runs in a bare
environment with another transformers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")
HEADS = ("SequenceClassification", "TokenClassification", "QuestionAnswering", "MultipleChoice")
SHAPES = {  # 3 layers of 4 heads (head size 8), FFN width 64
    "unpruned": dict(),
    "uniform_heads": dict(heads_per_layer=2, ffn_width=32),
    "per_layer_heads": dict(heads_per_layer=[4, 1, 3], ffn_width=None),
    "per_layer_ffn": dict(heads_per_layer=None, ffn_width=[64, 24, 8]),
}
CASES = [(m, h, s) for m in MODEL_TYPES for h in HEADS for s in SHAPES]
MANIFEST = "cases.json"
TOLERANCE = 1e-5  # max |difference| of any output between the saving and the loading environment


def _inputs(vocab_size: int, head: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(5, vocab_size, (2, 9))  # (B, T)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0  # padding, so the attention mask matters
    if head == "MultipleChoice":  # (B, choices, T)
        ids, mask = np.repeat(ids[:, None], 3, 1), np.repeat(mask[:, None], 3, 1)
        ids[:, 1, 2] = 7
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}


def _run(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = model.eval()(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.float().numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def _save_arrays(folder: Path, prefix: str, arrays: dict[str, np.ndarray]) -> None:
    for k, v in arrays.items():
        np.save(folder / f"{prefix}_{k}.npy", v)


def build_cases(out_dir: str | os.PathLike, cases=CASES) -> Path:
    """Build, prune and save every case under ``out_dir`` (one folder each, with ``in_*.npy`` / ``out_*.npy``) and
    a manifest naming them and the transformers version that saved them."""
    import torch
    import transformers

    from .. import prune
    from ..hub_code import save_model_folder
    from ..testing import tiny_config, tiny_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(save_dir=out / "tokenizer")
    rows = []
    for model_type, head, shape in cases:
        torch.manual_seed(0)
        model = getattr(transformers, f"AutoModelFor{head}").from_config(tiny_config(model_type, num_layers=3))
        if SHAPES[shape]:
            prune(model, method="magnitude", **SHAPES[shape])
        folder = out / f"{model_type}-{head}-{shape}"
        save_model_folder(model, folder, tokenizer)
        inputs = _inputs(model.config.vocab_size, head)
        _save_arrays(folder, "in", inputs)
        _save_arrays(folder, "out", _run(model, inputs))
        rows.append({"model_type": model_type, "head": head, "shape": shape, "folder": folder.name})
    (out / MANIFEST).write_text(json.dumps({"saved_with": transformers.__version__, "cases": rows}, indent=1))
    return out


def _load_one(folder: Path, head: str, trust_remote_code: bool) -> dict:
    import transformers

    auto = getattr(transformers, f"AutoModelFor{head}")
    try:
        model = auto.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as e:  # the table reports why a folder does not load
        return {"loads": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    inputs = {k: np.load(folder / f"in_{k}.npy") for k in ("input_ids", "attention_mask")}
    got = _run(model, inputs)
    want = {p.stem[4:]: np.load(p) for p in folder.glob("out_*.npy")}
    if set(got) != set(want) or any(got[k].shape != want[k].shape for k in want):
        return {"loads": False, "error": f"outputs {sorted(got)} of shapes {[got[k].shape for k in sorted(got)]} "
                                         f"differ from the saved {[want[k].shape for k in sorted(want)]}"}
    diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    return {"loads": diff <= TOLERANCE, "max_abs_diff": diff, "class": type(model).__name__}


def load_cases(out_dir: str | os.PathLike) -> dict:
    """Load every case of :func:`build_cases` in this environment: with ``trust_remote_code=True`` where the folder
    carries the modeling file, natively otherwise; returns the rows with the max output difference."""
    import transformers

    out = Path(out_dir)
    manifest = json.loads((out / MANIFEST).read_text())
    rows = []
    for case in manifest["cases"]:
        folder = out / case["folder"]
        remote = (folder / "modeling_fastformers.py").exists()
        rows.append({**case, "saved_with": manifest["saved_with"], "loaded_with": transformers.__version__,
                     "how": "trust_remote_code=True" if remote else "native", **_load_one(folder, case["head"], remote)})
    return {"rows": rows}


def _python_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def _in(python: str, action: str, folder: Path) -> dict | None:
    done = subprocess.run([python, "-m", "fastformers_hf.benchmarks.cross_version", action, str(folder)],
                          env=_python_env(), capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{python} -m fastformers_hf.benchmarks.cross_version {action} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if action == "load" else None


def cross_version_table(other_python: str, work_dir: str | os.PathLike | None = None) -> dict:
    """Both directions: folders saved here load in ``other_python``'s environment, and the other way round."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="cross-version-"))
    build_cases(work / "saved-here")
    there = _in(other_python, "load", work / "saved-here")
    _in(other_python, "build", work / "saved-there")
    here = load_cases(work / "saved-there")
    rows = there["rows"] + here["rows"]
    return {"rows": rows, "all_load": all(r["loads"] for r in rows), "tolerance": TOLERANCE}


def markdown(report: dict) -> str:
    lines = ["| saved with | loaded with | model type | head | shape | how | loads | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else r.get("error", "")
        lines.append(f"| {r['saved_with']} | {r['loaded_with']} | {r['model_type']} | {r['head']} | {r['shape']} | "
                     f"{r['how']} | {'yes' if r['loads'] else 'NO'} | {diff} |")
    return "\n".join(lines)


def summary_markdown(report: dict) -> str:
    """One line per direction x shape: how many model type x head folders load, and the largest difference."""
    groups: dict[tuple, list] = {}
    for r in report["rows"]:
        groups.setdefault((r["saved_with"], r["loaded_with"], r["shape"], r["how"]), []).append(r)
    lines = ["| saved with | loaded with | shape | how | loads (model types x heads) | max abs diff |",
             "|---|---|---|---|---|---|"]
    for (saved, loaded, shape, how), rows in groups.items():
        diffs = [r["max_abs_diff"] for r in rows if "max_abs_diff" in r]
        lines.append(f"| {saved} | {loaded} | {shape} | {how} | {sum(r['loads'] for r in rows)}/{len(rows)} | "
                     f"{max(diffs):.1e} |" if diffs else f"| {saved} | {loaded} | {shape} | {how} | 0/{len(rows)} | - |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("build", "load", "table"))
    parser.add_argument("folder", nargs="?", help="cases folder (build / load)")
    parser.add_argument("--other_python", help="interpreter of the other environment (table)")
    parser.add_argument("--out", default="runs/cross-version", help="report folder (table)")
    args = parser.parse_args(argv)
    if args.action == "build":
        build_cases(args.folder)
    elif args.action == "load":
        print(json.dumps(load_cases(args.folder)))
    else:
        if not args.other_python:
            parser.error("table needs --other_python (the interpreter of an environment with the other transformers)")
        report = cross_version_table(args.other_python, Path(args.out) / "cases")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "report.json").write_text(json.dumps(report, indent=1))
        (Path(args.out) / "report.md").write_text(summary_markdown(report) + "\n\n" + markdown(report) + "\n")
        print(summary_markdown(report))
        return 0 if report["all_load"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
