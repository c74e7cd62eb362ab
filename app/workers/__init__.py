"""Qt side of the job spine: local QThread runner, remote runner, job manager."""
