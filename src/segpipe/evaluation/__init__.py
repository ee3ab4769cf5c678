"""Evaluation: per-class scores, confusion matrices, cross-validation summaries."""
