"""The Ray Serve HTTP server: answers equal the in-process classifier's, /health and /info, bad requests get a 4xx
with a message while serving goes on, a killed replica loses no request; the install hint without Ray; settings."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.commands import serve as serve_command
from fastformers_hf.inference.classifier import TextClassifier
from fastformers_hf.serving import load_test
from fastformers_hf.serving.ray_config import local_ray_env
from fastformers_hf.serving.ray_server import (INSTALL_HINT, ServeConfig, app_builder, deploy, deploy_floor, jsonable,
                                              shutdown)
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model, tiny_tokenizer

ray = pytest.importorskip("ray")  # the rest of the module needs Ray Serve; nothing above imports it

MAX_INPUTS = 16
TEXTS = list(make_sentiment_data(24, 1, seed=5)["train"]["sentence"]) + ["", ["the film", "was good"]]
GOOD = {"inputs": ["the film was good"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- without a server (these run first: no Ray is started) ----------------------------------------------------


def test_deploy_without_ray_gives_the_install_hint(tmp_path, monkeypatch):
    tiny_model("bert", num_layers=1).save_pretrained(tmp_path)
    tiny_tokenizer(save_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(FastFormersError, match=r"pip install 'fastformers-hf\[serve\]'") as err:
        deploy(tmp_path, ServeConfig(replicas=1, port=free_port()))
    assert INSTALL_HINT in str(err.value)
    assert shutdown() is None  # nothing to stop


def test_the_package_imports_without_ray():
    code = ("import sys; sys.modules['ray'] = None; import fastformers_hf, fastformers_hf.serving, "
            "fastformers_hf.serving.ray_server, fastformers_hf.commands.serve; "
            "from fastformers_hf.serving.ray_server import ServeConfig; ServeConfig(replicas=1)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kwargs,match", [
    (dict(replicas=0), "replicas must be >= 1"),
    (dict(threads_per_replica=0), "threads_per_replica must be an integer >= 1"),
    (dict(max_batch_size=0), "max_batch_size must be an integer >= 1"),
    (dict(max_inputs_per_request=0), "max_inputs_per_request"),
    (dict(batch_wait_ms=-1.0), "batch_wait_ms must be >= 0"),
    (dict(long_inputs="drop"), "long_inputs must be one of truncate, error"),
    (dict(oversubscribe="clamp"), "oversubscribe must be one of error, allow"),
    (dict(backend="tensorrt"), "backend must be one of auto, onnx, pytorch"),
    (dict(port=0), "port must be between 1 and 65535"),
    (dict(host=""), "host must be an address"),
    (dict(route_prefix="api"), "route_prefix must start with '/'"),
    (dict(route_prefix="/api/"), "not end with one"),
    (dict(name=""), "name"),
    (dict(ingress="proxy"), "ingress must be one of separate, replica"),
    (dict(address=""), "address must be a Ray cluster address"),
    (dict(address="auto", throughput_optimized=True), "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 in the environment of its"),
    (dict(proxy="nginx"), "proxy must be one of ray, haproxy"),
    (dict(address="auto", proxy="haproxy"), "RAY_SERVE_ENABLE_HA_PROXY=1 in the environment of its nodes"),
    (dict(replicas=os.cpu_count() * 64), r"threads, but there are \d+ physical core\(s\) on this machine.*"
                                         r"oversubscribe='allow'"),
    (dict(replicas=1, threads_per_replica=os.cpu_count() * 64), "physical core"),
])
def test_bad_settings_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        ServeConfig(**kwargs)


def test_settings_that_fit():
    assert ServeConfig(replicas=os.cpu_count() * 64, oversubscribe="allow").num_replicas(2) == os.cpu_count() * 64
    assert ServeConfig(address="ray://head:10001", replicas=1000).replicas == 1000  # checked against the cluster
    assert ServeConfig().num_replicas(8) == 8
    assert ServeConfig(threads_per_replica=2, oversubscribe="allow").num_replicas(8) == 4
    with pytest.raises(FastFormersError, match=r"6 threads, but there are 4 CPU\(s\) in the Ray cluster"):
        ServeConfig(address="auto", replicas=3, threads_per_replica=2).check_cores(4, "CPU(s) in the Ray cluster")


def test_local_ray_env_switches_only_what_is_asked(monkeypatch):
    for name in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S",
                 "RAY_SERVE_HAPROXY_RETRY_ON", "RAY_SERVE_HAPROXY_RETRIES", "RAY_SERVE_HAPROXY_NBTHREAD"):
        monkeypatch.delenv(name, raising=False)
    env = local_ray_env(ServeConfig())
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env and "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in env
    assert env["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] == "30"
    monkeypatch.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "90")  # the user's own value stays
    env = local_ray_env(ServeConfig(proxy="haproxy", throughput_optimized=True))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert "empty-response" in env["RAY_SERVE_HAPROXY_RETRY_ON"] and env["RAY_SERVE_HAPROXY_RETRIES"] == "2"
    assert env["RAY_SERVE_HAPROXY_NBTHREAD"] == "1"
    assert "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S" not in env


def test_command_line(tmp_path, capsys):
    assert serve_command.main(["--help"]) == 0
    assert "serve bench" in capsys.readouterr().out
    model, config = serve_command.parse_args(["--model", "runs/x", "--replicas", "2", "--threads_per_replica", "1",
                                              "--max_batch_size", "16", "--batch_wait_ms", "5", "--port", "8123",
                                              "--address", "auto"])
    assert model == "runs/x"
    assert (config.replicas, config.max_batch_size, config.batch_wait_ms, config.port, config.address) == \
           (2, 16, 5.0, 8123, "auto")
    assert config.ingress == "separate"
    assert serve_command.parse_args(["--model", "m", "--ingress", "replica"])[1].ingress == "replica"
    assert config.proxy == "ray" and serve_command.parse_args(["--model", "m", "--proxy", "haproxy"])[1].proxy == \
           "haproxy"
    with pytest.raises(FastFormersError, match="pass --model"):
        serve_command.parse_args([])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FastFormersError, match="not empty; pass --overwrite"):
        serve_command.main(["bench", "--model", "m", "--data", "d", "--out", str(tmp_path / "out")])
    with pytest.raises(FastFormersError, match="--concurrency must be comma-separated"):
        serve_command.main(["bench", "--model", "m", "--data", "d", "--concurrency", "1,x"])


def test_serve_bench_writes_its_report_with_the_floor(tmp_path):
    """The whole command on a tiny folder: every level's requests answered, the floor timed, the report written."""
    from fastformers_hf.testing import write_glue_folder

    folder = tmp_path / "model"
    tiny_model("bert", num_layers=1).save_pretrained(folder)
    tiny_tokenizer(save_dir=folder)
    data = write_glue_folder(tmp_path / "data", num_train=4, num_dev=12)
    out = tmp_path / "report"
    assert serve_command.main(["bench", "--model", str(folder), "--data", str(data), "--out", str(out),
                               "--requests", "6", "--concurrency", "1,2", "--replicas", "1", "--port",
                               str(free_port()), "--ingress", "replica", "--oversubscribe", "allow"]) == 0
    report = json.loads((out / "serve_bench.json").read_text())
    assert [(r["concurrency"], r["ok"], r["errors"]) for r in report["server"]["levels"]] == [(1, 6, 0), (2, 6, 0)]
    floor = report["server"]["floor"]
    assert (floor["concurrency"], floor["ok"], floor["errors"]) == (1, 6, 0)
    assert report["ratios"]["p99_c1_minus_floor_p99_ms"] == pytest.approx(
        report["server"]["levels"][0]["p99_ms"] - floor["p99_ms"])
    assert report["settings"]["ingress"] == "replica"
    assert "Floor (the same deployments" in (out / "serve_bench.md").read_text()
    assert not ray.is_initialized()  # the command stopped the Ray instance it started


