"""Checking a model folder before it is pushed (``fastformers_hf.hub``): config and weights present, the recorded
shape equal to the weights' shape, and loadable the way a user of the Hub repo will load it, including through the
``modeling_fastformers.py`` (``hub_code``) that a pruned shape needs, which :func:`stage_remote_code` adds to a
temporary view of the folder when the folder lacks it.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .architectures import ARCHITECTURES
from .errors import FastFormersError
from .shape_record import compression_record

logger = logging.getLogger(__name__)

_SHAPE_KEYS = ("num_layers", "heads_per_layer", "ffn_width_per_layer")


def shape_from_weights(shapes: Mapping[str, list[int]], config: Mapping[str, Any]) -> dict[str, Any] | None:
    """Layers, heads per layer and FFN width per layer that the weight tensors hold (None for unknown types).

    Heads are read from the query projection's output size over the head size (hidden / configured heads, which
    transformers 4.57 always uses).
    """
    spec = ARCHITECTURES.get(config.get("model_type"))
    if spec is None:
        return None
    head_size = config[spec.hidden_size_attr] // config[spec.num_heads_attr]

    def per_layer(module: str) -> dict[int, list[int]]:
        pattern = re.compile(rf"(?:^|\.){re.escape(spec.layers)}\.(\d+)\.{re.escape(module)}\.weight$")
        return {int(m.group(1)): s for name, s in shapes.items() if (m := pattern.search(name))}

    query, ffn = per_layer(spec.query), per_layer(spec.intermediate)  # Linear weights are (out, in)
    layers = sorted(query)
    return {"num_layers": len(layers), "heads_per_layer": [query[i][0] // head_size for i in layers],
            "ffn_width_per_layer": [ffn[i][0] if i in ffn else None for i in layers]}


def _weight_shapes(model_dir: Path) -> dict[str, list[int]]:
    from hub_cards import weight_shapes

    shapes = weight_shapes(model_dir)
    if shapes is not None:
        return shapes
    bins = sorted(model_dir.glob("pytorch_model*.bin"))
    if not bins:
        raise FastFormersError(
            f"{model_dir} has a config.json but no weights (model.safetensors or pytorch_model.bin); "
            "save the model there with save_pretrained.")
    try:
        import torch
    except ImportError:
        raise FastFormersError(
            f"{model_dir} holds pytorch_model.bin, which cannot be read without torch; install torch or re-save "
            "the model with save_pretrained(..., safe_serialization=True).") from None
    shapes = {}
    for b in bins:
        shapes.update({k: list(v.shape) for k, v in torch.load(b, map_location="cpu", weights_only=True).items()})
    return shapes


def _remote_auto_class(folder: Path, config: Mapping[str, Any]) -> str | None:
    """The Auto class (``"AutoModelForSequenceClassification"``, ...) that ``folder`` maps to its own
    ``modeling_fastformers.py`` in ``config.json``'s ``auto_map``; None when it has no such entry or file (or its
    head is not one this package compresses)."""
    from .hub_code import MODELING_FILE
    from .tasks.kinds import kind_of

    try:
        auto_class = kind_of(dict(config)).auto_model
    except FastFormersError:
        return None
    entry = (config.get("auto_map") or {}).get(auto_class)
    return auto_class if entry and (folder / MODELING_FILE).is_file() else None


def stage_remote_code(model_dir: Path, staging: Path) -> Path | None:
    """When ``model_dir`` holds a shape that needs ``modeling_fastformers.py`` (``hub_code.needs_remote_code``) but
    lacks that file or its ``auto_map`` entry: ``staging`` made into ``model_dir`` plus both (its files linked,
    ``config.json`` copied, then ``hub_code.add_remote_code``), which the load check and the upload use instead;
    ``model_dir`` is not changed. None when nothing is missing (or the head is not one this package compresses)."""
    from .hub_code import MODELING_FILE, add_remote_code, needs_remote_code
    from .tasks.kinds import kind_of
    from .utils.io import read_json

    config = read_json(model_dir / "config.json")
    if config is None or not needs_remote_code(config) or _remote_auto_class(model_dir, config):
        return None
    try:
        kind_of(config)
    except FastFormersError:  # a base model or another head: no class in the modeling file, pushed as before
        return None
    staging = staging / (model_dir.resolve().name or "model")  # the name transformers gives the remote module
    staging.mkdir()
    for p in model_dir.iterdir():
        if p.is_file() and p.name not in ("config.json", MODELING_FILE):
            try:
                os.symlink(p.resolve(), staging / p.name)
            except OSError:  # no symlinks here (e.g. Windows without the privilege)
                shutil.copy2(p, staging / p.name)
    shutil.copyfile(model_dir / "config.json", staging / "config.json")
    add_remote_code(staging)
    logger.warning(
        "%s holds a pruned shape that transformers 5 cannot build from config.json alone, and lacks %s or its "
        "auto_map entry: adding them (fastformers_hf.hub_code.add_remote_code) to what is checked and pushed, so the "
        "repo loads with from_pretrained(..., trust_remote_code=True); %s itself is not changed (run "
        "fastformers_hf.hub_code.add_remote_code(folder) to add them there too).", model_dir, MODELING_FILE, model_dir)
    return staging


def _check_loads(model_dir: Path, config: Mapping[str, Any], record: Mapping[str, Any],
                 load_dir: Path | None = None) -> str:
    """Load the model as a user of the Hub repo will; returns how it loads. Needs torch (skipped without it).

    ``load_dir`` (default ``model_dir``) is the folder to load, e.g. ``model_dir`` with ``modeling_fastformers.py``
    added (:func:`stage_remote_code`); messages name ``model_dir``. A folder whose ``auto_map`` points to that file
    loads with ``trust_remote_code=True``, as the repo will."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return "not checked (torch/transformers not installed)"
    import transformers

    from .hub_code import MODELING_FILE
    from .utils.io import read_json

    load_dir = load_dir or model_dir
    if load_dir != model_dir:
        config = read_json(load_dir / "config.json")
    remote = _remote_auto_class(load_dir, config)
    widths = record.get("ffn_width_per_layer") or []
    if remote is None and len(set(widths)) > 1:  # per-layer FFN widths: plain from_pretrained cannot build them
        from .pruning import load_pruned

        load_pruned(model_dir)
        return "fastformers_hf.load_pruned"
    name = (config.get("architectures") or [None])[0]
    cls = getattr(transformers, remote or name or "", None) or transformers.AutoModelForSequenceClassification
    kwargs = {"trust_remote_code": True} if remote else {}
    how = f"{cls.__name__}.from_pretrained" + ("(..., trust_remote_code=True)" if remote else "")
    from safetensors import SafetensorError

    try:
        model, info = cls.from_pretrained(load_dir, output_loading_info=True, **kwargs)
    except (RuntimeError, ValueError, OSError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastFormersError(
            f"{model_dir} does not load with {how} ({first[:300]}); its config.json and "
            "weights come from different saves: save the model again with save_pretrained.") from None
    if remote and not type(model).__module__.endswith("modeling_fastformers"):
        raise FastFormersError(
            f"{model_dir} loaded as {type(model).__module__}.{type(model).__name__}, not through the modeling_fastformers.py "
            "that config.json's auto_map names; run fastformers_hf.hub_code.add_remote_code(folder) and push again.")
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    problems = {k: v for k, v in (("missing", [m for m in info["missing_keys"] if m not in tied]),
                                  ("unexpected", info["unexpected_keys"]),
                                  ("mismatched", info.get("mismatched_keys", []))) if v}
    if problems:
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:4]))}" for k, v in problems.items())
        raise FastFormersError(
            f"{model_dir} loads with {how} only partly ({detail}): weights would be "
            "random after download; save the model again with save_pretrained.")
    return f"transformers.{how}" + (f" (with {MODELING_FILE} added)" if load_dir != model_dir else "")


