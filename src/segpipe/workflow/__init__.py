"""Workflow: the config, experiments, DVC and the layout of outputs."""
