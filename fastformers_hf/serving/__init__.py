"""Serving on CPUs: the multi-instance process pool and the instances x threads x batch layout search."""
