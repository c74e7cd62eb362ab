"""Samplers, one file each, and the sample job."""
