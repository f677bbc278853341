"""What a card says per task kind: the Hub task of the model (pipeline tag, model-index task), the classes that load
it, the scale of its metrics, and the "How to use" snippet that loads this very model.

The rows repeat what the card needs of ``fastformers_hf.tasks.kinds.KINDS`` (class names, pipeline tag, the
architecture suffix that tells a kind), so that hub_cards stays a leaf package that imports nothing from
fastformers_hf; tests/test_card_kinds.py checks that the two tables and their kind readers agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class CardKind:
    name: str  # as in fastformers_hf.tasks.kinds.KINDS
    architecture_suffix: str  # how `config.architectures[0]` ends for this kind
    auto_model: str  # transformers class
    ort_model: str  # optimum.onnxruntime class
    pipeline_tag: str  # Hub pipeline tag and model-index task type
    task_name: str  # model-index task name
    noun: str  # what the card's first sentence calls the model
    variable: str  # the snippet's name for the pipeline (or, without a pipeline, the model)
    call: str  # example use of `variable` (or of `model` and `tokenizer` where there is no pipeline)
    pipeline_kwargs: str = ""  # extra arguments of pipeline(...)
    has_pipeline: bool = True  # transformers has no multiple-choice pipeline (nor, from 5.0, a question-answering one)
    points: tuple[str, ...] = ()  # metrics recorded in points (0-100); the others are fractions (0-1)


_MULTIPLE_CHOICE_CALL = (
    'prompt, choices = "The sky is", ["blue.", "made of cheese."]\n'
    'inputs = tokenizer([prompt] * len(choices), choices, return_tensors="pt", padding=True)\n'
    "logits = model(**{k: v.unsqueeze(0) for k, v in inputs.items()}).logits  # (1, number of choices)\n"
    "print(choices[int(logits.argmax(-1))])")

# transformers 5 removed the question-answering pipeline (pipelines.REMOVED_TASKS): the QA card decodes the best span
# itself, in one window, so that its snippet runs under 4.x and 5.x alike.
_QUESTION_ANSWERING_CALL = (
    'question, context = "Where was Ada Lovelace born?", "Ada Lovelace was born in London in 1815."\n'
    'inputs = tokenizer(question, context, return_tensors="pt", truncation="only_second", max_length=384)\n'
    "out = model(**inputs)\n"
    "starts, ends = out.start_logits[0].tolist(), out.end_logits[0].tolist()  # a score per token\n"
    "in_context = [i for i, s in enumerate(inputs.sequence_ids(0)) if s == 1]  # one window; "
    "fastformers_hf.inference.question_answering.QuestionAnswerer strides over long contexts\n"
    "start = max(in_context, key=starts.__getitem__)\n"
    "end = max((i for i in in_context if start <= i < start + 30), key=ends.__getitem__)\n"
    'print(tokenizer.decode(inputs["input_ids"][0, start:end + 1]))')

CARD_KINDS: dict[str, CardKind] = {k.name: k for k in (
    CardKind("sequence_classification", "ForSequenceClassification", "AutoModelForSequenceClassification",
             "ORTModelForSequenceClassification", "text-classification", "Text Classification", "text classifier",
             "classifier", 'classifier("a short sentence to classify")'),
    # One output unit: the raw score, not the sigmoid a one-label pipeline would apply without problem_type.
    CardKind("regression", "ForSequenceClassification", "AutoModelForSequenceClassification",
             "ORTModelForSequenceClassification", "text-classification", "Text Classification", "text regressor",
             "scorer", 'scorer("a short sentence to score")', pipeline_kwargs=', function_to_apply="none"'),
    CardKind("token_classification", "ForTokenClassification", "AutoModelForTokenClassification",
             "ORTModelForTokenClassification", "token-classification", "Token Classification",
             "token classifier (entity tagger)", "ner", 'ner("Ada Lovelace was born in London.")',
             pipeline_kwargs=', aggregation_strategy="simple"', points=("f1", "precision", "recall")),
    CardKind("question_answering", "ForQuestionAnswering", "AutoModelForQuestionAnswering",
             "ORTModelForQuestionAnswering", "question-answering", "Question Answering",
             "extractive question-answering model", "model", _QUESTION_ANSWERING_CALL, has_pipeline=False,
             points=("exact_match", "f1")),
    CardKind("multiple_choice", "ForMultipleChoice", "AutoModelForMultipleChoice", "ORTModelForMultipleChoice",
             "multiple-choice", "Multiple Choice", "multiple-choice model", "model", _MULTIPLE_CHOICE_CALL,
             has_pipeline=False),
)}
DEFAULT_KIND = "sequence_classification"

# The file that rebuilds a pruned shape when a repo is loaded with trust_remote_code=True
# (fastformers_hf.hub_code.MODELING_FILE, repeated so that hub_cards imports nothing from fastformers_hf), and the
# transformers versions under which tests/test_card_kinds.py ran the card's snippet for such a repo.
REMOTE_CODE_FILE = "modeling_fastformers.py"
REMOTE_CODE_CHECKED = ("4.57.6", "5.24.0", "5.25.0")
TRUST_REMOTE_CODE = "trust_remote_code=True"
# The card's one sentence on why its snippet passes trust_remote_code=True.
REMOTE_CODE_NOTE = (
    f"`{TRUST_REMOTE_CODE}` is needed because the pruned shape (attention heads and FFN width kept per layer, "
    f"recorded in `config.json`) is rebuilt by `{REMOTE_CODE_FILE}` in this repo (checked under transformers "
    f"{', '.join(REMOTE_CODE_CHECKED[:-1])} and {REMOTE_CODE_CHECKED[-1]}); without it, transformers 5 refuses the weights with a size mismatch.")


def card_kind(config: Mapping[str, Any]) -> CardKind:
    """The kind of a ``config.json`` dict, by the rules of ``fastformers_hf.tasks.kinds.kind_of`` (architecture
    suffix; one label or ``problem_type == "regression"`` makes regression). A head no kind knows, or no
    architecture, reads as sequence classification, as cards did before they had kinds."""
    arch = (config.get("architectures") or [""])[0] or ""
    for kind in CARD_KINDS.values():
        if kind.name != "regression" and arch.endswith(kind.architecture_suffix):
            if kind.name == "sequence_classification" and (
                    config.get("problem_type") == "regression" or len(config.get("id2label") or {}) == 1
                    or config.get("num_labels") == 1):
                return CARD_KINDS["regression"]
            return kind
    return CARD_KINDS[DEFAULT_KIND]


def remote_code_class(config: Mapping[str, Any], kind: CardKind) -> str | None:
    """The ``auto_map`` entry of a ``config.json`` dict for the kind's Auto class (e.g.
    ``"modeling_fastformers.BertForQuestionAnswering"``, written by ``fastformers_hf.hub_code.add_remote_code``):
    the repo's own code builds the model, so it loads with ``trust_remote_code=True``. None without one."""
    auto_map = config.get("auto_map")
    entry = auto_map.get(kind.auto_model) if isinstance(auto_map, Mapping) else None
    return entry if isinstance(entry, str) and entry else None


