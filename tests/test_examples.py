"""Every script in examples/ run end to end on tiny models and generated data, chained the way a user would run them:
distil -> prune (re-distil from the teacher) -> export_onnx -> cascade -> push, and boolq on its own fake data.

Examples run in this process through their ``main(argv)``; the push runs in a subprocess with HF_ENDPOINT pointing at
the loopback Hub of tests/hub_server.py, because huggingface_hub reads HF_ENDPOINT when it is imported.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from fastformers_hf import compression_record, load_measurements, load_pruned
from fastformers_hf.tasks.synthetic import make_sentiment_data

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TOKEN = "hf_test_write_token"
# A few steps of tiny-model training, nothing saved mid-run, no logging integrations.
TRAIN = ["--max_steps", "6", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64",
         "--learning_rate", "3e-3", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "3",
         "--dataloader_pin_memory", "false", "--seed", "0"]


def load_example(name: str):
    """examples/<name>.py (or benchmarks/<name>.py) as a module (registered first: its dataclasses look their module
    up while being built)."""
    folder = BENCHMARKS if name.startswith("bench_") else EXAMPLES
    spec = importlib.util.spec_from_file_location(f"example_{name}", folder / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *argv) -> dict:
    return load_example(name).main([str(a) for a in argv])


# -- the chain ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


@pytest.fixture(scope="module")
def sst2_dir(root):
    """Generated sentiment data as GLUE's SST-2 ships it: train.tsv / dev.tsv with a header, tab-separated."""
    folder = root / "sst2"
    folder.mkdir()
    data = make_sentiment_data(320, 96, seed=3)
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        rows = [f"{s}\t{y}" for s, y in zip(data[split]["sentence"], data[split]["label"])]
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def teacher_dir(root, trained_teacher, tokenizer):
    folder = root / "teacher"
    trained_teacher.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def distilled(root, teacher_dir, sst2_dir):
    out, logits = root / "student", root / "teacher-logits.npy"
    result = run_example("distil", "--teacher_model_name_or_path", teacher_dir, "--data", sst2_dir,
                         "--student_layers", 2, "--student_hidden_act", "relu", "--output_dir", out,
                         "--teacher_logits_file", logits, *TRAIN)
    return out, logits, result


@pytest.fixture(scope="module")
def pruned(root, teacher_dir, sst2_dir, distilled):
    out = root / "pruned"
    result = run_example("prune", "--teacher_model_name_or_path", teacher_dir, "--model_name_or_path", distilled[0],
                         "--data", sst2_dir, "--heads_per_layer", 2, "--ffn_width", "0.5", "--scoring_examples", 64,
                         "--output_dir", out, *TRAIN)
    return out, result


@pytest.fixture(scope="module")
def exported(root, sst2_dir, pruned):
    out = root / "onnx"
    result = run_example("export_onnx", "--model_dir", pruned[0], "--data", sst2_dir, "--output_dir", out,
                         "--candidates", "fp32,int8", "--tolerance", 100, "--max_eval_samples", 48,
                         "--sample_size", 8, "--latency_repeats", 1)
    return out, result


def test_distil_trains_saves_and_measures_student_and_teacher(distilled, teacher_dir):
    out, logits, result = distilled
    record = compression_record(out)
    assert record["num_layers"] == 2 and [s["step"] for s in record["steps"]] == ["student", "distillation"]
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.hidden_act == "relu" and (out / "tokenizer.json").exists()
    assert np.load(logits).shape == (320, 2)  # the teacher ran once over the whole training set
    measured = {m["variant"]: m["value"] for m in load_measurements(out) if m["metric"] == "accuracy"}
    assert measured == {"pytorch": result["student"]["eval_accuracy"], "teacher": result["teacher"]["eval_accuracy"]}
    assert result["teacher"]["eval_accuracy"] > 0.6  # the trained teacher, evaluated on the dev file it never saw
    assert result["student"]["eval_samples_per_second"] > 0 and 0 <= result["student"]["eval_accuracy"] <= 1


