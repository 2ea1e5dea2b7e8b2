"""components/image_cache.py: with network.vpcEndpoints, every image Cilium, the demo and
the checks run comes through the stack's ECR cache of quay.io, by digest; the cache is
warmed by tag first (a first pull by digest of an uncached image fails:
aws/containers-roadmap #2837); nothing changes without VPC endpoints."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pulumi.dynamic.dynamic import serialize_provider

from components.aws_api import warm
from components.image_cache import (
    CHART_IMAGES,
    PREFIX_MAX,
    CacheWarmupProvider,
    cache_prefix,
    chart_images,
    delete_cached,
    upstream_path,
)
from tests.harness import Graph, load_provider_in_fresh_process, run_ok
from tests.test_cilium_chart import ACCEPTED, RELEASE, chart_defaults, chart_dir, render

RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
WARMUP = "pulumi-python:dynamic:CacheWarmup"
NODE_GROUP = "eks:index:ManagedNodeGroup"
MIRROR = "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/cilium-eks-dev-quay"


@pytest.fixture(scope="module")
def cached() -> Graph:
    return run_ok({"network.vpcEndpoints": True})


def pod_images(objects) -> list[str]:
    """Every container and init container image of every pod the objects would run."""
    images = []
    for obj in objects:
        spec = obj.get("spec") or {}
        for template in (
            (spec.get("template") or {}).get("spec"),
            (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec"),
        ):
            for container in [*(template or {}).get("containers", []),
                              *(template or {}).get("initContainers", [])]:  # fmt: skip
                images.append(container["image"])
    return images


WORKLOADS = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
)


def demo_images(graph: Graph) -> list[str]:
    return pod_images(r.inputs for r in graph.resources if r.type in WORKLOADS)


def test_without_vpc_endpoints_nothing_changes(dev):
    assert not dev.of_type(RULE) and not dev.of_type(WARMUP)
    values = dev.one(RELEASE).inputs["values"]
    assert "repository" not in values.get("image", {})  # the chart's own quay.io images
    assert all(i.startswith("quay.io/cilium/") and "@sha256:" in i for i in demo_images(dev))
    node_policies = [
        r for r in dev.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.startswith("node")
    ]
    assert node_policies == []  # nodes keep AmazonEC2ContainerRegistryReadOnly only


def test_the_cache_mirrors_quay_io_under_a_prefix_of_this_stack(cached):
    rule = cached.one(RULE)
    assert rule.inputs["upstreamRegistryUrl"] == "quay.io"  # public: no credential
    assert rule.inputs["ecrRepositoryPrefix"] == "cilium-eks-dev-quay"
    assert "credentialArn" not in rule.inputs


def test_the_demo_and_checks_pull_through_the_cache_by_digest(cached):
    images = demo_images(cached)
    assert images and all(i.startswith(f"{MIRROR}/cilium/") and "@sha256:" in i for i in images)


def test_nodes_may_do_a_first_pull_through_the_cache_and_no_more(cached):
    policy = cached.one("aws:iam/rolePolicy:RolePolicy", "node-image-cache")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    # ECR user guide: a first pull imports the upstream image and creates its repository
    assert sorted(statement["Action"]) == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert statement["Resource"] == (
        "arn:aws:ecr:ap-northeast-2:123456789012:repository/cilium-eks-dev-quay/*"
    )
    assert policy.inputs["role"] == "node"


def test_nodes_start_only_once_the_cache_is_warm_and_they_may_use_it(cached):
    group = cached.one(NODE_GROUP)
    for res in (cached.one(RULE), cached.one(WARMUP),
                cached.one("aws:iam/rolePolicy:RolePolicy", "node-image-cache")):  # fmt: skip
        assert cached.waits_for(group, res), res.type
    # and the control plane does not wait for any of it
    assert not cached.waits_for(cached.one("eks:index:Cluster"), cached.one(WARMUP))


def test_the_warmup_knows_what_to_import(cached):
    warmup = cached.one(WARMUP).inputs
    assert warmup["chart_version"] == "1.19.6" and warmup["prefix"] == "cilium-eks-dev-quay"
    assert warmup["registry_id"] == "123456789012" and warmup["region"] == "ap-northeast-2"
    # the images the program pins, by tag (the chart's come from the chart)
    assert warmup["images"] == ["cilium/json-mock:v1.3.8", "cilium/starwars:v2.1"]


@pytest.mark.parametrize("version", ACCEPTED)
def test_every_image_the_chart_runs_comes_through_the_cache_by_digest(reference, version):
    graph = run_ok({"network.vpcEndpoints": True, "cilium.version": version})
    objects = render(reference, version, json.dumps(graph.one(RELEASE).inputs["values"]))
    images = pod_images(objects)
    assert images
    strays = [i for i in images if not i.startswith(f"{MIRROR}/") or "@sha256:" not in i]
    assert strays == []
    # and the warm-up, which reads the chart archive, imports each of them by its tag
    archive = (chart_dir(reference, version) / f"cilium-{version}.tgz").read_bytes()
    warmed = set(chart_images(archive))
    pulled = {upstream_path("quay.io/" + i.removeprefix(f"{MIRROR}/")) for i in images}
    assert pulled <= warmed, pulled - warmed


@pytest.mark.parametrize("version", ACCEPTED)
def test_the_repositories_replaced_are_the_charts_own(reference, version):
    defaults = chart_defaults(reference, version)
    for path, upstream in CHART_IMAGES.items():
        node: Any = defaults
        for key in path:
            node = node[key]
        assert node["repository"] == f"quay.io/{upstream}", path


def test_chart_images_reads_the_operators_eni_build(reference):
    archive = (chart_dir(reference, "1.19.6") / "cilium-1.19.6.tgz").read_bytes()
    images = chart_images(archive)
    assert ("cilium/operator-aws", "v1.19.6") in images
    assert ("cilium/cilium", "v1.19.6") in images
    assert not [p for p, _ in images if p.startswith(("ghcr.io", "docker.io"))]


@pytest.mark.parametrize("cluster", ["cilium-eks-dev", "a" * 32, "team-payments-production-eu-1"])
def test_the_prefix_is_ecrs_length_and_this_stacks_alone(cluster):
    prefix = cache_prefix(cluster)
    assert 2 <= len(prefix) <= PREFIX_MAX and prefix.endswith("-quay")
    assert cache_prefix(cluster) == prefix  # deterministic


def test_long_names_that_share_a_start_get_their_own_prefix():
    a, b = "payments-production-eu-west-1-a", "payments-production-eu-west-1-b"
    assert cache_prefix(a) != cache_prefix(b)


# --- the warm-up and the clean-up, against ECR -----------------------------------------------


class FakeEcr:
    """batch_get_image as ECR answers a pull-through repository: found, or a failure."""

    def __init__(self, missing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[dict[str, Any]] = []
        self.missing = missing

    def batch_get_image(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        tag = params["imageIds"][0]["imageTag"]
        if f"{params['repositoryName']}:{tag}" in self.missing:
            return {"images": [], "failures": [{"failureReason": "Requested image not found"}]}
        return {"images": [{"imageId": {"imageTag": tag}}], "failures": []}


def test_the_warmup_asks_for_each_image_by_tag_through_the_prefix():
    ecr = FakeEcr()
    images = [("cilium/cilium", "v1.19.6"), ("cilium/json-mock", "v1.3.8")]
    assert warm(ecr, "123456789012", "p-quay", images) == [
        "cilium/cilium:v1.19.6",
        "cilium/json-mock:v1.3.8",
    ]
    assert [c["repositoryName"] for c in ecr.calls] == [
        "p-quay/cilium/cilium",
        "p-quay/cilium/json-mock",
    ]
    assert all(c["imageIds"] == [{"imageTag": c["imageIds"][0]["imageTag"]}] for c in ecr.calls)
    assert all(c["registryId"] == "123456789012" for c in ecr.calls)
    # multi-arch images are indexes: the node's accepted types
    assert "application/vnd.oci.image.index.v1+json" in ecr.calls[0]["acceptedMediaTypes"]


def test_a_failed_import_fails_the_update_naming_every_image_after_trying_all():
    ecr = FakeEcr(missing={"p-quay/cilium/cilium:v9.9.9"})
    with pytest.raises(RuntimeError) as err:
        warm(ecr, "1", "p-quay", [("cilium/cilium", "v9.9.9"), ("cilium/certgen", "v0.4.8")])
    assert "cilium/cilium:v9.9.9: Requested image not found" in str(err.value)
    assert len(ecr.calls) == 2


@mock_aws
def test_destroy_deletes_the_cached_repositories_of_this_prefix_only(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    ecr = boto3.client("ecr", region_name="ap-northeast-2")
    for name in ("p-quay/cilium/cilium", "p-quay/cilium/json-mock", "other-quay/cilium/cilium",
                 "p-quay-x/cilium/cilium", "mine"):  # fmt: skip
        ecr.create_repository(repositoryName=name)
    account = ecr.describe_repositories()["repositories"][0]["registryId"]
    assert delete_cached(ecr, account, "p-quay") == [
        "p-quay/cilium/cilium",
        "p-quay/cilium/json-mock",
    ]
    left = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
    assert left == ["mine", "other-quay/cilium/cilium", "p-quay-x/cilium/cilium"]
    assert delete_cached(ecr, account, "p-quay") == []  # again: nothing left, no error


def test_the_warmup_provider_is_stable_and_loads_in_a_fresh_process():
    # what Pulumi stores, and its dynamic-provider host loads before create and delete
    serialized = serialize_provider(CacheWarmupProvider())
    loaded, boto3_imported, reserialized = load_provider_in_fresh_process(serialized)
    assert loaded == "components.image_cache CacheWarmupProvider"
    assert not boto3_imported  # only a warm-up or a destroy pays for it
    assert reserialized == serialized
