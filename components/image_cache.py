"""An ECR pull-through cache for quay.io (with network.vpcEndpoints), so that a node whose
AZ has lost its NAT gateway still starts Cilium: Cilium's, the demo's and the checks'
images come from the stack's own registry, through the ecr.api, ecr.dkr and S3 endpoints,
still pinned by digest.

Two facts only AWS decides shape it:
- A pull by digest of an image the cache does not hold yet fails ("an uncached image
  returns as missing, even though the tag also is included": aws/containers-roadmap
  #2837). So before any node pulls, `CacheWarmup` asks ECR for each image by tag, which
  imports it; the nodes' pulls by digest then find it cached.
- Deleting a pull-through rule leaves the repositories it created. `CacheWarmup`'s delete
  (after the nodes are gone on `pulumi destroy`) deletes them.

Which images: every quay.io image of the pinned Cilium chart (read from the chart itself,
helm.cilium.io, when the warm-up runs) and the images this program pins (the demo's).

Imports the AWS API helper and nothing else of the program.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_aws as aws

from components.aws_api import aws_client, warm

UPSTREAM = "quay.io"
CHART_URL = "https://helm.cilium.io/cilium-{version}.tgz"  # what the Helm release installs
# The Cilium chart values whose image repository the cache replaces, with the path under
# quay.io each one names (tests/test_image_cache.py checks them against every accepted
# chart's values.yaml, and that the rendered chart pulls nothing else from quay.io).
CHART_IMAGES: dict[tuple[str, ...], str] = {
    ("image",): "cilium/cilium",
    # the chart appends -aws for ENI IPAM (_helpers.tpl cilium.operator.image)
    ("operator", "image"): "cilium/operator",
    ("envoy", "image"): "cilium/cilium-envoy",
    ("certgen", "image"): "cilium/certgen",
    ("hubble", "relay", "image"): "cilium/hubble-relay",
    ("hubble", "ui", "frontend", "image"): "cilium/hubble-ui",
    ("hubble", "ui", "backend", "image"): "cilium/hubble-ui-backend",
    ("clustermesh", "apiserver", "image"): "cilium/clustermesh-apiserver",
}
OPERATOR_SUFFIX = "-aws"
# What a node needs beyond AmazonEC2ContainerRegistryReadOnly for a first pull through
# the cache (ECR user guide, "IAM permissions required to sync an upstream registry"):
# import the upstream image, and create the repository it lands in. Only under the prefix.
PULL_THROUGH_ACTIONS = ("ecr:BatchImportUpstreamImage", "ecr:CreateRepository")
# ECR's rule for a repository prefix: 2 to 30 characters.
PREFIX_MAX = 30


def cache_prefix(cluster_name: str) -> str:
    """The repository prefix of this stack's cache (one rule per prefix in a registry, so
    one per stack): `<cluster>-quay`, or a shortened name with a hash when that is too long."""
    prefix = f"{cluster_name}-quay"
    if len(prefix) <= PREFIX_MAX:
        return prefix
    digest = hashlib.sha256(cluster_name.encode()).hexdigest()[:8]
    return f"{cluster_name[:16].rstrip('-')}-{digest}-quay"


def upstream_path(image: str) -> tuple[str, str]:
    """quay.io/cilium/json-mock:v1.3.8@sha256:... -> ("cilium/json-mock", "v1.3.8")."""
    name = image.split("@", 1)[0].removeprefix(f"{UPSTREAM}/")
    path, _, tag = name.rpartition(":")
    return path, tag


def chart_images(archive: bytes) -> list[tuple[str, str]]:
    """(path under quay.io, tag) of every quay.io image in a Cilium chart archive's values,
    the operator as its ENI build; sorted, without repeats."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/values.yaml"))
        handle = tar.extractfile(member)
        assert handle is not None
        import yaml  # pyyaml: a dependency of pulumi; only the warm-up reads YAML

        values = yaml.safe_load(handle.read())
    found = set()
    for path, image in _images(values):
        repository = str(image.get("repository") or "")
        if not repository.startswith(f"{UPSTREAM}/") or not image.get("tag"):
            continue
        name = repository.removeprefix(f"{UPSTREAM}/")
        if path == ("operator", "image"):
            name += OPERATOR_SUFFIX
        found.add((name, str(image["tag"])))
    return sorted(found)


