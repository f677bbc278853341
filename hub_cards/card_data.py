"""Card data: what a model card states, gathered from the JSON files that fastformers-hf writes beside a model.

Nothing in a card is typed in. The shape and recipe come from ``config.json``'s ``fastformers`` record, every number
from ``fastformers_measurements.json`` (each entry with its machine and command), training facts from
``fastformers_training.json`` (written while training by ``trainer_callbacks.ModelCardCallback``), and ONNX variants
from the files in their folders (their own ``config.json`` record and Optimum's ``ort_config.json``). Reading all of
it needs no torch, and hub_cards imports nothing from fastformers_hf (the file names below are the contract).
"""
from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .snippets import CARD_KINDS, DEFAULT_KIND, TRUST_REMOTE_CODE, CardKind, card_kind, remote_code_class
from .snippets import REMOTE_CODE_NOTE
from .snippets import how_to_use as kind_snippet

# File contracts owned by fastformers_hf (shape_record.CONFIG_KEY, measurements.MEASUREMENTS_FILE), repeated here so
# that hub_cards stays a leaf package; tests/test_hub_cards.py checks that they agree.
CONFIG_KEY = "fastformers"
MEASUREMENTS_FILE = "fastformers_measurements.json"
TRAINING_FILE = "fastformers_training.json"
ORT_CONFIG_FILE = "ort_config.json"

# Where to point people whose model has no measurements yet (also printed by push_to_hub's warning).
MEASURE_HINT = (
    "measure it first: `fastformers-hf compress ...` measures the final model against its teacher (accuracy and "
    "batch-1 latency) and records the numbers; the benchmark scripts in examples/ do too; from Python, "
    "fastformers_hf.record_measurement(MODEL_DIR, metric, value, ...) records into "
    "MODEL_DIR/fastformers_measurements.json"
)

# Metrics that go into the model-index (the Hub's results widget); other numbers are shown in the card's body.
TASK_METRICS = ("accuracy", "f1", "matthews_correlation", "mcc", "precision", "recall", "pearson", "spearmanr",
                "exact_match", "roc_auc")

# Variant names that mean "the model before compression" in a measurement (or an entry with baseline=True).
BASELINE_VARIANTS = ("baseline", "before", "teacher", "original", "source", "unpruned", "uncompressed")

# Task names -> (Hub dataset id, config). A measurement or training set named after a task (or a local folder of
# that name, as in shared/data/sst2) is taken to be that task's data.
DATASET_IDS: dict[str, tuple[str, str | None]] = {
    "sst2": ("nyu-mll/glue", "sst2"),
    "rte": ("nyu-mll/glue", "rte"),
    "mrpc": ("nyu-mll/glue", "mrpc"),
    "cola": ("nyu-mll/glue", "cola"),
    "qnli": ("nyu-mll/glue", "qnli"),
    "qqp": ("nyu-mll/glue", "qqp"),
    "mnli": ("nyu-mll/glue", "mnli"),
    "stsb": ("nyu-mll/glue", "stsb"),
    "boolq": ("google/boolq", None),
    "squad": ("rajpurkar/squad", None),
    "squad_v2": ("rajpurkar/squad_v2", None),
    "conll2003": ("eriktks/conll2003", None),
}

