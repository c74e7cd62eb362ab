"""CT: Radon transform, filtered back-projection, score-based reconstruction and denoising."""
