"""Managing models after training: registry and tracking, selection (MCDA), cost-benefit, routing."""
