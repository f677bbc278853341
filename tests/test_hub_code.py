"""Pruned folders load with plain transformers through the modeling file that ``add_remote_code`` writes:
``AutoModelFor<head>.from_pretrained(folder, trust_remote_code=True)`` gives the outputs of ``load_pruned``, in
transformers 4.x (in process; 5.x and the other direction: tests/test_cross_version.py)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import fastformers_hf
from fastformers_hf.architectures import ARCHITECTURES
from fastformers_hf.hub_code import MODELING_FILE, TEMPLATE, add_remote_code, needs_remote_code
from fastformers_hf.pruning import load_pruned
from fastformers_hf.shape_record import CONFIG_KEY
from fastformers_hf.testing import tiny_config

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")
HEADS = ("SequenceClassification", "TokenClassification", "QuestionAnswering", "MultipleChoice")
SHAPES = {  # 3 layers of 4 heads (head size 8), FFN width 64
    "uniform_heads": dict(heads_per_layer=2, ffn_width=32),
    "per_layer_heads": dict(heads_per_layer=[4, 1, 3], ffn_width=None),
    "per_layer_ffn": dict(heads_per_layer=None, ffn_width=[64, 24, 8]),
}
CASES = [(m, h, s) for m in MODEL_TYPES for h in HEADS for s in SHAPES]


def _inputs(config, head: str) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, config.vocab_size, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding, so the attention mask matters
    if head == "MultipleChoice":
        ids, mask = ids[:, None].repeat(1, 3, 1), mask[:, None].repeat(1, 3, 1)
        ids[:, 1, 2] = 7
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


def _run(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.fixture(scope="module")
def pruned_folder(tmp_path_factory, tokenizer):
    """``build(model_type, head, shape) -> (folder, inputs, load_pruned outputs)``, each built once per module."""
    built = {}

    def build(model_type: str, head: str, shape: str):
        if (model_type, head, shape) not in built:
            torch.manual_seed(0)
            auto = getattr(transformers, f"AutoModelFor{head}")
            model = auto.from_config(tiny_config(model_type, num_layers=3)).eval()
            fastformers_hf.prune(model, method="magnitude", **SHAPES[shape])
            folder = tmp_path_factory.mktemp(f"{model_type}-{head}-{shape}")
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            assert add_remote_code(folder) is True
            inputs = _inputs(model.config, head)
            built[model_type, head, shape] = folder, inputs, _run(load_pruned(folder), inputs)
        return built[model_type, head, shape]

    return build


def _assert_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("model_type, head, shape", CASES)
def test_trust_remote_code_loads_the_recorded_shape_in_transformers_4(pruned_folder, model_type, head, shape):
    folder, inputs, expected = pruned_folder(model_type, head, shape)
    config = json.loads((folder / "config.json").read_text())
    name = config["architectures"][0]
    assert config["auto_map"] == {f"AutoModelFor{head}": f"modeling_fastformers.{name}"}
    assert (folder / MODELING_FILE).read_bytes() == TEMPLATE.read_bytes()

    auto = getattr(transformers, f"AutoModelFor{head}")
    model, info = auto.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
    assert type(model).__module__.endswith("modeling_fastformers") and type(model).__name__ == name
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    # 4.x built-in classes must stay the built-in ones (no global registration of the remote class)
    assert auto._model_mapping[type(model.config)] is getattr(transformers, name)
    _assert_close(_run(model.eval(), inputs), expected)


def test_a_loaded_model_saves_a_folder_that_loads_the_same_way(pruned_folder, tmp_path):
    folder, inputs, expected = pruned_folder("distilbert", "QuestionAnswering", "per_layer_ffn")
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder, trust_remote_code=True)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (tmp_path / MODELING_FILE).exists() and saved["auto_map"] and saved[CONFIG_KEY]
    assert saved["architectures"] == ["DistilBertForQuestionAnswering"]  # native name: load_pruned still works
    again = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path, trust_remote_code=True)
    _assert_close(_run(again.eval(), inputs), expected)
    _assert_close(_run(load_pruned(tmp_path), inputs), expected)


@pytest.mark.parametrize("how", ["unpruned", "uniform_ffn"])
def test_folders_of_native_shape_are_left_untouched(tmp_path, how):
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(tiny_config("bert", num_layers=2))
    if how == "uniform_ffn":  # intermediate_size describes it in every version
        fastformers_hf.prune(model, ffn_width=16, method="magnitude")
    model.save_pretrained(tmp_path)
    before = (tmp_path / "config.json").read_bytes()
    assert add_remote_code(tmp_path) is False
    assert (tmp_path / "config.json").read_bytes() == before and not (tmp_path / MODELING_FILE).exists()


@pytest.mark.parametrize("config, expected", [
    ({"model_type": "bert", "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 2}, False),
    ({"model_type": "bert", "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 2,
      "pruned_heads": {"1": [0, 2]}}, True),
    ({"model_type": "distilbert", "n_heads": 4, "hidden_dim": 64, "n_layers": 2,
      CONFIG_KEY: {"num_layers": 2, "heads_per_layer": [4, 4], "ffn_width_per_layer": [64, 32]}}, True),
    ({"model_type": "electra", "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 2,
      CONFIG_KEY: {"num_layers": 2, "heads_per_layer": [4, 4], "ffn_width_per_layer": [64, 64]}}, False),
    ({"model_type": "gpt2", "n_head": 4}, False),
])
def test_needs_remote_code(config, expected):
    assert needs_remote_code(config) is expected


def test_the_modeling_file_depends_only_on_torch_and_transformers_and_knows_every_architecture():
    from fastformers_hf.hub_code import modeling_fastformers as hub

    tree = ast.parse(TEMPLATE.read_text(encoding="utf-8"))
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert roots <= {"os", "shutil", "torch", "transformers"}
    assert set(hub.LAYOUTS) == set(ARCHITECTURES) and hub.RECORD_KEY == CONFIG_KEY
    for model_type, layout in hub.LAYOUTS.items():
        spec = ARCHITECTURES[model_type]
        assert (layout["layers"], layout["attention_output"], layout["ffn_in"], layout["ffn_out"]) == (
            spec.layers, spec.attention_output, spec.intermediate, spec.output)
        assert layout["linears"] == (spec.query, spec.key, spec.value)
        for head in HEADS:
            name = f"{layout['prefix']}For{head}"
            assert issubclass(getattr(hub, name), getattr(transformers, name)) and name in hub.__all__
