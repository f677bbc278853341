"""Configs for the ONNX Runtime path: session settings, the variant recipes (as data) and the variant choice.

Kept apart from :mod:`fastformers_hf.onnx.export` so that reading or building a config needs neither Optimum
nor torch.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, replace

from ..errors import FastFormersError

# Optimum's named presets (optimum.onnxruntime.AutoOptimizationConfig / AutoQuantizationConfig).
OPTIMIZATION_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZATION_PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")
CALIBRATION_METHODS = ("minmax", "entropy", "percentiles")

# The steps a variant recipe is made of, as data: "optimize" = ORTOptimizer graph fusion at the configured level
# (with the listed OptimizationConfig fields changed), "quantize" = dynamic int8 at the configured preset (with the
# listed settings changed).
_NO_SKIP_LAYER_NORM = {"disable_skip_layer_norm_fusion": True, "disable_bias_skip_layer_norm_fusion": True}
STEPS: dict[str, tuple[str, dict]] = {
    "optimize": ("optimize", {}),
    "optimize-attention": ("optimize", _NO_SKIP_LAYER_NORM),  # Attention (+ LayerNorm, Gelu) fused, no SkipLayerNorm
    "optimize-attention-fast-gelu": ("optimize", {**_NO_SKIP_LAYER_NORM, "enable_gelu_approximation": True}),
    "quantize": ("quantize", {}),
    "quantize-per-tensor": ("quantize", {"per_channel": False}),
}

# Each candidate variant is a recipe of steps applied in order to the plain fp32 export.
VARIANTS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp32-fused": ("optimize",),
    "int8": ("quantize",),
    "int8-fused": ("optimize", "quantize"),  # keeps the fused Attention (becomes QAttention)
    "int8-then-fused": ("quantize", "optimize"),  # loses the Attention fusion, keeps the LayerNorm ones
    "int8-unfused-ln": ("quantize",),  # the int8 graph, loaded without ORT's SkipLayerNormalization fusion (below)
    # Fused attention without SkipLayerNormalization, then int8; the fast-gelu ones use the tanh approximation of
    # GELU (a numerical change: checked against the tolerance like every variant), per-tensor = one weight scale
    # per matrix instead of one per output channel.
    "int8-attention": ("optimize-attention", "quantize"),
    "int8-attention-fast-gelu": ("optimize-attention-fast-gelu", "quantize"),
    "int8-attention-fast-gelu-per-tensor": ("optimize-attention-fast-gelu", "quantize-per-tensor"),
}


def is_quantized(variant: str) -> bool:
    """Whether the variant's recipe has an int8 step."""
    return any(STEPS[s][0] == "quantize" for s in VARIANTS.get(variant, ()))


# ORT fusions a variant switches off when its session loads. ORT fuses at load time, so this cannot be baked into
# the graph file: the chosen variant's list is saved beside it (SESSION_FILE) and applied by inference_session.
# Measured here (Zen 4, ORT 1.31, 1 thread): small int8 BERTs ran 25-35% faster on BoolQ-like inputs (~140 tokens)
# and ~10-20% faster on SST-2 sentences as Add + LayerNormalization than through the fused SkipLayerNormalization
# kernel (benchmarks/bench_onnx.py). A candidate, not a default: the choice is measured like every other variant.
# The int8-attention ones (SST-2 sentences, pruned student, 1 thread: 10-15% faster than int8-unfused-ln; ~140-token
# pairs: 1-4%) are loaded the same way, else ORT would fuse their Add + LayerNormalization at load.
SESSION_DISABLED_OPTIMIZERS: dict[str, tuple[str, ...]] = {
    name: ("SkipLayerNormFusion",) for name in ("int8-unfused-ln", "int8-attention", "int8-attention-fast-gelu",
                                                "int8-attention-fast-gelu-per-tensor")}
SESSION_FILE = "ort_session.json"

