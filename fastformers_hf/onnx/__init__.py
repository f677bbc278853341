"""ONNX Runtime: configuration (presets, variant recipes as data), export, optimisation, quantisation, variant choice."""
