"""No raw library tracebacks for files a user can break, flags named in messages about their values, and model
cards whose "How to use" snippet loads that very model (run as a user would, against the loopback Hub)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastformers_hf.errors import FastFormersError
from fastformers_hf.testing import tiny_model, tiny_tokenizer, write_glue_folder

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402

TOKEN = "hf_test_write_token"


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """A model folder whose model.safetensors was cut short (a broken download or a full disk)."""
    path = tmp_path_factory.mktemp("truncated") / "model"
    tiny_model("bert", num_layers=2).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return path


def _export_onnx(path, out):
    from fastformers_hf import export_onnx

    export_onnx(path, out)


def _onnx_cli(path, out):
    from fastformers_hf.commands import onnx

    onnx.main(["--model_dir", str(path), "--output_dir", str(out)])


def _prune_cli(path, out):
    from fastformers_hf.commands import prune

    prune.main(["--model_name_or_path", str(path), "--output_dir", str(out), "--ffn_width", "32",
                "--method", "magnitude"])


def _classifier(path, out):
    from fastformers_hf import TextClassifier

    TextClassifier.from_pretrained(path)


def _verify(path, out):
    from fastformers_hf import verify_model_dir

    verify_model_dir(path)


@pytest.mark.parametrize("entry", [_export_onnx, _onnx_cli, _prune_cli, _classifier, _verify],
                         ids=["export_onnx", "fastformers-hf onnx", "fastformers-hf prune", "TextClassifier",
                              "verify_model_dir (push)"])
def test_a_truncated_weight_file_is_a_clear_error(entry, truncated, tmp_path):
    with pytest.raises(FastFormersError, match=r"(truncated or corrupt|does not load)") as err:
        entry(truncated, tmp_path / "out")
    assert "save" in str(err.value) and not (tmp_path / "out").exists()


def test_scoring_examples_message_names_the_flag(tmp_path):
    from fastformers_hf.commands import prune

    model = tmp_path / "model"
    tiny_model("bert", num_layers=2).save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    data = write_glue_folder(tmp_path / "data", 200, 20, seed=0)
    with pytest.raises(FastFormersError, match=r"--scoring_examples 1000 must be between 1 and 199: the train split "
                                               r".* has 200 rows; pass a smaller --scoring_examples"):
        prune.main(["--model_name_or_path", str(model), "--data", str(data), "--heads_per_layer", "2",
                    "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# -- cards that load --------------------------------------------------------------------------------------------------


def _snippet(card: str) -> str:
    section = card.split("## How to use", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _uniform(model):
    from fastformers_hf import prune

    return prune(model, heads_per_layer=[2, 4, 3, 4], ffn_width=48, method="magnitude")


def _per_layer_ffn(model):
    from fastformers_hf import prune

    return prune(model, heads_per_layer=2, ffn_width=[48, 32, 40, 64], method="magnitude")


REMOTE_CODE_PIPELINE = 'pipeline("text-classification", model="org/card", trust_remote_code=True)'


# Pruned shapes are pushed with modeling_fastformers.py (transformers 5 cannot describe them natively): their
# snippet loads with trust_remote_code.
@pytest.mark.parametrize("reshape, loader", [(lambda m: m, "pipeline(\"text-classification\", model=\"org/card\")"),
                                             (_uniform, REMOTE_CODE_PIPELINE),
                                             (_per_layer_ffn, REMOTE_CODE_PIPELINE)],
                         ids=["unpruned", "uneven heads, uniform FFN", "per-layer FFN widths"])
def test_the_card_snippet_loads_that_very_model(reshape, loader, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from fastformers_hf import push_to_hub

    model_dir = tmp_path / "model"
    reshape(tiny_model("bert", seed=0)).save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    with HubServer(token=TOKEN) as hub:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        with pytest.warns(UserWarning, match="no recorded measurements"):
            push_to_hub(model_dir, "org/card", token=TOKEN)
        snippet = _snippet(hub.files("org/card")["README.md"]["data"].decode())
        assert loader in snippet
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
        code = snippet + "\nimport json\nprint(json.dumps(classifier('a short sentence to classify')))\n"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"label": "' in out.stdout.strip().splitlines()[-1]