_GRAPH_LEVELS = ("disable", "basic", "extended", "all")
_EXECUTION_MODES = ("sequential", "parallel")


@dataclass
class SessionConfig:
    """ONNX Runtime session settings used to check and time every variant (and to load the chosen one).

    The defaults hold up on a shared, loaded machine: one intra-op thread and no spin-waiting, so a busy
    neighbour does not turn our idle threads into a slowdown (measured here: 2-thread runs slowed 5-10x under load,
    single-thread runs held up). Raise the thread count for the lowest single-request latency on an idle machine.
    """

    intra_op_num_threads: int = field(
        default=1, metadata={"help": "Threads inside one operator (0 = ORT default: all cores)."})
    inter_op_num_threads: int = field(
        default=1, metadata={"help": "Threads across operators (only used in parallel mode)."})
    allow_spinning: bool = field(
        default=False,
        metadata={"help": "Let idle ORT threads spin-wait; faster on an idle machine, harmful under load."})
    graph_optimization_level: str = field(
        default="all", metadata={"help": f"ORT's own graph optimisation at session load: {', '.join(_GRAPH_LEVELS)}."})
    execution_mode: str = field(default="sequential", metadata={"help": "sequential or parallel operator execution."})
    provider: str = field(default="CPUExecutionProvider", metadata={"help": "ONNX Runtime execution provider."})
    disabled_optimizers: list[str] | None = field(
        default=None, metadata={"help": "ORT graph optimizers to switch off at load (e.g. SkipLayerNormFusion); "
                                        "None = what the model folder's ort_session.json says (nothing if absent)."})

    def __post_init__(self):
        if self.intra_op_num_threads < 0 or self.inter_op_num_threads < 0:
            raise FastFormersError("thread counts must be >= 0 (0 lets ONNX Runtime decide).")
        if self.graph_optimization_level not in _GRAPH_LEVELS:
            raise FastFormersError(
                f"graph_optimization_level {self.graph_optimization_level!r} is unknown; "
                f"use one of {', '.join(_GRAPH_LEVELS)}.")
        if self.execution_mode not in _EXECUTION_MODES:
            raise FastFormersError(f"execution_mode {self.execution_mode!r} is unknown; use sequential or parallel.")

    def session_options(self):
        """An ``onnxruntime.SessionOptions`` with these settings."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_num_threads
        opts.inter_op_num_threads = self.inter_op_num_threads
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization_level]
        opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                               else ort.ExecutionMode.ORT_SEQUENTIAL)
        spin = "1" if self.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return opts

    def to_dict(self) -> dict:
        return asdict(self)

    def for_variant(self, name: str) -> "SessionConfig":
        """These settings plus the optimizers that variant ``name`` switches off."""
        extra = [o for o in SESSION_DISABLED_OPTIMIZERS.get(name, ()) if o not in (self.disabled_optimizers or [])]
        return replace(self, disabled_optimizers=[*(self.disabled_optimizers or []), *extra])


def default_quantization_preset() -> str:
    """The Optimum quantization preset for this CPU, read from its instruction-set flags."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    from ..measurements import cpu_flags  # the one reader of /proc/cpuinfo

    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


