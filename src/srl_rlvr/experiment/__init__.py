"""A/B of training recipes: arms (overrides of one base config) × seeds, each in its own process,
scored on the same held-out problems, compared with paired bootstrap intervals, and decided."""
