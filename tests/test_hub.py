"""push_to_hub / compression_record_from_hub against a loopback Hub (tests/hub_server.py): the real huggingface_hub
client pushes and downloads; nothing of huggingface_hub is patched.

Pushing runs in this process (push_to_hub reads HF_ENDPOINT when called); loading by repo id runs in a subprocess,
because transformers and Optimum download through huggingface_hub, which reads HF_ENDPOINT and HF_HOME at import.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fastformers_hf.errors import FastFormersError
from fastformers_hf.hub import push_to_hub, verify_model_dir
from fastformers_hf.measurements import record_measurement
from fastformers_hf.testing import tiny_model, tiny_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402

TOKEN = "hf_test_write_token"
SENTENCES = ["a great and wonderful film", "a dull , boring mess"]
MACHINE = {"cpu": "Test CPU", "cores": 2, "python": "3.11"}


# -- fixtures ----------------------------------------------------------------------------------------------------


def _prune(model):
    """fastformers_hf.prune when it is there (uneven heads, uniform FFN so plain from_pretrained loads it);
    transformers' prune_heads + the shape record otherwise."""
    try:
        from fastformers_hf import prune
    except (ImportError, AttributeError):
        from fastformers_hf.shape_record import update_record

        model.prune_heads({0: [0, 1], 2: [3]})
        update_record(model.config, {"step": "structured_pruning", "method": "transformers.prune_heads"},
                      source_model="tiny-bert-teacher")
        return model
    return prune(model, heads_per_layer=[2, 4, 3, 4], ffn_width=48, method="magnitude")


def _onnx_int8(model_dir: Path, out: Path) -> Path:
    try:
        from fastformers_hf import export_onnx, quantize_onnx
    except (ImportError, AttributeError):
        from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        ORTModelForSequenceClassification.from_pretrained(model_dir, export=True).save_pretrained(out / "fp32")
        tiny_tokenizer().save_pretrained(out / "fp32")
        ORTQuantizer.from_pretrained(out / "fp32").quantize(
            AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False), save_dir=out / "int8")
        return out / "int8"
    export_onnx(model_dir, out / "fp32")
    return quantize_onnx(out / "fp32", out / "int8", preset="avx512_vnni")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A pruned tiny BERT with tokenizer and measurements, and its int8 ONNX variant."""
    root = tmp_path_factory.mktemp("hub")
    model = _prune(tiny_model("bert", seed=0))
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    for variant, acc, ms in (("teacher", 0.90, 10.0), ("pytorch", 0.88, 4.0)):
        record_measurement(model_dir, "accuracy", acc, dataset="sst2", split="validation", variant=variant,
                           machine=MACHINE, command="pytest")
        record_measurement(model_dir, "latency_ms", ms, unit="ms", dataset="sst2", variant=variant, batch_size=1,
                           machine=MACHINE, command="pytest")
    return {"model_dir": model_dir, "onnx_dir": _onnx_int8(model_dir, root / "onnx"), "root": root}


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    # huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import (and conftest.py switched the session
    # offline), so this process gets the values it would have read with HF_ENDPOINT=<server> set before starting.
    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _local_logits(built) -> dict[str, list]:
    from transformers import AutoTokenizer

    from fastformers_hf.onnx.graph import inference_session
    from fastformers_hf.utils.model_folder import load_pytorch_model

    tok = AutoTokenizer.from_pretrained(built["model_dir"])
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        pt = load_pytorch_model(built["model_dir"])(**batch).logits  # our loader: any recorded shape, 4.x and 5.x
    session = inference_session(built["onnx_dir"])
    ort = session.run(["logits"], {i.name: batch[i.name].numpy() for i in session.get_inputs()})[0]
    return {"pytorch": pt.tolist(), "onnx": ort.tolist()}


LOADER = textwrap.dedent("""
    import json, sys, torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        ORTModelForSequenceClassification = None
    from fastformers_hf import compression_record_from_hub

    repo, revision, token, onnx_subfolder = sys.argv[1:5]
    sentences = json.loads(sys.argv[5])
    kw = dict(revision=revision, token=token)
    tok = AutoTokenizer.from_pretrained(repo, **kw)
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        pt = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True, **kw)(**batch).logits
    if ORTModelForSequenceClassification is not None:
        ort = ORTModelForSequenceClassification.from_pretrained(repo, subfolder=onnx_subfolder, **kw)(**batch).logits
    else:  # no Optimum (transformers 5.x): the graph file straight from the Hub into onnxruntime
        import onnxruntime
        from huggingface_hub import hf_hub_download

        session = onnxruntime.InferenceSession(hf_hub_download(repo, "model.onnx", subfolder=onnx_subfolder, **kw))
        ort = torch.from_numpy(session.run(["logits"], {i.name: batch[i.name].numpy()
                                                        for i in session.get_inputs()})[0])
    pipe = pipeline("text-classification", model=repo, trust_remote_code=True, **kw)
    try:
        compression_record_from_hub("org/missing", token=token)
    except ValueError as e:
        missing = f"{type(e).__name__}: {e}"
    print(json.dumps({"pytorch": pt.tolist(), "onnx": ort.tolist(), "pipeline": pipe(sentences), "missing": missing,
                      "record": compression_record_from_hub(repo, revision=revision, token=token)}))
