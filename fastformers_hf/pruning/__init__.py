"""Structured pruning: head/FFN importance scores, physical slicing, optimizer-state remap, ``load_pruned``."""
