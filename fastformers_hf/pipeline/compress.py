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
import time
from pathlib import Path
from typing import Callable

from .config import CompressConfig, parse_target
from .final import SERVING_BATCH_SIZE, STAGE_FILE, format_summary, measure_final  # noqa: F401 (public here)
from ..compat import group_by_length, warmup
from ..errors import FastFormersError
from ..hub_code import save_model_folder
from ..utils.quiet import dropped_log_records
from ..utils.io import atomic_output_dir, check_output_dir, claim_output_dir, read_json, write_json

EVAL_BATCH_SIZE = 64  # scoring stages in PyTorch: batched, dynamic length


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
        self._check_teacher_kind(tconf, task)
        if c.data:
            data = load_task_data(c.data, c.task, loader_options=c.loader_options)
            for split in ("train", "validation"):
                if split not in data:
                    raise FastFormersError(f"{c.data} has no {split} split (train.tsv / dev.tsv; train.json / "
                                           "dev.json for squad; train.txt / dev.txt for conll2003; train.jsonl / "
                                           "dev.jsonl for cb, copa, openbookqa).")
                if task.loader is None:  # the task's own loader checked its format already
                    check_columns(data[split], list(task.text_fields) + [task.label_field],
                                  f"{split} split of {c.data}")
            rows = {k: len(v) for k, v in data.items()}
            n_train = min(rows["train"], c.max_train_samples or rows["train"])
            if c.prunes and not 1 <= c.scoring_examples < n_train:
                raise FastFormersError(f"scoring_examples={c.scoring_examples} must be between 1 and {n_train - 1}: "
                                       f"the train split of {c.data} has {n_train} rows to use; pass a smaller "
                                       "--scoring_examples.")
        elif task.kind != "sequence_classification":
            raise FastFormersError(f"task {c.task!r} needs --data (generated data is sentiment classification only): "
                                   f"a folder of {c.task} files or a Hub dataset id.")
        else:
            rows = {"train": c.max_train_samples or 4800, "validation": c.max_eval_samples or 500, "data": "generated"}
        try:  # the ONNX stage needs onnxruntime; Optimum is optional (without it onnxruntime's own tools run)
            import onnxruntime  # noqa: F401
        except ImportError:
            raise FastFormersError("onnxruntime is missing: pip install onnxruntime (or 'fastformers-hf[onnx]').") from None
        if c.push_to_hub:
            import huggingface_hub  # noqa: F401
        stages = ["0-teacher"] * bool(c.teacher_fine_tune_steps) + ["1-distill"] + \
            (["2-prune", "3-redistill"] if self.config.prunes else []) + ["4-onnx", "5-final"] + ["6-push"] * c.push_to_hub
        return {"teacher": {"model_type": tconf.model_type, "layers": n_layers, "heads": n_heads, "ffn": ffn},
                "task": {"name": c.task, "kind": task.kind}, "rows": rows, "stages": stages}

    def _check_teacher_kind(self, tconf, task) -> None:
        """A fine-tuned teacher must have the task's head; a model to fine-tune first (0-teacher) gets it."""
        if self.config.teacher_fine_tune_steps:
            return
        from ..tasks.kinds import kind_of

        try:
            kind = kind_of(tconf).name
        except FastFormersError:
            kind = (tconf.architectures or ["a model without a task head"])[0]
        if kind != task.kind and {kind, task.kind} != {"regression", "sequence_classification"}:
            raise FastFormersError(f"the teacher {self.config.model_name_or_path!r} is {kind}, but task "
                                   f"{self.config.task!r} needs a {task.kind} model: pass a teacher fine-tuned for "
                                   "it, or --teacher_fine_tune_steps N to fine-tune this one first.")

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
        import torch

        torch.set_num_threads(getattr(self, "train_threads", 1))  # training at full width; predictors set c.threads when they time
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
        from transformers import AutoConfig, AutoTokenizer

        from ..distillation.student import load_model
        from ..inference.evaluation import evaluation_for
        from ..pruning import held_out_split
        from ..tasks.data import get_task, load_task_data, tokenize_task

        claim_output_dir(self.out, "compress", [c.model_name_or_path, c.data], c.overwrite_output_dir)
        from ..serving.cores import physical_cores

        self.train_threads = max(1, c.train_threads or len(physical_cores()))
        torch.set_num_threads(max(1, c.threads))
        task = get_task(c.task)
        if c.data:
            raw = load_task_data(c.data, c.task, c.max_train_samples, c.max_eval_samples, seed=c.seed,
                                 loader_options=c.loader_options)
            data_name = Path(c.data).name if Path(c.data).exists() else c.data
        else:
            from ..tasks.synthetic import make_sentiment_data

            raw = make_sentiment_data(c.max_train_samples or 4800, c.max_eval_samples or 500, seed=c.seed,
                                      hard=c.generated_hard, label_noise=c.generated_label_noise)
            data_name = "generated-sentiment" + "-hard" * c.generated_hard + \
                (f"-noise{c.generated_label_noise:g}" if c.generated_label_noise else "")
        self.data_name, self.raw, self.task = data_name, raw, task
        self.evaluation = evaluation_for(task.kind)
        data_settings = c.settings("data", "task", "max_length", "max_train_samples", "max_eval_samples", "seed")
        if task.kind == "question_answering":  # other kinds: fingerprints as before
            data_settings["doc_stride"] = c.doc_stride
        if not c.data and (c.generated_hard or c.generated_label_noise):  # other data: fingerprints as before
            data_settings.update(c.settings("generated_hard", "generated_label_noise"))
        if c.group_by_length:  # batches drawn in another order: other models (without it: fingerprints as before)
            data_settings["group_by_length"] = True

        teacher_dir = Path(c.model_name_or_path) if Path(c.model_name_or_path).exists() else c.model_name_or_path
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        # Token labels index the teacher's id2label; a teacher fine-tuned here takes the data's tag order.
        label_names = (AutoConfig.from_pretrained(teacher_dir).id2label
                       if task.kind == "token_classification" and not c.teacher_fine_tune_steps else None)
        data = tokenize_task(raw, tokenizer, task, c.max_length, c.doc_stride, label_names=label_names)
        self.tokenizer, self.data = tokenizer, data

        if c.teacher_fine_tune_steps:
            teacher_dir = self.stage("0-teacher", {**data_settings, "model": str(c.model_name_or_path),
                                                   **c.settings("teacher_fine_tune_steps", "learning_rate",
                                                                "per_device_train_batch_size")},
                                     lambda tmp: self._fine_tune_teacher(tmp, teacher_dir))
        else:
            self._fingerprint = hashlib.sha256(json.dumps([str(teacher_dir), data_settings]).encode()).hexdigest()
        teacher = load_model(teacher_dir).eval()  # the head its config names
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
                                  per_device_eval_batch_size=128, **warmup(0.06), weight_decay=0.01,
                                  temperature=c.temperature, logging_steps=50, save_strategy="no", report_to=[],
                                  dataloader_pin_memory=False, seed=c.seed, **group_by_length(c.group_by_length),
                                  **kw)

    def _collator(self):
        """The kind's padding collator (token labels padded with -100; span positions kept; choices nested)."""
        from ..distillation.losses import make_collator
        from ..tasks.kinds import get_kind

        return make_collator(get_kind(self.task.kind), self.tokenizer)

    def _fine_tune_teacher(self, tmp: Path, source) -> dict:
        from transformers import TrainingArguments

        from ..tasks.choice_mask import ChoiceMaskTrainer
        from ..tasks.kinds import get_kind

        c, kind = self.config, get_kind(self.task.kind)
        names = self._label_names()
        labels = {"num_labels": len(names), "id2label": dict(enumerate(names)),
                  "label2id": {n: i for i, n in enumerate(names)}} if names else {}
        with dropped_log_records("transformers.modeling_utils", _only_a_new_head):
            model = kind.model_class().from_pretrained(source, **labels)
        args = TrainingArguments(output_dir=str(tmp / "trainer"), max_steps=c.teacher_fine_tune_steps,
                                 learning_rate=5e-5 if c.learning_rate == 1e-4 else c.learning_rate,
                                 per_device_train_batch_size=c.per_device_train_batch_size, **warmup(0.06),
                                 save_strategy="no", report_to=[], dataloader_pin_memory=False, seed=c.seed,
                                 logging_steps=50, **group_by_length(c.group_by_length))
        # Trainer itself, but for multiple-choice batches with padded choices (a choice_mask).
        ChoiceMaskTrainer(model=model, args=args, train_dataset=self.data["train"], processing_class=self.tokenizer,
                          data_collator=self._collator()).train()
        save_model_folder(model, tmp, self.tokenizer)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        return self._scored(model)

    def _label_names(self) -> list[str]:
        """Label names of a head made here: the task's (classification) or the data's tags (NER); none for QA."""
        if self.task.kind == "token_classification":
            from ..tasks.conll import label_names

            return label_names(self.raw["train"])
        return list(self.task.label_names)

    def _with_teacher_logits(self, train):
        from ..distillation.losses import loss_for
        from ..distillation.trainer import cache_teacher_logits
        from ..tasks.kinds import kind_of

        suffix = ".npz" if loss_for(kind_of(self.teacher)).per_position else ".npy"  # per-position: float16 rows
        cache = self.out / "cache" / f"teacher-logits-{self._fingerprint[:16]}-{len(train)}{suffix}"
        return cache_teacher_logits(self.teacher, train, self.tokenizer, batch_size=128, cache_file=cache)

    def _distil(self, tmp: Path, start_dir, train, steps: int) -> dict:
        from ..distillation.trainer import DistillationTrainer
        from ..utils.model_folder import load_pytorch_model
        from ..distillation.student import make_student

        c = self.config
        student = (load_pytorch_model(start_dir) if start_dir else
                   make_student(self.teacher, num_layers=c.student_layers, hidden_act=c.student_hidden_act))
        trainer = DistillationTrainer(model=student, args=self._train_args(tmp, steps), train_dataset=train,
                                      processing_class=self.tokenizer)
        trainer.train()
        save_model_folder(student, tmp, self.tokenizer)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        return {**self._scored(student), "parameters": sum(p.numel() for p in student.parameters()),
                "train_loss": next((h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h),
                                   None)}

    def _prune(self, tmp: Path, student_dir: Path, scoring) -> dict:
        from ..utils.model_folder import load_pytorch_model
        from ..pruning import prune, scoring_dataloader

        c = self.config
        model = load_pytorch_model(student_dir)
        loader = scoring_dataloader(scoring, self.tokenizer, model=model)  # the task's own loss scores units
        prune(model, heads_per_layer=parse_target(c.heads_per_layer), ffn_width=parse_target(c.ffn_width),
              method=c.pruning_method, dataloader=loader)
        save_model_folder(model, tmp, self.tokenizer)
        from ..shape_record import compression_record

        record = compression_record(model)
        return {**{f"{k}_before_redistill": v for k, v in self._scored(model).items() if k != "metrics"},
                "parameters": sum(p.numel() for p in model.parameters()),
                "heads_per_layer": record["heads_per_layer"], "ffn_width_per_layer": record["ffn_width_per_layer"]}

    def _variant_config(self):
        from ..onnx.config import SessionConfig, VariantChoiceConfig

        c = self.config
        return VariantChoiceConfig(tolerance=c.onnx_tolerance, quantization_preset=c.quantization_preset,
                                   max_length=c.max_length, session=SessionConfig(intra_op_num_threads=c.threads))

    def _onnx(self, tmp: Path, student_dir: Path) -> dict:
        from ..onnx.variants import optimize_for_inference

        eval_set = self.raw["validation"]
        if self.task.kind == "multiple_choice":  # one (choices, T) array per example, labelled: checked by accuracy
            from ..tasks.multiple_choice import tokenize_choices

            eval_set = tokenize_choices(eval_set, self.tokenizer, self.config.max_length, pad_each_example=True)
        optimize_for_inference(student_dir, tmp, eval_dataset=eval_set, config=self._variant_config())
        report = read_json(tmp / "onnx_variants.json") or {}
        return {"chosen": report.get("chosen")}

    def _scored(self, model) -> dict:
        """The task metric of a PyTorch model on the validation split, through the kind's predictor (batched):
        ``{"metrics": {...}, <each metric>: value}``."""
        c, ev = self.config, self.evaluation
        predictor = ev.load(model, self.tokenizer, threads=c.threads, batch_size=EVAL_BATCH_SIZE,
                            max_length=c.max_length, doc_stride=c.doc_stride)
        metrics = ev.score(predictor, self.raw["validation"], self.task)
        return {"metrics": metrics, **metrics}

    def _final(self, tmp: Path, student_dir: Path, onnx_dir: Path) -> dict:
        return measure_final(self, tmp, student_dir, onnx_dir)

    def _push(self, final_dir: Path) -> dict:
        from ..hub import push_to_hub

        c = self.config
        url = push_to_hub(final_dir, c.hub_model_id, private=c.hub_private_repo, token=c.hub_token)
        return {"commit_url": str(url)}


def _only_a_new_head(message: str) -> bool:
    """transformers' "Some weights of ... are newly initialized: [...] You should probably TRAIN this model", when
    the new weights are only the task head: in 0-teacher that is expected, the stage trains it right away, so the
    line is noise. If any encoder weight is missing too, the message is kept: then the checkpoint is wrong."""
    import ast
    import re

    found = re.match(r"Some weights of \S+ were not initialized from the model checkpoint at .* and are newly "
                     r"initialized: (\[[^\]]*\])\n", message, re.S)
    if not found:
        return False
    keys = ast.literal_eval(found.group(1))
    return bool(keys) and all(re.match(r"(pre_)?classifier\.|qa_outputs\.", key) for key in keys)
