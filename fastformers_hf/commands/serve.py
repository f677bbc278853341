"""``fastformers-hf serve``: an HTTP server on Ray Serve for a model folder, and its load test.

    fastformers-hf serve --model runs/demo/5-final [--replicas 2] [--threads_per_replica 1] [--max_batch_size 8]
        [--batch_wait_ms 2] [--ingress separate|replica] [--proxy ray|haproxy]
        [--host 127.0.0.1] [--port 8000] [--address RAY_ADDRESS]
    fastformers-hf serve bench --model runs/demo/5-final --data ../shared/data/sst2/dev.tsv --out runs/serve_bench \\
        [--task sst2] [--requests 400] [--time_limit_s 60] [--concurrency 1,2,4,8]

``serve`` answers ``POST /predict`` with ``{"inputs": [...]}``, ``GET /health`` and ``GET /info`` until Ctrl-C
(docs/serving_ray.md). ``serve bench`` starts the server on 127.0.0.1, sends one input per request at each
concurrency level, times the same deployments without a model (the floor), then runs the same model in process
(``MultiInstanceClassifier``) and writes serve_bench.json/.md. Needs Ray Serve: pip install 'fastformers-hf[serve]'.
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field

from ..errors import FastFormersError
from ..serving.ray_server import ServeConfig
from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)


@dataclass
class ModelArguments:
    model: str = field(default=None, metadata={"help": "Model folder (PyTorch or ONNX) with its tokenizer."})


def parse_args(argv: list[str]) -> tuple[str, ServeConfig]:
    """``(model folder, ServeConfig)`` from the command line."""
    args, config = HfArgumentParser((ModelArguments, ServeConfig)).parse_args_into_dataclasses(args=argv)
    if not args.model:
        raise FastFormersError("pass --model, a model folder (e.g. runs/demo/5-final).")
    return args.model, config


def serve(argv: list[str]) -> int:
    """Deploy, print the URL and block until Ctrl-C or SIGTERM; Ray Serve is shut down on the way out."""
    model, config = parse_args(argv)
    from ..serving.ray_server import deploy, shutdown

    def stop(signum, frame):  # SIGTERM (docker stop, Kubernetes) stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    try:
        url = deploy(model, config)
        signal.signal(signal.SIGTERM, stop)  # after deploy: ray.init installs a handler of its own
        print(f"serving {model} at {url}: POST {url}/predict {{\"inputs\": [...]}}, GET {url}/health, "
              f"GET {url}/info. Ctrl-C stops.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        shutdown()
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        HfArgumentParser((ModelArguments, ServeConfig)).print_help()
        return 0
    if argv and argv[0] == "bench":
        from ..serving.load_test import main as bench_main

        return bench_main(argv[1:])
    return serve(argv)
