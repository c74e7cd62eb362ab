"""Score / noise networks."""
