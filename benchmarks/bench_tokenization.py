"""Tokenisation benchmark: the two paths of :mod:`fastformers_hf.inference.tokenization`, the ``transformers``
tokenizer call (``transformers_token_ids``) and the fast tokenizer's own Rust ``Tokenizer.encode_batch_fast``
(``rust_encoder``: no character offsets), the one ``TextClassifier`` uses for fast tokenizers.

Both give the same token ids (checked on every input before timing) and are timed on the same real sentences,
taking turns call by call (:func:`~fastformers_hf.utils.timing.time_interleaved`, ``interleave="item"``), at batch
1 (per-input latency, the serving case) and at batch 32. With ``--model`` (e.g. an int8 ONNX export of the
teacher) both are timed again as serving runs them, each call right after a forward pass of the model (which
evicts the tokenizer from the caches), and the forward pass is timed too, to say what share of a prediction the
difference is. Writes report.json and report.md under --out.

    python benchmarks/bench_tokenization.py --out runs/bench_tokenization [--model DIR]
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from transformers import AutoTokenizer, HfArgumentParser

from fastformers_hf.inference.classifier import model_token_limit
from fastformers_hf.inference.tokenization import rust_encoder, transformers_token_ids
from fastformers_hf.measurements import machine_description, machine_text
from fastformers_hf.tasks.data import load_local_split
from fastformers_hf.utils.io import claim_output_dir, write_json
from fastformers_hf.utils.model_folder import model_config
from fastformers_hf.utils.timing import DISTURBED_ABOVE_CORES, summarize_ms, time_interleaved

PATHS = ("transformers", "rust")  # the transformers call, the Rust fast path


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench_tokenization", metadata={"help": "report.json and report.md go here."})
    data: str = field(default="../shared/data/sst2/dev.tsv", metadata={"help": "A .tsv/.csv/.jsonl of sentences."})
    text_field: str = field(default="sentence", metadata={"help": "Column holding the text."})
    tokenizer: str = field(default="../shared/models/sst2-minilm-teacher",
                           metadata={"help": "Directory (or Hub id) of a fast tokenizer."})
    model: Optional[str] = field(default=None, metadata={"help": "A model directory (PyTorch or ONNX, e.g. the int8 "
                                 "teacher): both paths are timed again right after its forward pass, as in serving, "
                                 "and its forward time is reported beside; default: none."})
    model_batch_sizes: list[int] = field(default_factory=lambda: [1], metadata={"help": "Batch sizes timed after "
                                         "a forward pass of --model (batch 1: the serving case)."})
    model_repeats: int = field(default=2, metadata={"help": "Rounds of the timing after a forward pass."})
    examples: Optional[int] = field(default=None, metadata={"help": "Use only the first N sentences."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "Inputs per tokenizer call."})
    repeats: int = field(default=5, metadata={"help": "Rounds over all inputs; the paths take turns on each call."})
    warmup: int = field(default=20, metadata={"help": "Untimed calls of each path first."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Truncation length (default: the model's limit, "
                                      "as TextClassifier uses)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace another command's output in --out."})


def _batches(texts: list[str], batch_size: int) -> list[list[str]]:
    return [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]


def _stats(seconds: list[float], sizes: list[int]) -> dict:
    """Median (and p90) microseconds per call, and median microseconds per input, of calls of ``sizes`` inputs."""
    call, per_input = summarize_ms(seconds), summarize_ms([s / n for s, n in zip(seconds, sizes)])
    return {"median_us_per_call": 1e3 * call["median_ms"], "p90_us_per_call": 1e3 * call["p90_ms"],
            "median_us_per_input": 1e3 * per_input["median_ms"]}


def _compare(seconds: dict[str, list[float]], sizes: list[int]) -> dict:
    """Both paths' medians, the ratio of the medians and the saving: the median over calls of (transformers -
    rust) per input, each pair having run on the same batch one after the other, under the same load."""
    paths = {p: _stats(seconds[p], sizes) for p in PATHS}
    saved = [(t - r) / n for t, r, n in zip(seconds["transformers"], seconds["rust"], sizes)]
    return {"paths": paths, "ratio": paths["rust"]["median_us_per_input"] / paths["transformers"]["median_us_per_input"],
            "saved_us_per_input": 1e6 * float(np.median(saved))}


def time_paths(encoders: dict, texts: list[str], batch_size: int, repeats: int, warmup: int) -> dict:
    """The two paths back to back on each batch of ``texts``: their medians, the ratio rust / transformers (below 1
    when the fast path is faster) and what it saves per input."""
    batches = _batches(texts, batch_size)
    runners = {name: (lambda i, f=f: f(batches[i])) for name, f in encoders.items()}
    timing = time_interleaved(runners, range(len(batches)), repeats=repeats, warmup=min(warmup, len(batches)),
                              interleave="item")
    sizes = [len(b) for b in batches] * repeats  # of each timed call, in order
    return {"batch_size": batch_size, "calls": len(sizes), "load": timing.load(),
            **_compare({p: timing.seconds(p) for p in PATHS}, sizes)}


def time_after_forward(encoders: dict, model, texts: list[str], batch_size: int, repeats: int, warmup: int) -> dict:
    """The two paths as serving runs them, each call right after a forward pass of ``model`` (a TextClassifier):
    the forward pass evicts the tokenizer's code and data from the caches. Each runner runs the model on the
    batch's features (tokenised beforehand), then times its own tokenisation of the batch; the forward time is
    reported too, so the saving can be put beside the model's per-input latency."""
    batches = _batches(texts, batch_size)
    feats = [model.collate(model.token_ids(b)) for b in batches]

    def runner(f):
        def run(i):
            model.runner(feats[i])
            start = time.perf_counter()
            f(batches[i])
            return time.perf_counter() - start
        return run

    timing = time_interleaved({name: runner(f) for name, f in encoders.items()}, range(len(batches)), repeats=repeats,
                              warmup=min(warmup, len(batches)), interleave="item", keep_outputs=True)
    tokenise = {p: [s for run in timing.of(p) for s in run.outputs] for p in PATHS}
    forward = [whole - tok for p in PATHS for whole, tok in zip(timing.seconds(p), tokenise[p])]
    sizes = [len(b) for b in batches] * repeats  # of each timed call, in order
    row = {"batch_size": batch_size, "calls": len(sizes), "load": timing.load(), **_compare(tokenise, sizes),
           "forward": _stats(forward, sizes * len(PATHS))}
    row["saved_share_of_forward"] = row["saved_us_per_input"] / row["forward"]["median_us_per_input"]
    return row


