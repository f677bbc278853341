"""``DistillationTrainer``: a ``Trainer`` whose loss learns from a frozen teacher (FastFormers / TinyBERT recipe).

It overrides only what it must: ``compute_loss`` (the distillation loss), ``log`` (each loss term),
``create_optimizer`` (adds the hidden-state projections), the signature columns (keeps cached teacher logits)
and ``_save`` (atomic writes). Every kind of head of :data:`~fastformers_hf.tasks.kinds.KINDS` is distilled; what
differs between kinds is a row of :data:`~fastformers_hf.distillation.losses.LOSSES`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

from ..architectures import get_spec
from .compatibility import check_same_kind, check_same_labels, check_same_vocabulary
from ..shape_record import update_record
from .config import DistillationConfig
from ..errors import FastFormersError
from ..hub_code import add_remote_code
from .losses import loss_for, make_collator, soft_cross_entropy  # noqa: F401  (soft_cross_entropy: public here since 0.1)
from .student import load_model
from .teacher_cache import TeacherOutputsCollator, cache_teacher_logits, teacher_columns  # noqa: F401 (public here)
from ..tasks.choice_mask import MASK_COLUMN, forward_masked, mask_choice_logits
from ..tasks.kinds import kind_of


def layer_map(num_student: int, num_teacher: int, mapping: str | list[int]) -> list[int]:
    """1-based teacher layer for each student layer 1..S (hidden state 0, the embeddings, always maps to 0)."""
    if isinstance(mapping, list):
        if len(mapping) != num_student or any(not 1 <= m <= num_teacher for m in mapping):
            raise FastFormersError(
                f"layer_mapping {mapping} must give one teacher layer in 1..{num_teacher} for each of the student's "
                f"{num_student} layers."
            )
        return list(mapping)
    if num_student > num_teacher:
        raise FastFormersError(
            f"the student has {num_student} layers but the teacher only {num_teacher}: no layer mapping exists; "
            "use a shallower student or set hidden_state_loss_weight=attention_loss_weight=0."
        )
    if mapping == "last":
        return [num_teacher - num_student + i for i in range(1, num_student + 1)]
    return [round(i * num_teacher / num_student) for i in range(1, num_student + 1)]  # uniform


class DistillationTrainer(Trainer):
    """Distil ``teacher_model`` into ``model`` (the student). The teacher is frozen, in eval mode, on the student's
    device, runs under ``torch.no_grad()`` and is never saved. A teacher given as a path or Hub id is loaded."""

    _tag_names = ["fastformers-hf", "distillation"]

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        teacher_model: PreTrainedModel | str | os.PathLike | None = None,
        args: Optional[DistillationConfig] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        teacher_processing_class=None,
        **kwargs,
    ):
        if args is None:
            args = DistillationConfig(output_dir="distilled-model")
        if not isinstance(args, DistillationConfig):
            raise FastFormersError("DistillationTrainer needs args=DistillationConfig(...), not plain TrainingArguments.")
        if model is None or isinstance(model, (str, os.PathLike)):
            raise FastFormersError("pass the student as a model object: model=make_student(teacher, num_layers=...).")
        teacher_model = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
        if isinstance(teacher_model, (str, os.PathLike)):
            teacher_model = load_model(teacher_model)
        self.kind = kind_of(model)
        self.kind_loss = loss_for(self.kind)
        self.teacher_columns = teacher_columns(self.kind, args.teacher_logits_column)
        cached = train_dataset is not None and set(self.teacher_columns.values()) <= set(train_dataset.column_names)
        if teacher_model is None and not (cached and not args.uses_intermediate_losses):
            raise FastFormersError(
                "no teacher: pass teacher_model=... (a model, path or Hub id), or a train_dataset with a cached "
                f"{args.teacher_logits_column!r} column (see cache_teacher_logits) and no hidden/attention losses."
            )
        if teacher_model is not None:
            check_same_kind(teacher_model, model)
            check_same_vocabulary(teacher_model, model, teacher_processing_class, processing_class,
                                  allow_different_tokenizers=args.allow_different_tokenizers)
            check_same_labels(teacher_model, model)
        labels = self.kind_loss.label_columns
        _check_label_column(train_dataset, "train_dataset", required=args.distillation_weight < 1, columns=labels)
        _check_label_column(eval_dataset, "eval_dataset", required=True, columns=labels)
        if kwargs.get("data_collator") is None and isinstance(processing_class, PreTrainedTokenizerBase):
            # Trainer's default (DataCollatorWithPadding) cannot pad token labels or nest choices.
            kwargs["data_collator"] = make_collator(self.kind, processing_class)
        _check_output_dir(args, model, [teacher_model, getattr(model.config, "_name_or_path", None)])

        self.layer_map = None
        self.projections = None
        if teacher_model is not None and args.uses_intermediate_losses:
            t_spec, s_spec = get_spec(teacher_model), get_spec(model)
            n_t = getattr(teacher_model.config, t_spec.num_layers_attr)
            n_s = getattr(model.config, s_spec.num_layers_attr)
            explicit = args.explicit_layer_map()
            self.layer_map = layer_map(n_s, n_t, explicit if explicit is not None else args.layer_mapping)
            h_t = getattr(teacher_model.config, t_spec.hidden_size_attr)
            h_s = getattr(model.config, s_spec.hidden_size_attr)
            if args.hidden_state_loss_weight > 0 and h_s > h_t:
                raise FastFormersError(
                    f"the student is wider than the teacher (hidden size {h_s} > {h_t}): there is nothing to compress; "
                    "use a student at most as wide as the teacher."
                )
            if args.hidden_state_loss_weight > 0 and h_s != h_t:
                # TinyBERT's learned W_h: student width -> teacher width, one per mapped hidden state.
                self.projections = nn.ModuleList(nn.Linear(h_s, h_t) for _ in range(n_s + 1))
            if args.attention_loss_weight > 0:
                # Attention probabilities are only returned by the eager attention implementation.
                for m in (teacher_model, model):
                    if hasattr(m, "set_attn_implementation"):
                        m.set_attn_implementation("eager")

        update_record(model.config, {
            "step": "distillation",
            "teacher": getattr(teacher_model.config, "_name_or_path", None) if teacher_model is not None else "cached logits",
            "temperature": args.temperature,
            "distillation_weight": args.distillation_weight,
            "hidden_state_loss_weight": args.hidden_state_loss_weight,
            "attention_loss_weight": args.attention_loss_weight,
            "layer_mapping": self.layer_map or args.layer_mapping,
        }, source_model=getattr(teacher_model.config, "_name_or_path", None) if teacher_model is not None else None)

        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        self.data_collator = TeacherOutputsCollator(self.data_collator, list(self.teacher_columns.values()),
                                                    self.kind_loss.per_position,
                                                    getattr(processing_class, "padding_side", "right"))

        self.teacher = teacher_model
        if self.teacher is not None:
            self.teacher.eval().requires_grad_(False).to(self.args.device)
        if self.projections is not None:
            self.projections.to(self.args.device)
            _average_grads_across_processes(self.projections)
        self._loss_terms = {"train": defaultdict(list), "eval": defaultdict(list)}

    # -- Trainer hooks -------------------------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in self.teacher_columns.values():
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def create_optimizer(self):
        optimizer = super().create_optimizer()
        if self.projections is not None:
            have = {id(p) for g in optimizer.param_groups for p in g["params"]}
            params = [p for p in self.projections.parameters() if id(p) not in have]
            if params:
                optimizer.add_param_group({"params": params, "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args: DistillationConfig = self.args
        cached = {name: inputs.pop(column) for name, column in self.teacher_columns.items() if column in inputs}
        want_hidden = self.layer_map is not None and args.hidden_state_loss_weight > 0
        want_attn = self.layer_map is not None and args.attention_loss_weight > 0
        # A multiple-choice batch with padded choices: their logits masked in the student's outputs and hard loss.
        outputs, choice_mask = forward_masked(model, inputs, output_hidden_states=want_hidden or None,
                                              output_attentions=want_attn or None)
        inputs = {k: v for k, v in inputs.items() if k != MASK_COLUMN}
        student = {name: outputs[name] for name in self.kind.outputs}  # e.g. logits (B, C); start/end (B, T)
        terms = {}
        if outputs.loss is not None:
            terms["hard_loss"] = outputs.loss

        teacher_out = None
        if self.teacher is not None and (not cached or want_hidden or want_attn):
            label_columns = {"labels", *self.kind_loss.label_columns}  # the teacher's own loss is not needed
            teacher_inputs = {k: v for k, v in inputs.items() if k not in label_columns}
            with torch.no_grad():
                teacher_out = self.teacher(**teacher_inputs, output_hidden_states=want_hidden or None,
                                           output_attentions=want_attn or None)
        teacher = cached or ({name: teacher_out[name] for name in self.kind.outputs} if teacher_out else None)
        if teacher:
            teacher = {name: value.to(student[name]) for name, value in teacher.items()}  # float16 cache -> student's
            if choice_mask is not None:  # padded choices: no probability in the teacher's targets
                teacher["logits"] = mask_choice_logits(teacher["logits"], choice_mask)
            terms["soft_loss"] = self.kind_loss.soft_loss(student, teacher, inputs, args.temperature)

        w = args.distillation_weight
        if "soft_loss" in terms:
            loss = w * terms["soft_loss"] + (1 - w) * terms.get("hard_loss", 0.0)
        else:  # no teacher signal for this batch (e.g. evaluation with cached logits only)
            loss = terms["hard_loss"]
        if want_hidden:
            terms["hidden_loss"] = self._hidden_loss(outputs.hidden_states, teacher_out.hidden_states)
            loss = loss + args.hidden_state_loss_weight * terms["hidden_loss"]
        if want_attn:
            terms["attention_loss"] = self._attention_loss(outputs.attentions, teacher_out.attentions,
                                                           inputs.get("attention_mask"))
            loss = loss + args.attention_loss_weight * terms["attention_loss"]

        mode = "train" if model.training else "eval"
        for name, value in terms.items():
            self._loss_terms[mode][name].append(float(value.detach()))
        if return_outputs:
            # Only loss and the distilled outputs: hidden states would be gathered across the whole evaluation set.
            return loss, type(outputs)(loss=loss, **student)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs else "eval"
        prefix = "" if mode == "train" else "eval_"
        for name, values in self._loss_terms[mode].items():
            if values:
                logs[f"{prefix}{name}"] = float(np.mean(values))
        self._loss_terms[mode].clear()
        super().log(logs, start_time)

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        # Build the files in a temporary folder and move them in: a crash mid-save leaves no half-written model
        # (the folder itself is not replaced, since it also holds checkpoints).
        output_dir = Path(output_dir or self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=output_dir))
        try:
            super()._save(str(tmp), state_dict=state_dict)
            if (tmp / "config.json").exists():  # a pruned student's shape needs its modeling file in transformers 5
                add_remote_code(tmp)
            for f in tmp.iterdir():
                os.replace(f, output_dir / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def create_model_card(self, language=None, license=None, tags=None, model_name=None, finetuned_from=None,
                          tasks=None, dataset_tags=None, dataset=None, dataset_args=None):
        """Write our card (recipe, shape and recorded measurements) instead of transformers' generic one, so that
        ``trainer.push_to_hub()`` publishes it too (the TRL pattern)."""
        if not self.is_world_process_zero():
            return
        from hub_cards import write_card

        fields = {k: v for k, v in dict(language=language, license=license, model_name=model_name,
                                        base_model=finetuned_from).items() if v}
        if tags:
            fields["tags"] = [tags] if isinstance(tags, str) else list(tags)
        if dataset_tags:
            fields["datasets"] = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags)
        write_card(self.args.output_dir, config=self.model.config.to_dict(), **fields)

    # -- intermediate losses ---------------------------------------------------------------------------------

    def _hidden_loss(self, student_hidden, teacher_hidden) -> torch.Tensor:
        pairs = [(0, 0)] + [(s, t) for s, t in enumerate(self.layer_map, start=1)]
        losses = []
        for s, t in pairs:
            h = student_hidden[s]  # (B, T, H_s)
            if self.projections is not None:
                h = self.projections[s](h)  # (B, T, H_t)
            losses.append(F.mse_loss(h, teacher_hidden[t]))
        return torch.stack(losses).mean()

    def _attention_loss(self, student_attn, teacher_attn, attention_mask) -> torch.Tensor:
        losses = []
        for s, t in enumerate(self.layer_map):  # attentions are indexed from layer 1, i.e. position 0
            a_s, a_t = student_attn[s], teacher_attn[t - 1]  # (B, heads, T, T)
            if a_s.shape[1] != a_t.shape[1]:  # different head counts (e.g. after pruning): compare head means
                a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
            if attention_mask is not None:  # ignore rows of padded query positions
                # Multiple choice flattens (B, choices, T) inputs to (B * choices, T) rows; a no-op for others.
                m = attention_mask.reshape(-1, attention_mask.shape[-1])[:, None, :, None].to(a_s)  # (B, 1, T, 1)
                losses.append(((a_s - a_t) ** 2 * m).sum() / (m.sum() * a_s.shape[1] * a_s.shape[-1]).clamp(min=1))
            else:
                losses.append(F.mse_loss(a_s, a_t))
        return torch.stack(losses).mean()


def _average_grads_across_processes(module: nn.Module) -> None:
    """The projections live outside the DDP-wrapped student, so DDP does not average their gradients; a hook
    on each parameter all-reduces them so every process keeps identical projections."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()

    def hook(grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad / world

    for p in module.parameters():
        p.register_hook(hook)


def _check_label_column(dataset, what: str, required: bool, columns=("labels",)) -> None:
    if dataset is None or not required or not hasattr(dataset, "column_names"):
        return
    have = set(dataset.column_names) | ({"labels"} if "label" in dataset.column_names else set())
    missing = [c for c in columns if c not in have]
    if missing:
        names = "'labels' or 'label'" if list(columns) == ["labels"] else ", ".join(repr(c) for c in missing)
        raise FastFormersError(
            f"the {what} has no label column ({names}; it has {dataset.column_names}); "
            "add the labels, or distil from the teacher alone with distillation_weight=1.0 (train set only)."
        )


def _check_output_dir(args: DistillationConfig, model, inputs) -> None:
    """The output policy of ``utils.io`` (never a user's folder, never an input), then: a folder holding an
    earlier distillation is reused only for a model of the same shape."""
    from ..utils.io import claim_output_dir

    inputs = [getattr(getattr(m, "config", None), "_name_or_path", None) if hasattr(m, "config") else m for m in inputs]
    if args.should_save:  # the main process; others only read
        claim_output_dir(args.output_dir, "distill", inputs, args.overwrite_output_dir)
    path = Path(args.output_dir) / "config.json"
    if args.overwrite_output_dir or not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        existing = json.load(f)
    spec = get_spec(model)
    mine = model.config.to_dict()
    keys = ("model_type", spec.num_layers_attr, spec.hidden_size_attr, spec.intermediate_size_attr)
    diff = {k: (existing.get(k), mine.get(k)) for k in keys if existing.get(k) != mine.get(k)}
    if len(existing.get("id2label") or {}) != model.config.num_labels:
        diff["num_labels"] = (len(existing.get("id2label") or {}), model.config.num_labels)
    if diff:
        detail = ", ".join(f"{k}: {a} there vs {b} here" for k, (a, b) in diff.items())
        raise FastFormersError(
            f"{args.output_dir} already holds a different model ({detail}); choose another output_dir or pass "
            "overwrite_output_dir=True."
        )
