"""One boto3 session for every AWS call, and the errors a user can cause turned into one line.

boto3 reads AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>) itself, so an emulator or a VPC
endpoint needs no setting of ours.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from srl_rlvr.errors import CloudError


def boto3_module() -> Any:
    try:
        import boto3
    except ImportError:
        raise CloudError("the AWS commands need boto3: pip install 'srl-rlvr[aws]'") from None
    return boto3


@cache
def _session(region: str | None) -> Any:
    return boto3_module().session.Session(region_name=region)


def client(service: str, region: str | None = None) -> Any:
    """A client with credentials checked first: a missing key is one line here, not a traceback
    from the first real call."""
    session = _session(region)
    if session.get_credentials() is None:
        raise CloudError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run on a "
            "machine with an instance role"
        )
    if session.region_name is None:
        raise CloudError("no AWS region: set aws.region in the config or AWS_REGION")
    return session.client(service)


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def reset() -> None:
    """Forget the cached sessions (credentials or region changed in this process, as in tests)."""
    _session.cache_clear()


def calling(service: str, region: str | None, operation: str, **kwargs: Any) -> Any:
    """One API call whose refusal (a bad parameter, a quota, missing permissions) is the user's to
    fix: one line naming the call and AWS's reason, instead of a traceback."""
    try:
        return getattr(client(service, region), operation)(**kwargs)
    except Exception as e:
        code = error_code(e)
        if not code:
            raise
        message = getattr(e, "response", {}).get("Error", {}).get("Message", "")
        raise CloudError(f"{service} {operation} refused: {code}: {message}") from None