# -- one server for the rest of the module ----------------------------------------------------------------------


CHOICES = [{"context": "the film was good", "choices": ["the plot was great", "the music was dull"]},
           ["the acting was weak", ["the cast was bad", "the script was charming", "the end"]]]
QUESTIONS = [{"question": "what was good ?", "context": "the film was really good but the acting was weak ."},
             ["what was dull ?", "the plot was dull , the music was great ."]]
ENTITY_TEXTS = ["john smith lives in paris", "the film was good"]


@pytest.fixture(scope="module")
def kind_folders(tmp_path_factory):
    """Tiny question-answering, token-classification and multiple-choice folders, saved with their tokenizer."""
    import torch
    from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoModelForTokenClassification

    from fastformers_hf.tasks.synthetic import VOCABULARY
    from fastformers_hf.testing import tiny_config

    root = tmp_path_factory.mktemp("kinds")
    tok = tiny_tokenizer(VOCABULARY + ["what", "?", ",", "john", "smith", "lives", "in", "paris"])
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    for name, auto, num_labels in (("question_answering", AutoModelForQuestionAnswering, 2),
                                   ("token_classification", AutoModelForTokenClassification, len(labels)),
                                   ("multiple_choice", AutoModelForMultipleChoice, 2)):
        config = tiny_config("bert", num_layers=2, vocab_size=len(tok.get_vocab()), num_labels=num_labels,
                             initializer_range=0.5)
        if name == "token_classification":
            config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
        auto.from_config(config).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