@dataclass
class VariantChoiceConfig:
    """How :func:`~fastformers_hf.optimize_for_inference` builds candidate variants and picks one.

    A candidate is kept only if it loses at most ``tolerance`` accuracy points against the PyTorch model: on the
    labelled eval set when there is one, otherwise measured as the share of sample predictions that disagree with
    PyTorch (an upper bound on the accuracy it can lose). Among those kept, the fastest at batch 1 wins; those within
    ``speed_margin`` of its latency count as equally fast, and the one that loses the fewest points among them wins.
    """

    candidates: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"help": f"Variants to build: {', '.join(VARIANTS)}."})
    tolerance: float = field(default=1.0, metadata={"help": "Accuracy points a variant may lose against PyTorch fp32."})
    speed_margin: float = field(
        default=0.03, metadata={"help": "Variants within this fraction of the fastest one's latency count as equally "
                                        "fast; among them the one that loses the fewest points wins."})
    max_logit_diff: float | None = field(
        default=None, metadata={"help": "Optional bound on the largest |logit - PyTorch logit| for every variant."})
    fp32_atol: float = field(
        default=1e-3,
        metadata={"help": "Largest logit difference allowed for fp32 variants (they must match PyTorch)."})
    optimization_level: str = field(
        default="O2", metadata={"help": "Optimum preset used for the fused variants (O1-O3)."})
    quantization_preset: str = field(
        default="auto", metadata={"help": f"auto (from CPU flags) or one of {', '.join(QUANTIZATION_PRESETS)}."})
    per_channel: bool | None = field(
        default=None, metadata={"help": "Per-channel int8 weights; None = the preset's default."})
    sample_size: int = field(
        default=200, metadata={"help": "Inputs timed per variant (and checked, when there is no eval set)."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Cap on the eval examples checked per variant."})
    latency_repeats: int = field(
        default=5, metadata={"help": "Timed passes over the sample, interleaved across variants."})
    warmup: int = field(default=5, metadata={"help": "Untimed runs per variant before timing."})
    max_length: int = field(default=128, metadata={"help": "Tokenizer truncation length for the eval/sample inputs."})
    text_fields: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "Text columns of the eval set; None = guess (sentence, question+passage, ...)."})
    data_name: str | None = field(default=None, metadata={"help": "Name of the eval data in reports (e.g. sst2-dev)."})
    latency_data_name: str | None = field(
        default=None, metadata={"help": "Name of the latency data in reports (e.g. production-sample)."})
    measure_pytorch: bool = field(
        default=True, metadata={"help": "Also time PyTorch, for speed-up ratios in the report."})
    session: SessionConfig = field(default_factory=SessionConfig, metadata={"help": "Session settings for timing."})
    route: str = field(default="auto", metadata={"help": "How graphs are exported, fused and quantized: optimum, "
                                                         "onnxruntime (torch.onnx.export + onnxruntime's own tools) "
                                                         "or auto (optimum where it is installed)."})
    seed: int = field(default=0, metadata={"help": "Seed for the random sample and shuffling."})

    def __post_init__(self):
        if isinstance(self.session, dict):
            self.session = SessionConfig(**self.session)
        unknown = [c for c in self.candidates if c not in VARIANTS]
        if unknown or not self.candidates:
            raise FastFormersError(
                f"unknown candidate variant(s) {unknown or '(none given)'}; choose from {', '.join(VARIANTS)}.")
        if self.tolerance is None or self.tolerance < 0:
            raise FastFormersError(f"tolerance must be >= 0 accuracy points, got {self.tolerance}.")
        if self.optimization_level not in OPTIMIZATION_LEVELS[:3]:
            raise FastFormersError(
                f"optimization_level {self.optimization_level!r} is not a CPU preset; "
                "use O1, O2 or O3 (O4 is fp16 for GPU).")
        if self.quantization_preset == "auto":
            self.quantization_preset = default_quantization_preset()
        if self.quantization_preset not in QUANTIZATION_PRESETS:
            raise FastFormersError(
                f"quantization_preset {self.quantization_preset!r} is unknown; "
                f"use auto or one of {', '.join(QUANTIZATION_PRESETS)}.")
        if not 0 <= self.speed_margin < 1:
            raise FastFormersError(f"speed_margin is a fraction of the fastest latency in [0, 1), got {self.speed_margin}.")
        if self.route not in ("auto", "optimum", "onnxruntime"):
            raise FastFormersError(f"route {self.route!r} is unknown; use auto, optimum or onnxruntime.")
        if self.sample_size < 1 or self.latency_repeats < 1 or self.warmup < 0:
            raise FastFormersError("sample_size and latency_repeats must be >= 1 and warmup >= 0.")

    def to_dict(self) -> dict:
        return asdict(self)