def load_model(model_dir: str, tokenizer, max_length: int):
    """The model as serving runs it: a TextClassifier with one intra-op thread."""
    from fastformers_hf.inference.classifier import InferenceConfig, TextClassifier

    return TextClassifier.from_pretrained(model_dir, tokenizer=tokenizer, config=InferenceConfig(max_length=max_length))


def render_markdown(report: dict) -> str:
    model = report.get("model")
    lines = ["# Tokenisation: `transformers` call vs Rust `encode_batch_fast`", "",
             f"Command: `{report['command']}`", "", f"Machine: {machine_text(report['machine'])}", "",
             f"{report['inputs']} sentences from `{report['data']}`, tokenizer `{report['tokenizer']}`, max_length "
             f"{report['max_length']}; {report['repeats']} rounds, the two paths taking turns call by call. Medians; "
             "saved: the median of the paired differences (same batch, one call after the other).",
             ""]
    head = "| batch | transformers µs/input | rust µs/input | rust / transformers | saved µs/input |"
    sep = "|---:|---:|---:|---:|---:|"
    lines += [head, sep]
    for row in report["rows"]:
        t, r = (row["paths"][p]["median_us_per_input"] for p in PATHS)
        lines.append(f"| {row['batch_size']} | {t:.1f} | {r:.1f} | {row['ratio']:.2f} | {row['saved_us_per_input']:.1f} |")
    if model:
        lines += ["", f"Right after a forward pass of `{model['model']}` ({model['backend']}, one thread), as in "
                      "serving (tokenise, forward, tokenise, ...):", "",
                  "| batch | transformers µs/input | rust µs/input | rust / transformers | saved µs/input | "
                  "forward µs/input | saved / forward |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in report["after_forward"]:
            t, r = (row["paths"][p]["median_us_per_input"] for p in PATHS)
            lines.append(f"| {row['batch_size']} | {t:.1f} | {r:.1f} | {row['ratio']:.2f} | "
                         f"{row['saved_us_per_input']:.1f} | {row['forward']['median_us_per_input']:.0f} | "
                         f"{100 * row['saved_share_of_forward']:.1f}% |")
    timed = [("", r) for r in report["rows"]] + [(" after forward", r) for r in report.get("after_forward", [])]
    loads = ", ".join(f"batch {r['batch_size']}{what} {r['load']['other_load_cores']:.2f}" for what, r in timed)
    disturbed = [f"batch {r['batch_size']}{what}" for what, r in timed if r["load"]["disturbed"]]
    note = (f"; above {report['disturbed_above_cores']} cores a row counts as disturbed: {', '.join(disturbed)}"
            if disturbed else "")
    lines += ["", f"Other processes' load while timing, in cores on average: {loads}. The paths took turns call by call, "
                  f"so load slows both alike{note}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict:
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses(args=argv)
    out = claim_output_dir(args.out, "bench_tokenization", [args.data, args.tokenizer],
                           overwrite=args.overwrite_output_dir)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if not getattr(tokenizer, "is_fast", False):
        raise SystemExit(f"{args.tokenizer} is not a fast tokenizer: there is no Rust path to compare.")
    folder = Path(args.model or args.tokenizer)
    limit = args.max_length or model_token_limit(model_config(folder) if (folder / "config.json").exists() else None,
                                                 tokenizer)
    texts = [str(t) for t in load_local_split(args.data)[args.text_field]][:args.examples]
    rust = rust_encoder(tokenizer, limit)
    encoders = {"transformers": lambda batch: transformers_token_ids(tokenizer, batch, limit), "rust": rust}
    if rust(texts) != transformers_token_ids(tokenizer, texts, limit):
        raise SystemExit("the two paths give different token ids; timing them would compare different work.")
    rows = [time_paths(encoders, texts, bs, args.repeats, args.warmup) for bs in args.batch_sizes]
    report = {"command": " ".join(["python", "benchmarks/bench_tokenization.py", *(argv if argv is not None else
                                                                                    sys.argv[1:])]),
              "machine": machine_description(), "args": asdict(args), "data": args.data, "tokenizer": args.tokenizer,
              "inputs": len(texts), "max_length": limit, "repeats": args.repeats, "paths": list(PATHS), "rows": rows,
              "disturbed_above_cores": DISTURBED_ABOVE_CORES,
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.model:
        model = load_model(args.model, tokenizer, limit)
        report["model"] = {"model": args.model, "backend": model.backend}
        report["after_forward"] = [time_after_forward(encoders, model, texts, bs, args.model_repeats, args.warmup)
                                   for bs in args.model_batch_sizes]
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    print(json.dumps({r["batch_size"]: round(r["ratio"], 3) for r in rows}))
    return report


if __name__ == "__main__":
    main()
