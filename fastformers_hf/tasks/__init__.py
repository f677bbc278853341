"""Task data: loading named tasks and user files, tokenisation, metrics, generated offline data."""
