"""Reconstruction from incomplete measurements: MRI k-space and CT sinograms."""
