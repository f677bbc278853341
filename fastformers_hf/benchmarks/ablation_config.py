"""Settings of ``fastformers-hf bench ablation`` and the paper's numbers it is compared with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import FastFormersError

# FastFormers on an Azure F16s_v2 (8 physical cores), BoolQ dev, batch 1. Only the abstract's numbers were found
# in the reference material available while writing this (arXiv 2010.13382: "233.9x speed-up on CPU", "4,223 USD
# to just 18 USD" per 100 million requests); Table 3's per-step ratios were not, so they are not printed.
PAPER = {"source": "FastFormers (Kim & Hassan Awadalla, 2020, arXiv 2010.13382), abstract",
         "cumulative_speedup": 233.9, "usd_per_100m_first": 4223.0, "usd_per_100m_last": 18.0,
         "instance": "Azure F16s_v2", "step_speedups": None}
BOOLQ_DEV_QUERIES = 3270  # size of the BoolQ dev set the paper timed
# int8 graphs tried for every int8 step; the fastest is kept, measured at the threads the step runs with.
INT8_CANDIDATES = ["int8", "int8-fused", "int8-unfused-ln", "int8-attention", "int8-attention-fast-gelu",
                   "int8-attention-fast-gelu-per-tensor"]


@dataclass
class AblationConfig:
    """Settings of ``fastformers-hf bench ablation``."""

    out: str = field(default="runs/bench_ablation", metadata={"help": "ablation.json/.md/.png and cached models."})
    tables: str = field(default="shapes,sst2", metadata={"help": "Which tables: shapes (paper shapes, random "
                                                                   "weights, speed only), sst2 and boolq (real, with "
                                                                   "accuracy; boolq reads --boolq_compress)."})
    rounds: int = field(default=7, metadata={"help": "Timed passes per step, interleaved across steps."})
    pass_seconds: float = field(default=2.0, metadata={"help": "Target length of one timed pass of a step."})
    baseline_queries: int = field(default=4, metadata={"help": "Queries per pass of the slow BERT-base padded-512 "
                                                                "step (~0.6 s each here)."})
    threads: Optional[int] = field(default=None, metadata={"help": "Intra-op threads of single-instance steps "
                                                                  "(default: all physical cores)."})
    # Table 1: synthetic BoolQ-like lengths
    pool_size: int = field(default=1000, metadata={"help": "Synthetic (question, passage) pairs to draw from."})
    median_tokens: int = field(default=140, metadata={"help": "Median token length of the synthetic pairs."})
    min_tokens: int = field(default=32, metadata={"help": "Shortest synthetic pair (tokens)."})
    max_tokens: int = field(default=512, metadata={"help": "Longest synthetic pair (tokens)."})
    # Table 2: real data
    teacher: str = field(default="../shared/models/sst2-minilm-teacher", metadata={"help": "Fine-tuned teacher."})
    sst2_dir: str = field(default="../shared/data/sst2", metadata={"help": "Folder with SST-2 train.tsv/dev.tsv."})
    distilled_student: str = field(default="runs/sst2-compress/1-distill", metadata={
        "help": "Reuse this distilled student if it exists (default: stage 1 of `fastformers-hf compress --recipe "
                "examples/recipes/sst2.yaml`); else one is distilled under --out."})
    pruned_student: str = field(default="runs/sst2-compress/3-redistill", metadata={
        "help": "Reuse this pruned, re-distilled version of the distilled student if it exists (default: stage 3 of "
                "the same compress run); else the student is pruned and re-distilled under --out."})
    distillation_logits: str = field(default="runs/bench_distillation/teacher_logits.npy", metadata={
        "help": "Cached teacher logits to reuse for distillation (checked against the teacher before use)."})
    pruning_dir: str = field(default="runs/bench_pruning", metadata={
        "help": "bench_pruning output: its cached teacher logits of the re-distillation subset are reused."})
    alternative_pruned: str = field(default="runs/bench_pruning/models/first_order-h6-f768-redistilled", metadata={
        "help": "If it exists, an extra row: this pruned and re-distilled model (bench_pruning prunes the teacher) "
                "-> int8 -> multi-instance."})
    student_layers: int = field(default=4, metadata={"help": "Student depth when distilling one here."})
    distil_steps: int = field(default=1500, metadata={"help": "Distillation steps of 32 when distilling one here."})
    prune_heads: int = field(default=6, metadata={"help": "Heads kept per layer (of 12) in the pruned step."})
    prune_ffn: int = field(default=768, metadata={"help": "FFN width kept per layer (of 1536) in the pruned step."})
    scoring_examples: int = field(default=1000, metadata={"help": "Held-out train sentences for first-order scores."})
    redistil_sentences: int = field(default=25600, metadata={"help": "Train sentences for re-distillation (25,600: "
                                    "bench_pruning --redistil_steps 800: its cached teacher logits are reused)."})
    redistil_steps: int = field(default=1000, metadata={"help": "Re-distillation steps of 32 after pruning."})
    max_length: int = field(default=128, metadata={"help": "SST-2 token limit (the teacher's padded length)."})
    # Table 3: BoolQ, every model from a compress run
    boolq_dir: str = field(default="../shared/data/superglue/boolq", metadata={"help": "BoolQ train/dev JSON lines."})
    boolq_compress: str = field(default="runs/bench-superglue/boolq", metadata={
        "help": "output_dir of `compress --recipe examples/recipes/superglue/boolq.yaml`: its 0-teacher, 1-distill "
                "and 3-redistill stages are the chain's models."})
    boolq_max_length: int = field(default=512, metadata={"help": "BoolQ token limit (the teacher's padded length)."})
    boolq_choice_examples: int = field(default=200, metadata={"help": "Held-out BoolQ train pairs the int8 variant "
                                       "is chosen on (the recipe's scoring_examples: the rows it held out)."})
    # Cost and energy
    instance_name: str = field(default="Azure F16s_v2", metadata={"help": "Instance the cost column assumes."})
    instance_usd_per_hour: float = field(default=0.677, metadata={"help": "Its price (pay-as-you-go Linux; an "
                                                                          "assumption: check current pricing)."})
    instance_physical_cores: int = field(default=8, metadata={"help": "Its physical cores (16 vCPUs = 8 cores); "
                                                                      "throughput is scaled linearly from ours."})
    watts_per_core: float = field(default=4.0, metadata={"help": "Power of one busy core when RAPL counters are "
                                                                 "not readable (server CPUs: ~360-500 W TDP over "
                                                                 "96-128 cores)."})
    seed: int = field(default=0, metadata={"help": "Seed of random weights and synthetic data."})

    def __post_init__(self):
        unknown = [t for t in self.table_list if t not in ("shapes", "sst2", "boolq")]
        if unknown or not self.table_list:
            raise FastFormersError(f"unknown table(s) {unknown or '(none)'}; use any of shapes, sst2, boolq, e.g. "
                                   "shapes,sst2.")
        if self.rounds < 1 or self.pass_seconds <= 0 or self.baseline_queries < 1:
            raise FastFormersError("rounds and baseline_queries must be >= 1 and pass_seconds > 0.")
        if not self.min_tokens <= self.median_tokens <= self.max_tokens or self.min_tokens < 8:
            raise FastFormersError("need 8 <= min_tokens <= median_tokens <= max_tokens.")

    @property
    def table_list(self) -> list[str]:
        return [t.strip() for t in self.tables.split(",") if t.strip()]
