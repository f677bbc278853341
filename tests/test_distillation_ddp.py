import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

SCRIPT = Path(__file__).with_name("ddp_distill_script.py")


def _free_port() -> int:
    with socket.socket() as s:  # not torchrun's fixed 29500, which another job on the machine may hold
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, out):
    proc = subprocess.run(cmd + [str(SCRIPT), str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate CLI not installed")
def test_ddp_distillation_matches_single_process_in_kind(tmp_path):
    single = _run([sys.executable], tmp_path / "single")
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    # accelerate 1.15's `launch --cpu` starts one process whatever --num_processes says; `--multi_gpu` with
    # use_cpu=True in the script starts two processes under torchrun that train with DDP over gloo on the CPU.
    ddp = _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--main_process_port", str(_free_port()),
                "--mixed_precision", "no", "--dynamo_backend", "no"], tmp_path / "ddp")
    assert len(single) == 1 and single[0]["world_size"] == 1
    assert len(ddp) == 2 and all(r["world_size"] == 2 for r in ddp)
    for run in (single[0], ddp[0]):
        losses = [h["loss"] for h in run["log_history"] if "loss" in h]
        hidden = [h["hidden_loss"] for h in run["log_history"] if "hidden_loss" in h]
        assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
        assert hidden[-1] < hidden[0]
    # projections outside DDP are still kept in sync across processes
    assert math.isclose(ddp[0]["projection_sum"], ddp[1]["projection_sum"], rel_tol=1e-6)
    for out in ("single", "ddp"):
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / out)
        assert model.config.num_hidden_layers == 2
