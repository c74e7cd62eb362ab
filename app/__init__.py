"""RadSynth Studio: train, sample, reconstruct, audit and read synthetic medical images."""

__version__ = "0.1.0"
