"""Synthetic training images from a trained generator: sampling, the copy gate, the confidence filter,
quality metrics against real images, manifest and synthetic DICOM export (stage ``generate``)."""
