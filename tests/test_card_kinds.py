"""Model cards follow the folder's task kind: pipeline tag, model-index task and datasets, metric scales and the
"How to use" snippet come from the kind table (hub_cards/snippets.py), which agrees with fastformers_hf's."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import transformers
from huggingface_hub import ModelCard

from fastformers_hf.measurements import record_measurement
from fastformers_hf.tasks.kinds import KINDS, kind_of
from fastformers_hf.testing import tiny_config, tiny_model, tiny_tokenizer
from hub_cards import FastFormersCardData, render_card, write_card
from hub_cards.snippets import CARD_KINDS, REMOTE_CODE_CHECKED, REMOTE_CODE_FILE, REMOTE_CODE_NOTE, card_kind

MACHINE = {"cpu": "Test CPU", "cores": 2, "python": "3.11"}

# kind, num_labels, dataset, [(metric, teacher, pytorch, onnx)], pipeline tag, task name, Hub dataset, snippet parts,
# how the pytorch row of the first metric reads in the card's quality table
CASES = [
    ("sequence_classification", 2, "sst2", [("accuracy", 0.9122, 0.8957, 0.8950)], "text-classification",
     "Text Classification", ("nyu-mll/glue", "sst2"),
     ['classifier = pipeline("text-classification", model="org/m")', 'classifier("a short sentence to classify")'],
     "| 0.8957 | -0.0165 vs teacher |"),
    ("regression", 1, "stsb", [("pearson", 0.88, 0.86, 0.855)], "text-classification", "Text Classification",
     ("nyu-mll/glue", "stsb"),
     ['scorer = pipeline("text-classification", model="org/m", function_to_apply="none")', 'scorer("'],
     "| 0.8600 | -0.02 vs teacher |"),
    ("token_classification", 9, "conll2003",
     [("f1", 91.0, 88.5, 88.25), ("precision", 90.5, 88.0, 87.75), ("recall", 91.5, 89.0, 88.75)],
     "token-classification", "Token Classification", ("eriktks/conll2003", None),
     ['ner = pipeline("token-classification", model="org/m", aggregation_strategy="simple")', 'ner("'],
     "| 88.50 / 100 | -2.50 points vs teacher |"),
    ("question_answering", 2, "squad", [("exact_match", 81.0, 78.25, 78.0), ("f1", 88.5, 86.0, 85.5)],
     "question-answering", "Question Answering", ("rajpurkar/squad", None),
     ["from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
      'model = AutoModelForQuestionAnswering.from_pretrained("org/m")', "inputs.sequence_ids(0)"],
     "| 78.25 / 100 | -2.75 points vs teacher |"),
    ("multiple_choice", 2, "swag", [("accuracy", 0.7, 0.65, 0.64)], "multiple-choice", "Multiple Choice",
     ("swag", None),
     ["from transformers import AutoModelForMultipleChoice, AutoTokenizer",
      'model = AutoModelForMultipleChoice.from_pretrained("org/m")',
      'tokenizer = AutoTokenizer.from_pretrained("org/m")'],
     "| 0.6500 | -0.05 vs teacher |"),
]


def save_tiny(kind: str, num_labels: int, path):
    """A tiny BERT with the kind's head and the tiny tokenizer, saved to ``path``."""
    if kind == "sequence_classification":
        model = tiny_model("bert", num_layers=2, num_labels=num_labels)
    else:
        model = getattr(transformers, CARD_KINDS[kind].auto_model).from_config(
            tiny_config("bert", num_layers=2, num_labels=num_labels))
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def record(path, dataset, metrics):
    for metric, *values in metrics:
        for variant, value in zip(("teacher", "pytorch", "onnx"), values):
            record_measurement(path, metric, value, dataset=dataset, split="validation", variant=variant,
                               machine=MACHINE, command="fastformers-hf compress ...", batch_size=1)
    for variant, ms in (("teacher", 10.0), ("pytorch", 4.0), ("onnx", 2.0)):
        record_measurement(path, "latency_batch1_median_ms", ms, unit="ms", dataset=dataset, split="validation",
                           variant=variant, machine=MACHINE, command="fastformers-hf compress ...", batch_size=1)


