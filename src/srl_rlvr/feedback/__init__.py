"""Learning from production: records of served requests and their feedback (more to come: the monitor
that decides when to retrain, and the retraining job)."""
