"""Data: downloading, checking, remapping, splitting and preprocessing datasets; images, masks and colours."""
