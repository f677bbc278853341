"""The HTTP server on an existing Ray cluster: two nodes of one CPU each (Ray's own ``cluster_utils``, on this
machine), reached by address, with one replica per node; answers equal the in-process classifier's, and more threads
than the cluster's CPUs are refused."""
import json
import socket
import urllib.request

import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.inference.classifier import TextClassifier
from fastformers_hf.serving.ray_server import ServeConfig, deploy, shutdown
from fastformers_hf.testing import tiny_model, tiny_tokenizer

ray = pytest.importorskip("ray")  # the module needs Ray Serve; nothing above imports it

TEXTS = ["the film was good", "the plot was dull", ["the music", "was great"], "the acting was weak"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_on_an_existing_cluster_puts_a_replica_on_each_node(tmp_path):
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test left Ray running in this process"
    tiny_model("bert", num_layers=2).save_pretrained(tmp_path)
    tiny_tokenizer(save_dir=tmp_path)
    expected = [p["label"] for p in TextClassifier.from_pretrained(tmp_path).predict(
        [tuple(x) if isinstance(x, list) else x for x in TEXTS])]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        # HeadOnly: both nodes share this machine's ports, so one HTTP proxy, on the head
        url = deploy(tmp_path, ServeConfig(address=cluster.address, replicas=2, port=free_port(),
                                           proxy_location="HeadOnly"))
        request = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": TEXTS}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert [o["label"] for o in json.loads(resp.read())["outputs"]] == expected
        with urllib.request.urlopen(url + "/info", timeout=60) as resp:
            assert json.loads(resp.read())["replicas"] == 2
        # Two replicas of one CPU each on two one-CPU nodes: one per node, every CPU of the cluster taken.
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        assert ray.available_resources().get("CPU", 0) == 0
        with pytest.raises(FastFormersError, match=r"3 threads, but there are 2 CPU\(s\) in the Ray cluster"):
            deploy(tmp_path, ServeConfig(address=cluster.address, replicas=3, port=free_port()))
    finally:
        shutdown()
        ray.shutdown()
        cluster.shutdown()


def test_proxy_location_is_checked():
    with pytest.raises(FastFormersError, match="proxy_location must be one of EveryNode, HeadOnly"):
        ServeConfig(proxy_location="Nowhere")
