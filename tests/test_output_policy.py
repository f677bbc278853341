"""The one output-folder policy (fastformers_hf.utils.io), across every command and API that writes a folder:
a user's folder is never replaced, our own output of the same kind is reused, our output of another kind only with
the overwrite flag, an output equal to / inside an input is refused, and a parent that is a file is a clear error."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastformers_hf.errors import FastFormersError
from fastformers_hf.testing import tiny_model, tiny_tokenizer, write_glue_folder
from fastformers_hf.utils.io import (OUTPUT_RECORD, atomic_output_dir, claim_output_dir, output_kind,
                                     remove_stale_temps, write_output_record)


# -- inputs shared by every writer -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from fastformers_hf import export_onnx

    root = tmp_path_factory.mktemp("policy")
    model = root / "model"
    tiny_model("bert", num_layers=2, hidden_size=32, intermediate_size=64).save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    data = write_glue_folder(root / "data", 120, 40)
    return {"model": model, "data": data, "onnx": export_onnx(model, root / "onnx")}


def _cli(module: str):
    def run(out: Path, inp: dict, overwrite: bool, *args):
        import importlib

        flag = ["--overwrite_output_dir"] if overwrite else []
        argv = [a.format(model=inp["model"], data=inp["data"], onnx=inp["onnx"]) for a in args]
        return importlib.import_module(module).main([*argv, "--output_dir", str(out), *flag])
    return run


def _prune(out, inp, overwrite):
    return _cli("fastformers_hf.commands.prune")(out, inp, overwrite, "--model_name_or_path", "{model}",
                                                 "--ffn_width", "32", "--method", "magnitude")


def _onnx(out, inp, overwrite):
    return _cli("fastformers_hf.commands.onnx")(out, inp, overwrite, "--model_dir", "{model}")


def _distill(out, inp, overwrite):
    return _cli("fastformers_hf.commands.distill")(out, inp, overwrite, "--teacher_model_name_or_path", "{model}",
                                                   "--data", "{data}", "--student_layers", "1", "--max_steps", "2",
                                                   "--report_to", "none", "--save_strategy", "no")


def _compress_dry_run(out, inp, overwrite):
    return _cli("fastformers_hf.commands.compress")(out, inp, overwrite, "--model_name_or_path", "{model}",
                                                    "--data", "{data}", "--student_layers", "1", "--dry_run")


def _export_onnx(out, inp, overwrite):
    from fastformers_hf import export_onnx

    return export_onnx(inp["model"], out, overwrite=overwrite)


def _quantize_onnx(out, inp, overwrite):
    from fastformers_hf import quantize_onnx

    return quantize_onnx(inp["onnx"], out, overwrite=overwrite)


def _optimize_onnx(out, inp, overwrite):
    from fastformers_hf import optimize_onnx

    return optimize_onnx(inp["onnx"], out, overwrite=overwrite)


def _cascade(out, inp, overwrite):
    from fastformers_hf import CascadeClassifier

    return CascadeClassifier(inp["model"], inp["onnx"]).save_pretrained(out, overwrite=overwrite)


def _plan(out, inp, overwrite):
    # plan writes into its folder over time (like training runs and benchmarks): claim_output_dir, no overwrite flag
    return _cli("fastformers_hf.commands.plan")(out, inp, False, "--model_name_or_path", "{model}",
                                                "--seq_lengths", "8", "--layers", "1", "--ratios", "1.0")


# name -> (writer, kind it records, input the output may not touch, writes a folder)
WRITERS = {
    "prune": (_prune, "prune", "model", True),
    "onnx": (_onnx, "onnx", "model", True),
    "distill": (_distill, "distill", "model", True),
    "compress --dry_run": (_compress_dry_run, "compress", "model", False),
    "export_onnx": (_export_onnx, "export_onnx", "model", True),
    "quantize_onnx": (_quantize_onnx, "quantize_onnx", "onnx", True),
    "optimize_onnx": (_optimize_onnx, "optimize_onnx", "onnx", True),
    "CascadeClassifier.save_pretrained": (_cascade, "cascade", "model", True),
}


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(path: Path) -> Path:
    tiny_model("roberta", num_layers=1).save_pretrained(path)
    (path / "my-notes.txt").write_text("do not lose me")
    return path


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".work-" in p.name)]


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_folder_is_never_replaced(name, overwrite, inputs, tmp_path):
    write = WRITERS[name][0]
    out = _users_folder(tmp_path / "out")
    before = _digest(out)
    with pytest.raises(FastFormersError, match=r"did not write \(config\.json, model\.safetensors, my-notes\.txt\)"):
        write(out, inputs, overwrite)
    assert _digest(out) == before and not _leftovers(tmp_path)


@pytest.mark.parametrize("name", WRITERS)
def test_output_equal_to_or_inside_or_around_an_input_is_refused(name, inputs, tmp_path):
    write, _, protected, _ = WRITERS[name]
    source = inputs[protected]
    before = _digest(source)
    for out, match in ((source, "is the input"), (source / "sub", "inside the input"),
                       (source.parent, "contains the input")):
        with pytest.raises(FastFormersError, match=match):
            write(out, inputs, True)
    assert _digest(source) == before


@pytest.mark.parametrize("name", WRITERS)
def test_a_parent_that_is_a_file_is_a_clear_error(name, inputs, tmp_path):
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(FastFormersError, match="plain-file is a file, not a folder"):
        WRITERS[name][0](tmp_path / "plain-file" / "out", inputs, False)


@pytest.mark.parametrize("name", WRITERS)
def test_our_output_of_another_kind_needs_the_overwrite_flag(name, inputs, tmp_path):
    write, kind, _, writes = WRITERS[name]
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    write_output_record(out, "some-other-command")
    with pytest.raises(FastFormersError, match=r"holds the output of `some-other-command`.*(--overwrite_output_dir|"
                                               r"overwrite=True)"):
        write(out, inputs, False)
    assert (out / "report.json").exists()
    write(out, inputs, True)
    if writes:
        assert output_kind(out) == kind and not (out / "report.json").exists()
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("name", WRITERS)
def test_our_output_of_the_same_kind_is_reused(name, inputs, tmp_path):
    write, kind, _, writes = WRITERS[name]
    out = tmp_path / "out"
    write(out, inputs, False)
    write(out, inputs, False)  # a rerun into its own output
    if writes:
        assert output_kind(out) == kind and (out / OUTPUT_RECORD).exists()
    assert not _leftovers(tmp_path)


def test_plan_claims_its_folder(inputs, tmp_path):
    _users_folder(tmp_path / "out")
    with pytest.raises(FastFormersError, match="did not write"):
        _plan(tmp_path / "out", inputs, False)


# -- the mechanism ---------------------------------------------------------------------------------------------------


def test_a_failed_build_leaves_the_old_output_and_no_temporary_folder(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out, "test") as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, "test") as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("build failed")
    assert (out / "a.txt").read_text() == "first" and not _leftovers(tmp_path)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_temporary_folders_of_killed_runs_are_removed_at_the_next_start(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale = [tmp_path / f".out.tmp-{dead}-abc123", tmp_path / f".out.work-{dead}-def456"]
    live = tmp_path / f".out.tmp-{alive}-0a0b0c"  # a run of this very process, still going
    for p in [*stale, live]:
        (p / "big").mkdir(parents=True)
    removed = remove_stale_temps(tmp_path / "out")
    assert sorted(removed) == sorted(stale) and live.exists()

    inside = tmp_path / "run" / f".4-onnx.tmp-{dead}-aaaaaa"  # a stage build inside a staged output
    inside.mkdir(parents=True)
    claim_output_dir(tmp_path / "run", "compress")
    assert not inside.exists() and output_kind(tmp_path / "run") == "compress"


def test_onnx_candidates_are_built_beside_the_output_not_in_the_system_temp(inputs, tmp_path, monkeypatch):
    import fastformers_hf.onnx.variants as variants
    from fastformers_hf import optimize_for_inference

    seen, original = [], variants.export_onnx

    def spy(model, save_dir, **kw):
        seen.append(Path(save_dir))
        return original(model, save_dir, **kw)

    monkeypatch.setattr(variants, "export_onnx", spy)
    optimize_for_inference(inputs["model"], tmp_path / "best")
    assert seen and all(p.parent.parent == tmp_path and p.parent.name.startswith(".best.work-") for p in seen)
    assert not _leftovers(tmp_path) and output_kind(tmp_path / "best") == "onnx"
