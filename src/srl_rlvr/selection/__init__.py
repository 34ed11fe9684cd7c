"""Choosing a model for a role: role profiles and the catalog, the decision tree, multi-criteria scoring
(MCDA), the selection record, and cost/benefit of replacing a model."""
