"""Delete the network interfaces Cilium leaves behind, so `pulumi destroy` can finish.

In ENI IPAM mode cilium-operator creates ENIs for pod addresses and attaches them to the
nodes. Only a running operator deletes detached ones (its garbage collector, by the GC
tags below); once the nodes are gone nothing does, and an `available` interface makes
DeleteSubnet fail with DependencyViolation: the most reported way a Cilium-on-EKS destroy
fails. `Teardown` holds a dynamic resource whose delete sweeps them, after the nodes and
before the subnets.

Imports the AWS API helper and nothing else of the program; the Cilium component
(components/cilium.py) makes the Teardown.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import pulumi.dynamic
from botocore.exceptions import ClientError

from components.aws_api import aws_client

# The tags Cilium puts on the ENIs it creates and garbage-collects by: the chart's
# `eni.gcTags` default, `{"io.cilium/cilium-managed": "true", "io.cilium/cluster-name":
# <cluster.name>}` (values.yaml). components/cilium.py sets them explicitly from here.
CILIUM_MANAGED_TAG = "io.cilium/cilium-managed"
CLUSTER_NAME_TAG = "io.cilium/cluster-name"

# EC2 throttles with RequestLimitExceeded; the other two are the codes botocore's retry
# modes treat as throttling too. Backoff 1, 2, 4, 8, 16 s: six attempts, about 30 s.
THROTTLING_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
THROTTLE_ATTEMPTS = 6
THROTTLE_FIRST_DELAY = 1.0
NOT_FOUND_CODE = "InvalidNetworkInterfaceID.NotFound"

# Attached interfaces, and the states of an instance on its way out: a node's interfaces
# become `available` (or are deleted, with DeleteOnTermination) a while after its node
# group is deleted, and one that becomes `available` after the sweep still blocks.
ATTACHED_STATUSES = ("in-use", "detaching")
ENDING_INSTANCE_STATES = frozenset({"shutting-down", "terminated", "stopping"})
# An instance DescribeInstances no longer returns (terminated a while ago) is ending too.
GONE = "gone"
# Instances Karpenter launched for this cluster, as its own instance listing finds them
# (karpenter-provider-aws 1.14 pkg/providers/instance: these tag keys and the cluster's
# name). Still running once Karpenter is gone, they hold the subnets.
KARPENTER_TAG_KEYS = ("karpenter.sh/nodepool", "karpenter.k8s.aws/ec2nodeclass")
EKS_CLUSTER_NAME_TAG = "eks:eks-cluster-name"
NOT_ENDING_INSTANCE_STATES = ("pending", "running", "stopped")
# EC2 takes at most 200 values in one filter.
FILTER_VALUES_MAX = 200

T = TypeVar("T")
Retry = Callable[[Callable[[], Any]], Any]  # _retrying with its sleep bound


def eni_gc_tags(cluster_name: T) -> dict[str, T | str]:
    """The GC tags of this cluster's Cilium ENIs: what the chart is told (the name may be an
    output there) and the sweep seeks."""
    return {CILIUM_MANAGED_TAG: "true", CLUSTER_NAME_TAG: cluster_name}


class SweepError(RuntimeError):
    """Some interfaces could not be deleted (the others were), or instances still run."""


def sweep_enis(
    ec2: Any,  # a boto3 EC2 client (botocore generates its methods at run time: untyped)
    vpc_id: str,
    cluster_name: str,
    *,
    settle_timeout: float = 300,
    poll_interval: float = 10,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Delete this cluster's detached Cilium ENIs in `vpc_id`; return their ids, sorted.

    First waits, at most `settle_timeout` seconds, for the cluster's interfaces still
    attached to instances that are going away: swept too early, they would become
    `available` after the sweep and block the subnets all the same. Interfaces of running
    instances are neither waited for nor touched. Then deletes every `available` interface
    carrying both GC tags with this cluster's name. Safe to run again: an interface already
    gone is skipped. Deletion errors do not stop the other deletions; they are raised
    together at the end as one `SweepError`.
    """
    retry = functools.partial(_retrying, sleep=sleep)

    leftovers = karpenter_instances(ec2, vpc_id, cluster_name, retry)
    if leftovers:
        listing = ", ".join(f"{i} ({state})" for i, state in leftovers)
        raise SweepError(
            f"{len(leftovers)} instance(s) Karpenter launched for cluster {cluster_name} still "
            f"run in {vpc_id}: {listing}. Deleting its EC2NodeClass should have terminated "
            "them (is the controller gone?). Terminate them (aws ec2 terminate-instances "
            f"--instance-ids {' '.join(i for i, _ in leftovers)}), then run make destroy again."
        )

    deadline = clock() + settle_timeout
    while waiting := _settling(ec2, vpc_id, cluster_name, retry):
        log(
            f"waiting for {len(waiting)} Cilium ENI(s) of {cluster_name} to detach from ending "
            "instances: " + ", ".join(f"{e} ({s} on {i}, {st})" for e, s, i, st in waiting)
        )
        if clock() >= deadline:
            log(f"still attached after {settle_timeout:g} s; sweeping the detached ones anyway")
            break
        sleep(poll_interval)

    deleted: list[str] = []
    failed: list[str] = []
    for eni in _list_enis(ec2, vpc_id, cluster_name, ("available",), retry):
        eni_id = eni["NetworkInterfaceId"]
        try:
            retry(functools.partial(ec2.delete_network_interface, NetworkInterfaceId=eni_id))
        except ClientError as err:
            error = err.response.get("Error", {})
            if error.get("Code") != NOT_FOUND_CODE:
                failed.append(f"{eni_id}: {error.get('Code')}: {error.get('Message')}")
            continue
        deleted.append(eni_id)
    if failed:
        raise SweepError(
            f"could not delete {len(failed)} Cilium ENI(s) of cluster {cluster_name} in "
            f"{vpc_id}: " + "; ".join(failed) + f". Deleted: {', '.join(deleted) or 'none'}. "
            "The sweep is idempotent: run the destroy again (`make destroy`)."
        )
    return sorted(deleted)


