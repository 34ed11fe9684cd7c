"""Data on disk: trajectories and problems (schema, JSONL IO, content-hashed dataset versions), the
redaction of PII and secrets, and the production records the server writes."""
