"""Evaluation: generate on held-out problems, score with the task's verifier and metrics."""
