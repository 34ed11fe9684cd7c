"""The generate stage: expert trajectories from three models working together (retrieve context,
teacher plans steps, verifier checks), through one OpenAI-compatible client."""
