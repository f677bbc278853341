"""The table of task kinds: every kind names real transformers / Optimum classes, and kind_of reads a model's kind."""
from __future__ import annotations

import pytest
import transformers

from fastformers_hf.errors import FastFormersError
from fastformers_hf.tasks.kinds import KINDS, get_kind, kind_of
from fastformers_hf.testing import tiny_config


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_names_classes_that_exist(name):
    kind = KINDS[name]
    assert kind.name == name and kind.model_class() is getattr(transformers, kind.auto_model)


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_names_optimum_classes_that_exist(name):
    pytest.importorskip("optimum.onnxruntime", reason="Optimum's ONNX route is the `onnx` extra")
    kind = KINDS[name]
    assert kind.ort_class().__name__ == kind.ort_model
    from optimum.exporters.tasks import TasksManager

    assert kind.export_task in TasksManager.get_supported_tasks_for_model_type("bert", "onnx",
                                                                               library_name="transformers")


@pytest.mark.parametrize("auto, num_labels, expected", [
    ("AutoModelForSequenceClassification", 2, "sequence_classification"),
    ("AutoModelForSequenceClassification", 1, "regression"),
    ("AutoModelForTokenClassification", 9, "token_classification"),
    ("AutoModelForQuestionAnswering", 2, "question_answering"),
    ("AutoModelForMultipleChoice", 2, "multiple_choice"),
])
def test_kind_of_a_model_and_of_its_saved_config(auto, num_labels, expected, tmp_path):
    model = getattr(transformers, auto).from_config(tiny_config("bert", num_labels=num_labels))
    assert kind_of(model).name == expected
    model.save_pretrained(tmp_path)
    import json

    assert kind_of(json.loads((tmp_path / "config.json").read_text())).name == expected


def test_unknown_kinds_and_heads_are_refused():
    with pytest.raises(FastFormersError, match="unknown task kind 'summarization'"):
        get_kind("summarization")
    with pytest.raises(FastFormersError, match="BertForMaskedLM is not a head"):
        kind_of({"architectures": ["BertForMaskedLM"]})


@pytest.mark.parametrize("name", ["sequence_classification", "token_classification", "question_answering"])
def test_a_saved_model_of_each_kind_loads_and_exports_with_its_head(name, tmp_path):
    pytest.importorskip("optimum.onnxruntime")  # load_ort_model is Optimum's ORTModel; tests/test_ort_route.py covers the rest
    import numpy as np
    import torch

    from fastformers_hf import export_onnx, load_ort_model
    from fastformers_hf.testing import tiny_tokenizer
    from fastformers_hf.utils.model_folder import load_pytorch_model

    kind = KINDS[name]
    torch.manual_seed(0)
    kind.model_class().from_config(tiny_config("bert")).save_pretrained(tmp_path / "model")
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "model")
    model = load_pytorch_model(tmp_path / "model")
    assert type(model).__name__.endswith(kind.architecture_suffix)
    export_onnx(tmp_path / "model", tmp_path / "onnx")
    ort = load_ort_model(tmp_path / "onnx")
    assert type(ort).__name__ == kind.ort_model
    batch = tokenizer(["the film was good", "the plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch)
    got = ort(**batch)
    for output in kind.outputs:
        np.testing.assert_allclose(getattr(got, output).numpy(), getattr(expected, output).numpy(), atol=1e-4)


def test_a_model_built_from_a_config_exports_a_folder_that_names_its_head(tmp_path):
    pytest.importorskip("optimum.onnxruntime")  # load_ort_model is Optimum's ORTModel; tests/test_ort_route.py covers the rest
    from fastformers_hf import export_onnx, load_ort_model
    from fastformers_hf.testing import tiny_tokenizer

    model = transformers.AutoModelForQuestionAnswering.from_config(tiny_config("bert"))
    assert not model.config.architectures
    export_onnx(model, tmp_path / "onnx", tokenizer=tiny_tokenizer())
    assert type(load_ort_model(tmp_path / "onnx")).__name__ == "ORTModelForQuestionAnswering"
