"""Structured-pruning benchmark on SST-2, starting from the fine-tuned MiniLM teacher (12 heads, FFN 1536, 6 layers).

* first-order vs magnitude vs random selection, pruned to --heads of 12 heads and FFN --ffn in every layer,
  each with and without re-distillation from the unpruned teacher (cached teacher logits: no teacher forward);
* a sweep of sizes (--sweep, first-order + re-distilled) for a speed-versus-accuracy plot like FastFormers Fig. 2.

Reports dev accuracy, parameter count and batch-1 latency (PyTorch, 1 thread, dynamic length; ONNX Runtime int8
too when ``fastformers_hf.quantize_onnx`` is available). Writes report.json, report.md and pareto.png under --out.

    flock /tmp/ff-cpu.lock python benchmarks/bench_pruning.py --out runs/bench_pruning

Every stage (scores, teacher logits, each model, each measurement) is cached under --out; a rerun skips finished ones
(delete a folder or file to redo it).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, HfArgumentParser

import fastformers_hf
from fastformers_hf import (DistillationConfig, DistillationTrainer, cache_teacher_logits, held_out_split,
                            importance_scores, load_pruned, load_task_data, prune, record_measurement, tokenize)
from fastformers_hf.compat import warmup
from fastformers_hf.utils.io import atomic_output_dir, claim_output_dir, read_json, write_json
from fastformers_hf.measurements import machine_description, machine_text
from fastformers_hf.pruning import scoring_dataloader
from fastformers_hf.tasks.data import local_data_name
from fastformers_hf.utils.timing import DEFAULT_WARMUP, pytorch_classify_fn, time_interleaved, torch_threads


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench_pruning", metadata={"help": "Report, plot and cached stages go here."})
    data_dir: str = field(default="../shared/data/sst2", metadata={"help": "Folder with GLUE train.tsv/dev.tsv."})
    teacher: str = field(default="../shared/models/sst2-minilm-teacher", metadata={"help": "Fine-tuned model to prune."})
    heads: int = field(default=6, metadata={"help": "Heads kept per layer in the method comparison."})
    ffn: int = field(default=768, metadata={"help": "FFN width kept per layer in the method comparison."})
    methods: str = field(default="first_order,magnitude,random", metadata={"help": "Scoring methods compared."})
    sweep: str = field(default="9:1152,6:768,3:384",
                       metadata={"help": "heads:ffn sizes for the speed/accuracy curve (first-order, re-distilled)."})
    scoring_examples: int = field(default=1000, metadata={"help": "Held-out training sentences for first-order scores."})
    redistil_steps: int = field(default=800, metadata={"help": "Re-distillation steps of --batch_size sentences."})
    batch_size: int = field(default=32, metadata={"help": "Re-distillation batch size."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Re-distillation peak learning rate."})
    temperature: float = field(default=2.0, metadata={"help": "Distillation temperature."})
    max_length: int = field(default=64, metadata={"help": "Truncation length (SST-2 sentences are short)."})
    latency_samples: int = field(default=300, metadata={"help": "Dev sentences timed at batch 1 (fixed sample)."})
    threads: int = field(default=2, metadata={"help": "torch threads for scoring/training; latency is timed at 1."})
    onnx: bool = field(default=True, metadata={"help": "Also time ONNX Runtime int8 (if fastformers_hf.quantize_onnx exists)."})


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item.strip()]


def accuracy(model, dataset, tokenizer, batch_size: int = 128) -> float:
    loader = scoring_dataloader(dataset, tokenizer, batch_size=batch_size)
    correct = 0
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(dataset)


def ort_classify_fn(session, tokenizer, max_length: int):
    names = {i.name for i in session.get_inputs()}

    def fn(example):
        enc = tokenizer(example["sentence"], truncation=True, max_length=max_length, return_tensors="np")
        feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
        return int(session.run(None, feeds)[0].argmax(-1)[0])

    return fn


class Bench:
    def __init__(self, args: BenchArgs):
        self.args = args
        self.out = claim_output_dir(args.out, "bench_pruning", [args.teacher, args.data_dir])  # never a user's folder
        self.tokenizer = AutoTokenizer.from_pretrained(args.teacher)
        raw = load_task_data(args.data_dir)
        rest, scoring = held_out_split(raw["train"], num_examples=args.scoring_examples, seed=0)
        n_train = min(args.redistil_steps * args.batch_size, len(rest))
        self.dev_raw = raw["validation"]
        self.latency_sample = self.dev_raw.select(range(min(args.latency_samples, len(self.dev_raw))))
        tok = lambda ds: tokenize(ds, self.tokenizer, max_length=args.max_length)  # noqa: E731
        self.dev = tok(self.dev_raw)
        self.scoring = tok(scoring)
        self.train = tok(rest.shuffle(seed=0).select(range(n_train)))
        self.n_train = n_train

    def teacher(self):
        return AutoModelForSequenceClassification.from_pretrained(self.args.teacher).eval()

    # -- stages ------------------------------------------------------------------------------------------------------

    def scores(self, method: str):
        path = self.out / "scores" / f"{method}.pt"
        if path.exists():
            return torch.load(path, weights_only=False)
        log(f"scoring heads and neurons: {method}")
        start = time.perf_counter()
        loader = scoring_dataloader(self.scoring, self.tokenizer, batch_size=32) if method == "first_order" else None
        scores = importance_scores(self.teacher(), method, loader, seed=0)
        scores.extra["wall_s"] = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(scores, path)
        return scores

    def pruned(self, method: str, heads: int, ffn: int) -> Path:
        path = self.out / "models" / f"{method}-h{heads}-f{ffn}"
        if not (path / "stage.json").exists():
            log(f"pruning {path.name}")
            model = prune(self.teacher(), heads_per_layer=heads, ffn_width=ffn, scores=self.scores(method))
            with atomic_output_dir(path) as tmp:
                model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                write_json(tmp / "stage.json", {"wall_s": 0.0, "redistilled": False})
        return path

    def redistilled(self, method: str, heads: int, ffn: int) -> Path:
        path = self.out / "models" / f"{method}-h{heads}-f{ffn}-redistilled"
        if (path / "stage.json").exists():
            return path
        source = self.pruned(method, heads, ffn)
        train = cache_teacher_logits(self.teacher(), self.train, self.tokenizer, batch_size=256,
                                     cache_file=self.out / f"teacher_logits_{self.n_train}.npy")
        log(f"re-distilling {path.name} for {self.args.redistil_steps} steps")
        a = self.args
        config = DistillationConfig(
            output_dir=str(self.out / "work" / path.name), overwrite_output_dir=True, max_steps=a.redistil_steps,
            per_device_train_batch_size=a.batch_size, learning_rate=a.learning_rate, weight_decay=0.01,
            **warmup(0.06), temperature=a.temperature, distillation_weight=1.0, logging_steps=100,
            save_strategy="no", report_to=[], dataloader_pin_memory=False, seed=0)
        start = time.perf_counter()
        model = load_pruned(source)
        trainer = DistillationTrainer(model=model, args=config, train_dataset=train, processing_class=self.tokenizer)
        result = trainer.train()
        wall = time.perf_counter() - start
        with atomic_output_dir(path) as tmp:
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            write_json(tmp / "stage.json", {"wall_s": wall, "redistilled": True, "train_loss": result.training_loss,
                                            "steps": a.redistil_steps, "train_sentences": self.n_train})
        return path

    # -- measurements ------------------------------------------------------------------------------------------------

    def measure(self, name: str, model_dir: Path | None) -> dict:
        """Accuracy and size of one model, and of its ONNX Runtime int8 version (cached in metrics/<name>.json).
        Latency is timed later for all models together (:meth:`time_all`)."""
        cache = self.out / "metrics" / f"{name}.json"
        if (row := read_json(cache)) is not None:
            for key in ("latency_pytorch_1thread", "load_pytorch"):  # from older runs: timed again in time_all
                row.pop(key, None)
            row.get("onnx_int8", {}).pop("latency_1thread", None)
            row.get("onnx_int8", {}).pop("load", None)
            return row
        log(f"measuring {name}")
        model = self.teacher() if model_dir is None else load_pruned(model_dir)
        torch_threads(self.args.threads)
        acc = accuracy(model, self.dev, self.tokenizer)
        record = fastformers_hf.compression_record(model)
        row = {"dev_accuracy": acc, "parameters": sum(p.numel() for p in model.parameters()),
               "heads_per_layer": record["heads_per_layer"], "ffn_width_per_layer": record["ffn_width_per_layer"],
               **(read_json(model_dir / "stage.json") if model_dir else {"redistilled": False, "wall_s": 0.0})}
        if self.args.onnx:
            row["onnx_int8"] = self.measure_onnx(name, model_dir or Path(self.args.teacher))
        if model_dir is not None:
            record_measurement(model_dir, "accuracy", acc, dataset=local_data_name(self.args.data_dir),
                               split="validation", command="python benchmarks/bench_pruning.py")
        write_json(cache, row)
        return row

    def time_all(self, rows: dict, dirs: dict) -> dict:
        """Batch-1 latency of every model, PyTorch and ORT int8, 1 thread, interleaved sentence by sentence.

        This machine is shared: timing the models one after another would let a burst of someone else's work land
        on one model only. Interleaved, every model sees the same disturbance, so the ratios hold up.
        """
        torch_threads(1)
        fns = {}
        for name in rows:
            model = self.teacher() if dirs[name] is None else load_pruned(dirs[name])
            fns[(name, "pytorch")] = pytorch_classify_fn(model, self.tokenizer, max_length=self.args.max_length)
            int8 = self.out / "onnx" / f"{name}-int8"
            if "dev_accuracy" in rows[name].get("onnx_int8", {}) and int8.exists():
                from fastformers_hf.onnx.config import SessionConfig
                from fastformers_hf.onnx.graph import inference_session

                session = inference_session(int8, SessionConfig(intra_op_num_threads=1))
                fns[(name, "onnx_int8")] = ort_classify_fn(session, self.tokenizer, self.args.max_length)
        log(f"timing {len(fns)} variants, interleaved, on {len(self.latency_sample)} sentences")
        timing = time_interleaved(fns, list(self.latency_sample), warmup=DEFAULT_WARMUP, interleave="item")
        torch_threads(self.args.threads)
        for name, variant in fns:
            lat = timing.latency((name, variant))
            if variant == "pytorch":
                rows[name]["latency_pytorch_1thread"] = lat
                if dirs[name] is not None:
                    record_measurement(dirs[name], "latency_batch1_median_ms", lat["median_ms"], unit="ms",
                                       dataset=local_data_name(self.args.data_dir), split="validation", threads=1,
                                       command="python benchmarks/bench_pruning.py")
            else:
                rows[name]["onnx_int8"]["latency_1thread"] = lat
        return timing.load()

    def measure_onnx(self, name: str, model_dir: Path) -> dict:
        if not hasattr(fastformers_hf, "quantize_onnx"):
            return {"skipped": "fastformers_hf.quantize_onnx is not available in this checkout"}
        try:
            from fastformers_hf.onnx.config import SessionConfig
            from fastformers_hf.onnx.export import export_onnx
            from fastformers_hf.onnx.graph import inference_session

            fp32, int8 = self.out / "onnx" / f"{name}-fp32", self.out / "onnx" / f"{name}-int8"
            if not (int8 / "model.onnx").exists() and not any(int8.glob("*.onnx")):
                export_onnx(model_dir, fp32, tokenizer=self.tokenizer)
                fastformers_hf.quantize_onnx(fp32, int8)
            session = inference_session(int8, SessionConfig(intra_op_num_threads=1))
            fn = ort_classify_fn(session, self.tokenizer, self.args.max_length)
            preds = [fn(ex) for ex in self.dev_raw]
            return {"dev_accuracy": float(np.mean(np.asarray(preds) == np.asarray(self.dev_raw["label"])))}
        except Exception as e:  # report, do not lose the PyTorch numbers
            return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def plot(rows: dict, sweep_names: list[str], path: Path, teacher_acc: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("PyTorch fp32, re-distilled", lambda r: r["latency_pytorch_1thread"]["median_ms"],
               lambda r: r["dev_accuracy"], "o-", (4, -10))]
    if all("latency_1thread" in rows[n].get("onnx_int8", {}) for n in sweep_names):
        series.append(("ONNX Runtime int8, re-distilled", lambda r: r["onnx_int8"]["latency_1thread"]["median_ms"],
                       lambda r: r["onnx_int8"]["dev_accuracy"], "s-", (-8, 7)))
    for label, x, y, style, offset in series:
        xs, ys = [x(rows[n]) for n in sweep_names], [y(rows[n]) * 100 for n in sweep_names]
        ax.plot(xs, ys, style, label=label)
        for n, xi, yi in zip(sweep_names, xs, ys):
            h, f = rows[n]["heads_per_layer"][0], rows[n]["ffn_width_per_layer"][0]
            ax.annotate(("teacher " if n == "teacher" else "") + f"{h}h/{f}", (xi, yi), textcoords="offset points", xytext=offset, fontsize=8)
    no_distil = [n for n in rows if n.startswith("first_order") and not n.endswith("redistilled")]
    if no_distil:
        ax.plot([rows[n]["latency_pytorch_1thread"]["median_ms"] for n in no_distil],
                [rows[n]["dev_accuracy"] * 100 for n in no_distil], "x", color="grey",
                label="PyTorch, pruned only (no re-distillation)")
    ax.axhline(teacher_acc * 100 - 1.5, ls=":", color="grey", lw=1, label="teacher - 1.5 points")
    ax.set_xlabel("batch-1 latency, median ms (1 thread, dynamic length, SST-2 dev)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.set_title("Structured pruning of MiniLM-L6 (heads / FFN width per layer)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses()
    torch_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    bench = Bench(args)
    methods = [m for m in args.methods.split(",") if m]
    size = (args.heads, args.ffn)

    rows, dirs = {}, {}

    def add(name, model_dir):
        if name not in rows:
            dirs[name] = model_dir
            rows[name] = bench.measure(name, model_dir)

    add("teacher", None)
    for method in methods:  # the comparison at one size, with and without re-distillation
        name = f"{method}-h{size[0]}-f{size[1]}"
        add(name, bench.pruned(method, *size))
        add(name + "-redistilled", bench.redistilled(method, *size))
    sweep_names = ["teacher"]
    for heads, ffn in parse_sizes(args.sweep):  # the curve: first-order, re-distilled
        name = f"first_order-h{heads}-f{ffn}"
        add(name, bench.pruned("first_order", heads, ffn))
        add(name + "-redistilled", bench.redistilled("first_order", heads, ffn))
        sweep_names.append(name + "-redistilled")
    load = bench.time_all(rows, dirs)

    teacher = rows["teacher"]
    t_acc, t_lat = teacher["dev_accuracy"], teacher["latency_pytorch_1thread"]["median_ms"]
    main_name = f"first_order-h{size[0]}-f{size[1]}"
    findings = {
        "first_order_minus_random_pruned_only": rows[main_name]["dev_accuracy"] - rows[f"random-h{size[0]}-f{size[1]}"]["dev_accuracy"]
        if "random" in methods else None,
        "first_order_minus_random_redistilled": rows[main_name + "-redistilled"]["dev_accuracy"]
        - rows[f"random-h{size[0]}-f{size[1]}-redistilled"]["dev_accuracy"] if "random" in methods else None,
        "redistilled_minus_teacher_points": 100 * (rows[main_name + "-redistilled"]["dev_accuracy"] - t_acc),
        "redistilled_speedup_pytorch": t_lat / rows[main_name + "-redistilled"]["latency_pytorch_1thread"]["median_ms"],
    }
    report = {"settings": asdict(args) | {"train_sentences": bench.n_train, "dev_sentences": len(bench.dev),
                                          "latency_sentences": len(bench.latency_sample)},
              "machine": machine_description(), "other_load_while_timing": load, "rows": rows, "findings": findings,
              "scoring_wall_s": {m: float(bench.scores(m).extra.get("wall_s", 0.0)) for m in methods},
              "total_wall_s_this_run": time.perf_counter() - start}
    out = Path(args.out)
    write_json(out / "report.json", report)
    plot(rows, sweep_names, out / "pareto.png", t_acc)

    has_onnx = any("latency_1thread" in r.get("onnx_int8", {}) for r in rows.values())
    head = ["model", "heads/FFN", "re-distilled", "dev acc", "Δ vs teacher (pts)", "params", "PyTorch ms", "speed-up"]
    if has_onnx:
        head += ["ORT int8 acc", "ORT int8 ms", "ORT speed-up vs PyTorch teacher"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        lat = r["latency_pytorch_1thread"]["median_ms"]
        cells = [name.removesuffix("-redistilled"), f"{r['heads_per_layer'][0]}/{r['ffn_width_per_layer'][0]}",
                 "yes" if r.get("redistilled") else "no", f"{100 * r['dev_accuracy']:.2f}",
                 f"{100 * (r['dev_accuracy'] - t_acc):+.2f}", f"{r['parameters'] / 1e6:.2f}M", f"{lat:.2f}",
                 f"{t_lat / lat:.2f}x"]
        if has_onnx:
            o = r.get("onnx_int8", {})
            if "latency_1thread" in o:
                cells += [f"{100 * o['dev_accuracy']:.2f}", f"{o['latency_1thread']['median_ms']:.2f}",
                          f"{t_lat / o['latency_1thread']['median_ms']:.1f}x"]
            else:
                cells += ["-", "-", o.get("error", o.get("skipped", "-"))[:60]]
        lines.append("| " + " | ".join(cells) + " |")
    onnx_note = ("ONNX Runtime int8: Optimum export + dynamic quantization (fastformers_hf.quantize_onnx, avx512_vnni "
                 "preset), 1 intra-op thread." if has_onnx else
                 "ONNX Runtime int8: not measured (" + str(next(iter(rows.values())).get("onnx_int8", "disabled")) + ").")
    lines += [
        "",
        f"Teacher: {args.teacher}. Pruning: one-shot from the teacher's scores ({args.scoring_examples} held-out train "
        f"sentences for first-order), same heads/FFN in every layer. Re-distillation: {args.redistil_steps} steps x "
        f"{args.batch_size} on {bench.n_train} train sentences (disjoint from the scoring slice), soft targets only "
        f"(T={args.temperature}) from cached teacher logits, lr {args.learning_rate}, max length {args.max_length}.",
        f"Latency: median over {len(bench.latency_sample)} fixed SST-2 dev sentences, batch 1, 1 thread, dynamic "
        f"length, tokenisation included; all variants timed interleaved, sentence by sentence, so they share any "
        f"disturbance (other processes used {load['other_load_cores']:.2f} cores on average meanwhile"
        f"{', disturbed' if load['disturbed'] else ''}). {onnx_note}",
        f"First-order minus random (pruned only): {_pts(findings['first_order_minus_random_pruned_only'])}; "
        f"re-distilled: {_pts(findings['first_order_minus_random_redistilled'])}. Re-distilled {size[0]}h/{size[1]} "
        f"vs teacher: {findings['redistilled_minus_teacher_points']:+.2f} points at "
        f"{findings['redistilled_speedup_pytorch']:.2f}x PyTorch speed.",
        f"Machine: {machine_text(report['machine'])}.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def _pts(x):
    return "n/a" if x is None else f"{100 * x:+.2f} points"


if __name__ == "__main__":
    main()
