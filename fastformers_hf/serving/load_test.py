"""``fastformers-hf serve bench``: a bounded load test of the Ray Serve HTTP server, beside the same model in process.

The server (:func:`~fastformers_hf.serving.ray_server.deploy`, on 127.0.0.1) gets one input per request from a
pool of ``concurrency`` client threads (standard library ``http.client``, one kept-alive connection each) at each
concurrency level, each level bounded by a request count and a time limit. Then the same folder runs in process
through :class:`~fastformers_hf.serving.multi_instance.MultiInstanceClassifier` with the server's replicas x
threads: batch-1 latency per input, and throughput at the best of batch 1 and ``max_batch_size``. The client
threads share the machine with the server, as a client on the same host would. Writes ``serve_bench.json`` and
``serve_bench.md`` (built in a temporary folder, then moved into ``--out``).
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import numpy as np

from ..errors import FastFormersError
from ..utils.argparsing import HfArgumentParser
from .ray_server import ServeConfig

REPORT_JSON, REPORT_MD = "serve_bench.json", "serve_bench.md"
OUTPUT_KIND = "serve_bench"


@dataclass
class LoadTestArguments:
    model: str = field(default=None, metadata={"help": "Model folder (PyTorch or ONNX) with its tokenizer."})
    data: str = field(default=None, metadata={"help": "A .tsv/.csv/.jsonl file or a folder of GLUE files."})
    task: str = field(default="sst2", metadata={"help": "Task name: which columns hold the text."})
    split: str = field(default="validation", metadata={"help": "Split of a folder (train or validation)."})
    sample_size: int = field(default=256, metadata={"help": "Distinct inputs read from --data (sent in turn)."})
    requests: int = field(default=400, metadata={"help": "Requests per concurrency level."})
    inputs_per_request: int = field(default=1, metadata={"help": "Inputs in each request (a client that batches "
                                                                 "its own inputs); at most max_inputs_per_request."})
    time_limit_s: float = field(default=60.0, metadata={"help": "Seconds per concurrency level at most."})
    concurrency: str = field(default="1,2,4,8", metadata={"help": "Comma-separated client threads per level."})
    out: str = field(default="runs/serve_bench", metadata={"help": "Folder for serve_bench.json and .md."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty --out (only our own report)."})
    floor: bool = field(default=True, metadata={"help": "Also time, at concurrency 1, the same deployments with no "
                        "model (every output None at once): what a request costs apart from the model."})

    def __post_init__(self):
        if self.requests < 1 or self.sample_size < 1 or self.time_limit_s <= 0 or self.inputs_per_request < 1:
            raise FastFormersError("requests, sample_size and inputs_per_request must be >= 1 and time_limit_s > 0.")


def concurrency_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise FastFormersError(f"--concurrency must be comma-separated integers, e.g. 1,2,4,8; got {text!r}.") from None
    if not levels or min(levels) < 1:
        raise FastFormersError(f"--concurrency levels must be >= 1, got {text!r}.")
    return levels


def _percentiles(seconds: list[float]) -> dict[str, Optional[float]]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def run_level(url: str, inputs: list, concurrency: int, requests: int, time_limit_s: float,
              inputs_per_request: int = 1) -> dict[str, Any]:
    """Send up to ``requests`` requests (``inputs_per_request`` inputs each, taken in turn from ``inputs``) to
    ``url``/predict from ``concurrency`` threads, stopping early at ``time_limit_s``; throughput (requests and
    inputs per second), latency percentiles per request and errors."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/predict"
    lock = threading.Lock()
    state = {"sent": 0}
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + time_limit_s

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=max(30.0, time_limit_s))
        try:
            while True:
                with lock:
                    if state["sent"] >= requests or time.perf_counter() >= deadline:
                        return
                    i = state["sent"]
                    state["sent"] += 1
                body = json.dumps({"inputs": [inputs[(i * inputs_per_request + j) % len(inputs)]
                                              for j in range(inputs_per_request)]})
                t0 = time.perf_counter()
                try:
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    error = None if resp.status == 200 else f"{resp.status}: {data[:200].decode(errors='replace')}"
                except (OSError, http.client.HTTPException) as err:
                    conn.close()  # reconnect on the next request
                    error = f"{type(err).__name__}: {err}"
                elapsed = time.perf_counter() - t0
                with lock:
                    (errors.append(error) if error else latencies.append(elapsed))
        finally:
            conn.close()

    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests_sent": state["sent"], "ok": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "stopped_by_time_limit": state["sent"] < requests, "wall_s": wall,
            "requests_per_s": len(latencies) / wall, "inputs_per_s": len(latencies) * inputs_per_request / wall,
            **_percentiles(latencies)}


