"""Thin ``TrainerCallback``s that call fastformers_hf's core functions (no algorithm lives here)."""
from .structured_pruning import StructuredPruningCallback

__all__ = ["StructuredPruningCallback"]
