"""The Evaluation & Audit panel's parts: the controls column, the memorization audit tab, the metrics tab."""
