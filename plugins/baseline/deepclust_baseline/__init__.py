"""Baseline plugins: the simplest choice for every slot (no pretraining, random or k-means heads, ...)."""