def karpenter_instances(
    ec2: Any, vpc_id: str, cluster_name: str, retry: Retry
) -> list[tuple[str, str]]:
    """(instance id, state) of the instances Karpenter launched for this cluster in the VPC
    that are not on their way out, sorted."""
    filters = [
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": f"tag:{EKS_CLUSTER_NAME_TAG}", "Values": [cluster_name]},
        {"Name": "instance-state-name", "Values": list(NOT_ENDING_INSTANCE_STATES)},
        *({"Name": "tag-key", "Values": [key]} for key in KARPENTER_TAG_KEYS),
    ]
    paginator = ec2.get_paginator("describe_instances")
    found = []
    for reservation in retry(
        functools.partial(_all_pages, paginator, "Reservations", Filters=filters)
    ):
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            if (
                instance.get("VpcId") == vpc_id
                and tags.get(EKS_CLUSTER_NAME_TAG) == cluster_name
                and all(key in tags for key in KARPENTER_TAG_KEYS)
                and instance["State"]["Name"] in NOT_ENDING_INSTANCE_STATES
            ):
                found.append((instance["InstanceId"], instance["State"]["Name"]))
    return sorted(found)


def _retrying(call: Callable[[], T], *, sleep: Callable[[float], None]) -> T:
    """`call()`, again after a growing pause while AWS throttles it, at most THROTTLE_ATTEMPTS
    times. Any client may come in, so its own retry configuration is not relied on."""
    attempt = 1
    while True:
        try:
            return call()
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code not in THROTTLING_CODES or attempt >= THROTTLE_ATTEMPTS:
                raise
            sleep(THROTTLE_FIRST_DELAY * 2 ** (attempt - 1))
            attempt += 1


