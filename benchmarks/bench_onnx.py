"""ONNX Runtime benchmark: PyTorch fp32, PyTorch dynamic int8, Optimum's plain int8 route and our chosen variant.

Side by side in one run, batch 1, on SST-2 dev and on a synthetic BoolQ-like length mix (random vocabulary tokens,
median ~140 tokens, 32-512), for the fine-tuned teacher and a pruned student (6 heads / FFN 768 per layer, pruned
with ``fastformers_hf.prune``, not re-trained; or ``--student DIR``). Configurations are interleaved across repeats;
the CPU load of other processes is recorded for every pass. Peak memory is measured in a fresh process per
configuration. Writes report.json and report.md under --out; models and variants are cached there.

    flock /tmp/ff-cpu.lock python benchmarks/bench_onnx.py --out runs/bench_onnx
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoTokenizer, HfArgumentParser

import fastformers_hf
from fastformers_hf import SessionConfig, VariantChoiceConfig, load_task_data, optimize_for_inference
from fastformers_hf.utils.io import atomic_output_dir, claim_output_dir, read_json, write_json
from fastformers_hf.measurements import machine_description, machine_text, record_measurement
from fastformers_hf.inference.tokenization import with_special_tokens
from fastformers_hf.onnx.graph import inference_session, model_size_bytes
from fastformers_hf.utils.model_folder import load_pytorch_model
from fastformers_hf.onnx.variants import chosen_with, ort_runner, pytorch_runner
from fastformers_hf.utils.timing import time_interleaved

warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")  # deprecation notice of quantize_dynamic


@dataclass
class BenchArgs:
    out: str = field(default="runs/bench_onnx", metadata={"help": "Report and cached models/variants go here."})
    sst2_dev: str = field(default="../shared/data/sst2/dev.tsv", metadata={"help": "SST-2 dev TSV."})
    sst2_train: str = field(default="../shared/data/sst2/train.tsv",
                            metadata={"help": "For first-order pruning scores."})
    teacher: str = field(default="../shared/models/sst2-minilm-teacher", metadata={"help": "Fine-tuned teacher."})
    student: str | None = field(default=None,
                                metadata={"help": "Student dir; default: prune the teacher (if prune exists)."})
    heads: int = field(default=6, metadata={"help": "Heads kept per layer when pruning the teacher."})
    ffn: int = field(default=768, metadata={"help": "FFN width kept per layer when pruning the teacher."})
    scoring_examples: int = field(default=512, metadata={"help": "Held-out train sentences for first-order scores."})
    sst2_examples: int | None = field(default=None,
                                      metadata={"help": "Use only the first N dev sentences (smoke runs)."})
    boolq_examples: int = field(default=200, metadata={"help": "Inputs of the BoolQ-like length mix."})
    boolq_median: int = field(default=140, metadata={"help": "Median length (tokens) of the length mix."})
    repeats: int = field(default=3, metadata={"help": "Timed passes per configuration, interleaved."})
    tolerance: float = field(default=0.5, metadata={"help": "Accuracy points our choice may lose vs PyTorch fp32."})
    max_length: int = field(default=128, metadata={"help": "SST-2 truncation length."})


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- workloads: lists of batch-1 int64 feature dicts -------------------------------------------------------------


def sst2_inputs(args, tokenizer):
    dev = load_task_data(args.sst2_dev)["train"]  # a single file loads as one split
    if args.sst2_examples:
        dev = dev.select(range(min(args.sst2_examples, len(dev))))
    feats = [{k: v.astype(np.int64) for k, v in tokenizer(s, truncation=True, max_length=args.max_length,
                                                          return_tensors="np").items()} for s in dev["sentence"]]
    return dev, feats, np.asarray(dev["label"])


def boolq_like_inputs(args, tokenizer, n=None):
    """Random vocabulary tokens; lengths log-normal with the given median, clipped to [32, 512] like BoolQ."""
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(np.log(args.boolq_median), 0.45, size=n or args.boolq_examples)
    lengths = np.clip(lengths, 32, 512).astype(int)
    special = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special])
    feats = []
    for length in lengths:
        ids = with_special_tokens(tokenizer, rng.choice(vocab, size=length - 2).tolist())
        feats.append({"input_ids": np.asarray([ids], dtype=np.int64),
                      "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
                      "token_type_ids": np.zeros((1, len(ids)), dtype=np.int64)})
    return feats


def as_dataset(feats) -> Dataset:
    return Dataset.from_dict({k: [f[k][0].tolist() for f in feats] for k in feats[0]})


# -- models and variants (cached under --out) -----------------------------------------------------------------------


def make_student(args, out: Path, tokenizer) -> Path | None:
    if args.student:
        return Path(args.student)
    if not hasattr(fastformers_hf, "prune"):
        return None
    target = out / "models" / "student"
    if not (target / "config.json").exists():
        from fastformers_hf import held_out_split, prune, tokenize
        from fastformers_hf.pruning import scoring_dataloader

        log(f"pruning the teacher to {args.heads} heads / FFN {args.ffn} (first-order scores, no re-training)")
        train = load_task_data(args.sst2_train)["train"]
        _, held = held_out_split(train, num_examples=args.scoring_examples, seed=0)
        loader = scoring_dataloader(tokenize(held, tokenizer, max_length=64), tokenizer, batch_size=32)
        model = prune(load_pytorch_model(args.teacher), heads_per_layer=args.heads, ffn_width=args.ffn,
                      method="first_order", dataloader=loader)
        with atomic_output_dir(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return target


def optimum_plain(model_dir: Path, target: Path) -> Path:
    """What the Optimum docs show: export with ORTModel, quantize with ORTQuantizer's avx512_vnni defaults."""
    from optimum.onnxruntime import AutoQuantizationConfig, ORTModelForSequenceClassification, ORTQuantizer

    if not list(target.glob("*.onnx")):
        with atomic_output_dir(target.with_name(target.name + "-export")) as exp:
            ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(exp)
            AutoTokenizer.from_pretrained(model_dir).save_pretrained(exp)
        with atomic_output_dir(target) as tmp:
            ORTQuantizer.from_pretrained(target.with_name(target.name + "-export")).quantize(
                AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True), tmp)
    return target


