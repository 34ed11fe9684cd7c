"""The always-on management layer: schedules, a job queue with leases, alerts and training cost."""
