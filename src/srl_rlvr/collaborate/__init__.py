"""Expert trajectory generation: retrieve context, teacher plans steps, verifier checks."""