def _list_enis(
    ec2: Any,
    vpc_id: str,
    cluster_name: str,
    statuses: Collection[str],
    retry: Retry,
) -> list[dict[str, Any]]:
    """This cluster's Cilium ENIs in the VPC with one of `statuses`, from every page.

    Filtered by EC2, then checked again here: a wrong filter must not widen the sweep."""
    tags = eni_gc_tags(cluster_name)
    filters = [
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "status", "Values": list(statuses)},
        *({"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()),
    ]
    paginator = ec2.get_paginator("describe_network_interfaces")
    return [
        eni
        for eni in retry(
            functools.partial(_all_pages, paginator, "NetworkInterfaces", Filters=filters)
        )
        if eni.get("VpcId") == vpc_id
        and eni.get("Status") in statuses
        and tags.items() <= {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}.items()
    ]


def _settling(
    ec2: Any, vpc_id: str, cluster_name: str, retry: Retry
) -> list[tuple[str, str, str, str]]:
    """(ENI id, ENI status, instance id, instance state) of this cluster's interfaces still
    attached to instances that are ending, sorted."""
    attached = {
        eni["NetworkInterfaceId"]: (eni["Status"], eni["Attachment"]["InstanceId"])
        for eni in _list_enis(ec2, vpc_id, cluster_name, ATTACHED_STATUSES, retry)
        if eni.get("Attachment", {}).get("InstanceId")
    }
    states = _instance_states(ec2, sorted({i for _, i in attached.values()}), retry)
    return sorted(
        (eni_id, status, instance, states.get(instance, GONE))
        for eni_id, (status, instance) in attached.items()
        if states.get(instance, GONE) in ENDING_INSTANCE_STATES | {GONE}
    )


def _instance_states(ec2: Any, instance_ids: list[str], retry: Retry) -> dict[str, str]:
    """{instance id: state name}; an instance EC2 no longer knows is absent (by filter, not
    by InstanceIds, which fails the whole call on an unknown id)."""
    paginator = ec2.get_paginator("describe_instances")
    states: dict[str, str] = {}
    for start in range(0, len(instance_ids), FILTER_VALUES_MAX):
        chunk = instance_ids[start : start + FILTER_VALUES_MAX]
        filters = [{"Name": "instance-id", "Values": chunk}]
        for reservation in retry(
            functools.partial(_all_pages, paginator, "Reservations", Filters=filters)
        ):
            for instance in reservation["Instances"]:
                states[instance["InstanceId"]] = instance["State"]["Name"]
    return states


def _all_pages(paginator: Any, result_key: str, **params: Any) -> list[dict[str, Any]]:
    """The `result_key` items of every page (listed again from the start when retried)."""
    return [item for page in paginator.paginate(**params) for item in page[result_key]]


class EniSweeperProvider(pulumi.dynamic.ResourceProvider):
    """A record of where to sweep (`region`, `vpc_id`, `cluster_name`); deleting it sweeps.

    create, diff, update and read touch nothing in AWS. A changed input (a new VPC,
    cluster name or region) is an in-place update of the record: `diff` never names
    replacement keys, because a replacement deletes the old resource, i.e. sweeps, in the
    middle of an update, and the engine asks this same `diff` whether a replaced VPC or
    cluster drags the sweeper along. Pulumi's default diff (unknown, so the engine compares
    inputs) would update in place too, but its default `update` returns no outputs: the
    state would lose region, VPC and cluster name, and `delete` could not run. `olds` are
    the recorded outputs, which are the inputs, `__provider` included.

    Pickled by reference (module and class name), so the dynamic-provider host, started
    in the project directory, imports this module to run it; the instance has no state,
    so the serialized provider is the same string on every run.
    """

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(f"{props['cluster_name']}-eni-sweeper", dict(props))

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        changed = [k for k in olds.keys() | news.keys() if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[])

    def update(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(dict(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        ec2 = aws_client("ec2", props["region"])
        # The dynamic-provider process has no engine connection: pulumi.log.info writes to
        # stderr, which the CLI relays.
        deleted = sweep_enis(ec2, props["vpc_id"], props["cluster_name"], log=pulumi.log.info)
        pulumi.log.info(
            f"deleted {len(deleted)} leaked Cilium ENI(s) in {props['vpc_id']}: "
            + (", ".join(deleted) or "none")
        )


class EniSweeper(pulumi.dynamic.Resource, name="EniSweeper"):
    """Sweeps this cluster's leaked Cilium ENIs when deleted (see EniSweeperProvider)."""

    region: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    cluster_name: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        cluster_name: pulumi.Input[str],
        subnet_ids: pulumi.Input[Sequence[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "region": region,
            "vpc_id": vpc_id,
            "cluster_name": cluster_name,
            # Recorded so the sweeper depends on the subnets: deleted (swept) before them.
            "subnet_ids": subnet_ids,
        }
        super().__init__(EniSweeperProvider(), name, props, opts)


@dataclass
class TeardownArgs:
    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    cluster_name: pulumi.Input[str]  # the cluster's name *output*: waits for the cluster
    subnet_ids: pulumi.Input[Sequence[str]]  # the private subnets, where pods' ENIs live


class Teardown(pulumi.ComponentResource):
    """What `pulumi destroy` needs to succeed: the ENI sweep, in the right place.

    Destroy runs the graph backwards, so the order comes from dependencies: the sweeper
    depends on the VPC, the private subnets and the cluster's name output (hence on the
    cluster, whose security group Cilium's ENIs use); the node group and the Cilium
    release list it in their `depends_on`. On destroy they go first (no operator, no
    nodes), then the sweep runs, then the cluster, the subnets and the VPC. A sweep error
    fails the delete, Pulumi keeps the sweeper in the state, and `make destroy` can simply
    be run again.
    """

    sweeper: EniSweeper

    def __init__(
        self, name: str, args: TeardownArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cilium-eks:index:Teardown", name, None, opts)
        self.sweeper = EniSweeper(
            "eni-sweeper",
            region=args.region,
            vpc_id=args.vpc_id,
            cluster_name=args.cluster_name,
            subnet_ids=args.subnet_ids,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