def snippet(card: str) -> str:
    return card.split("## How to use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("kind, num_labels, dataset, metrics, tag, task_name, hub, parts, row", CASES,
                         ids=[c[0] for c in CASES])
def test_the_card_follows_the_task_kind(kind, num_labels, dataset, metrics, tag, task_name, hub, parts, row,
                                        tmp_path):
    folder = save_tiny(kind, num_labels, tmp_path / "m")
    record(folder, dataset, metrics)
    text = write_card(folder, model_id="org/m", model_name="m").read_text(encoding="utf-8")
    card = ModelCard(text)
    meta = card.data.to_dict()
    assert meta["pipeline_tag"] == tag and tag in meta["tags"]
    results = card.data.eval_results
    assert {(r.task_type, r.task_name) for r in results} == {(tag, task_name)}
    expected = [(m, value, variant) for m, _, *values in metrics for variant, value in zip(("pytorch", "onnx"), values)]
    got = [(r.metric_type, r.metric_value, r.metric_name.split(" (")[1].rstrip(")")) for r in results]
    assert sorted(got) == sorted(expected)  # the teacher's numbers and latency stay in the body
    assert {(r.dataset_type, r.dataset_config, r.dataset_name, r.dataset_split) for r in results} == {
        (*hub, dataset, "validation")}
    assert sorted(meta["metrics"]) == sorted({m for m, *_ in metrics})
    code = snippet(text)
    for part in parts:
        assert part in code
    first = metrics[0][0]
    assert f"| pytorch | {first} | {dataset} | validation {row}" in text
    assert CARD_KINDS[kind].auto_model in text.split("## How to use", 1)[1]
    if "text-classification" != tag:
        assert "text-classification" not in text and "text classifier" not in text


@pytest.mark.parametrize("kind, num_labels, call", [
    ("sequence_classification", 2, 'classifier("a short sentence to classify")'),
    ("regression", 1, 'scorer("a short sentence to score")'),
    ("token_classification", 9, 'ner("Ada Lovelace was born in London.")'),
    ("question_answering", 2, None),
    ("multiple_choice", 2, None),
])
def test_the_snippet_of_each_kind_runs(kind, num_labels, call, tmp_path, capsys):
    folder = save_tiny(kind, num_labels, tmp_path / "m")
    code = FastFormersCardData.from_model_dir(folder, model_id=str(folder)).how_to_use
    if call is not None:
        assert code.endswith(call)
        code = code.rsplit("\n", 1)[0] + f"\nresult = {call}"
    scope: dict = {}
    exec(compile(code, "<card snippet>", "exec"), scope)
    if kind == "question_answering":  # a span of the context, decoded
        answer, context = capsys.readouterr().out.strip(), scope["context"]
        tokenizer = scope["tokenizer"]
        assert answer and answer in tokenizer.decode(tokenizer(context, add_special_tokens=False)["input_ids"])
    elif kind == "token_classification":
        assert all("entity_group" in e for e in scope["result"])  # aggregated entities
    elif kind == "multiple_choice":
        assert capsys.readouterr().out.strip() in ("blue.", "made of cheese.")
    else:
        assert "score" in scope["result"][0]


@pytest.mark.parametrize("kind", ["token_classification", "question_answering", "multiple_choice"])
def test_onnx_variants_load_with_the_kinds_ort_class(kind, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": [
        "Bert" + CARD_KINDS[kind].architecture_suffix]}))
    (folder / "model.onnx").write_bytes(b"\0" * 10)  # a repo of graphs only
    data = FastFormersCardData.from_model_dir(folder, model_id="org/m")
    ort = CARD_KINDS[kind].ort_model
    assert [v.load for v in data.variants] == [f'{ort}.from_pretrained("org/m")']
    assert f"from optimum.onnxruntime import {ort}\n" in data.how_to_use
    assert f'model = {ort}.from_pretrained("org/m")' in data.how_to_use
    assert 'AutoTokenizer.from_pretrained("org/m")' in data.how_to_use


