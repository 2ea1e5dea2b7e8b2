"""The AWS API clients the dynamic providers call (the ENI sweep, the image cache warm-up,
the mesh's VPC peering): the ambient credentials, like the kubeconfig's, in the region
given, with botocore's standard retry mode, so that throttling is retried, not fatal.

boto3 is imported on first use: about 0.1 s that only a create or delete pays, never a
`pulumi up` that changes none of them.

Imports nothing of the program: it is below every component (tests/test_layout.py).
"""

from __future__ import annotations

from typing import Any

RETRIES = {"mode": "standard", "max_attempts": 10}


def aws_client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    # a copy: botocore rewrites the dict it is given (max_attempts -> total_max_attempts)
    return boto3.client(service, region_name=region, config=Config(retries=dict(RETRIES)))
