"""hub_cards: card data read from recorded JSON, rendering through huggingface_hub.ModelCard, no torch needed.

Model directories here are written by hand (config.json + a safetensors file of the right shapes, via numpy), so
these tests need neither torch nor a model.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from safetensors.numpy import save_file

import hub_cards
from hub_cards import CardDataError, FastFormersCardData, render_card
from hub_cards.card_data import _compare, hub_dataset, measurement_kind

MACHINE = {"cpu": "Test CPU", "cores": 2, "python": "3.11"}


def make_model_dir(path: Path, heads=(2, 4, 3, 4), ffn=(48, 48, 48, 48), source="org/teacher-model",
                   measurements=None, steps=None) -> Path:
    """A BERT model directory (hidden 32, head size 8) whose weights hold ``heads`` and ``ffn`` per layer."""
    path.mkdir(parents=True, exist_ok=True)
    record = {"version": 1, "source_model": source, "num_layers": len(heads), "heads_per_layer": list(heads),
              "ffn_width_per_layer": list(ffn), "steps": steps if steps is not None else [
                  {"step": "distillation", "teacher": source, "temperature": 2.0, "distillation_weight": 1.0},
                  {"step": "structured_pruning", "method": "first_order", "heads_per_layer": list(heads),
                   "ffn_width_per_layer": list(ffn), "scoring_examples": 256,
                   "pruned_from": {"model": source, "heads_per_layer": [4] * len(heads), "ffn_width_per_layer": [64] * len(heads)}}]}
    config = {"model_type": "bert", "architectures": ["BertForSequenceClassification"], "hidden_size": 32,
              "num_attention_heads": 4, "num_hidden_layers": len(heads), "intermediate_size": max(ffn),
              "id2label": {"0": "negative", "1": "positive"}, "fastformers": record}
    (path / "config.json").write_text(json.dumps(config))
    tensors = {"classifier.weight": np.zeros((2, 32), np.float32)}
    for i, (h, w) in enumerate(zip(heads, ffn)):
        tensors[f"bert.encoder.layer.{i}.attention.self.query.weight"] = np.zeros((h * 8, 32), np.float32)
        tensors[f"bert.encoder.layer.{i}.intermediate.dense.weight"] = np.zeros((w, 32), np.float32)
    save_file(tensors, str(path / "model.safetensors"))
    if measurements is not None:
        (path / "fastformers_measurements.json").write_text(json.dumps(measurements))
    return path


def entry(metric, value, variant="pytorch", unit=None, dataset="sst2", split="validation", machine=MACHINE, **extra):
    return {"metric": metric, "value": value, "unit": unit, "dataset": dataset, "split": split, "variant": variant,
            "command": "fastformers-hf benchmark out/model", "machine": machine, **extra}


MEASURED = [
    entry("accuracy", 0.9122, variant="teacher"),
    entry("accuracy", 0.8957),
    entry("latency_ms", 10.0, variant="teacher", unit="ms", batch_size=1),
    entry("latency_ms", 3.2, unit="ms", batch_size=1),
    entry("latency_ms", 1.6, variant="onnx-int8", unit="ms", batch_size=1, p99_ms=2.5, chosen=True),
    entry("model_size_mb", 90.9, variant="teacher", unit="MB"),
    entry("model_size_mb", 22.7, unit="MB"),
    entry("throughput", 200.0, unit="examples/s", threads=2),
    entry("throughput", 500.0, variant="onnx-int8", unit="examples/s", threads=2),
]


def test_file_contracts_agree_with_fastformers_hf():
    from fastformers_hf.measurements import MEASUREMENTS_FILE
    from fastformers_hf.shape_record import CONFIG_KEY

    assert hub_cards.card_data.CONFIG_KEY == CONFIG_KEY and hub_cards.MEASUREMENTS_FILE == MEASUREMENTS_FILE


def test_rendering_imports_no_torch(tmp_path):
    model_dir = make_model_dir(tmp_path / "m", measurements=MEASURED)
    code = ("import sys, hub_cards; text = hub_cards.render_card(sys.argv[1]); "
            "bad = [m for m in ('torch', 'transformers', 'fastformers_hf') if m in sys.modules]; "
            "print(len(text), bad)")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "[]" and int(out.stdout.split()[0]) > 1000


def test_card_metadata_is_valid_yaml_with_the_measured_results(tmp_path):
    model_dir = make_model_dir(tmp_path / "m", measurements=MEASURED)
    card = ModelCard(render_card(model_dir, model_id="org/small", license="mit", language="en"))
    meta = card.data.to_dict()
    assert meta["license"] == "mit" and meta["library_name"] == "transformers" and meta["language"] == "en"
    assert meta["base_model"] == "org/teacher-model" and meta["datasets"] == ["nyu-mll/glue"]
    assert meta["pipeline_tag"] == "text-classification"
    assert {"fastformers-hf", "distillation", "pruning"} <= set(meta["tags"])
    results = card.data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_type, r.dataset_config, r.dataset_split) for r in results] == [
        ("accuracy", 0.8957, "nyu-mll/glue", "sst2", "validation")]  # the teacher's number is not this model's


def test_card_states_shape_recipe_and_numbers_from_the_files(tmp_path):
    model_dir = make_model_dir(tmp_path / "m", measurements=MEASURED)
    text = render_card(model_dir, model_id="org/small")
    assert "| This model | 4 | 32 | 2, 4, 3, 4 | 48, 48, 48, 48 |" in text
    assert "| Before pruning | 4 | 32 | 4, 4, 4, 4 | 64, 64, 64, 64 |" in text
    assert "temperature 2.0" in text and "scored on 256 held-out training examples" in text
    assert "0.8957" in text and "-0.0165 vs teacher" in text
    assert "3.12x faster than teacher" in text  # 10.0 / 3.2
    assert "6.25x faster than teacher" in text  # ONNX int8 against the teacher at the same settings
    assert "2.50x the throughput of pytorch" in text  # no teacher number at these settings: against PyTorch
    assert "4.00x smaller than teacher" in text  # 90.9 / 22.7
    assert "M1: Test CPU (2 cores)" in text and "`fastformers-hf benchmark out/model`" in text
    changed = [dict(e, value=e["value"] * 2) if e["variant"] == "pytorch" and e["metric"] == "accuracy" else e
               for e in MEASURED]
    (model_dir / "fastformers_measurements.json").write_text(json.dumps(changed))
    assert "1.791" in render_card(model_dir) and "0.8957" not in render_card(model_dir)


def test_speed_is_compared_only_on_the_same_machine(tmp_path):
    other = dict(MACHINE, cpu="Other CPU")
    model_dir = make_model_dir(tmp_path / "m", measurements=[
        entry("latency_ms", 10.0, variant="teacher", unit="ms", machine=other), entry("latency_ms", 2.0, unit="ms")])
    data = FastFormersCardData.from_model_dir(model_dir)
    assert [m.compared for m in data.measurements] == [None, None] and len(data.machines) == 2


def test_card_without_measurements_says_how_to_measure(tmp_path):
    text = render_card(make_model_dir(tmp_path / "m"))
    assert "No measurements were recorded" in text and hub_cards.MEASURE_HINT in text
    assert "model-index" not in text


def test_uneven_ffn_widths_say_how_to_load(tmp_path):
    text = render_card(make_model_dir(tmp_path / "m", ffn=(48, 32, 40, 48)), model_id="org/uneven")
    assert 'fastformers_hf.load_pruned(huggingface_hub.snapshot_download("org/uneven"))' in text
    assert 'AutoModelForSequenceClassification.from_pretrained("org/uneven")' not in text


def test_onnx_folders_become_variants_with_their_recipe(tmp_path):
    model_dir = make_model_dir(tmp_path / "m")
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    (fp32 / "model.onnx").write_bytes(b"\0" * 100)
    (fp32 / "config.json").write_text(json.dumps({"fastformers": {"steps": [{"step": "onnx_export", "opset": 14}]}}))
    optimum_q = tmp_path / "q"  # an Optimum ORTQuantizer output: no fastformers record, an ort_config.json
    optimum_q.mkdir()
    (optimum_q / "model_quantized.onnx").write_bytes(b"\0" * 50)
    (optimum_q / "ort_config.json").write_text(json.dumps(
        {"quantization": {"is_static": False, "format": "QOperator", "weights_dtype": "QInt8", "per_channel": True}}))
    data = FastFormersCardData.from_model_dir(model_dir, folders={"onnx/fp32": fp32, "onnx/int8": optimum_q,
                                                                  "cascade/tier1": fp32}, model_id="org/m")
    got = {v.name: (v.path, v.precision, v.load) for v in data.variants}
    assert got["onnx/fp32"] == ("onnx/fp32/model.onnx", "fp32",
                                'ORTModelForSequenceClassification.from_pretrained("org/m", subfolder="onnx/fp32")')
    assert got["onnx/int8"][1] == "int8" and 'file_name="model_quantized.onnx"' in got["onnx/int8"][2]
    assert "per_channel=True" in next(v.details for v in data.variants if v.name == "onnx/int8")
    assert sorted(got) == ["onnx/fp32", "onnx/int8", "pytorch"]  # a graph in a cascade tier is not a variant
    assert "cascade/tier1/model.onnx" in data.other_folders["cascade"]
    assert got["pytorch"][0] == "model.safetensors" and data.parameters == 2 * 32 + 13 * 8 * 32 + 4 * 48 * 32


@pytest.mark.parametrize("metric, unit, kind", [
    ("accuracy", None, "quality"), ("f1", None, "quality"), ("latency_ms", "ms", "latency"),
    ("p50", "ms", "latency"), ("throughput", "examples/s", "throughput"), ("model_size_mb", "MB", "size"),
    ("parameters", None, "size"), ("max_logit_diff", None, "quality"),
])
def test_measurement_kind(metric, unit, kind):
    assert measurement_kind(metric, unit) == kind


@pytest.mark.parametrize("name, found", [
    ("sst2", ("nyu-mll/glue", "sst2")), ("glue/rte", ("nyu-mll/glue", "rte")),
    ("/data/shared/data/sst2", ("nyu-mll/glue", "sst2")), ("nyu-mll/glue:mrpc", ("nyu-mll/glue", "mrpc")),
    ("google/boolq", ("google/boolq", None)), ("generated-sentiment", None), ("my data.tsv", None), (None, None),
])
def test_hub_dataset_names(name, found):
    assert hub_dataset(name) == found


@pytest.mark.parametrize("kind, value, base, text", [
    ("latency", 2.0, 8.0, "4.00x faster than teacher"), ("throughput", 300.0, 100.0, "3.00x the throughput of teacher"),
    ("size", 25.0, 100.0, "4.00x smaller than teacher"), ("quality", 0.85, 0.9, "-0.05 vs teacher"),
])
def test_comparisons(kind, value, base, text):
    from hub_cards.card_data import Measurement

    m = Measurement("m", value, "pytorch", kind)
    assert _compare(m, Measurement("m", base, "teacher", kind)) == text


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "fastformers_measurements.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "fastformers_measurements.json").write_text('{"metric": "accuracy"}'), "should hold a list"),
])
def test_bad_model_dirs_give_clear_errors(tmp_path, damage, message):
    model_dir = make_model_dir(tmp_path / "m", measurements=MEASURED)
    damage(model_dir)
    with pytest.raises(CardDataError, match=message):
        render_card(model_dir)


def test_unknown_card_field_is_refused(tmp_path):
    with pytest.raises(CardDataError, match="unknown card field.*you can set model_id"):
        render_card(make_model_dir(tmp_path / "m"), licence="mit")


def test_non_default_hyperparameters_skip_paths_and_secrets():
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="out", learning_rate=1e-3, num_train_epochs=5, hub_token="hf_secret",
                             report_to=[], lr_scheduler_type="cosine")
    got = hub_cards.non_default_hyperparameters(args)
    assert got["learning_rate"] == 1e-3 and got["num_train_epochs"] == 5 and got["lr_scheduler_type"] == "cosine"
    assert not {"output_dir", "hub_token", "report_to", "per_device_train_batch_size"} & set(got)
    assert "hf_secret" not in json.dumps(got)