def test_the_card_kind_table_agrees_with_fastformers_hf():
    from fastformers_hf.hub_code import MODELING_FILE

    assert set(CARD_KINDS) == set(KINDS) and REMOTE_CODE_FILE == MODELING_FILE
    for name, kind in KINDS.items():
        row = CARD_KINDS[name]
        assert (row.auto_model, row.ort_model, row.pipeline_tag, row.architecture_suffix) == (
            kind.auto_model, kind.ort_model, kind.pipeline_tag, kind.architecture_suffix), name


@pytest.mark.parametrize("auto, overrides", [
    ("AutoModelForSequenceClassification", {}), ("AutoModelForSequenceClassification", {"num_labels": 1}),
    ("AutoModelForSequenceClassification", {"num_labels": 3, "problem_type": "regression"}),
    ("AutoModelForTokenClassification", {"num_labels": 9}), ("AutoModelForQuestionAnswering", {}),
    ("AutoModelForMultipleChoice", {}),
])
def test_card_kind_reads_a_config_as_kind_of_does(auto, overrides, tmp_path):
    getattr(transformers, auto).from_config(tiny_config("bert", num_layers=1, **overrides)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert card_kind(config).name == kind_of(config).name


# -- pruned folders that carry modeling_fastformers.py (fastformers_hf.hub_code.save_model_folder) ----------------

from fastformers_hf.testing import VENV5_PYTHON, VENV5_SETUP  # noqa: E402
# kind, num_labels, the snippet's call (None: multiple choice and question answering, which print their pick)
REMOTE_CASES = [
    ("sequence_classification", 2, 'classifier("a short sentence to classify")'),
    ("regression", 1, 'scorer("a short sentence to score")'),
    ("token_classification", 9, 'ner("Ada Lovelace was born in London.")'),
    ("question_answering", 2, None),
    ("multiple_choice", 2, None),
]
PRUNED_SHAPES = {"per_layer_heads": dict(heads_per_layer=[2, 4, 3, 4], ffn_width=48),
                 "per_layer_ffn": dict(heads_per_layer=[2, 4, 3, 4], ffn_width=[64, 24, 48, 8])}


@pytest.fixture(scope="module")
def pruned_kind_folder(tmp_path_factory):
    """``build(kind, num_labels, shape="per_layer_heads", remote_code=True)``: a tiny 4-layer BERT of the kind,
    pruned, saved with ``save_model_folder`` (or plain ``save_pretrained``); each built once per module."""
    from fastformers_hf import prune
    from fastformers_hf.hub_code import save_model_folder

    built = {}

    def build(kind, num_labels, shape="per_layer_heads", remote_code=True):
        key = (kind, shape, remote_code)
        if key not in built:
            torch.manual_seed(0)
            model = getattr(transformers, CARD_KINDS[kind].auto_model).from_config(
                tiny_config("bert", num_layers=4, num_labels=num_labels)).eval()
            prune(model, method="magnitude", **PRUNED_SHAPES[shape])
            folder = tmp_path_factory.mktemp(f"{kind}-{shape}")
            if remote_code:
                save_model_folder(model, folder, tiny_tokenizer())
            else:
                model.save_pretrained(folder)
                tiny_tokenizer().save_pretrained(folder)
            built[key] = folder
        return built[key]

    return build


def _runnable(code: str, call: str | None) -> str:
    """The snippet with its last line's result kept (``result = ...``), as the tests above run it."""
    return code if call is None else code.rsplit("\n", 1)[0] + f"\nresult = {call}"


def _pytorch_load(data) -> str:
    return next(v.load for v in data.variants if v.name == "pytorch")


@pytest.mark.parametrize("shape", list(PRUNED_SHAPES))
@pytest.mark.parametrize("kind, num_labels, call", REMOTE_CASES, ids=[c[0] for c in REMOTE_CASES])
def test_the_snippet_of_a_pruned_folder_with_remote_code_loads_it(pruned_kind_folder, kind, num_labels, call, shape,
                                                                   tmp_path):
    folder = pruned_kind_folder(kind, num_labels, shape)
    auto = CARD_KINDS[kind].auto_model
    config = json.loads((folder / "config.json").read_text())
    assert auto in config["auto_map"] and (folder / REMOTE_CODE_FILE).exists()
    assert transformers.__version__ in REMOTE_CODE_CHECKED  # what the card says it was checked under

    card = render_card(folder, model_id="org/pruned")
    code = snippet(card)
    assert "trust_remote_code=True" in code and "load_pruned" not in card
    if CARD_KINDS[kind].has_pipeline:
        assert f'pipeline("{CARD_KINDS[kind].pipeline_tag}", model="org/pruned", trust_remote_code=True' in code
    else:
        assert f'model = {auto}.from_pretrained("org/pruned", trust_remote_code=True)\n' in code
    assert f'- pytorch: `{auto}.from_pretrained("org/pruned", trust_remote_code=True)`' in card
    assert REMOTE_CODE_NOTE in card and "transformers 5 refuses" in REMOTE_CODE_NOTE

    data = FastFormersCardData.from_model_dir(folder, model_id=str(folder))
    assert _pytorch_load(data) == f'{auto}.from_pretrained("{folder}", trust_remote_code=True)'
    scope: dict = {}
    exec(compile(_runnable(data.how_to_use, call), "<card snippet>", "exec"), scope)
    model = scope["model"] if call is None else scope[CARD_KINDS[kind].variable].model
    assert type(model).__module__.endswith("modeling_fastformers")  # the repo's code built the pruned shape
    assert call is None or scope["result"]
    loaded = eval(_pytorch_load(data), {auto: getattr(transformers, auto)})  # the card's PyTorch line
    assert type(loaded).__module__.endswith("modeling_fastformers")
    assert loaded.config.fastformers["heads_per_layer"] == [2, 4, 3, 4]


@pytest.mark.parametrize("shape, expected", [("per_layer_heads", 'AutoModelForQuestionAnswering.from_pretrained("org/m")'),
                                             ("per_layer_ffn", "fastformers_hf.load_pruned(")])
def test_a_folder_without_auto_map_keeps_todays_snippet(pruned_kind_folder, shape, expected):
    folder = pruned_kind_folder("question_answering", 2, shape, remote_code=False)
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    card = render_card(folder, model_id="org/m")
    assert "trust_remote_code" not in card and REMOTE_CODE_NOTE not in card
    assert f"- pytorch: `{expected}" in card


_RUN_IN_V5 = """
import json, sys
import transformers
assert transformers.__version__.startswith("5."), transformers.__version__
print(transformers.__version__)
out = {}
for job in json.load(open(sys.argv[1])):
    scope = {}
    exec(compile(job["code"], job["kind"], "exec"), scope)
    model = scope["model"] if "model" in scope else scope[job["variable"]].model
    out[job["kind"]] = {"module": type(model).__module__, "result": bool(scope.get("result", True)),
                        "heads": model.config.fastformers["heads_per_layer"]}
print(json.dumps(out))
"""


@pytest.mark.skipif(not VENV5_PYTHON.exists(), reason=f"no transformers 5 environment at {VENV5_PYTHON.parent.parent} ({VENV5_SETUP})")
def test_the_remote_code_snippet_runs_under_transformers_5(pruned_kind_folder, tmp_path):
    jobs = []
    for kind, num_labels, call in REMOTE_CASES:
        folder = pruned_kind_folder(kind, num_labels)
        data = FastFormersCardData.from_model_dir(folder, model_id=str(folder))
        code = _runnable(data.how_to_use, call)
        jobs.append({"kind": kind, "code": code, "variable": data.task_kind.variable})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "run.py").write_text(_RUN_IN_V5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([str(VENV5_PYTHON), str(tmp_path / "run.py"), str(tmp_path / "jobs.json")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(got) == {kind for kind, *_ in REMOTE_CASES}
    assert done.stdout.split()[0] in REMOTE_CODE_CHECKED  # what the card says it was checked under
    for kind, result in got.items():
        assert result["module"].endswith("modeling_fastformers"), (kind, result)
        assert result["result"] and result["heads"] == [2, 4, 3, 4], (kind, result)
