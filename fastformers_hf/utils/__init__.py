"""Shared mechanisms: atomic output folders, interleaved timing and the load monitor."""