def _own_pids() -> list[int]:
    """This process's descendants: the local Ray instance and its replicas (their CPU is the server's)."""
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True)]


def measure_server(model_dir: str, inputs: list, config: ServeConfig, levels: list[int], requests: int,
                   time_limit_s: float, inputs_per_request: int = 1, floor: bool = False) -> dict[str, Any]:
    """Deploy on 127.0.0.1, warm up, run every concurrency level, then (``floor``) concurrency 1 against the same
    deployments without a model; shut down."""
    from ..utils.timing import LoadMonitor
    from .ray_server import deploy, deploy_floor, shutdown

    def level(url: str, c: int) -> dict[str, Any]:
        with LoadMonitor(_own_pids()) as monitor:
            row = run_level(url, inputs, c, requests, time_limit_s, inputs_per_request)
        return {**row, **monitor.summary()}

    url = deploy(model_dir, config)
    try:
        run_level(url, inputs, min(levels), min(len(inputs), 20), time_limit_s, inputs_per_request)  # warm-up
        rows = [level(url, c) for c in levels]
        floor_row = None
        if floor:
            floor_url = deploy_floor(config)
            run_level(floor_url, inputs, 1, min(len(inputs), 20), time_limit_s, inputs_per_request)  # warm-up
            floor_row = level(floor_url, 1)
    finally:
        shutdown()
    return {"url": url, "levels": rows, "floor": floor_row}


def measure_in_process(model_dir: str, inputs: list, config: ServeConfig, requests: int) -> dict[str, Any]:
    """The same folder through MultiInstanceClassifier, laid out as the server: batch-1 latency per input, and
    throughput at batch 1 and at ``max_batch_size``."""
    from ..utils.timing import LoadMonitor
    from .cores import physical_cores
    from .multi_instance import MultiInstanceClassifier, RuntimeConfig

    runtime = RuntimeConfig(num_instances=config.num_replicas(len(physical_cores())),
                            threads_per_instance=config.threads_per_replica, backend=config.backend,
                            long_inputs=config.long_inputs,
                            oversubscribe="clamp" if config.oversubscribe == "allow" else "error")
    sample = [inputs[i % len(inputs)] for i in range(requests)]
    with MultiInstanceClassifier(model_dir, runtime) as pool:
        pool.predict(sample[:max(8, 2 * pool.plan.num_instances)])  # warm-up
        seconds = []
        with LoadMonitor(pool.pids) as b1_monitor:
            for x in sample[:min(requests, 200)]:
                t0 = time.perf_counter()
                pool.predict([x])
                seconds.append(time.perf_counter() - t0)
        batch1 = {"inputs": len(seconds), **_percentiles(seconds), **b1_monitor.summary()}
        throughput = []
        for bs in sorted({1, config.max_batch_size}):
            with LoadMonitor(pool.pids) as monitor:
                t0 = time.perf_counter()
                pool.predict(sample, batch_size=bs)
                wall = time.perf_counter() - t0
            throughput.append({"batch_size": bs, "inputs": len(sample), "inputs_per_s": len(sample) / wall,
                               **monitor.summary()})
        plan = {"instances": pool.plan.num_instances, "threads": pool.plan.threads_per_instance,
                "backend": pool.backend}
    return {"layout": plan, "batch1": batch1, "throughput": throughput,
            "best": max(throughput, key=lambda r: r["inputs_per_s"])}


