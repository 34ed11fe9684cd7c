"""Errors a user can cause. Each carries a one-line message that says what to change.

The CLI prints these without a stack trace; anything else is our bug and keeps its trace.
"""


class UserError(Exception):
    """Base for problems in the user's input (config, data, model id, endpoint)."""


class ConfigError(UserError):
    """The YAML config or a command-line override is invalid."""


class DataError(UserError):
    """A data file (trajectories, problems) is malformed or missing."""


class ModelLoadError(UserError):
    """A model id or path cannot be loaded."""


class TaskError(UserError):
    """A task name or `module:Class` reference cannot be resolved."""


class EndpointError(UserError):
    """An LLM endpoint (teacher, judge) refused a request or kept failing; the message never holds a key."""


class EndpointDown(EndpointError):
    """The endpoint's circuit breaker is open: it failed too often in a row, so no request was sent."""


class CloudError(UserError):
    """An AWS setting or resource the user controls is missing or wrong (credentials, bucket, tier)."""
