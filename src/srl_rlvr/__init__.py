"""srl-rlvr: expert trajectories -> SRL -> RLVR -> evaluation -> registry -> serving, in one tool."""

__version__ = "0.1.0"
