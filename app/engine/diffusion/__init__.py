"""Noise processes and their losses, one file each."""
