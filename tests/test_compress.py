import json
import time

import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.cli import main
from fastformers_hf.pipeline.compress import CompressPipeline
from fastformers_hf.commands.compress import parse


@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_teacher, tokenizer):
    root = tmp_path_factory.mktemp("compress")
    trained_teacher.save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    from fastformers_hf.tasks.synthetic import make_sentiment_data

    raw = make_sentiment_data(400, 80, seed=5)
    (root / "data").mkdir()
    raw["train"].to_csv(root / "data" / "train.tsv", sep="\t", index=False)
    raw["validation"].to_csv(root / "data" / "dev.tsv", sep="\t", index=False)
    return root


def argv(root, out, *extra):
    return ["--model_name_or_path", str(root / "teacher"), "--data", str(root / "data"), "--output_dir", str(out),
            "--student_layers", "2", "--max_steps", "8", "--heads_per_layer", "2", "--ffn_width", "0.5",
            "--redistill_steps", "4", "--scoring_examples", "40", "--latency_samples", "8",
            "--per_device_train_batch_size", "16", "--max_length", "32", "--onnx_tolerance", "100", *extra]


def stages_run(log):
    return [line.split("]")[0][1:] for line in log if line.endswith("running")]


def test_compress_runs_every_stage_then_resumes(setup, tmp_path, monkeypatch):
    out = tmp_path / "out"
    log = []
    summary = CompressPipeline(parse(argv(setup, out)), log=log.append).run()
    assert stages_run(log) == ["1-distill", "2-prune", "3-redistill", "4-onnx", "5-final"]
    final = out / "5-final"
    assert (final / "onnx").is_dir() and list((final / "onnx").glob("*.onnx"))
    card = (final / "README.md").read_text()
    assert "heads" in card.lower() and "# out-compressed" in card and ".tmp-" not in card
    record = json.loads((final / "config.json").read_text())["fastformers"]
    assert record["heads_per_layer"] == [2, 2] and record["ffn_width_per_layer"] == [64, 64]
    assert [s["step"] for s in record["steps"]][:3] == ["student", "distillation", "structured_pruning"]
    assert set(summary["final"]["accuracy"]) == {"teacher", "pytorch", "onnx"}
    assert summary["final"]["latency"]["onnx"]["median_ms"] > 0

    log.clear()  # same recipe: nothing runs again
    CompressPipeline(parse(argv(setup, out)), log=log.append).run()
    assert stages_run(log) == []

    log.clear()  # a changed re-distillation setting reruns from that stage on
    CompressPipeline(parse(argv(setup, out, "--redistill_steps", "3")), log=log.append).run()
    assert stages_run(log) == ["3-redistill", "4-onnx", "5-final"]

    log.clear()  # other variant recipes (a new release): the ONNX variant is chosen again, training is kept
    from fastformers_hf.onnx import config as onnx_config

    monkeypatch.setattr(onnx_config, "VARIANTS", {k: v for k, v in onnx_config.VARIANTS.items() if k != "fp32-fused"})
    CompressPipeline(parse(argv(setup, out, "--redistill_steps", "3")), log=log.append).run()
    assert stages_run(log) == ["4-onnx", "5-final"]