def compare(server: dict[str, Any], in_process: dict[str, Any]) -> dict[str, Any]:
    """The server's best throughput over the in-process best, and its p99 at concurrency 1 minus the in-process
    batch-1 p99 (what HTTP, Ray's proxy and the batching wait add to one request)."""
    levels = server["levels"]
    best = max(levels, key=lambda r: r["inputs_per_s"])
    one = next((r for r in levels if r["concurrency"] == 1), None)
    p99 = in_process["batch1"]["p99_ms"]
    floor = (server.get("floor") or {}).get("p99_ms")
    return {"server_best_concurrency": best["concurrency"], "server_best_requests_per_s": best["requests_per_s"],
            "server_best_inputs_per_s": best["inputs_per_s"],
            "in_process_best_inputs_per_s": in_process["best"]["inputs_per_s"],
            "throughput_ratio": best["inputs_per_s"] / in_process["best"]["inputs_per_s"],
            "p99_c1_minus_in_process_batch1_p99_ms": (one["p99_ms"] - p99) if one and one["p99_ms"] is not None
            and p99 is not None else None,
            "floor_p99_c1_ms": floor,
            "p99_c1_minus_floor_p99_ms": (one["p99_ms"] - floor) if one and one["p99_ms"] is not None
            and floor is not None else None}