def _images(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    if isinstance(values, dict):
        if path and path[-1] == "image" and "repository" in values:
            yield path, values
        for key, value in values.items():
            yield from _images(value, (*path, str(key)))


def fetch_chart(version: str) -> bytes:
    with urllib.request.urlopen(CHART_URL.format(version=version), timeout=60) as response:
        return response.read()


def delete_cached(ecr: Any, registry_id: str, prefix: str) -> list[str]:
    """Delete the repositories the cache created under `prefix/` (images and all)."""
    names = [
        repo["repositoryName"]
        for page in ecr.get_paginator("describe_repositories").paginate(registryId=registry_id)
        for repo in page["repositories"]
        if repo["repositoryName"].startswith(f"{prefix}/")
    ]
    for name in names:
        try:
            ecr.delete_repository(registryId=registry_id, repositoryName=name, force=True)
        except ecr.exceptions.RepositoryNotFoundException:
            continue
    return sorted(names)


class CacheWarmupProvider(pulumi.dynamic.ResourceProvider):
    """Warms the cache on create and update (see the module docstring); deleting it
    deletes the cached repositories. Pickled by reference, like teardown.py's provider."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(f"{props['prefix']}-warmup", self._warm(props))

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        keys = ("region", "registry_id", "prefix", "chart_version", "images")
        return pulumi.dynamic.DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys))

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._warm(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        deleted = delete_cached(
            aws_client("ecr", props["region"]), props["registry_id"], props["prefix"]
        )
        pulumi.log.info(
            f"deleted {len(deleted)} cached repositories: {', '.join(deleted) or 'none'}"
        )

    def _warm(self, props: dict[str, Any]) -> dict[str, Any]:
        pinned = [(path, tag) for path, _, tag in (i.rpartition(":") for i in props["images"])]
        images = sorted({*chart_images(fetch_chart(props["chart_version"])), *pinned})
        warmed = warm(
            aws_client("ecr", props["region"]), props["registry_id"], props["prefix"], images
        )
        return {**props, "warmed": warmed}


class CacheWarmup(pulumi.dynamic.Resource, name="CacheWarmup"):
    """Imports the images into the cache before nodes pull them (CacheWarmupProvider)."""

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        registry_id: pulumi.Input[str],
        prefix: pulumi.Input[str],
        chart_version: str,
        images: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "region": region,
            "registry_id": registry_id,
            "prefix": prefix,
            "chart_version": chart_version,
            "images": sorted(images),
            "warmed": None,
        }
        super().__init__(CacheWarmupProvider(), name, props, opts)


@dataclass
class ImageCacheArgs:
    cluster_name: str
    region: str
    partition: str
    cilium_version: str
    images: Sequence[str]  # the images this program pins (quay.io/...:tag@digest)


class ImageCache(pulumi.ComponentResource):
    """The pull-through rule, the node permission it needs, and the warm-up.

    Outputs: `mirror`, what stands for quay.io in an image reference pulled through the
    cache (`<account>.dkr.ecr.<region>.amazonaws.com/<prefix>`: the Cilium component's
    image registry, and the demo's); `node_policy`, the policy document nodes need
    (attached by components/nodes.py, whose role it is); `ready`, what nodes wait for.
    """

    prefix: str
    mirror: pulumi.Output[str]
    node_policy: pulumi.Output[str]
    ready: list[pulumi.Resource]

    def __init__(
        self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.prefix = cache_prefix(args.cluster_name)
        rule = aws.ecr.PullThroughCacheRule(
            "quay",
            ecr_repository_prefix=self.prefix,
            upstream_registry_url=UPSTREAM,  # public: no credentials
            opts=child,
        )
        dns_suffix = aws.get_partition(opts=pulumi.InvokeOptions(parent=self)).dns_suffix
        self.mirror = rule.registry_id.apply(
            lambda account: f"{account}.dkr.ecr.{args.region}.{dns_suffix}/{self.prefix}"
        )
        self.node_policy = rule.registry_id.apply(
            lambda account: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": list(PULL_THROUGH_ACTIONS),
                            "Resource": f"arn:{args.partition}:ecr:{args.region}:{account}:"
                            f"repository/{self.prefix}/*",
                        }
                    ],
                }
            )
        )
        warmup = CacheWarmup(
            "warmup",
            region=args.region,
            registry_id=rule.registry_id,
            prefix=self.prefix,
            chart_version=args.cilium_version,
            images=[":".join(upstream_path(i)) for i in args.images],
            opts=child,
        )
        self.ready = [rule, warmup]
        self.register_outputs({"prefix": self.prefix, "mirror": self.mirror})