def ours(model_dir: Path, target: Path, args, dev, latency_feats=None) -> Path:
    """Cached: chosen again when the choice settings (candidates, tolerance, rule) changed since the last run."""
    config = VariantChoiceConfig(tolerance=args.tolerance, latency_repeats=3, sample_size=200, data_name="sst2-dev",
                                 latency_data_name=None if latency_feats is None else "boolq-like")
    if not chosen_with(target, config):
        log(f"choosing our variant -> {target}")
        optimize_for_inference(model_dir, target, eval_dataset=dev, config=config,
                               latency_dataset=None if latency_feats is None else as_dataset(latency_feats))
    return target


# -- measurement ---------------------------------------------------------------------------------------------------


def measure(runners: dict, feats, repeats: int):
    """Interleaved timed passes; logits of the first pass kept for accuracy. Returns per-config stats and load."""
    timing = time_interleaved(runners, feats, repeats=repeats, keep_outputs=True)
    stats, logits = {}, {}
    for n in runners:
        s = timing.latency(n)
        stats[n] = {"median_ms": s["median_ms"], "p99_ms": s["p99_ms"], "mean_ms": timing.pass_mean_ms(n)}
        logits[n] = np.concatenate(timing.of(n)[0].outputs)
    loads = [{"repeat": p.round, "config": p.name, "other_load_cores": round(p.other_load_cores, 3),
              "disturbed": p.disturbed} for p in timing.runs]
    return stats, logits, loads