def how_to_use(model_id: str, first_load: str | None, first_format: str | None, kind: CardKind) -> str:
    """The Python that loads the first variant (``first_load``, its format) and uses it as the kind says; a first
    load with ``trust_remote_code=True`` (the repo's ``auto_map``) passes it to ``pipeline(...)`` too."""
    remote = first_load is not None and TRUST_REMOTE_CODE in first_load and not (
        first_format or "").startswith("ONNX")
    if remote and kind.has_pipeline:
        return (f'from transformers import pipeline\n\n{kind.variable} = pipeline("{kind.pipeline_tag}", '
                f'model="{model_id}", {TRUST_REMOTE_CODE}{kind.pipeline_kwargs})\n{kind.call}')
    if remote:
        return (f"from transformers import {kind.auto_model}, AutoTokenizer\n\nmodel = {first_load}\n"
                f'tokenizer = AutoTokenizer.from_pretrained("{model_id}")\n{kind.call}')
    if first_load is not None and first_load.startswith("fastformers_hf.load_pruned"):
        head = (f"import huggingface_hub\nfrom transformers import AutoTokenizer{', pipeline' * kind.has_pipeline}\n\n"
                f"from fastformers_hf import load_pruned  # per-layer FFN widths: no config.json can describe them\n\n"
                f'path = huggingface_hub.snapshot_download("{model_id}")\n')
        model, tokenizer = "load_pruned(path)", "AutoTokenizer.from_pretrained(path)"
    elif first_format is not None and first_format.startswith("ONNX"):
        head = (f"from optimum.onnxruntime import {kind.ort_model}\n"
                f"from transformers import AutoTokenizer{', pipeline' * kind.has_pipeline}\n\n"
                f"model = {first_load}\n")
        model, tokenizer = "model", f'AutoTokenizer.from_pretrained("{model_id}"{_subfolder_arg(first_load)})'
    elif kind.has_pipeline:
        head, model, tokenizer = "from transformers import pipeline\n\n", f'"{model_id}"', None
    else:
        head = f"from transformers import {kind.auto_model}, AutoTokenizer\n\n"
        model = f'{kind.auto_model}.from_pretrained("{model_id}")'
        tokenizer = f'AutoTokenizer.from_pretrained("{model_id}")'
    if not kind.has_pipeline:
        assign = (f"model = {model}\n" if model != "model" else "") + f"tokenizer = {tokenizer}\n"
        return f"{head}{assign}{kind.call}"
    tokenizer_arg = f", tokenizer={tokenizer}" if tokenizer else ""
    return (f'{head}{kind.variable} = pipeline("{kind.pipeline_tag}", model={model}{tokenizer_arg}'
            f"{kind.pipeline_kwargs})\n{kind.call}")


def _subfolder_arg(load: str) -> str:
    m = re.search(r'subfolder="([^"]+)"', load)
    return f', subfolder="{m.group(1)}"' if m else ""
