"""Choosing a student shape with numbers in hand: batch-1 latency of candidate shapes (layers x heads x FFN width)
on this machine, for the user's own sequence lengths, before any training. Random weights suffice for speed."""
from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification

from ..architectures import get_spec
from ..errors import FastFormersError
from ..utils.timing import DEFAULT_WARMUP, time_interleaved, torch_threads


@dataclass
class ShapeTiming:
    num_layers: int
    heads_per_layer: int
    ffn_width: int
    parameters: int
    median_ms: float
    p90_ms: float
    speedup: float = 1.0


def random_model(config, num_layers: int, heads: int, ffn: int, seed: int = 0):
    """A randomly initialised model of the given shape with the config's head (heads removed physically, as pruning
    would)."""
    from ..pruning import prune

    spec = get_spec(config)
    config = copy.deepcopy(config)
    setattr(config, spec.num_layers_attr, num_layers)
    torch.manual_seed(seed)
    model = _model_class(config).from_config(config).eval()
    return prune(model, heads_per_layer=heads, ffn_width=ffn, method="random", seed=seed)


def _model_class(config):
    """The head the model has (a QA or NER model is timed with its own head); a bare encoder gets a classifier."""
    from ..tasks.kinds import kind_of

    try:
        return kind_of(config).model_class() if config.architectures else AutoModelForSequenceClassification
    except FastFormersError:
        return AutoModelForSequenceClassification


def candidate_shapes(config, layers: Sequence[int], ratios: Sequence[float]) -> list[tuple[int, int, int]]:
    spec = get_spec(config)
    n_layers, n_heads = getattr(config, spec.num_layers_attr), getattr(config, spec.num_heads_attr)
    ffn = getattr(config, spec.intermediate_size_attr)
    bad = [r for r in ratios if not 0 < r <= 1]
    if bad:
        raise FastFormersError(f"ratios must be in (0, 1], got {bad}.")
    too_deep = [n for n in layers if not 1 <= n <= n_layers]
    if too_deep:
        raise FastFormersError(f"layer counts must be between 1 and the model's {n_layers}, got {too_deep}.")
    shapes = {(n, max(1, round(r * n_heads)), max(1, round(r * ffn))) for n, r in itertools.product(layers, ratios)}
    shapes.add((n_layers, n_heads, ffn))  # the full model: the reference for speed-ups
    return sorted(shapes, reverse=True)


def time_shapes(config, shapes, seq_lengths: Sequence[int], threads: int = 1, rounds: int = 3,
                seed: int = 0) -> tuple[list[ShapeTiming], dict]:
    """Median batch-1 latency of each shape over ``seq_lengths``; rounds interleave the shapes (order rotated) so
    a burst of load from elsewhere hits all of them alike."""
    rng = np.random.default_rng(seed)
    vocab = config.vocab_size
    inputs = [torch.as_tensor(rng.integers(5, vocab, size=(1, int(n)))) for n in seq_lengths]
    models = {s: random_model(config, *s, seed=seed) for s in tqdm(shapes, desc="building shapes")}
    runners = {s: (lambda ids, m=m: m(input_ids=ids, attention_mask=torch.ones_like(ids))) for s, m in models.items()}
    previous = torch_threads(threads)
    try:
        with torch.inference_mode(), tqdm(total=rounds * len(shapes), desc="timing rounds") as bar:
            timing = time_interleaved(runners, inputs, repeats=rounds, warmup=DEFAULT_WARMUP,
                                      on_pass=lambda p: bar.update(1))
    finally:
        torch_threads(previous)
    full = shapes[0]
    rows = []
    for shape in shapes:
        s = timing.latency(shape)
        rows.append(ShapeTiming(*shape, parameters=sum(p.numel() for p in models[shape].parameters()),
                                median_ms=s["median_ms"], p90_ms=s["p90_ms"]))
    base = next(r for r in rows if (r.num_layers, r.heads_per_layer, r.ffn_width) == full).median_ms
    for r in rows:
        r.speedup = base / r.median_ms
    return rows, timing.load()


def largest_within(rows: list[ShapeTiming], latency_budget_ms: float) -> Optional[ShapeTiming]:
    """The shape with the most parameters whose median latency meets the budget (None if none does)."""
    ok = [r for r in rows if r.median_ms <= latency_budget_ms]
    return max(ok, key=lambda r: r.parameters) if ok else None


def table(rows: list[ShapeTiming]) -> str:
    lines = ["| layers | heads/layer | FFN | params | median ms | p90 ms | speed-up |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r.median_ms):
        lines.append(f"| {r.num_layers} | {r.heads_per_layer} | {r.ffn_width} | {r.parameters / 1e6:.1f}M | "
                     f"{r.median_ms:.2f} | {r.p90_ms:.2f} | {r.speedup:.2f}x |")
    return "\n".join(lines)


def plot(rows: list[ShapeTiming], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for layers in sorted({r.num_layers for r in rows}):
        sel = sorted((r for r in rows if r.num_layers == layers), key=lambda r: r.parameters)
        ax.plot([r.parameters / 1e6 for r in sel], [r.median_ms for r in sel], "o-", label=f"{layers} layers")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("batch-1 latency, median (ms)")
    ax.set_title("Candidate student shapes on this machine (random weights)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def as_dicts(rows):
    return [asdict(r) for r in rows]
