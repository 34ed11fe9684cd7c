"""Training stages: SRL (step-wise RL), SFT (baseline), RLVR (outcome RL)."""
