"""``compress``: from a fine-tuned model to a fast, verified model, in stages that resume.

Stages (each in its own subdirectory of ``output_dir`` with a ``stage.json`` of its inputs, settings and results):
``0-teacher`` (optional fine-tuning) -> ``1-distill`` -> ``2-prune`` -> ``3-redistill`` -> ``4-onnx`` (fastest
accurate ONNX Runtime variant) -> ``5-final`` (PyTorch + ``onnx/``, measured against the teacher, model card) ->
``6-push`` (optional). A stage is skipped when its ``stage.json`` fingerprint (its settings plus everything upstream)
matches; otherwise it and everything after it run again. Stages are built in a temporary folder and moved into
place, so an interrupted run leaves no half-written stage and the same command continues where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .config import CompressConfig, parse_target
from ..errors import FastFormersError
from ..utils.quiet import dropped_log_records
from ..utils.io import OUTPUT_RECORD, atomic_output_dir, check_output_dir, claim_output_dir, read_json, write_json

STAGE_FILE = "stage.json"
# The final table's serving setting: one request at a time. Accuracy is measured in it too, because dynamic int8
# answers move with batch padding: an accuracy from another batch size would not be the timed model's.
SERVING_BATCH_SIZE = 1


class CompressPipeline:
    def __init__(self, config: CompressConfig, log: Callable[[str], None] = print):
        self.config, self.out, self.log = config, Path(config.output_dir), log
        self._fingerprint = "start"
        self.records: dict[str, dict] = {}

    # -- validation (all of --dry-run) ----------------------------------------------------------------------------

    def validate(self) -> dict:
        """Check paths, shapes, targets, data columns and dependencies without loading weights or training."""
        c = self.config
        if not c.model_name_or_path:  # before the imports below (seconds): a missing flag is reported at once
            raise FastFormersError("model_name_or_path is required (the fine-tuned teacher: a folder or Hub id).")
        from transformers import AutoConfig

        from ..architectures import get_spec
        from ..tasks.data import check_columns, get_task, load_task_data

        check_output_dir(self.out, "compress", [c.model_name_or_path, c.data], c.overwrite_output_dir)
        try:
            tconf = AutoConfig.from_pretrained(c.model_name_or_path)
        except OSError as e:
            raise FastFormersError(f"cannot read the model config of {c.model_name_or_path!r}: "
                                   f"{str(e).splitlines()[0]}") from None
        spec = get_spec(tconf)
        n_layers, n_heads = getattr(tconf, spec.num_layers_attr), getattr(tconf, spec.num_heads_attr)
        ffn = getattr(tconf, spec.intermediate_size_attr)
        if not 1 <= c.student_layers <= n_layers:
            raise FastFormersError(f"student_layers={c.student_layers} is impossible: the teacher has {n_layers} "
                                   f"layers; choose 1..{n_layers}.")
        for name, value, limit in (("heads_per_layer", parse_target(c.heads_per_layer), n_heads),
                                   ("ffn_width", parse_target(c.ffn_width), ffn)):
            if isinstance(value, float) and not 0 < value <= 1:
                raise FastFormersError(f"{name}={value} is not a ratio in (0, 1].")
            if isinstance(value, int) and not 1 <= value <= limit:
                raise FastFormersError(f"{name}={value} is impossible: the teacher has {limit} per layer; keep 1..{limit}.")
        task = get_task(c.task)
        if c.data:
            data = load_task_data(c.data, c.task)
            for split in ("train", "validation"):
                if split not in data:
                    raise FastFormersError(f"{c.data} has no {split} split (train.tsv / dev.tsv).")
                check_columns(data[split], list(task.text_fields) + [task.label_field], f"{split} split of {c.data}")
            rows = {k: len(v) for k, v in data.items()}
            n_train = min(rows["train"], c.max_train_samples or rows["train"])
            if c.prunes and not 1 <= c.scoring_examples < n_train:
                raise FastFormersError(f"scoring_examples={c.scoring_examples} must be between 1 and {n_train - 1}: "
                                       f"the train split of {c.data} has {n_train} rows to use; pass a smaller "
                                       "--scoring_examples.")
        else:
            rows = {"train": c.max_train_samples or 4800, "validation": c.max_eval_samples or 500, "data": "generated"}
        for module, extra in (("optimum.onnxruntime", "onnx"), ("onnxruntime", "onnx")):
            try:
                __import__(module)
            except ImportError:
                raise FastFormersError(f"{module} is missing: pip install 'fastformers-hf[{extra}]'.") from None
        if c.push_to_hub:
            import huggingface_hub  # noqa: F401
        stages = ["0-teacher"] * bool(c.teacher_fine_tune_steps) + ["1-distill"] + \
            (["2-prune", "3-redistill"] if self.config.prunes else []) + ["4-onnx", "5-final"] + ["6-push"] * c.push_to_hub
        return {"teacher": {"model_type": tconf.model_type, "layers": n_layers, "heads": n_heads, "ffn": ffn},
                "rows": rows, "stages": stages}

    # -- stage machinery -----------------------------------------------------------------------------------------

    def stage(self, name: str, settings: dict, build: Callable[[Path], dict]) -> Path:
        """Run ``build(tmp_dir) -> results`` unless ``name`` already finished with the same fingerprint."""
        fingerprint = hashlib.sha256(json.dumps([self._fingerprint, name, settings], sort_keys=True,
                                                default=str).encode()).hexdigest()
        path = self.out / name
        record = read_json(path / STAGE_FILE)
        self._fingerprint = fingerprint
        if record and record.get("fingerprint") == fingerprint:
            self.log(f"[{name}] done earlier, reusing {path}")
            self.records[name] = record
            return path
        self.log(f"[{name}] running")
        start = time.perf_counter()
        try:
            with atomic_output_dir(path, "compress-stage") as tmp:
                results = build(tmp) or {}
                record = {"stage": name, "fingerprint": fingerprint, "settings": settings, "results": results,
                          "seconds": round(time.perf_counter() - start, 1)}
                write_json(tmp / STAGE_FILE, record)
        except KeyboardInterrupt:
            raise FastFormersError(f"interrupted during stage {name}; nothing of it was kept. Run the same command "
                                   "again to continue from this stage.") from None
        self.records[name] = record
        self.log(f"[{name}] finished in {record['seconds']:.0f} s")
        return path

    # -- the recipe ------------------------------------------------------------------------------------------------

    def run(self) -> dict:
        c = self.config
        summary = self.validate()  # first: a missing or wrong setting is reported before the imports below (seconds)
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..tasks.data import get_task, load_task_data, tokenize
        from ..pruning import held_out_split

        claim_output_dir(self.out, "compress", [c.model_name_or_path, c.data], c.overwrite_output_dir)
        torch.set_num_threads(max(1, c.threads))
        task = get_task(c.task)
        if c.data:
            raw = load_task_data(c.data, c.task, c.max_train_samples, c.max_eval_samples, seed=c.seed)
            data_name = Path(c.data).name if Path(c.data).exists() else c.data
        else:
            from ..tasks.synthetic import make_sentiment_data

            raw = make_sentiment_data(c.max_train_samples or 4800, c.max_eval_samples or 500, seed=c.seed,
                                      hard=c.generated_hard, label_noise=c.generated_label_noise)
            data_name = "generated-sentiment" + "-hard" * c.generated_hard + \
                (f"-noise{c.generated_label_noise:g}" if c.generated_label_noise else "")
        self.data_name, self.raw, self.task = data_name, raw, task
        data_settings = c.settings("data", "task", "max_length", "max_train_samples", "max_eval_samples", "seed")
        if not c.data and (c.generated_hard or c.generated_label_noise):  # other data: fingerprints as before
            data_settings.update(c.settings("generated_hard", "generated_label_noise"))

        teacher_dir = Path(c.model_name_or_path) if Path(c.model_name_or_path).exists() else c.model_name_or_path
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        data = tokenize(raw, tokenizer, task.text_fields, task.label_field, c.max_length)
        self.tokenizer, self.data = tokenizer, data

        if c.teacher_fine_tune_steps:
            teacher_dir = self.stage("0-teacher", {**data_settings, "model": str(c.model_name_or_path),
                                                   **c.settings("teacher_fine_tune_steps", "learning_rate",
                                                                "per_device_train_batch_size")},
                                     lambda tmp: self._fine_tune_teacher(tmp, teacher_dir))
        else:
            self._fingerprint = hashlib.sha256(json.dumps([str(teacher_dir), data_settings]).encode()).hexdigest()
        teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
        self.teacher, self.teacher_dir = teacher, teacher_dir

        train, scoring = data["train"], None
        if c.prunes:
            train, scoring = held_out_split(train, c.scoring_examples, seed=c.seed)
        train = self._with_teacher_logits(train)

        student_dir = self.stage("1-distill", c.settings("student_layers", "student_hidden_act", "max_steps",
                                                         "temperature", "learning_rate", "per_device_train_batch_size",
                                                         "scoring_examples"),
                                 lambda tmp: self._distil(tmp, None, train, c.max_steps))
        if c.prunes:
            pruned_dir = self.stage("2-prune", c.settings("heads_per_layer", "ffn_width", "pruning_method"),
                                    lambda tmp: self._prune(tmp, student_dir, scoring))
            student_dir = self.stage("3-redistill", c.settings("redistill_steps", "temperature", "learning_rate"),
                                     lambda tmp: self._distil(tmp, pruned_dir, train, c.redistill_steps))
        # The whole choice config is in the fingerprint: new variant recipes or a new choice rule mean a new choice.
        onnx_dir = self.stage("4-onnx", {**c.settings("onnx_tolerance", "quantization_preset", "threads"),
                                         "variant_choice": self._variant_config().to_dict()},
                              lambda tmp: self._onnx(tmp, student_dir))
        final_settings = {**c.settings("latency_samples", "threads"), "batch_size": SERVING_BATCH_SIZE}
        final_dir = self.stage("5-final", final_settings,
                               lambda tmp: self._final(tmp, student_dir, onnx_dir))
        if c.push_to_hub:
            self.stage("6-push", c.settings("hub_model_id", "hub_private_repo"), lambda tmp: self._push(final_dir))
        summary["final"] = self.records["5-final"]["results"]
        summary["final_dir"] = str(final_dir)
        return summary

    # -- stages ------------------------------------------------------------------------------------------------------

    def _train_args(self, tmp: Path, steps: int, **kw):
        from ..distillation.config import DistillationConfig

        c = self.config
        return DistillationConfig(output_dir=str(tmp / "trainer"), max_steps=steps, learning_rate=c.learning_rate,
                                  per_device_train_batch_size=c.per_device_train_batch_size,
                                  per_device_eval_batch_size=128, warmup_ratio=0.06, weight_decay=0.01,
                                  temperature=c.temperature, logging_steps=50, save_strategy="no", report_to=[],
                                  dataloader_pin_memory=False, seed=c.seed, **kw)

    def _fine_tune_teacher(self, tmp: Path, source) -> dict:
        from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

        c, names = self.config, self.task.label_names
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        with dropped_log_records("transformers.modeling_utils", _only_a_new_classifier_head):
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(names), **labels)
        args = TrainingArguments(output_dir=str(tmp / "trainer"), max_steps=c.teacher_fine_tune_steps,
                                 learning_rate=5e-5 if c.learning_rate == 1e-4 else c.learning_rate,
                                 per_device_train_batch_size=c.per_device_train_batch_size, warmup_ratio=0.06,
                                 save_strategy="no", report_to=[], dataloader_pin_memory=False, seed=c.seed,
                                 logging_steps=50)
        from transformers import Trainer as _Trainer  # noqa: F401 (kept explicit for readers)

        Trainer(model=model, args=args, train_dataset=self.data["train"], processing_class=self.tokenizer).train()
        model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        return {"accuracy": self._accuracy_pytorch(model)}

    def _with_teacher_logits(self, train):
        from ..distillation.trainer import cache_teacher_logits

        cache = self.out / "cache" / f"teacher-logits-{self._fingerprint[:16]}-{len(train)}.npy"
        return cache_teacher_logits(self.teacher, train, self.tokenizer, batch_size=128, cache_file=cache)

    def _distil(self, tmp: Path, start_dir, train, steps: int) -> dict:
        from ..distillation.trainer import DistillationTrainer
        from ..tasks.metrics import compute_metrics
        from ..utils.model_folder import load_pytorch_model
        from ..distillation.student import make_student

        c = self.config
        student = (load_pytorch_model(start_dir) if start_dir else
                   make_student(self.teacher, num_layers=c.student_layers, hidden_act=c.student_hidden_act))
        trainer = DistillationTrainer(model=student, args=self._train_args(tmp, steps), train_dataset=train,
                                      eval_dataset=self.data["validation"], processing_class=self.tokenizer,
                                      compute_metrics=compute_metrics)
        trainer.train()
        metrics = trainer.evaluate()
        student.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        return {"accuracy": metrics["eval_accuracy"], "parameters": sum(p.numel() for p in student.parameters()),
                "train_loss": next((h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h),
                                   None)}

    def _prune(self, tmp: Path, student_dir: Path, scoring) -> dict:
        from ..utils.model_folder import load_pytorch_model
        from ..pruning import prune, scoring_dataloader

        c = self.config
        model = load_pytorch_model(student_dir)
        loader = scoring_dataloader(scoring, self.tokenizer, model=model)
        prune(model, heads_per_layer=parse_target(c.heads_per_layer), ffn_width=parse_target(c.ffn_width),
              method=c.pruning_method, dataloader=loader)
        model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        from ..shape_record import compression_record

        record = compression_record(model)
        return {"accuracy_before_redistill": self._accuracy_pytorch(model),
                "parameters": sum(p.numel() for p in model.parameters()),
                "heads_per_layer": record["heads_per_layer"], "ffn_width_per_layer": record["ffn_width_per_layer"]}

    def _variant_config(self):
        from ..onnx.config import SessionConfig, VariantChoiceConfig

        c = self.config
        return VariantChoiceConfig(tolerance=c.onnx_tolerance, quantization_preset=c.quantization_preset,
                                   max_length=c.max_length, session=SessionConfig(intra_op_num_threads=c.threads))

    def _onnx(self, tmp: Path, student_dir: Path) -> dict:
        from ..onnx.variants import optimize_for_inference

        optimize_for_inference(student_dir, tmp, eval_dataset=self.raw["validation"], config=self._variant_config())
        report = read_json(tmp / "onnx_variants.json") or {}
        return {"chosen": report.get("chosen")}

    def _accuracy_pytorch(self, model) -> float:
        from ..inference.classifier import InferenceConfig, TextClassifier

        clf = TextClassifier.from_pretrained(model, tokenizer=self.tokenizer,
                                             config=InferenceConfig(batch_size=64, max_length=self.config.max_length,
                                                                    threads=self.config.threads))
        return self._accuracy(clf)

    def _accuracy(self, clf) -> float:
        split = self.raw["validation"]
        texts = self.task.inputs(split)
        return float(np.mean(clf.predict_logits(texts).argmax(-1) == np.asarray(split[self.task.label_field])))

    def _final(self, tmp: Path, student_dir: Path, onnx_dir: Path) -> dict:
        """The deliverable: the PyTorch student + its chosen ONNX variant in ``onnx/``, measured against the teacher
        (PyTorch fp32, dynamic length): accuracy and latency in one serving setting (``SERVING_BATCH_SIZE``), the
        latency on the same inputs interleaved; then the model card."""
        from ..inference.classifier import InferenceConfig, TextClassifier
        from ..measurements import record_measurement
        from ..utils.timing import DEFAULT_WARMUP, time_interleaved

        c = self.config
        for p in student_dir.iterdir():
            if p.is_file() and p.name != STAGE_FILE:
                shutil.copy2(p, tmp / p.name)
        shutil.copytree(onnx_dir, tmp / "onnx", ignore=shutil.ignore_patterns(STAGE_FILE, OUTPUT_RECORD))
        serving = InferenceConfig(batch_size=SERVING_BATCH_SIZE, max_length=c.max_length, threads=c.threads)
        models = {"teacher": TextClassifier.from_pretrained(self.teacher, self.tokenizer, serving),
                  "pytorch": TextClassifier.from_pretrained(tmp, config=serving, backend="pytorch"),
                  "onnx": TextClassifier.from_pretrained(tmp / "onnx", config=serving)}
        accuracy = {name: self._accuracy(m) for name, m in models.items()}
        texts = self.task.inputs(self.raw["validation"])[: c.latency_samples]
        requests = [texts[i:i + serving.batch_size] for i in range(0, len(texts), serving.batch_size)]
        # Item by item, every model in turn: a burst of load elsewhere hits every model alike.
        timing = time_interleaved({name: m.predict_logits for name, m in models.items()}, requests,
                                  warmup=DEFAULT_WARMUP, interleave="item")
        latency = {name: timing.latency(name) for name in models}
        load = timing.load()
        latency_metric = f"latency_batch{serving.batch_size}_median_ms"
        command = "fastformers-hf compress " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "fastformers-hf compress"
        common = dict(dataset=self.data_name, split="validation", command=command, batch_size=serving.batch_size)
        variants = {"teacher": ("teacher", tmp), "pytorch": ("pytorch", tmp), "onnx": ("onnx", tmp / "onnx")}
        for name, (variant, folder) in variants.items():
            record_measurement(folder, "accuracy", accuracy[name], variant=variant, **common)
            record_measurement(folder, latency_metric, latency[name]["median_ms"], unit="ms",
                               variant=variant, threads=c.threads, **common, other_load_cores=load["other_load_cores"])
        if (tmp / "onnx") != tmp:  # the teacher baseline beside the ONNX numbers too, so the card can compare
            record_measurement(tmp / "onnx", "accuracy", accuracy["teacher"], variant="teacher", **common)
            record_measurement(tmp / "onnx", latency_metric, latency["teacher"]["median_ms"], unit="ms",
                               variant="teacher", threads=c.threads, **common,
                               other_load_cores=load["other_load_cores"])
        results = {"accuracy": accuracy, "latency": latency, "load": load,
                   "serving": {"batch_size": serving.batch_size, "threads": c.threads},
                   "speedup_onnx_vs_teacher": latency["teacher"]["median_ms"] / latency["onnx"]["median_ms"],
                   "speedup_pytorch_vs_teacher": latency["teacher"]["median_ms"] / latency["pytorch"]["median_ms"],
                   "accuracy_drop_points": 100 * (accuracy["teacher"] - accuracy["onnx"]),
                   "parameters": {"teacher": sum(p.numel() for p in self.teacher.parameters())}}
        try:
            from hub_cards import write_card

            name = c.hub_model_id or f"{Path(c.output_dir).name}-compressed"
            write_card(tmp, model_id=name, model_name=name.split("/")[-1])  # tmp's own name is a temporary one
            results["card"] = "README.md"
        except Exception as e:  # a card problem must not lose the measured model; say so instead
            results["card_error"] = str(e)
            self.log(f"[5-final] model card not written: {e}")
        return results

    def _push(self, final_dir: Path) -> dict:
        from ..hub import push_to_hub

        c = self.config
        url = push_to_hub(final_dir, c.hub_model_id, private=c.hub_private_repo, token=c.hub_token)
        return {"commit_url": str(url)}


def _only_a_new_classifier_head(message: str) -> bool:
    """transformers' "Some weights of ... are newly initialized: [...] You should probably TRAIN this model", when
    the new weights are only the classification head: in 0-teacher that is expected, the stage trains it right away,
    so the line is noise. If any encoder weight is missing too, the message is kept: then the checkpoint is wrong."""
    import ast
    import re

    found = re.match(r"Some weights of \S+ were not initialized from the model checkpoint at .* and are newly "
                     r"initialized: (\[[^\]]*\])\n", message, re.S)
    if not found:
        return False
    keys = ast.literal_eval(found.group(1))
    return bool(keys) and all(re.match(r"(pre_)?classifier\.", key) for key in keys)


def format_summary(summary: dict) -> str:
    f = summary["final"]
    acc, lat = f["accuracy"], f["latency"]
    rows = [("teacher (PyTorch fp32, dynamic length)", "teacher"), ("student (PyTorch fp32)", "pytorch"),
            ("student (ONNX Runtime, chosen variant)", "onnx")]
    base = lat["teacher"]["median_ms"]
    batch = f["serving"]["batch_size"]  # both numbers of a row come from this one serving setting
    lines = [f"| model | accuracy (batch {batch}) | latency median (batch {batch}, ms) | p99 (ms) | speed-up |",
             "|---|---|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {100 * acc[key]:.2f}% | {lat[key]['median_ms']:.2f} | {lat[key]['p99_ms']:.2f} | "
                     f"{base / lat[key]['median_ms']:.1f}x |")
    load = f["load"]
    lines.append(f"\nOther processes used {load['other_load_cores']:.2f} cores while timing"
                 f"{' (disturbed: rerun on a quiet machine for clean numbers)' if load['disturbed'] else ''}. "
                 f"Result: {summary['final_dir']}")
    return "\n".join(lines)