def test_interrupted_stage_leaves_nothing_and_rerun_continues(setup, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = CompressPipeline._onnx

    def interrupted(self, tmp, student_dir):
        (tmp / "partial.onnx").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(CompressPipeline, "_onnx", interrupted)
    with pytest.raises(FastFormersError, match="interrupted during stage 4-onnx"):
        CompressPipeline(parse(argv(setup, out, "--heads_per_layer", "none", "--ffn_width", "none"))).run()
    assert not (out / "4-onnx").exists() and not list(out.glob(".4-onnx*"))
    monkeypatch.setattr(CompressPipeline, "_onnx", original)
    log = []
    CompressPipeline(parse(argv(setup, out, "--heads_per_layer", "none", "--ffn_width", "none")),
                     log=log.append).run()
    assert stages_run(log) == ["4-onnx", "5-final"]


@pytest.mark.parametrize("change,match", [
    (["--student_layers", "9"], "student_layers=9 is impossible"),
    (["--heads_per_layer", "5"], "heads_per_layer=5 is impossible"),
    (["--ffn_width", "1.5"], "not a ratio in (0, 1]"),
    (["--ffn_width", "wide"], "neither a count"),
    (["--task", "rte"], "no column 'sentence1'"),
    (["--model_name_or_path", "/nonexistent/model"], "cannot read the model config"),
    (["--push_to_hub", "true"], "hub_model_id"),
])
def test_dry_run_refuses_broken_recipes_fast(setup, tmp_path, capsys, change, match):
    start = time.perf_counter()
    assert main(["compress", *argv(setup, tmp_path / "o"), *change, "--dry-run"]) == 2
    assert time.perf_counter() - start < 10
    assert match in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "o").exists()


def test_recipe_file_with_unknown_keys_is_refused(setup, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {setup / 'teacher'}\nstudent_layerz: 2\n")
    assert main(["compress", "--recipe", str(recipe), "--dry-run"]) == 2
    assert "unknown keys ['student_layerz']" in capsys.readouterr().err


def test_recipe_file_and_flag_override(setup, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {setup / 'teacher'}\ndata: {setup / 'data'}\nstudent_layers: 9\n")
    config = parse(["--recipe", str(recipe), "--student_layers", "2"])
    assert config.student_layers == 2 and config.data == str(setup / "data")
    assert main(["compress", "--recipe", str(recipe), "--student_layers", "2", "--dry-run"]) == 0
    assert "recipe OK" in capsys.readouterr().out


def test_final_rows_take_accuracy_and_latency_at_the_same_batch_size(setup, tmp_path, monkeypatch):
    """Dynamic int8 answers move with batch padding, so a row's accuracy must come from the batch size its latency
    is measured at; the table header says which."""
    from fastformers_hf.inference.classifier import TextClassifier
    from fastformers_hf.pipeline.compress import format_summary

    n_validation = 80  # the setup's dev split
    batches = {"accuracy": set(), "latency": set()}
    in_final = []
    predict, final = TextClassifier.predict_logits, CompressPipeline._final

    def spying_predict(self, inputs, *args, **kwargs):
        if in_final:
            inputs = list(inputs)
            kind = "accuracy" if len(inputs) == n_validation else "latency"
            batches[kind].add(min(self.config.batch_size, len(inputs)))
        return predict(self, inputs, *args, **kwargs)

    def spying_final(self, *args):
        in_final.append(True)
        try:
            return final(self, *args)
        finally:
            in_final.clear()

    monkeypatch.setattr(TextClassifier, "predict_logits", spying_predict)
    monkeypatch.setattr(CompressPipeline, "_final", spying_final)
    summary = CompressPipeline(parse(argv(setup, tmp_path / "out", "--heads_per_layer", "none", "--ffn_width",
                                          "none")), log=lambda _: None).run()
    batch = summary["final"]["serving"]["batch_size"]
    assert batches["accuracy"] == batches["latency"] == {batch} == {1}
    header = format_summary(summary).splitlines()[0]
    assert f"accuracy (batch {batch})" in header and f"latency median (batch {batch}, ms)" in header


@pytest.mark.parametrize("flag", [False, True])
def test_group_by_length_reaches_every_training_stage(tmp_path, flag):
    from fastformers_hf.compat import is_transformers_5

    pipeline = CompressPipeline(parse(["--model_name_or_path", "m", "--output_dir", str(tmp_path)]
                                      + ["--group_by_length"] * flag))
    args = pipeline._train_args(tmp_path, 3)
    if is_transformers_5():
        assert args.train_sampling_strategy == ("group_by_length" if flag else "random")
    else:
        assert args.group_by_length is flag
