"""Predictors over PyTorch or ONNX Runtime models: tokenisation, dynamic length, label post-processing."""