""")


def _load_by_repo_id(server, tmp_path, repo, revision="main", onnx_subfolder="onnx") -> dict:
    """Load the pushed model by repo id in a fresh process with a fresh cache, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([sys.executable, "-c", LOADER, repo, revision, TOKEN, onnx_subfolder, json.dumps(SENTENCES)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- round trip --------------------------------------------------------------------------------------------------


def test_push_and_load_back_by_repo_id(built, hub, tmp_path):
    before = _digest(built["model_dir"])
    url = push_to_hub(built["model_dir"], "org/tiny-pruned-int8", private=True, token=TOKEN,
                      onnx_dir=built["onnx_dir"], card_fields={"license": "apache-2.0", "language": "en"})

    # one commit on top of the repo's initial one, holding everything
    repo = hub.repos["org/tiny-pruned-int8"]
    assert repo["private"] is True
    assert url == f"{hub.url}/org/tiny-pruned-int8/commit/{repo['branches']['main']}"
    assert sum(1 for m, p in hub.requests if p.endswith("/commit/main")) == 1
    files = hub.files("org/tiny-pruned-int8")
    onnx_name = next(p.name for p in built["onnx_dir"].glob("*.onnx"))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "fastformers_measurements.json",
                 f"onnx/{onnx_name}", "onnx/config.json"):
        assert name in files, name
    assert files["model.safetensors"]["lfs"] and files[f"onnx/{onnx_name}"]["lfs"]
    assert _digest(built["model_dir"]) == before  # pushing changes nothing locally

    got = _load_by_repo_id(hub, tmp_path, "org/tiny-pruned-int8")
    local = _local_logits(built)
    np.testing.assert_array_equal(np.array(got["pytorch"]), np.array(local["pytorch"]))
    np.testing.assert_array_equal(np.array(got["onnx"]), np.array(local["onnx"]))
    expected_labels = [("negative", "positive")[int(np.argmax(r))] for r in local["pytorch"]]
    assert [p["label"] for p in got["pipeline"]] == expected_labels
    record = verify_model_dir(built["model_dir"], load=False)
    for key in ("heads_per_layer", "ffn_width_per_layer", "num_layers", "steps"):
        assert got["record"][key] == record[key]
    assert got["missing"].startswith("FastFormersError: no model repo org/missing")

    card = files["README.md"]["data"].decode()
    assert ", ".join(map(str, record["heads_per_layer"])) in card
    assert "license: apache-2.0" in card and "0.8800" in card and "2.50x faster than teacher" in card
    assert f'subfolder="onnx"' in card


def test_push_to_new_branch_with_several_onnx_variants_and_extra_folder(built, hub, tmp_path):
    cascade = tmp_path / "cascade"
    (cascade / "stage1").mkdir(parents=True)
    (cascade / "cascade_config.json").write_text(json.dumps({"threshold": 0.9}))
    (cascade / "stage1" / "notes.txt").write_text("first stage")
    fp32 = built["onnx_dir"].parent / "fp32"
    push_to_hub(built["model_dir"], "org/multi", token=TOKEN)  # main first
    push_to_hub(built["model_dir"], "org/multi", token=TOKEN, revision="v2",
                onnx_dir={"fp32": fp32, "int8": built["onnx_dir"]}, extra_dirs={"cascade": cascade})

    main, v2 = hub.files("org/multi", "main"), hub.files("org/multi", "v2")
    assert not any(p.startswith(("onnx/", "cascade/")) for p in main)
    assert {"cascade/cascade_config.json", "cascade/stage1/notes.txt", "onnx/fp32/config.json", "onnx/int8/config.json"} <= set(v2)
    card = v2["README.md"]["data"].decode()
    assert 'subfolder="onnx/int8"' in card and "`cascade/`" in card
    assert 'CascadeClassifier.from_pretrained("org/multi", subfolder="cascade")' in card

    got = _load_by_repo_id(hub, tmp_path, "org/multi", revision="v2", onnx_subfolder="onnx/fp32")
    np.testing.assert_allclose(np.array(got["onnx"]), np.array(got["pytorch"]), atol=1e-4)


# -- bad input ---------------------------------------------------------------------------------------------------


def _edit_config(model_dir: Path, edit):
    cfg = json.loads((model_dir / "config.json").read_text())
    edit(cfg)
    (model_dir / "config.json").write_text(json.dumps(cfg))


def _record_other_heads(d: Path):
    _edit_config(d, lambda c: c["fastformers"].update(heads_per_layer=[1, 1, 1, 1]))


def _unpruned_weights(d: Path):
    tiny_model("bert", seed=1).save_pretrained(d / "full")
    shutil.move(d / "full" / "model.safetensors", d / "model.safetensors")
    shutil.rmtree(d / "full")


def _no_record_and_no_pruned_heads(d: Path):
    _edit_config(d, lambda c: (c.pop("fastformers"), c.update(pruned_heads={})))


def _missing_classifier(d: Path):
    from safetensors.torch import load_file, save_file

    state = load_file(d / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, d / "model.safetensors",
              metadata={"format": "pt"})


def _token_in_a_recorded_command(d: Path):
    record_measurement(d, "accuracy", 0.5, command="train.py --hub_token hf_" + "a1B2" * 9, machine=MACHINE)


@pytest.mark.parametrize("damage, message", [
    (_token_in_a_recorded_command, "looks like a Hub access token"),
    (_record_other_heads, "does not match the weights"),
    (_unpruned_weights, "does not match the weights"),
    (_no_record_and_no_pruned_heads, "does not match the weights"),
    (_missing_classifier, "only partly"),
])
def test_push_refuses_a_bad_dir_before_any_request(built, hub, tmp_path, damage, message):
    bad = tmp_path / "bad"
    shutil.copytree(built["model_dir"], bad)
    damage(bad)
    with pytest.raises(FastFormersError, match=message):
        push_to_hub(bad, "org/bad", token=TOKEN)
    assert hub.repos == {} and hub.requests == []  # refused before any request


def test_push_without_measurements_warns_and_says_how_to_measure(built, hub, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(built["model_dir"], plain)
    (plain / "fastformers_measurements.json").unlink()
    with pytest.warns(UserWarning, match=r"no recorded measurements.*fastformers-hf compress"):
        push_to_hub(plain, "org/plain", token=TOKEN)
    card = hub.files("org/plain")["README.md"]["data"].decode()
    assert "No measurements were recorded" in card and "fastformers-hf compress" in card
    assert "model-index" not in card


@pytest.mark.parametrize("token, why", [("hf_wrong", "rejected the token"), (None, "token")])
def test_push_with_missing_or_invalid_token_fails_clearly(built, hub, monkeypatch, token, why):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(FastFormersError, match=why) as err:
        push_to_hub(built["model_dir"], "org/secret", token=token)
    assert "401" in str(err.value) or "no token" in str(err.value)
    assert "Nothing was committed" in str(err.value) and "HF_TOKEN" in str(err.value)
    assert hub.repos == {}


@pytest.mark.parametrize("fail_on, stage", [("preupload", "uploading large files"),
                                            ("lfs_batch", "uploading large files"),
                                            ("lfs_upload", "uploading large files"),  # the server dies mid-upload
                                            ("commit", "committing")])
def test_network_failure_mid_push_leaves_dir_untouched_and_reports_progress(built, hub, fail_on, stage):
    before = _digest(built["model_dir"])
    hub.fail_on, hub.fail_always = fail_on, True  # the network stays down: newer huggingface_hub clients retry
    with pytest.raises(FastFormersError, match=f"failed while {stage}") as err:
        push_to_hub(built["model_dir"], "org/flaky", token=TOKEN, onnx_dir=built["onnx_dir"])
    hub.fail_on = None
    msg = str(err.value)
    assert _digest(built["model_dir"]) == before and "was not changed" in msg
    assert "config.json" not in hub.files("org/flaky")  # nothing committed
    if fail_on == "commit":  # the large files went to LFS storage before the commit failed
        assert "Uploaded: 2 of 2 large files" in msg and "model.safetensors" in msg and "may or may not" in msg
        assert re.search(r"The other \d+ file\(s\) \(config\.json, .*went only inside that commit request", msg), msg
    elif fail_on == "lfs_upload":  # the other large file may have gone up before the connection died
        assert "RuntimeError" not in msg and "No commit was made" in msg
        assert re.search(r"(No file content had been uploaded|Uploaded: 1 of 2 large files)", msg)
        assert re.search(r"Not uploaded: \d+ file\(s\) \(config\.json, ", msg)
    else:
        assert "No file content had been uploaded" in msg and "No commit was made" in msg
        assert re.search(r"Not uploaded: \d+ file\(s\) \(config\.json, ", msg)

    push_to_hub(built["model_dir"], "org/flaky", token=TOKEN, onnx_dir=built["onnx_dir"])  # a retry just works
    assert "config.json" in hub.files("org/flaky")


def test_private_push_refuses_an_existing_public_repo(built, hub):
    push_to_hub(built["model_dir"], "org/public", token=TOKEN)
    commits = len(hub.repos["org/public"]["commits"])
    with pytest.raises(FastFormersError, match="is public"):
        push_to_hub(built["model_dir"], "org/public", private=True, token=TOKEN)
    assert len(hub.repos["org/public"]["commits"]) == commits


@pytest.mark.parametrize("kwargs, message", [
    (dict(repo_id="not a repo id!"), "not a valid Hub repo id"),
    (dict(onnx_dir="/nonexistent/onnx"), "not a directory"),
    (dict(extra_dirs={"../up": "."}), "not a plain folder name"),
    (dict(card_fields={"colour": "blue"}), "unknown card field"),
])
def test_push_rejects_bad_arguments_before_any_request(built, hub, kwargs, message):
    kwargs = {"repo_id": "org/x", **kwargs}
    with pytest.raises(FastFormersError, match=message):
        push_to_hub(built["model_dir"], token=TOKEN, **kwargs)
    assert hub.requests == []


# -- pruned shapes that need modeling_fastformers.py -------------------------------------------------------------

REMOTE_LOADER = textwrap.dedent("""
    import json, sys, torch, transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    repo, revision, token = sys.argv[1:4]
    sentences = json.loads(sys.argv[4])
    kw = dict(revision=revision, token=token, trust_remote_code=True)
    batch = AutoTokenizer.from_pretrained(repo, revision=revision, token=token)(sentences, padding=True,
                                                                              return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(repo, **kw).eval()
    with torch.no_grad():
        logits = model(**batch).logits
    pipe = pipeline("text-classification", model=repo, **kw)
    print(json.dumps({"version": transformers.__version__, "module": type(model).__module__,
                      "pipeline_module": type(pipe.model).__module__, "pytorch": logits.tolist(),
                      "pipeline": pipe(sentences)}))
""")
from fastformers_hf.testing import VENV5_PYTHON, VENV5_SETUP  # noqa: E402


@pytest.mark.filterwarnings("ignore:.*no recorded measurements:UserWarning")
@pytest.mark.parametrize("saved_with", ["save_model_folder", "save_pretrained"])
def test_a_pruned_shape_is_pushed_with_its_modeling_file_and_loads_with_trust_remote_code(hub, tmp_path, saved_with,
                                                                                        caplog):
    from fastformers_hf import prune
    from fastformers_hf.hub_code import TEMPLATE, save_model_folder
    from fastformers_hf.pruning import load_pruned

    model = prune(tiny_model("bert", seed=0), heads_per_layer=[2, 4, 3, 4], ffn_width=48, method="magnitude")
    folder = tmp_path / "pruned"
    if saved_with == "save_model_folder":  # the folder has modeling_fastformers.py and auto_map already
        save_model_folder(model, folder, tiny_tokenizer())
    else:  # it lacks them: the push adds them to the commit (and says so), the folder stays as it is
        model.save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
    before = _digest(folder)
    with caplog.at_level("WARNING", logger="fastformers_hf"):
        push_to_hub(folder, "org/pruned-remote", token=TOKEN)
    added = [r.getMessage() for r in caplog.records if "add_remote_code" in r.getMessage()]
    assert bool(added) == (saved_with == "save_pretrained"), added
    assert _digest(folder) == before
    loads_with = verify_model_dir(folder)["loads_with"]
    assert loads_with.startswith(
        "transformers.AutoModelForSequenceClassification.from_pretrained(..., trust_remote_code=True)"), loads_with
    assert _digest(folder) == before

    files = hub.files("org/pruned-remote")
    assert files["modeling_fastformers.py"]["data"] == TEMPLATE.read_bytes()
    config = json.loads(files["config.json"]["data"])
    assert config["auto_map"] == {
        "AutoModelForSequenceClassification": "modeling_fastformers.BertForSequenceClassification"}
    card = files["README.md"]["data"].decode()
    assert 'pipeline("text-classification", model="org/pruned-remote", trust_remote_code=True)' in card
    assert 'AutoModelForSequenceClassification.from_pretrained("org/pruned-remote", trust_remote_code=True)' in card

    batch = tiny_tokenizer()(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = load_pruned(folder)(**batch).logits.numpy()
    pythons = [sys.executable] + ([str(VENV5_PYTHON)] if VENV5_PYTHON.exists() else [])  # 4.x here, 5.x there
    for i, python in enumerate(pythons):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / f"hf-home-{i}"),
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
                   OMP_NUM_THREADS="1")
        out = subprocess.run([python, "-c", REMOTE_LOADER, "org/pruned-remote", "main", TOKEN, json.dumps(SENTENCES)],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (python, out.stderr[-3000:])
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["module"].endswith("modeling_fastformers") and got["pipeline_module"].endswith(
            "modeling_fastformers"), got
        np.testing.assert_allclose(np.array(got["pytorch"]), expected, rtol=0, atol=1e-5, err_msg=got["version"])
        assert [p["label"] for p in got["pipeline"]] == [("negative", "positive")[int(np.argmax(r))] for r in expected]
