"""The AWS API helpers: the clients the dynamic providers call (the ENI sweep, the image
cache warm-up, the mesh's VPC peering), with the ambient credentials, like the
kubeconfig's, in the region given, with botocore's standard retry mode, so that
throttling is retried, not fatal; and the one call two callers make, the ECR cache's
warm-up (components/image_cache.py before the nodes pull, scripts/perf.py before its pods).

boto3 is imported on first use: about 0.1 s that only a create or delete pays, never a
`pulumi up` that changes none of them.

Imports nothing of the program: it is below every component (tests/test_layout.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RETRIES = {"mode": "standard", "max_attempts": 10}
# The manifest types a node accepts: an image index (Cilium's are multi-arch) or one image.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def aws_client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    # a copy: botocore rewrites the dict it is given (max_attempts -> total_max_attempts)
    return boto3.client(service, region_name=region, config=Config(retries=dict(RETRIES)))


def warm(ecr: Any, registry_id: str, prefix: str, images: Sequence[tuple[str, str]]) -> list[str]:
    """Ask ECR for each (path, tag) through the cache, which imports it; the failures are
    raised together, naming each image, after every image was tried."""
    warmed, failed = [], []
    for path, tag in images:
        try:
            found = ecr.batch_get_image(
                registryId=registry_id,
                repositoryName=f"{prefix}/{path}",
                imageIds=[{"imageTag": tag}],
                acceptedMediaTypes=list(MANIFEST_TYPES),
            )
        except Exception as err:  # botocore's ClientError, or no route to ECR
            failed.append(f"{path}:{tag}: {err}")
            continue
        problems = found.get("failures") or []
        if problems:
            failed.append(f"{path}:{tag}: {problems[0].get('failureReason')}")
        else:
            warmed.append(f"{path}:{tag}")
    if failed:
        raise RuntimeError(
            f"the ECR cache {prefix}/ could not import {len(failed)} image(s) from quay.io: "
            + "; ".join(failed)
            + ". Nodes would fail to pull them by digest; `make up` again retries."
        )
    return warmed
