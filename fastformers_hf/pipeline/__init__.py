"""The staged ``compress`` recipe and the shape planning that precedes it."""
