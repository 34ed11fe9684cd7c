"""`s3://bucket/prefix` wherever a path is taken: datasets, checkpoints, run outputs, reports.

boto3 directly, not fsspec/s3fs: boto3 is the extra's one dependency already (SageMaker, Step
Functions and CloudWatch need it), its managed transfers do multipart uploads of large checkpoints,
and s3fs would add aiobotocore, which pins botocore to a narrow range that fights boto3's. The layer
is these few functions: copy a file or folder up or down, read and write a small text object.
MLflow takes `s3://` artifact roots itself (`mlflow server --default-artifact-root s3://...`).
"""

from __future__ import annotations

from pathlib import Path

from srl_rlvr.cloud.session import client, error_code
from srl_rlvr.errors import CloudError

SCHEME = "s3://"


def is_s3(path: str | Path) -> bool:
    return str(path).startswith(SCHEME)


def split(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key has no leading or trailing '/'."""
    if not is_s3(uri):
        raise CloudError(f"{uri}: not an S3 path (s3://bucket/prefix)")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise CloudError(f"{uri}: no bucket name")
    return bucket, key.strip("/")


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def require_bucket(bucket: str, region: str | None = None) -> None:
    """Fail before anything is launched when the bucket is missing or not ours to use."""
    s3 = client("s3", region)
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as e:
        code = error_code(e)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise CloudError(
                f"S3 bucket '{bucket}' does not exist: create it (deploy/terraform) or set aws.bucket"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise CloudError(f"S3 bucket '{bucket}': access denied to these credentials") from None
        raise


def upload(local: str | Path, uri: str, region: str | None = None) -> str:
    """Copy a file, or a folder with everything under it, to `uri`; return `uri`."""
    local = Path(local)
    bucket, key = split(uri)
    require_bucket(bucket, region)
    s3 = client("s3", region)
    if local.is_file():
        s3.upload_file(str(local), bucket, key)
        return uri
    if not local.is_dir():
        raise CloudError(f"{local}: no such file or folder to upload")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{key}/{path.relative_to(local).as_posix()}".lstrip("/"))
    return uri


def download(uri: str, local: str | Path, region: str | None = None) -> Path:
    """Copy an object to the file `local`, or every object under a prefix into the folder `local`."""
    bucket, key = split(uri)
    require_bucket(bucket, region)
    s3, local = client("s3", region), Path(local)
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for obj in page.get("Contents", [])
    ]
    if key in keys:  # one object
        local.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(local))
        return local
    inside = [k for k in keys if k.startswith(f"{key}/") or not key]
    if not inside:
        raise CloudError(f"{uri}: nothing there")
    for k in inside:
        target = local / k[len(key) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, k, str(target))
    return local


def read_text(uri: str, region: str | None = None) -> str:
    bucket, key = split(uri)
    try:
        return client("s3", region).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except Exception as e:
        if error_code(e) in ("NoSuchKey", "404"):
            raise CloudError(f"{uri}: no such object") from None
        if error_code(e) == "NoSuchBucket":
            raise CloudError(f"S3 bucket '{bucket}' does not exist") from None
        raise


def write_text(uri: str, text: str, region: str | None = None) -> str:
    bucket, key = split(uri)
    require_bucket(bucket, region)
    client("s3", region).put_object(Bucket=bucket, Key=key, Body=text.encode())
    return uri


def local_path(path: str | Path, scratch: Path, region: str | None = None) -> Path:
    """`path` itself when local; an S3 path is downloaded under `scratch` first."""
    if not is_s3(path):
        return Path(path)
    _, key = split(str(path))
    return download(str(path), scratch / (key.rsplit("/", 1)[-1] or "data"), region)
