"""MRI: FFT conventions, masks, operators, reconstruction methods."""
