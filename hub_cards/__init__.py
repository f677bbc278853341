"""Model cards for compressed models: card data read from recorded JSON, a Jinja template, rendering.

Needs no torch and imports nothing from fastformers_hf: a card can be rendered anywhere the model directory is.
"""
from .card_data import (MEASURE_HINT, MEASUREMENTS_FILE, TRAINING_FILE, CardDataError, FastFormersCardData,
                        Measurement, Variant, hub_dataset, repo_tree, weight_shapes)
from .render import README, model_card, render_card, write_card
from .training_facts import describe_dataset, load_training_facts, non_default_hyperparameters, save_training_facts

__all__ = [
    "CardDataError", "FastFormersCardData", "MEASURE_HINT", "MEASUREMENTS_FILE", "Measurement", "README",
    "TRAINING_FILE", "Variant", "describe_dataset", "hub_dataset", "load_training_facts", "model_card",
    "non_default_hyperparameters", "render_card", "repo_tree", "save_training_facts", "weight_shapes", "write_card",
]