def test_prune_scores_on_held_out_rows_and_saves_a_loadable_smaller_model(pruned):
    out, result = pruned
    record = result["record"]
    assert record["heads_per_layer"] == [2, 2] and record["ffn_width_per_layer"] == [64, 64]  # were 4 and 128
    steps = [s["step"] for s in record["steps"]]
    assert steps[:2] == ["student", "distillation"] and steps[-2:] == ["distillation", "structured_pruning"]
    prune_step = record["steps"][-1]
    assert prune_step["method"] == "first_order" and prune_step["scoring_examples"] == 64
    assert record == compression_record(out)
    model = load_pruned(out)
    assert sum(p.numel() for p in model.parameters()) == result["params_after"] < result["params_before"]
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[2, 10, 11, 3]])).logits.shape == (1, 2)
    assert [m["value"] for m in load_measurements(out)] == [result["metrics"]["eval_accuracy"]]


def test_export_onnx_writes_each_step_and_loads_the_chosen_variant(exported, pruned):
    out, result = exported
    ops = {name: {n.op_type for n in onnx.load(str(out / name / "model.onnx")).graph.node}
           for name in ("fp32", "fused", "fused-int8")}
    assert "Attention" in ops["fused"] and "Attention" not in ops["fp32"]  # fused, even with pruned heads
    assert ops["fused-int8"] & {"QAttention", "MatMulInteger", "DynamicQuantizeMatMul"}
    report = json.loads((out / "best" / "onnx_variants.json").read_text())
    assert result["chosen"] == report["chosen"] in ("fp32", "int8")
    assert len(result["predictions"]) == 48 and 0 <= result["accuracy"] <= 1
    # the fp32 export predicts what the pruned PyTorch model predicts
    from transformers import AutoTokenizer

    from fastformers_hf.onnx.graph import inference_session

    tok = AutoTokenizer.from_pretrained(out / "fp32")
    batch = tok(["the plot was dull .", "the cast was great but the music was flat ."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = load_pruned(pruned[0])(**batch).logits
    session = inference_session(out / "fp32")
    got = session.run(["logits"], {i.name: batch[i.name].numpy() for i in session.get_inputs()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-4)


def test_export_onnx_without_data_checks_agreement_with_pytorch_on_random_tokens(root, distilled):
    out = root / "onnx-no-data"
    result = run_example("export_onnx", "--model_dir", distilled[0], "--output_dir", out, "--candidates", "fp32",
                         "--sample_size", 8, "--latency_repeats", 1)
    report = json.loads((out / "best" / "onnx_variants.json").read_text())
    assert result["chosen"] == "fp32" and "random tokens" in report["data"] and report["results"][0]["passed"]
    assert len(result["predictions"]) == 2 and "accuracy" not in result


def test_cascade_calibrates_saves_reloads_and_predicts(root, sst2_dir, exported, teacher_dir):
    out = root / "cascade"
    result = run_example("cascade", "--tier1", exported[0] / "best", "--tier2", teacher_dir,
                         "--data", sst2_dir / "dev.tsv", "--target", 0.99, "--output_dir", out)
    config = json.loads((out / "cascade_config.json").read_text())
    assert config["config"]["threshold"] == result["threshold"] == result["chosen"]["threshold"]
    assert (out / "tier1" / "model.onnx").exists() and (out / "tier2" / "config.json").exists()
    assert result["chosen"]["relative"] >= 0.99 - 1e-9  # on the calibration half
    assert result["num_checked"] == 48 and 0 <= result["share_tier2"] <= 1 and 0 <= result["accuracy"] <= 1
    if result["share_tier2"] == 1.0:  # everything escalated: the cascade is tier 2
        assert result["accuracy"] == result["tier2_accuracy"]


def test_bench_cascade_reports_every_table_and_the_checks(root, sst2_dir, pruned, teacher_dir):
    out = root / "bench-cascade"
    report = run_example("bench_cascade", "--out", out, "--dev", sst2_dir / "dev.tsv", "--teacher", teacher_dir,
                         "--tier1", f"{pruned[0]},{root / 'missing'}", "--tolerance", 100, "--batch_sizes", "1,4",
                         "--repeats", 1, "--retries", 0)
    assert list(report["tier1"]) == ["pruned"]  # the missing candidate is skipped
    row = report["tier1"]["pruned"]
    assert set(row["tuned_batch_sizes"].values()) <= {1, 4} and row["evaluation"]["batch 1"]["tier2_accuracy"] > 0
    md = (out / "report.md").read_text()
    for heading in ("## Table 2", "## Table 3", "## Throughput", "## Checks"):
        assert heading in md
    assert (out / "curve_pruned.png").stat().st_size > 0 and (out / "int8" / "teacher" / "model.onnx").exists()
    again = run_example("bench_cascade", "--out", out, "--report_only")  # re-renders from report.json alone
    assert again["tier1"]["pruned"]["tuned_batch_sizes"] == row["tuned_batch_sizes"]


def test_push_dry_run_prints_the_card_and_pushes_nothing(pruned, capsys):
    result = run_example("push", "--model_dir", pruned[0], "--repo_id", "me/tiny-pruned", "--dry_run",
                         "--license", "apache-2.0")
    printed = capsys.readouterr().out
    assert result["pushed"] is False and printed.startswith("---") and "license: apache-2.0" in result["card"]
    assert result["card"] in printed and "nothing was pushed" in printed


def test_push_to_a_hub_given_by_hf_endpoint(pruned, exported, tmp_path):
    with HubServer(token=TOKEN) as server:
        env = dict(os.environ, HF_ENDPOINT=server.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"),
                   HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1")
        proc = subprocess.run([sys.executable, str(EXAMPLES / "push.py"), "--model_dir", str(pruned[0]),
                               "--onnx_dir", str(exported[0] / "best"), "--repo_id", "me/tiny-pruned"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = server.files("me/tiny-pruned")
    assert {"config.json", "model.safetensors", "README.md", "onnx/model.onnx", "onnx/config.json"} <= set(files)
    card = files["README.md"]["data"].decode()
    assert card.strip() in proc.stdout  # the card printed first is the one committed
    assert f"pushed to {server.url}" in proc.stdout and "heads [2, 2]" in proc.stdout  # record read back from the Hub


# -- BoolQ ------------------------------------------------------------------------------------------------------------


def test_boolq_fake_data_fine_tune_then_distil_with_pair_inputs(root, teacher_dir):
    fake = root / "boolq-data"
    assert run_example("boolq", "--make_fake_data", fake)["data_dir"] == str(fake)
    rows = [json.loads(line) for line in (fake / "val.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and {"question", "passage", "idx", "label"} <= set(rows[0])
    assert {r["label"] for r in rows} == {True, False}  # JSON booleans, as SuperGLUE ships them

    tuned = run_example("boolq", "--data_dir", fake, "--model_name_or_path", teacher_dir, "--max_length", 64,
                        "--output_dir", root / "boolq-teacher", *TRAIN)
    model = AutoModelForSequenceClassification.from_pretrained(root / "boolq-teacher")
    assert model.config.id2label == {0: "False", 1: "True"}
    assert 0 <= tuned["metrics"]["eval_accuracy"] <= 1 and tuned["metrics"]["eval_samples_per_second"] > 0

    student = run_example("boolq", "--data_dir", fake, "--teacher_model_name_or_path", root / "boolq-teacher",
                          "--student_layers", 1, "--max_length", 64, "--output_dir", root / "boolq-student", *TRAIN)
    record = compression_record(root / "boolq-student")
    assert record["num_layers"] == 1 and record["steps"][-1]["step"] == "distillation"
    assert 0 <= student["metrics"]["eval_accuracy"] <= 1


def test_boolq_pairs_are_encoded_as_one_sequence_with_segment_ids(root, tokenizer):
    boolq = load_example("boolq")
    folder = boolq.make_fake_boolq(root / "boolq-pairs", num_train=8, num_val=4)
    args = boolq.BoolQArguments(data_dir=str(folder))
    data = boolq.load_boolq(args, seed=0)
    assert data["train"].features["label"].dtype == "int64" and set(data) == {"train", "validation"}
    row = data["validation"][0]
    enc = tokenizer(row["question"], row["passage"])
    sep = tokenizer.sep_token_id
    assert enc["input_ids"].count(sep) == 2 and set(enc["token_type_ids"]) == {0, 1}
    assert tokenizer.unk_token_id not in enc["input_ids"]  # the fake data speaks the tiny tokenizer's vocabulary
