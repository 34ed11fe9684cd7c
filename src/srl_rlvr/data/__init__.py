"""Trajectories and problems on disk: schema, JSONL IO, content-hashed dataset versions."""
