"""Training: the loop (loop.py: the train job, EMA, AMP, checkpoints, resume, previews, DDP) and the checkpoints it
writes and every consumer reads (checkpoints.py). The spec and its presets are in app.engine.specs.train."""