# Folders other than the model's own that fastformers-hf knows how to load, by the file that marks them.
FOLDER_LOADERS = {
    "cascade_config.json": 'fastformers_hf.CascadeClassifier.from_pretrained("{model_id}", subfolder="{folder}")',
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
SKIPPED_DIRS = re.compile(r"^(checkpoint-\d+|runs|\..*|__pycache__)$")
_STANDARD_KEYS = ("metric", "value", "unit", "dataset", "split", "variant", "command", "machine", "time", "baseline")
# Size fields of the config, per naming family (BERT-like first, DistilBERT second).
_LAYERS, _HEADS, _HIDDEN, _FFN = ("num_hidden_layers", "n_layers"), ("num_attention_heads", "n_heads"), \
    ("hidden_size", "dim"), ("intermediate_size", "hidden_dim")


class CardDataError(ValueError):
    """A model directory the card cannot be made from; the message names the fix."""


# -- reading files ---------------------------------------------------------------------------------------------------


def read_json(path: Path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as e:
        raise CardDataError(f"{path} is not valid JSON ({e}); rewrite or delete it.") from None


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a ``.safetensors`` header (8-byte length + JSON), without loading any weights."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def weight_shapes(model_dir: str | os.PathLike) -> dict[str, list[int]] | None:
    """Shapes of every tensor in the safetensors weights of ``model_dir`` (sharded or not); None without safetensors."""
    model_dir = Path(model_dir)
    if (model_dir / "model.safetensors").exists():
        return safetensors_shapes(model_dir / "model.safetensors")
    index = read_json(model_dir / "model.safetensors.index.json")
    if index:
        shapes = {}
        for shard in sorted(set(index["weight_map"].values())):
            shapes.update(safetensors_shapes(model_dir / shard))
        return shapes
    return None


def _first(d: Mapping, names, default=None):
    return next((d[n] for n in names if d.get(n) is not None), default)


def _files_under(root: Path):
    """Files under ``root`` as (relative posix path, path), skipping checkpoints, logs and hidden entries."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not SKIPPED_DIRS.match(d))
        for name in sorted(filenames):
            if not name.startswith("."):
                p = Path(dirpath) / name
                yield p.relative_to(root).as_posix(), p


def repo_tree(model_dir: str | os.PathLike, folders: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Path]:
    """What a push puts in the repo: ``{path in repo: local file}`` for ``model_dir`` plus each extra folder
    (``{path in repo: local dir}``, e.g. ``{"onnx": "out/onnx-int8"}``)."""
    tree = dict(_files_under(Path(model_dir)))
    for prefix, local in (folders or {}).items():
        prefix = prefix.strip("/")
        for rel, p in _files_under(Path(local)):
            tree[f"{prefix}/{rel}" if prefix else rel] = p
    return tree


# -- measurements ----------------------------------------------------------------------------------------------------


def measurement_kind(metric: str, unit: str | None) -> str:
    """quality, latency, throughput or size, from the metric name and unit."""
    name, unit = metric.lower(), (unit or "").lower()
    if "latency" in name or "time" in name or unit in ("ms", "s", "us", "µs"):
        return "latency"
    if "throughput" in name or "per_second" in name or "/s" in unit:
        return "throughput"
    if "size" in name or "param" in name or unit in ("b", "bytes", "kb", "mb", "mib", "gb", "gib"):
        return "size"
    return "quality"


@dataclass
class Measurement:
    """One recorded number, as the card shows it."""

    metric: str
    value: float
    variant: str
    kind: str
    unit: str | None = None
    dataset: str | None = None
    split: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] | None = None
    command: str | None = None
    baseline: bool = False
    compared: str | None = None  # e.g. "5.2x faster than teacher": against a baseline with the same settings
    machine_index: int | None = None
    points: bool = False  # a quality metric recorded in points (0-100, e.g. SQuAD F1), not as a fraction (0-1)

    @property
    def settings_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())

    def key(self):
        """What must match for two numbers to be compared: metric, data, settings (floats and flags in the extras are
        results, such as p99_ms or chosen, not settings) and, for speed, the machine."""
        settings = {k: v for k, v in self.settings.items() if not isinstance(v, (bool, float))}
        machine = (self.machine or {}).get("cpu"), (self.machine or {}).get("cores")
        return (self.metric, self.dataset, self.split, json.dumps(settings, sort_keys=True, default=str),
                machine if self.kind in ("latency", "throughput") else None)


def _is_baseline(entry: dict) -> bool:
    variant = str(entry.get("variant") or "").lower()
    return entry.get("baseline") is True or re.split(r"[-_ /]", variant)[0] in BASELINE_VARIANTS


def load_measurement_entries(folder: Path) -> list[Measurement]:
    """The numeric entries of ``folder/fastformers_measurements.json`` (none if the file is absent)."""
    raw = read_json(folder / MEASUREMENTS_FILE, default=[])
    if not isinstance(raw, list):
        raise CardDataError(f"{folder / MEASUREMENTS_FILE} should hold a list of measurements; re-record them.")
    out = []
    for e in raw:
        if not isinstance(e, dict) or "metric" not in e or not isinstance(e.get("value"), (int, float)):
            continue  # not a number we can state
        out.append(Measurement(
            metric=str(e["metric"]), value=e["value"], variant=str(e.get("variant") or "pytorch"), kind=measurement_kind(str(e["metric"]), e.get("unit")),
            unit=e.get("unit"), dataset=e.get("dataset"), split=e.get("split"),
            settings={k: v for k, v in e.items() if k not in _STANDARD_KEYS}, machine=e.get("machine"),
            command=e.get("command"), baseline=_is_baseline(e)))
    return out


def _compare(m: Measurement, base: Measurement) -> str | None:
    if not base.value or not m.value or m.unit != base.unit:
        return None
    than = f" than {base.variant}"
    if m.kind == "latency":
        return f"{base.value / m.value:.2f}x faster{than}"
    if m.kind == "throughput":
        return f"{m.value / base.value:.2f}x the throughput of {base.variant}"
    if m.kind == "size":
        return f"{base.value / m.value:.2f}x smaller{than}"
    if m.points:
        return f"{m.value - base.value:+.2f} points vs {base.variant}"
    return f"{m.value - base.value:+.4g} vs {base.variant}"


def compare_measurements(measurements: list[Measurement]) -> None:
    """Fill ``compared`` for each number that has a reference with the same key: the baseline (the model before
    compression) if recorded, else for ONNX and other variants the PyTorch model itself."""
    baselines = {m.key(): m for m in measurements if m.baseline}
    pytorch = {m.key(): m for m in measurements if m.variant == "pytorch" and not m.baseline}
    for m in measurements:
        if m.baseline:
            continue
        ref = baselines.get(m.key()) or (pytorch.get(m.key()) if m.variant != "pytorch" else None)
        if ref is not None:
            m.compared = _compare(m, ref)


def machine_text(machine: Mapping[str, Any] | None) -> str:
    if not machine:
        return "not recorded"
    parts = [str(machine.get("cpu") or "unknown CPU")]
    if machine.get("cores"):
        parts[0] += f" ({machine['cores']} cores)"
    parts += [f"{k} {machine[k]}" for k in ("python", "torch", "transformers", "onnxruntime", "optimum") if machine.get(k)]
    return ", ".join(parts)


# -- datasets --------------------------------------------------------------------------------------------------------


def hub_dataset(name: str | None) -> tuple[str, str | None] | None:
    """(Hub dataset id, config) for a dataset name, a ``glue/sst2``-style name, a Hub id, or a local folder named
    after a known task; None when it cannot be told."""
    if not name:
        return None
    name = str(name).strip()
    base = Path(name.rstrip("/")).name.lower().replace("-", "")
    if base in DATASET_IDS and (os.sep in name or name.startswith(".") or name.lower() in DATASET_IDS or
                                name.lower().startswith(("glue/", "nyu-mll/glue"))):
        return DATASET_IDS[base]
    if ":" in name:  # "nyu-mll/glue:sst2"
        repo, config = name.split(":", 1)
        return (repo, config or None) if _looks_like_hub_id(repo) else None
    return (name, None) if _looks_like_hub_id(name) else None


def _looks_like_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name)) and not Path(name).exists()


# -- variants --------------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One loadable model in the repo: the PyTorch weights or one ONNX graph."""

    name: str  # label used in the results tables ("pytorch", "onnx", "onnx/int8")
    path: str  # file in the repo
    format: str
    precision: str
    size_bytes: int
    load: str  # Python that loads it
    details: str = ""

    @property
    def size_text(self) -> str:
        return human_size(self.size_bytes)


def how_to_use(model_id: str, variants: list[Variant], kind: CardKind | None = None) -> str:
    """The snippet that loads the first variant and uses it as its task kind says (hub_cards/snippets.py)."""
    first = variants[0] if variants else None
    return kind_snippet(model_id, first.load if first else None, first.format if first else None,
                        kind or CARD_KINDS[DEFAULT_KIND])


def human_size(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _onnx_description(folder: Path, onnx_name: str) -> tuple[str, str]:
    """(precision, details) of an ONNX graph from its folder's recipe steps and Optimum's ort_config.json."""
    cfg = read_json(folder / "config.json", default={}) or {}
    steps = [s for s in (cfg.get(CONFIG_KEY) or {}).get("steps", []) if str(s.get("step", "")).startswith(("onnx", "fp16"))]
    ort = read_json(folder / ORT_CONFIG_FILE, default={}) or {}
    precision, details = "fp32", []
    for s in steps:
        name = s["step"]
        if "quantiz" in name:
            precision = "int8"
        elif "fp16" in name:
            precision = "fp16"
        settings = ", ".join(f"{k}={v}" for k, v in s.items() if k != "step" and v is not None and not isinstance(v, (dict, list)))
        details.append(f"{name} ({settings})" if settings else name)
    if not steps and ort:
        q, o = ort.get("quantization") or {}, ort.get("optimization") or {}
        if q:
            precision = "int8"
            details.append(f"quantization ({'static' if q.get('is_static') else 'dynamic'}, {q.get('format')}, "
                           f"weights {q.get('weights_dtype')}, per_channel={q.get('per_channel')})")
        if o:
            details.append(f"graph optimization (level {o.get('optimization_level')})")
    if not steps and not ort and re.search(r"quantiz|int8|qint8|uint8", onnx_name):
        precision = "int8"  # Optimum's and sentence-transformers' file names say so
    return precision, "; ".join(details)


def collect_variants(tree: Mapping[str, Path], model_id: str, config: Mapping[str, Any],
                     kind: CardKind | None = None) -> list[Variant]:
    kind = kind or card_kind(config)
    variants = []
    weights = [p for p in tree if "/" not in p and (p in WEIGHT_FILES or re.fullmatch(r"model-\d+-of-\d+\.safetensors", p))]
    if weights:
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
        arch = (config.get("architectures") or [None])[0]
        loader = kind.auto_model if arch is None or arch.endswith(kind.architecture_suffix) else "AutoModel"
        main = next(p for p in WEIGHT_FILES + tuple(weights) if p in tree)
        size = sum(tree[p].stat().st_size for p in tree if "/" not in p and p.endswith((".safetensors", ".bin")))
        load = f'{loader}.from_pretrained("{model_id}")'
        if loader == kind.auto_model and remote_code_class(config, kind):  # modeling_fastformers.py rebuilds it
            load = f'{loader}.from_pretrained("{model_id}", {TRUST_REMOTE_CODE})'
        elif len(set((config.get(CONFIG_KEY) or {}).get("ffn_width_per_layer") or [])) > 1:  # no config can say it
            load = f'fastformers_hf.load_pruned(huggingface_hub.snapshot_download("{model_id}"))'
        variants.append(Variant("pytorch", main, "PyTorch (transformers)", dtype.replace("torch.", ""), size, load))
    # Graphs at the top or under onnx/ are this model's variants; one elsewhere (e.g. a cascade tier) is not.
    onnx_files = sorted(p for p in tree if p.endswith(".onnx") and ("/" not in p or p.startswith("onnx/")))
    per_folder: dict[str, list[str]] = {}
    for p in onnx_files:
        per_folder.setdefault(p.rsplit("/", 1)[0] if "/" in p else "", []).append(p)
    for folder, files in per_folder.items():
        for p in files:
            name = p.rsplit("/", 1)[-1]
            precision, details = _onnx_description(tree[p].parent, name)
            size = tree[p].stat().st_size + sum(tree[q].stat().st_size for q in tree
                                                if q.startswith(p) and q.endswith(".onnx_data"))
            args = [f'"{model_id}"'] + ([f'subfolder="{folder}"'] if folder else [])
            if len(files) > 1 or name != "model.onnx":
                args.append(f'file_name="{name}"')
            label = folder or "onnx"
            if len(files) > 1:
                label = f"{label}/{name}"
            variants.append(Variant(label, p, "ONNX (Optimum / ONNX Runtime)", precision, size,
                                    f"{kind.ort_model}.from_pretrained({', '.join(args)})", details))
    return variants


# -- the card data ---------------------------------------------------------------------------------------------------


@dataclass
class FastFormersCardData:
    """Everything a fastformers-hf model card states.

    The first fields are yours to set (``render_card(model_dir, license="mit", language="en", ...)``); the rest are
    filled from the model directory by :meth:`from_model_dir` and should not be set by hand.
    """

    # -- set by you --
    model_id: str | None = field(default=None, metadata={"help": "Hub repo id used in the usage snippets (default: the directory name)."})
    model_name: str | None = field(default=None, metadata={"help": "Display name (default: the last part of model_id)."})
    description: str | None = field(default=None, metadata={"help": "A paragraph about the model (default: generated from the recipe)."})
    license: str | None = field(default=None, metadata={"help": "License id; it should follow the teacher's (unset: 'other')."})
    language: str | list[str] | None = field(default=None, metadata={"help": "ISO 639 language code(s)."})
    base_model: str | None = field(default=None, metadata={"help": "Hub id of the source model when the record holds a local path."})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids to list besides those found."})
    tags: list[str] = field(default_factory=list, metadata={"help": "Extra Hub tags."})

    # -- filled from the directory --
    task_kind: CardKind = field(default_factory=lambda: CARD_KINDS[DEFAULT_KIND])  # the head's task, from config.json
    model_type: str | None = None
    architecture: str | None = None
    source_model: str | None = None
    hidden_size: int | None = None
    configured_heads: int | None = None
    configured_ffn_width: int | None = None
    shape: dict[str, Any] = field(default_factory=dict)
    shape_before: dict[str, Any] | None = None
    parameters: int | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    machines: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    other_folders: dict[str, list[str]] = field(default_factory=dict)
    folder_loaders: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_model_dir(cls, model_dir: str | os.PathLike, folders: Mapping[str, str | os.PathLike] | None = None,
                       config: Mapping[str, Any] | None = None, **user_fields) -> "FastFormersCardData":
        """Read ``model_dir`` (and extra ``folders`` that a push adds, ``{path in repo: local dir}``).

        ``config`` (a config dict) stands in for ``model_dir/config.json`` before the model is saved there.
        """
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise CardDataError(f"{model_dir} is not a directory; pass the folder the model was saved to.")
        if config is None:
            config = read_json(model_dir / "config.json")
            if config is None:
                raise CardDataError(f"{model_dir} holds no config.json; save the model there with save_pretrained first.")
        unknown = set(user_fields) - {f for f in cls.__dataclass_fields__ if f in _USER_FIELDS}
        if unknown:
            raise CardDataError(f"unknown card field(s) {sorted(unknown)}; you can set {', '.join(_USER_FIELDS)}.")
        data = cls(**user_fields)
        data.model_id = data.model_id or model_dir.resolve().name
        data.model_name = data.model_name or data.model_id.split("/")[-1]
        data.datasets = [data.datasets] if isinstance(data.datasets, str) else list(data.datasets)

        record = dict(config.get(CONFIG_KEY) or {})
        data.task_kind = card_kind(config)
        data.model_type = config.get("model_type")
        data.architecture = (config.get("architectures") or [None])[0]
        data.hidden_size = _first(config, _HIDDEN)
        data.configured_heads = _first(config, _HEADS)
        data.configured_ffn_width = _first(config, _FFN)
        data.steps = list(record.get("steps") or [])
        data.source_model = record.get("source_model") or next(
            (s.get("teacher") for s in data.steps if s.get("teacher")), None)
        data.shape = _shape(config, record)
        pruned_from = next((s.get("pruned_from") for s in data.steps if isinstance(s.get("pruned_from"), dict)), None)
        if pruned_from and pruned_from.get("heads_per_layer"):
            data.shape_before = {"num_layers": len(pruned_from["heads_per_layer"]), **pruned_from}

        tree = repo_tree(model_dir, folders)
        shapes = weight_shapes(model_dir)
        data.parameters = sum(_numel(s) for s in shapes.values()) if shapes else None
        data.variants = collect_variants(tree, data.model_id, config, data.task_kind)

        # ONNX folders in the repo -> their local directory (measurements recorded there belong to that variant)
        onnx_folders = {v.path.rsplit("/", 1)[0]: tree[v.path].parent for v in data.variants
                        if "/" in v.path and v.path.endswith(".onnx")}
        data.measurements = load_measurement_entries(model_dir)
        for folder, local in sorted(onnx_folders.items()):  # e.g. optimize_for_inference's record of its choice
            data.measurements += [m for m in load_measurement_entries(local) if m not in data.measurements]
        for m in data.measurements:
            m.points = m.kind == "quality" and m.metric in data.task_kind.points
        compare_measurements(data.measurements)
        for m in data.measurements:
            if m.machine:
                if m.machine not in data.machines:
                    data.machines.append(m.machine)
                m.machine_index = data.machines.index(m.machine) + 1
            if m.command and m.command not in data.commands:
                data.commands.append(m.command)

        data.training = read_json(model_dir / TRAINING_FILE, default={}) or {}
        onnx_tops = {f.split("/")[0] for f in onnx_folders}
        for p in tree:  # folders that are neither weights nor ONNX variants (e.g. a calibrated cascade)
            if "/" in p and p.split("/")[0] not in onnx_tops:
                data.other_folders.setdefault(p.split("/")[0], []).append(p)
                folder, name = p.rsplit("/", 1)
                if name in FOLDER_LOADERS:
                    data.folder_loaders[folder] = FOLDER_LOADERS[name].format(model_id=data.model_id, folder=folder)
        return data

    # -- views used by the template -----------------------------------------------------------------------------------

    @property
    def distillation(self) -> dict[str, Any] | None:
        return next((s for s in self.steps if "distil" in str(s.get("step", ""))), None)

    @property
    def pruning(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if "prun" in str(s.get("step", ""))]

    @property
    def quantized(self) -> bool:
        return any(v.precision == "int8" for v in self.variants)

    @property
    def how_to_use(self) -> str:
        """The Python that loads this very model into a ``pipeline``: from its shape (a plain ``from_pretrained``
        where the config can describe it, ``trust_remote_code=True`` where ``config.json``'s ``auto_map`` names
        ``modeling_fastformers.py``, else ``load_pruned`` for per-layer FFN widths, ONNX Runtime when only graphs
        are pushed). The card tests run it against a Hub."""
        return how_to_use(self.model_id, self.variants, self.task_kind)

    @property
    def remote_code(self) -> bool:
        """The PyTorch weights load with ``trust_remote_code=True``: ``config.json``'s ``auto_map`` points the kind's
        Auto class to ``modeling_fastformers.py``, which rebuilds the pruned shape."""
        return any(v.name == "pytorch" and TRUST_REMOTE_CODE in v.load for v in self.variants)

    @property
    def remote_code_text(self) -> str:
        """Why the snippet passes ``trust_remote_code=True`` (one sentence; empty when it does not)."""
        return REMOTE_CODE_NOTE if self.remote_code else ""

    @property
    def hub_base_model(self) -> str | None:
        if self.base_model:
            return self.base_model
        return _hub_model_id(self.source_model)

    def hub_datasets(self) -> list[str]:
        names = list(self.datasets)
        names += [d.get("name") for d in self.training.get("datasets", []) if isinstance(d, dict)]
        names += [m.dataset for m in self.measurements]
        ids = []
        for n in names:
            found = hub_dataset(n)
            if found and found[0] not in ids:
                ids.append(found[0])
        return ids

    def quality(self) -> list[Measurement]:
        return [m for m in self.measurements if m.kind == "quality"]

    def speed_and_size(self) -> list[Measurement]:
        return [m for m in self.measurements if m.kind != "quality"]

    def eval_results(self):
        """model-index entries for the measured task metrics of this model's variants (baselines stay in the body,
        and so do numbers on data that is neither a Hub dataset nor a plain name)."""
        from huggingface_hub import EvalResult

        results = []
        for m in self.quality():
            if m.baseline or m.metric not in TASK_METRICS or not m.dataset:
                continue
            found = hub_dataset(m.dataset)
            if found is None and not re.fullmatch(r"[\w.-]+", str(m.dataset)):
                continue
            results.append(EvalResult(
                task_type=self.task_kind.pipeline_tag, task_name=self.task_kind.task_name,
                dataset_type=found[0] if found else str(m.dataset), dataset_name=_dataset_display(m.dataset),
                dataset_config=found[1] if found else None, dataset_split=m.split,
                metric_type=m.metric, metric_value=m.value, metric_name=f"{m.metric} ({m.variant})"))
        return results

    def tags_for_hub(self) -> list[str]:
        tags = ["fastformers-hf", self.task_kind.pipeline_tag]
        tags += ["distillation"] if self.distillation else []
        tags += ["pruning"] if self.pruning else []
        tags += ["onnx"] if any(v.format.startswith("ONNX") for v in self.variants) else []
        tags += ["int8", "quantized"] if self.quantized else []
        return list(dict.fromkeys(tags + list(self.tags)))

    def to_model_card_data(self):
        """The YAML metadata, as ``huggingface_hub.ModelCardData``."""
        from huggingface_hub import ModelCardData

        results = self.eval_results()
        return ModelCardData(
            model_name=self.model_name, base_model=self.hub_base_model, datasets=self.hub_datasets() or None,
            language=self.language, license=self.license or "other", library_name="transformers",
            pipeline_tag=self.task_kind.pipeline_tag, tags=self.tags_for_hub(),
            metrics=sorted({r.metric_type for r in results}) or None, eval_results=results or None)


_USER_FIELDS = ("model_id", "model_name", "description", "license", "language", "base_model", "datasets", "tags")


def _hub_model_id(name: str | None) -> str | None:
    """A source model name if it is a Hub id (``owner/name``), not a local path."""
    return name if name and _looks_like_hub_id(str(name)) else None


def _dataset_display(name: str) -> str:
    return Path(str(name).rstrip("/")).name if os.sep in str(name) else str(name)


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _shape(config: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    if record.get("heads_per_layer"):
        return {k: record.get(k) for k in ("num_layers", "heads_per_layer", "ffn_width_per_layer")}
    layers, heads, ffn = _first(config, _LAYERS), _first(config, _HEADS), _first(config, _FFN)
    if layers is None:
        return {}
    pruned = config.get("pruned_heads") or {}
    return {"num_layers": layers,
            "heads_per_layer": [heads - len(pruned.get(str(i), pruned.get(i, []))) for i in range(layers)] if heads else None,
            "ffn_width_per_layer": [ffn] * layers if ffn else None}
