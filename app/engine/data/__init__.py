"""Readers, ingest into the HDF5 cache, datasets, demo data and EDA statistics."""
