"""Distillation and tiers: a big model's verified answers make a small, fast one (`run.py`)."""