# Run in a fresh interpreter per configuration, importing only what that configuration needs (no torch for ORT),
# so the peak RSS is what serving it would cost: interpreter + runtime + model + activations of 40 inputs.
PROBE = r"""
import json, sys
import numpy as np
kind, path, threads, inputs = sys.argv[1], sys.argv[2], int(sys.argv[3]), np.load(sys.argv[4])
by_index = {}
for key in inputs.files:
    i, name = key.split(":")
    by_index.setdefault(int(i), {})[name] = inputs[key]
feats = [by_index[i] for i in sorted(by_index)]
if kind in ("pt", "ptq"):
    import torch
    torch.set_num_threads(threads)
    model = load_pytorch_model(path)
    if kind == "ptq":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    accepted = set(model.forward.__code__.co_varnames)
    def run(f):
        with torch.inference_mode():
            model(**{k: torch.from_numpy(v) for k, v in f.items() if k in accepted})
else:
    import glob
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if kind == "ort-ours":  # our SessionConfig defaults: no spinning
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(glob.glob(path + "/*.onnx")[0], opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    def run(f):
        session.run(None, {n: f[n] if n in f else np.zeros_like(f["input_ids"]) for n in names})
for f in feats:
    run(f)
# VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec on Linux)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def memory_of(kind: str, path: Path, inputs: Path, threads: int = 1) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, kind, str(path), str(threads), str(inputs)],
                         capture_output=True, text=True)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": res.stderr[-500:]}


def bench_model(label: str, model_dir: Path, args, out: Path, rows: list, extra: dict) -> None:
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dev, sst2, labels = sst2_inputs(args, tokenizer)
    boolq = boolq_like_inputs(args, tokenizer)
    model = load_pytorch_model(model_dir)
    qmodel = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    qpath = out / "models" / f"{label}-pt-qdynamic.pt"
    torch.save(qmodel.state_dict(), qpath)
    plain = optimum_plain(model_dir, out / "models" / f"{label}-optimum-plain")
    chosen = {"sst2": ours(model_dir, out / "models" / f"{label}-ours-sst2", args, dev),
              "boolq": ours(model_dir, out / "models" / f"{label}-ours-boolq", args, dev, boolq)}
    extra[label] = {w: {"chosen": read_json(p / "onnx_variants.json")["chosen"],
                        "table": (p / "onnx_variants.md").read_text()} for w, p in chosen.items()}
    sizes = {"pytorch-fp32": sum(f.stat().st_size for f in model_dir.glob("*.safetensors")),
             "pytorch-qdynamic": qpath.stat().st_size, "optimum-plain": model_size_bytes(plain)}
    plain_opts = SessionConfig(intra_op_num_threads=1, allow_spinning=True)  # ORT's default spinning, 1 thread
    probe_inputs = out / "models" / f"{label}-probe-inputs.npz"
    np.savez(probe_inputs, **{f"{i}:{k}": v for i, f in enumerate(sst2[:20] + boolq[:20]) for k, v in f.items()})
    mem = {"pytorch-fp32": memory_of("pt", model_dir, probe_inputs),
           "pytorch-qdynamic": memory_of("ptq", model_dir, probe_inputs),
           "optimum-plain": memory_of("ort-plain", plain, probe_inputs)}
    for workload, feats in (("sst2-dev", sst2), ("boolq-like", boolq)):
        path = chosen["sst2" if workload == "sst2-dev" else "boolq"]
        name = f"ours ({extra[label]['sst2' if workload == 'sst2-dev' else 'boolq']['chosen']})"
        runners = {"pytorch-fp32": pytorch_runner(model), "pytorch-qdynamic": pytorch_runner(qmodel),
                   "optimum-plain": ort_runner(inference_session(plain, plain_opts)),
                   name: ort_runner(inference_session(path, SessionConfig(intra_op_num_threads=1))),
                   name + " @2 threads": ort_runner(inference_session(path, SessionConfig(intra_op_num_threads=2)))}
        sizes[name] = sizes[name + " @2 threads"] = model_size_bytes(path)
        mem[name] = memory_of("ort-ours", path, probe_inputs, 1)
        mem[name + " @2 threads"] = memory_of("ort-ours", path, probe_inputs, 2)
        log(f"{label} / {workload}: timing {len(runners)} configurations x {len(feats)} inputs x {args.repeats}")
        stats, logits, loads = measure(runners, feats, args.repeats)
        ref = logits["pytorch-fp32"].argmax(-1)
        for cfg, s in stats.items():
            pred = logits[cfg].argmax(-1)
            row = {"model": label, "workload": workload, "config": cfg, **s,
                   "speedup_vs_pytorch": stats["pytorch-fp32"]["mean_ms"] / s["mean_ms"],
                   "speedup_vs_optimum_plain": stats["optimum-plain"]["mean_ms"] / s["mean_ms"],
                   "accuracy": float((pred == labels).mean()) if workload == "sst2-dev" else None,
                   "agreement_with_pytorch": float((pred == ref).mean()), "size_mb": sizes[cfg] / 1e6,
                   "peak_rss_mb": mem[cfg].get("peak_rss_mb"), "threads": 2 if "@2" in cfg else 1,
                   "other_load_cores_max": max(x["other_load_cores"] for x in loads if x["config"] == cfg)}
            rows.append(row)
            record_measurement(path if cfg.startswith("ours") else out, "latency_ms", s["mean_ms"], unit="ms",
                               dataset=workload, variant=f"{label}:{cfg}", threads=row["threads"], batch_size=1)
        extra.setdefault("loads", []).extend({"model": label, "workload": workload, **x} for x in loads)


def table(rows: list) -> str:
    head = ("| model | workload | config | median ms | p99 ms | mean ms | x PyTorch | x Optimum | accuracy | "
            "agree | MB | peak RSS MB | other load |")
    lines = [head, "|" + " --- |" * 13]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}"
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['model']} | {r['workload']} | {r['config']} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['mean_ms']:.2f} | {r['speedup_vs_pytorch']:.2f} | {r['speedup_vs_optimum_plain']:.2f} | "
                     f"{acc} | {100 * r['agreement_with_pytorch']:.1f} | {r['size_mb']:.1f} | {rss} | "
                     f"{r['other_load_cores_max']:.2f} |")
    return "\n".join(lines)


def checks(rows: list) -> list[str]:
    out = []
    for r in rows:
        if not r["config"].startswith("ours") or r["threads"] != 1:
            continue
        pt = next(x for x in rows if x["model"] == r["model"] and x["workload"] == r["workload"]
                  and x["config"] == "pytorch-fp32")
        out.append(f"{r['model']} / {r['workload']}: ours vs Optimum plain {r['speedup_vs_optimum_plain']:.2f}x "
                   f"({'ok' if r['speedup_vs_optimum_plain'] >= 0.97 else 'SLOWER'}, 3% timing noise allowed); "
                   f"vs PyTorch fp32 {r['speedup_vs_pytorch']:.2f}x "
                   f"({'ok' if r['speedup_vs_pytorch'] >= 2.5 else 'below 2.5x'})"
                   + ("" if r["accuracy"] is None else
                      f"; accuracy {100 * r['accuracy']:.2f} vs {100 * pt['accuracy']:.2f} "
                      f"({'ok' if 100 * (pt['accuracy'] - r['accuracy']) <= 0.5 else 'more than 0.5 points lost'})"))
    return out


def main() -> None:
    (args,) = HfArgumentParser(BenchArgs).parse_args_into_dataclasses()
    out = claim_output_dir(args.out, "bench_onnx", [args.teacher])  # never a user's folder; reruns reuse caches
    (out / "models").mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    student = make_student(args, out, tokenizer)
    models = {"teacher": Path(args.teacher)}
    note = ""
    if student is not None:
        models["student"] = student
        if not args.student:
            note = (f"Student: the teacher pruned with fastformers_hf.prune to {args.heads} heads / FFN {args.ffn} per "
                    "layer (first-order scores), not re-trained, so its accuracy is below a re-distilled student's.")
    else:
        note = "fastformers_hf.prune is not available and no --student was given: teacher only."
    rows, extra = [], {}
    start = time.time()
    for label, path in models.items():
        bench_model(label, path, args, out, rows, extra)
    report = {"args": asdict(args), "machine": machine_description(), "note": note, "rows": rows,
              "checks": checks(rows), "choices": {k: v for k, v in extra.items() if k != "loads"},
              "other_load_per_pass": extra.get("loads", []), "seconds": round(time.time() - start)}
    write_json(out / "report.json", report)
    md = [f"# ONNX Runtime benchmark (batch 1)\n", f"Machine: {machine_text(report['machine'])}\n", note + "\n",
          "Latency excludes tokenisation. mean ms = median over passes of the mean per-query latency; ratios use it. "
          "ONNX configurations run in a bare onnxruntime.InferenceSession (Optimum's plain route: ORT default "
          "session options but 1 thread; ours: SessionConfig, spinning off), PyTorch as model(**inputs) under "
          "inference_mode with torch.set_num_threads(1). "
          "`peak RSS` = fresh process per configuration (only its runtime imported), load + 40 inputs. "
          "`other load` = most CPU cores other processes used during any pass of that configuration. SST-2 dev: "
          f"{len(sst2_inputs(args, tokenizer)[1])} sentences; boolq-like: {args.boolq_examples} random-token "
          f"inputs, median {args.boolq_median} tokens.\n",
          table(rows), "\n## Checks\n", *[f"- {c}" for c in report["checks"]], "\n## Variant choices\n"]
    for label, per in report["choices"].items():
        for workload, info in per.items():
            md += [f"### {label}, timed on {workload}\n", info["table"]]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(table(rows))
    print("\n".join(report["checks"]))
    log(f"wrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
