"""The library side of ``fastformers-hf bench``: the FastFormers ablation chain, its settings and report."""
