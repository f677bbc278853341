"""Building a student: fewer layers initialised from the teacher's (DistilBERT-style), or a general checkpoint."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional, Sequence

from transformers import PreTrainedModel

from ..architectures import get_spec
from ..tasks.kinds import kind_of
from .compatibility import check_same_vocabulary
from ..shape_record import update_record
from ..errors import FastFormersError


def uniform_layer_indices(num_teacher_layers: int, num_layers: int) -> list[int]:
    """0-based teacher layers to copy: spread evenly, always keeping the first (DistilBERT kept every other)."""
    step = num_teacher_layers / num_layers
    return [int(i * step) for i in range(num_layers)]


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    """A saved model (folder or Hub id) with the head its config names: any kind of
    :data:`~fastformers_hf.tasks.kinds.KINDS`."""
    from transformers import AutoConfig

    from ..utils.model_folder import load_pytorch_model

    if Path(path).is_dir():
        return load_pytorch_model(path)  # pruned shapes too, in transformers 4.x and 5.x
    config = AutoConfig.from_pretrained(path)
    try:
        return kind_of(config).model_class().from_pretrained(path)
    except RuntimeError as e:
        if getattr(config, "auto_map", None) and "mismatch" in str(e):
            raise FastFormersError(
                f"{path} is a pruned model whose shape this transformers cannot read from its config: load it with "
                f"{kind_of(config).auto_model}.from_pretrained({str(path)!r}, trust_remote_code=True) and pass the "
                "model object, or download the folder (huggingface_hub.snapshot_download) and pass its path.") from None
        raise


def make_student(
    teacher: PreTrainedModel | str | os.PathLike,
    num_layers: Optional[int] = None,
    layer_indices: Optional[Sequence[int]] = None,
    hidden_act: Optional[str] = None,
    general_checkpoint: Optional[str | os.PathLike] = None,
    allow_different_tokenizers: bool = False,
) -> PreTrainedModel:
    """A smaller student for ``teacher``.

    - Task-specific recipe: ``num_layers`` (or explicit 0-based ``layer_indices``) of the teacher's layers are
      copied with the embeddings and the head (any kind: the student has the teacher's head class).
    - Task-agnostic recipe: ``general_checkpoint`` (a generally distilled model, path or Hub id) is loaded with a
      fresh head carrying the teacher's labels; fine-tune it with the teacher's soft labels.
    - ``hidden_act="relu"`` switches the FFN activation (FastFormers found ReLU students as accurate and faster).

    A general checkpoint whose tokenizer differs in content from the teacher's is refused unless
    ``allow_different_tokenizers=True``.
    """
    if isinstance(teacher, (str, os.PathLike)):
        teacher = load_model(teacher)
    tconfig = teacher.config
    head_class = kind_of(teacher).model_class()  # the teacher's kind of head, e.g. AutoModelForQuestionAnswering
    if general_checkpoint is not None:
        overrides = {"num_labels": tconfig.num_labels, "id2label": tconfig.id2label, "label2id": tconfig.label2id}
        if hidden_act:
            overrides[get_spec(teacher).activation_attr] = hidden_act
        # The general checkpoint has no head for this task (or one of another size): start a fresh one.
        student = head_class.from_pretrained(general_checkpoint, ignore_mismatched_sizes=True, **overrides)
        check_same_vocabulary(teacher, student, allow_different_tokenizers=allow_different_tokenizers)
        update_record(student.config, {"step": "student", "recipe": "task_agnostic",
                                       "general_checkpoint": str(general_checkpoint)},
                      source_model=getattr(tconfig, "_name_or_path", None))
        return student

    spec = get_spec(teacher)
    n_teacher = getattr(tconfig, spec.num_layers_attr)
    if layer_indices is None:
        if num_layers is None:
            raise FastFormersError("make_student needs num_layers, layer_indices or general_checkpoint.")
        if not 1 <= num_layers <= n_teacher:
            raise FastFormersError(
                f"num_layers must be between 1 and the teacher's {n_teacher} layers, got {num_layers}."
            )
        layer_indices = uniform_layer_indices(n_teacher, num_layers)
    layer_indices = list(layer_indices)
    if not layer_indices or any(not 0 <= i < n_teacher for i in layer_indices) or len(set(layer_indices)) != len(layer_indices):
        raise FastFormersError(
            f"layer_indices must be distinct 0-based teacher layers in [0, {n_teacher - 1}], got {layer_indices}."
        )
    if getattr(tconfig, "pruned_heads", None):
        raise FastFormersError("make_student copies layers of an unpruned teacher; prune the student afterwards.")

    config = copy.deepcopy(tconfig)
    setattr(config, spec.num_layers_attr, len(layer_indices))
    if hidden_act:
        setattr(config, spec.activation_attr, hidden_act)
    student = head_class.from_config(config)

    # Copy weights by name, renumbering the kept layers: 'encoder.layer.4.x' -> 'encoder.layer.2.x'.
    prefix = f"{teacher.base_model_prefix}.{spec.layers}."
    new_index = {old: new for new, old in enumerate(layer_indices)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(prefix):
            old, rest = key[len(prefix):].split(".", 1)
            if int(old) not in new_index:
                continue
            key = f"{prefix}{new_index[int(old)]}.{rest}"
        state[key] = tensor.clone()
    student.load_state_dict(state, strict=True)
    update_record(student.config, {"step": "student", "recipe": "task_specific", "layers_from_teacher": layer_indices,
                                   "hidden_act": getattr(config, spec.activation_attr)},
                  source_model=getattr(tconfig, "_name_or_path", None))
    return student
