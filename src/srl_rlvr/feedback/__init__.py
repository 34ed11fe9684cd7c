"""Learning from production: the monitor that decides when to retrain, the review queue of flagged
answers, and the retraining job. The records it reads are `data.records`, written by the server."""
