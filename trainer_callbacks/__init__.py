"""Thin ``TrainerCallback``s that call fastformers_hf's core functions (no algorithm lives here)."""
from .model_card import ModelCardCallback
from .structured_pruning import StructuredPruningCallback

__all__ = ["ModelCardCallback", "StructuredPruningCallback"]
