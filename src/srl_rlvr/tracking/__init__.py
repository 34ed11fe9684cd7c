"""MLflow runs (every stage and command a tracked run) and the model registry (`registry:` references)."""