def verify_model_dir(model_dir: str | os.PathLike, load: bool = True, *,
                     load_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check that ``model_dir`` is a model that can be pushed: config and weights present, the recorded shape
    (``config.fastformers``) equal to the shape of the weights, and (with torch, ``load=True``) loadable the way a
    user of the Hub repo will load it. Returns the compression record plus ``loads_with``; raises FastFormersError.

    A shape that needs ``modeling_fastformers.py`` is loaded with ``trust_remote_code=True``; when the folder lacks
    that file or its ``auto_map`` entry, they are added to a temporary view of the folder (:func:`stage_remote_code`,
    as ``push_to_hub`` adds them to the upload; the log says so), or ``load_dir`` is that view already;
    ``model_dir`` is not changed.
    """
    model_dir = Path(model_dir)
    if load and load_dir is None:
        with tempfile.TemporaryDirectory(prefix="fastformers-verify-") as staging:
            staged = stage_remote_code(model_dir, Path(staging))
            return verify_model_dir(model_dir, load, load_dir=staged or model_dir)
    from .utils.model_folder import model_config

    config = model_config(model_dir)
    record = compression_record(model_dir)
    found = shape_from_weights(_weight_shapes(model_dir), config)
    if found is not None and record.get("heads_per_layer") is not None:
        recorded = {k: record.get(k) for k in _SHAPE_KEYS}
        if found != recorded:
            diff = "; ".join(f"{k}: recorded {recorded[k]}, weights {found[k]}" for k in _SHAPE_KEYS if found[k] != recorded[k])
            raise FastFormersError(
                f"{model_dir}: the shape recorded in config.json does not match the weights ({diff}). The config "
                "and weights come from different saves; save the pruned model again with save_pretrained (prune() "
                "records the shape it leaves), then push.")
    record["loads_with"] = _check_loads(model_dir, config, record, Path(load_dir or model_dir)) if load else "not checked"
    return record


def card_preview_source(model_dir, staging) -> Path:
    """The folder a card preview should be rendered from: the staged copy with ``modeling_fastformers.py`` when a
    push would add it (so the preview is the card that is committed), else ``model_dir`` itself."""
    staged = stage_remote_code(Path(model_dir), Path(staging))
    return staged or Path(model_dir)