def _fmt(x: Any, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The Markdown page of a report."""
    from ..measurements import machine_text

    s, ip, r = report["settings"], report["in_process"], report["ratios"]
    lines = [f"# HTTP serving load test: {report['model']}", "",
             f"Command: `{report['command']}`", "",
             f"Server: Ray Serve on 127.0.0.1 (ingress: {s.get('ingress', 'separate')}, proxy: {s.get('proxy', 'ray')}, throughput-optimized: {'on' if s.get('throughput_optimized') else 'off'}), {s['replicas']} replica(s) x {s['threads_per_replica']} thread(s), "
             f"dynamic batching up to {s['max_batch_size']} requests with {s['batch_wait_ms']} ms wait, backend "
             f"{report['backend']}. {report['inputs_per_request']} input(s) per request from {report['data']} "
             f"(task {report['task']}, "
             f"{report['distinct_inputs']} distinct inputs); at most {report['requests']} requests and "
             f"{report['time_limit_s']:g} s per level. The client threads run on the same machine.", "",
             "| concurrency | requests ok | errors | requests/s | inputs/s | p50 ms | p99 ms | other load (cores) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["server"]["levels"]:
        lines.append(f"| {row['concurrency']} | {row['ok']} | {row['errors']} | {_fmt(row['requests_per_s'])} | "
                     f"{_fmt(row['inputs_per_s'])} | "
                     f"{_fmt(row['p50_ms'], 2)} | {_fmt(row['p99_ms'], 2)} | {row['other_load_cores']:.2f}"
                     f"{' (disturbed)' if row['disturbed'] else ''} |")
    b1 = ip["batch1"]
    lines += ["", f"In process (`MultiInstanceClassifier`, {ip['layout']['instances']} instance(s) x "
                  f"{ip['layout']['threads']} thread(s), {ip['layout']['backend']}): batch 1 p50 "
                  f"{_fmt(b1['p50_ms'], 2)} ms, p99 {_fmt(b1['p99_ms'], 2)} ms per input over {b1['inputs']} inputs; "
                  "throughput " + ", ".join(f"batch {t['batch_size']}: {t['inputs_per_s']:.1f} inputs/s"
                                            for t in ip["throughput"]) + ".", "",
              f"Server best / in process best throughput: **{r['throughput_ratio']:.2f}** "
              f"({r['server_best_inputs_per_s']:.1f} inputs/s at concurrency "
              f"{r['server_best_concurrency']} vs "
              f"{r['in_process_best_inputs_per_s']:.1f} inputs/s). Server p99 at concurrency 1 minus in-process "
              f"batch-1 p99: **{_fmt(r['p99_c1_minus_in_process_batch1_p99_ms'], 2)} ms**.", ""]
    floor = report["server"].get("floor")
    if floor:
        lines += [f"Floor (the same deployments and client with no model: every output `None` at once; "
                  f"{floor['ok']} requests ok, {floor['errors']} errors): concurrency 1 p50 "
                  f"{_fmt(floor['p50_ms'], 2)} ms, p99 {_fmt(floor['p99_ms'], 2)} ms. The server's p99 at "
                  f"concurrency 1 is {_fmt(r.get('p99_c1_minus_floor_p99_ms'), 2)} ms above the floor's; in "
                  f"process one input takes p99 {_fmt(b1['p99_ms'], 2)} ms.", ""]
    lines += [
              f"Machine: {machine_text(report['machine'])}. Load average (1, 5, 15 min) before: "
              f"{', '.join(f'{x:.2f}' for x in report['load_average_before'])}; after: "
              f"{', '.join(f'{x:.2f}' for x in report['load_average_after'])}.", ""]
    return "\n".join(lines)


def check_out(out: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out`` unless ``overwrite``."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise FastFormersError(f"--out {out} exists and is not empty; pass --overwrite to replace the report there, "
                               "or choose another folder.")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, config = HfArgumentParser((LoadTestArguments, ServeConfig)).parse_args_into_dataclasses(args=argv)
    if not args.model or not args.data:
        raise FastFormersError("pass --model (a model folder) and --data (a file or folder of your inputs).")
    if config.address is not None:
        raise FastFormersError("serve bench runs its own server on this machine; leave out --address.")
    config = dataclasses.replace(config, host="127.0.0.1")
    if args.inputs_per_request > config.max_inputs_per_request:
        raise FastFormersError(f"--inputs_per_request {args.inputs_per_request} is over the server's "
                               f"--max_inputs_per_request {config.max_inputs_per_request}; raise that or send fewer.")
    levels = concurrency_levels(args.concurrency)
    check_out(args.out, args.overwrite)
    from ..commands.bench import sample_texts  # the inputs `fastformers-hf bench throughput` reads
    from ..measurements import machine_description
    from ..utils.io import atomic_output_dir, write_json
    from .cores import physical_cores

    inputs = sample_texts(args)
    load_before = list(os.getloadavg())
    print(f"serve bench: {len(inputs)} inputs, concurrency {levels}, {args.requests} requests per level", flush=True)
    # In process first, on a machine Ray has not started on yet: after the server, Ray's processes take seconds
    # to wind down and would load the in-process reference.
    in_process = measure_in_process(args.model, inputs, config, args.requests)
    print("serve bench: in process done; now the server", flush=True)
    server = measure_server(args.model, inputs, config, levels, args.requests, args.time_limit_s,
                            args.inputs_per_request, floor=args.floor)
    settings = {**dataclasses.asdict(config), "replicas": config.num_replicas(len(physical_cores()))}
    report = {"model": str(args.model), "data": str(args.data), "task": args.task, "distinct_inputs": len(inputs),
              "requests": args.requests, "inputs_per_request": args.inputs_per_request,
              "time_limit_s": args.time_limit_s,
              "command": " ".join(["fastformers-hf serve bench", *argv]), "settings": settings,
              "backend": in_process["layout"]["backend"], "server": server, "in_process": in_process,
              "ratios": compare(server, in_process), "machine": machine_description(),
              "load_average_before": load_before, "load_average_after": list(os.getloadavg())}
    with atomic_output_dir(args.out, OUTPUT_KIND, inputs=[args.model, args.data], overwrite=True,
                           overwrite_flag="--overwrite") as tmp:
        write_json(tmp / REPORT_JSON, report)
        (tmp / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    print((Path(args.out) / REPORT_MD).read_text(encoding="utf-8"))
    return 0
