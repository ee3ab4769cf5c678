"""Training: the loop, batch augmentation and live monitoring."""
