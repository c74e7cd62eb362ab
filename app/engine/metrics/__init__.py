"""Image and distribution metrics, feature extractors."""