@pytest.mark.parametrize("kind, inputs, bad, bad_message", [
    ("question_answering", QUESTIONS, ["no context"], "this server holds a question answering model"),
    ("token_classification", ENTITY_TEXTS, [["a", "pair"]], "this server holds a token classification model"),
    ("multiple_choice", CHOICES, ["no choices"], "this server holds a multiple choice model"),
])
def test_a_replica_answers_every_kind_as_in_process(kind_folders, kind, inputs, bad, bad_message, monkeypatch):
    """The model replica's code, run here without Ray Serve: a merged batch of two requests is answered per request
    with what the in-process predictor gives; an input of another kind is refused naming the server's kind."""
    import torch

    from fastformers_hf.serving.replica import ModelReplica
    from fastformers_hf.serving.worker import load_predictor

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the replica sets them for its own process
        monkeypatch.setenv(var, os.environ.get(var, ""))
    threads = torch.get_num_threads()
    spec = {"model_dir": str(kind_folders / kind), "backend": "pytorch", "threads": 1, "cpus": [], "kind": kind,
            "max_length": None, "sort_by_length": True}
    try:
        replica = ModelReplica(spec, max_batch_size=4, batch_wait_s=0.002, long_inputs="error")
        got = replica._answer_requests([replica._validate(inputs[:1]), replica._validate(inputs[1:])])
        reference = load_predictor(spec).predict(inputs)
        with pytest.raises(FastFormersError, match=bad_message):
            replica._validate(bad)
        if kind == "multiple_choice":  # the token limit applies to each (context, choice) pair
            with pytest.raises(FastFormersError, match=r"exceed the model's \d+ tokens \(first: input 1"):
                replica._validate([CHOICES[0], ["the film", ["good " * 600, "bad"]]])
    finally:
        torch.set_num_threads(threads)
    assert [len(r) for r in got] == [1, len(inputs) - 1]
    assert json.loads(json.dumps(got[0] + got[1])) == json.loads(json.dumps(jsonable(reference)))


@pytest.fixture(scope="module", params=[("separate", "ray"), ("replica", "ray"), ("replica", "haproxy")],
                ids=lambda p: "-".join(p))
