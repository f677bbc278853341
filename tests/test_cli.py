import subprocess
import sys

import pytest

from fastformers_hf.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,match", [
    (["distill", "--output_dir", "x", "--temperature", "0"], "temperature must be > 0"),
    (["distill", "--output_dir", "x"], "pass --data"),
    (["prune", "--model_name_or_path", "m", "--output_dir", "x"], "nothing to prune"),
    (["prune", "--model_name_or_path", "m", "--output_dir", "x", "--heads_per_layer", "2"], "pass --data"),
    (["prune", "--model_name_or_path", "m", "--output_dir", "x", "--ffn_width", "2", "--method", "magnitude"],
     "is not a directory"),
])
def test_bad_arguments_give_one_line_error_not_traceback(argv, match):
    proc = subprocess.run([sys.executable, "-m", "fastformers_hf.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert match in proc.stderr and "Traceback" not in proc.stderr


def _glue_folder(path):
    from fastformers_hf.tasks.synthetic import make_sentiment_data

    path.mkdir()
    raw = make_sentiment_data(200, 50, seed=3)
    for split, name in (("train", "train"), ("validation", "dev")):
        raw[split].to_csv(path / f"{name}.tsv", sep="\t", index=False)
    return path


def test_distill_command_end_to_end(tmp_path, trained_teacher, tokenizer):
    trained_teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    data = _glue_folder(tmp_path / "data")
    code = main(["distill", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--data", str(data),
                 "--task", "sst2", "--student_layers", "1", "--output_dir", str(tmp_path / "student"),
                 "--max_steps", "5", "--report_to", "none", "--per_device_train_batch_size", "16"])
    assert code == 0 and (tmp_path / "student" / "model.safetensors").exists()


def test_prune_command_saves_a_model_that_reloads_with_its_shape(tmp_path, trained_teacher, tokenizer, capsys):
    import json

    from transformers import AutoModelForSequenceClassification

    trained_teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    heads = trained_teacher.config.num_attention_heads
    code = main(["prune", "--model_name_or_path", str(tmp_path / "teacher"), "--data", str(_glue_folder(tmp_path / "d")),
                 "--heads_per_layer", "0.5", "--ffn_width", "16", "--scoring_examples", "64",
                 "--output_dir", str(tmp_path / "pruned")])
    assert code == 0
    report = json.loads((tmp_path / "pruned" / "pruning_report.json").read_text())
    layers = trained_teacher.config.num_hidden_layers
    assert report["heads_per_layer"] == [heads // 2] * layers and report["ffn_width_per_layer"] == [16] * layers
    assert report["parameters_after"] < report["parameters_before"] and 0 <= report["accuracy_after"] <= 1
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned")
    assert model.config.intermediate_size == 16
    assert model.bert.encoder.layer[0].attention.self.query.out_features == heads // 2 * model.config.hidden_size // heads
    assert "re-distil" in capsys.readouterr().out


def test_push_dry_run_checks_the_folder_and_prints_the_card(tmp_path, capsys, tokenizer):
    from fastformers_hf.testing import tiny_model

    tiny_model("bert").save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert main(["push", "--model_dir", str(tmp_path / "m"), "--repo_id", "me/tiny", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "nothing was pushed" in out and "me/tiny" in out


def test_onnx_command_writes_the_chosen_variant(tmp_path, capsys, tokenizer):
    from fastformers_hf.testing import tiny_model

    tiny_model("bert").save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert main(["onnx", "--model_dir", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o"),
                 "--tolerance", "100"]) == 0
    assert list((tmp_path / "o").glob("*.onnx")) and "Chosen" in capsys.readouterr().out
