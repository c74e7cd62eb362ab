"""The memorization audit: nearest-neighbour search (nn.py) and the calibrated audit job with its report (memorization.py)."""