def server(tmp_path_factory, request):
    """A tiny sentiment classifier folder served by 2 replicas x 1 thread on 127.0.0.1, with the routes in an
    ingress deployment ("separate") or in the replicas themselves ("replica"), behind Ray's proxy or HAProxy."""
    ingress, proxy = request.param
    folder = tmp_path_factory.mktemp("served")
    tiny_model("bert", num_layers=2).save_pretrained(folder)
    tiny_tokenizer(save_dir=folder)
    config = ServeConfig(replicas=2, threads_per_replica=1, max_batch_size=4, port=free_port(), long_inputs="error",
                         max_inputs_per_request=MAX_INPUTS, oversubscribe="allow",  # allow: runs on one core too
                         ingress=ingress, proxy=proxy)
    before = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY")
    url = deploy(folder, config)
    try:
        yield SimpleNamespace(url=url, folder=folder, config=config)
    finally:
        shutdown()
    assert os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == before  # the next local instance starts as before


def call(url: str, path: str, body=None, method: str | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method or ("GET" if data is None else "POST"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:  # not ours: Ray's proxy answers a request whose replica died with plain text
            return err.code, {"not_json": text.decode(errors="replace")}


def test_answers_equal_the_in_process_classifier(server):
    clf = TextClassifier.from_pretrained(server.folder)
    probs = clf.predict_proba([tuple(x) if isinstance(x, list) else x for x in TEXTS])
    labels = [p["label"] for p in clf.predict([tuple(x) if isinstance(x, list) else x for x in TEXTS])]
    outputs = []
    for i in range(0, len(TEXTS), MAX_INPUTS):
        status, body = call(server.url, "/predict", {"inputs": TEXTS[i:i + MAX_INPUTS]})
        assert status == 200, body
        outputs += body["outputs"]
    assert [o["label"] for o in outputs] == labels
    names = [clf.id2label[i] for i in range(len(clf.id2label))]
    np.testing.assert_allclose([[o["probabilities"][n] for n in names] for o in outputs], probs, atol=1e-5)
    np.testing.assert_allclose([o["score"] for o in outputs], probs.max(-1), atol=1e-5)
    # Concurrent one-input requests are batched together by the replicas; each still gets its own answer.
    answers = [None] * 8

    def send(i):
        answers[i] = call(server.url, "/predict", {"inputs": [TEXTS[i]]})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a[0] for a in answers] == [200] * 8
    np.testing.assert_allclose([a[1]["outputs"][0]["probabilities"][names[1]] for a in answers], probs[:8, 1],
                               atol=1e-5)


def test_health_and_info(server):
    assert call(server.url, "/health") == (200, {"status": "ok"})
    status, info = call(server.url, "/info")
    assert status == 200
    assert info["model_dir"] == str(server.folder) and info["kind"] == "sequence_classification"
    assert info["shape"] == {"layers": 2, "heads": [4, 4], "ffn": [64, 64], "hidden_size": 32}
    assert info["variant"] == {"backend": "pytorch", "onnx_variant": None}
    assert info["replicas"] == 2 and info["threads_per_replica"] == 1 and info["max_length"] == 128
    assert info["ingress"] == server.config.ingress and info["proxy"] == server.config.proxy
    import torch
    import transformers

    assert info["versions"]["ray"] == ray.__version__ and info["versions"]["torch"] == torch.__version__
    assert info["versions"]["transformers"] == transformers.__version__ and info["versions"]["fastformers_hf"]


BAD_REQUESTS = [
    ("/predict", b"{not json", None, 400, "not JSON"),
    ("/predict", {"input": ["the film"]}, None, 400, r"keys \['input'\], with no 'inputs'"),
    ("/predict", ["the film"], None, 400, "JSON list, with no 'inputs'"),
    ("/predict", {"inputs": "the film"}, None, 400, "must be a list"),
    ("/predict", {"inputs": []}, None, 400, "empty list"),
    ("/predict", {"inputs": ["fine", None]}, None, 400, "input 1 is a NoneType, not text"),
    ("/predict", {"inputs": [3]}, None, 400, "input 0 is a int, not text"),
    ("/predict", {"inputs": [["a", "b", "c"]]}, None, 400, "input 0 is a list of 3 item"),
    ("/predict", {"inputs": [{"question": "q", "context": "c"}]}, None, 400, "pipeline form|dict with keys"),
    ("/predict", {"inputs": ["the film"] * (MAX_INPUTS + 1)}, None, 413, f"at most {MAX_INPUTS}"),
    ("/predict", {"inputs": ["fine", "good " * 300]}, None, 400, "input 1, 302 tokens"),
    ("/predict", None, "GET", 405, "takes POST"),
    ("/nowhere", None, "GET", 404, "no route /nowhere"),
]


@pytest.mark.parametrize("path,body,method,status,message", BAD_REQUESTS, ids=[m for *_, m in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_a_message_and_serving_goes_on(server, path, body, method, status, message):
    got, answer = call(server.url, path, body, method)
    assert got == status and set(answer) == {"error"}
    assert re.search(message, answer["error"]), answer["error"]
    got, answer = call(server.url, "/predict", GOOD)
    assert got == 200 and len(answer["outputs"]) == 1


def test_load_test_levels_count_every_request(server):
    rows = [load_test.run_level(server.url, TEXTS, c, requests=10, time_limit_s=30) for c in (1, 3)]
    for row, c in zip(rows, (1, 3)):
        assert (row["concurrency"], row["requests_sent"], row["ok"], row["errors"]) == (c, 10, 10, 0)
        assert row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    bounded = load_test.run_level(server.url, TEXTS, 1, requests=10 ** 6, time_limit_s=0.5)
    assert bounded["stopped_by_time_limit"] and bounded["ok"] == bounded["requests_sent"] < 10 ** 6
    several = load_test.run_level(server.url, TEXTS, 2, requests=6, time_limit_s=30, inputs_per_request=4)
    assert (several["ok"], several["errors"]) == (6, 0)
    assert several["inputs_per_s"] == pytest.approx(4 * several["requests_per_s"])


def test_load_test_report(server):
    row = {**load_test.run_level(server.url, TEXTS, 1, requests=5, time_limit_s=30, inputs_per_request=2),
           "other_load_cores": 0.1, "disturbed": False}
    in_process = {"layout": {"instances": 2, "threads": 1, "backend": "pytorch"},
                  "batch1": {"inputs": 5, "p50_ms": 1.0, "p99_ms": 2.0},
                  "throughput": [{"batch_size": 1, "inputs_per_s": 100.0}, {"batch_size": 4, "inputs_per_s": 400.0}]}
    in_process["best"] = in_process["throughput"][1]
    ratios = load_test.compare({"levels": [row]}, in_process)
    assert ratios["throughput_ratio"] == pytest.approx(2 * row["requests_per_s"] / 400.0)  # inputs, not requests
    assert ratios["p99_c1_minus_in_process_batch1_p99_ms"] == pytest.approx(row["p99_ms"] - 2.0)
    assert ratios["floor_p99_c1_ms"] is None and ratios["p99_c1_minus_floor_p99_ms"] is None
    floor = {**row, "p99_ms": row["p99_ms"] - 0.5}
    with_floor = load_test.compare({"levels": [row], "floor": floor}, in_process)
    assert with_floor["p99_c1_minus_floor_p99_ms"] == pytest.approx(0.5)
    report = {"model": "m", "command": "c", "settings": {"replicas": 2, "threads_per_replica": 1, "max_batch_size": 4,
              "batch_wait_ms": 2.0}, "backend": "pytorch", "data": "d", "task": "sst2", "distinct_inputs": 3,
              "requests": 5, "inputs_per_request": 2, "time_limit_s": 30.0, "server": {"levels": [row]}, "in_process": in_process,
              "ratios": ratios, "machine": {"cpu": "a CPU"}, "load_average_before": [0.5, 0.4, 0.3],
              "load_average_after": [0.6, 0.4, 0.3]}
    text = load_test.report_markdown(report)
    assert "| 1 | 5 | 0 |" in text and "batch 4: 400.0 inputs/s" in text and "a CPU" in text
    assert "2 input(s) per request" in text and "Floor" not in text
    text = load_test.report_markdown({**report, "server": {"levels": [row], "floor": floor}, "ratios": with_floor})
    assert "Floor (the same deployments" in text and "0.50 ms above the floor's" in text


def test_the_floor_application_answers_without_a_model(server):
    """The load test's floor: the same routes and deployments, every output None, bad requests refused alike."""
    from ray import serve

    url = deploy_floor(server.config)
    try:
        assert url == server.url.rstrip("/") + "/floor"
        assert call(url, "/predict", {"inputs": ["a", "b", ["c", "d"]]}) == (200, {"outputs": [None] * 3})
        got, answer = call(url, "/predict", {"inputs": []})
        assert got == 400 and "empty list" in answer["error"]
        status, info = call(url, "/info")
        assert status == 200 and info["variant"]["backend"] == "none" and info["ingress"] == server.config.ingress
        row = load_test.run_level(url, TEXTS, 1, requests=5, time_limit_s=30)
        assert (row["ok"], row["errors"]) == (5, 0)
        assert call(server.url, "/predict", GOOD)[0] == 200  # the model's application is untouched
    finally:
        serve.delete(f"{server.config.name}-floor")


def test_application_builder_for_serve_run_and_kuberay(server):
    from ray import serve

    app = app_builder({"model_dir": str(server.folder), "replicas": "1", "max_batch_size": "4", "batch_wait_ms": "1.5"})
    assert isinstance(app, serve.Application)
    for args, match in [({"replicas": "1"}, "pass model_dir"),
                        ({"model_dir": "m", "replica": "1"}, r"unknown args \['replica'\]"),
                        ({"model_dir": "m", "replicas": "two"}, "replicas must be a int"),
                        ({"model_dir": str(server.folder), "replicas": "4096"}, r"CPU\(s\) in the Ray cluster")]:
        with pytest.raises(FastFormersError, match=match):
            app_builder(args)


def test_a_killed_replica_loses_no_request(server):
    from ray import serve

    handle = serve.get_deployment_handle("model", app_name=server.config.name)
    pids = set()
    for _ in range(60):
        pids.add(handle.pid.remote().result(timeout_s=30))
        if len(pids) == 2:
            break
    assert len(pids) == 2
    results, lost = [], []
    # Heavier requests (16 inputs of ~80 tokens): more of them are running on the replica when it dies.
    body = {"inputs": [" ".join(TEXTS[:10])[:400]] * MAX_INPUTS}

    def sender(n: int):
        for _ in range(n):
            try:
                results.append(call(server.url, "/predict", body))
            except Exception as err:  # no answer at all: lost
                lost.append(repr(err))

    threads = [threading.Thread(target=sender, args=(10,)) for _ in range(5)]  # 50 requests
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(results) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(min(pids), signal.SIGKILL)
    for t in threads:
        t.join(timeout=120)
    assert lost == [] and len(results) == 50
    for status, answer in results:  # answered, or an error: never dropped
        if status == 200:
            assert len(answer["outputs"]) == MAX_INPUTS
        elif server.config.ingress == "separate":  # sent again, then 503 with our message
            assert status >= 500 and answer["error"], (status, answer)
        else:  # the proxy answers a request whose replica died
            assert status >= 500, (status, answer)
    assert sum(status == 200 for status, _ in results) >= 40
    assert call(server.url, "/predict", GOOD)[0] == 200
    assert call(server.url, "/health") == (200, {"status": "ok"})
