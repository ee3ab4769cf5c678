"""Models: the registries of names users write, building models and losses, the device, checkpoints."""
