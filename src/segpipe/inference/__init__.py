"""Inference: the engine (scorers, flips, sliding windows), whole splits, folders of new images, ONNX."""
