"""Inference: the engine (scorers, flips, sliding windows), whole splits, folders of new images,
the writer of one image's prediction, ONNX, and the run a comparison selects."""
