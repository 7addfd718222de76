"""Experiments beyond one run: linear maps between models (E10), layer pruning, training (E11, E12)."""
