"""components/teardown.py: the ENI sweep that lets `pulumi destroy` delete subnets and VPC,
against moto's EC2, and the dynamic provider that runs it on delete."""

from __future__ import annotations

from typing import Any

import boto3
import pulumi
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pulumi.dynamic.dynamic import serialize_provider

from components import teardown
from components.teardown import (
    EniSweeperProvider,
    SweepError,
    eni_gc_tags,
    sweep_enis,
)
from tests.harness import load_provider_in_fresh_process

REGION = "ap-northeast-2"
CLUSTER = "cilium-eks-dev"
AMI = "ami-12c6146b"  # one of moto's stock images


@pytest.fixture(scope="module")
def aws():
    """One mocked AWS account for the module (moto's start-up and reset cost most of the
    time here); each test works in VPCs of its own. Dummy credentials, and a default region
    unlike REGION: code that ignores the region it is given looks in the wrong place."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            env.setenv(key, value)
        env.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            yield boto3.Session()


@pytest.fixture
def ec2(aws):
    """A client of its own per test (tests hook into its events), from one session (a new
    session loads EC2's service model again)."""
    return aws.client("ec2", region_name=REGION)


class Clock:
    """Injectable time: `sleep` advances `now`, records the pause and runs `on_sleep`.
    An hour of sleep fails the test: no wait in the sweep is that long."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        assert self.now < 3600, "the sweep slept for an hour: a wait is not bounded"
        self.on_sleep()


def sweep(ec2: Any, vpc: str, **kwargs: Any) -> tuple[list[str], list[str], Clock]:
    """sweep_enis with instant time; returns (deleted ids, log lines, clock)."""
    clock, logs = Clock(), []
    deleted = sweep_enis(
        ec2, vpc, CLUSTER, log=logs.append, sleep=clock.sleep, clock=clock.clock, **kwargs
    )
    return deleted, logs, clock


def make_vpc(ec2: Any, cidr: str = "10.0.0.0/16") -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/20"))
    return vpc, subnet["Subnet"]["SubnetId"]


def make_eni(ec2: Any, subnet: str, tags: dict[str, str] | None = None) -> str:
    kwargs: dict[str, Any] = {"SubnetId": subnet}
    if tags:
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        kwargs["TagSpecifications"] = [{"ResourceType": "network-interface", "Tags": tag_list}]
    return ec2.create_network_interface(**kwargs)["NetworkInterface"]["NetworkInterfaceId"]


def attach_to_new_instance(ec2: Any, subnet: str, eni: str) -> tuple[str, str]:
    """Run an instance, attach `eni` as its second interface; (instance id, attachment id)."""
    instance = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet)
    instance_id = instance["Instances"][0]["InstanceId"]
    attachment = ec2.attach_network_interface(
        NetworkInterfaceId=eni, InstanceId=instance_id, DeviceIndex=1
    )
    return instance_id, attachment["AttachmentId"]


def existing(ec2: Any, *vpcs: str) -> set[str]:
    found = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": list(vpcs)}])
    return {n["NetworkInterfaceId"] for n in found["NetworkInterfaces"]}


def error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DeleteNetworkInterface")


class FailingDeletes:
    """An EC2 client whose delete_network_interface fails as `failures` says, per call
    (1-based): an AWS error code, or a callable run before the real call."""

    def __init__(self, client: Any, failures: dict[int, Any]) -> None:
        self._client = client
        self._failures = failures
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_network_interface(self, **params: Any) -> Any:
        self.calls.append(params["NetworkInterfaceId"])
        failure = self._failures.get(len(self.calls))
        if isinstance(failure, str):
            raise error(failure, f"simulated {failure}")
        if failure is not None:
            failure(params["NetworkInterfaceId"])
        return self._client.delete_network_interface(**params)


def paged(client: Any, page_size: int = 5) -> list[int]:
    """Make moto's DescribeNetworkInterfaces return pages of `page_size` with a NextToken,
    as EC2 does (moto ignores MaxResults); returns the sizes of the pages served."""
    served: list[int] = []

    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["page_start"] = int(params.pop("NextToken", 0))

    def after(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        start, everything = context["page_start"], parsed["NetworkInterfaces"]
        parsed["NetworkInterfaces"] = everything[start : start + page_size]
        if start + page_size < len(everything):
            parsed["NextToken"] = str(start + page_size)
        served.append(len(parsed["NetworkInterfaces"]))

    client.meta.events.register("before-parameter-build.ec2.DescribeNetworkInterfaces", before)
    client.meta.events.register("after-call.ec2.DescribeNetworkInterfaces", after)
    return served


def test_gc_tags_are_the_charts_keys_with_the_cluster_name():
    assert eni_gc_tags(CLUSTER) == {
        "io.cilium/cilium-managed": "true",
        "io.cilium/cluster-name": CLUSTER,
    }


def test_only_this_clusters_detached_cilium_enis_in_this_vpc_are_deleted(ec2):
    vpc, subnet = make_vpc(ec2)
    other_vpc, other_subnet = make_vpc(ec2, "10.1.0.0/16")
    ours = [make_eni(ec2, subnet, eni_gc_tags(CLUSTER)) for _ in range(2)]
    kept = [
        make_eni(ec2, subnet),  # untagged
        make_eni(ec2, subnet, eni_gc_tags("another-cluster")),
        make_eni(ec2, subnet, {"io.cilium/cilium-managed": "true"}),  # no cluster tag
        make_eni(ec2, subnet, {"io.cilium/cluster-name": CLUSTER}),  # not Cilium-managed
        make_eni(ec2, other_subnet, eni_gc_tags(CLUSTER)),  # another VPC
    ]

    deleted, _, _ = sweep(ec2, vpc)

    assert deleted == sorted(ours)
    assert existing(ec2, vpc, other_vpc) == set(kept)


def test_the_tags_and_vpc_are_checked_even_if_ec2_ignored_the_filters(aws, ec2):
    vpc, subnet = make_vpc(ec2)
    other_vpc, other_subnet = make_vpc(ec2, "10.1.0.0/16")
    ours = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    kept = {
        make_eni(ec2, subnet),
        make_eni(ec2, subnet, eni_gc_tags("another-cluster")),
        make_eni(ec2, other_subnet, eni_gc_tags(CLUSTER)),
    }
    unfiltered = aws.client("ec2", region_name=REGION)
    unfiltered.meta.events.register(
        "before-parameter-build.ec2.DescribeNetworkInterfaces",
        lambda params, **_: params.pop("Filters", None),
    )

    assert sweep(unfiltered, vpc)[0] == [ours]
    assert existing(ec2, vpc, other_vpc) == kept


def test_ec2_filters_the_listing_by_vpc_status_and_both_tags(ec2):
    vpc, _ = make_vpc(ec2)
    sent: list[dict[str, list[str]]] = []
    ec2.meta.events.register(
        "before-parameter-build.ec2.DescribeNetworkInterfaces",
        lambda params, **_: sent.append({f["Name"]: f["Values"] for f in params["Filters"]}),
    )

    sweep(ec2, vpc)

    assert {
        "vpc-id": [vpc],
        "status": ["available"],
        "tag:io.cilium/cilium-managed": ["true"],
        "tag:io.cilium/cluster-name": [CLUSTER],
    } in sent


def test_every_page_of_the_listing_is_swept(aws, ec2):
    vpc, subnet = make_vpc(ec2)
    ours = [make_eni(ec2, subnet, eni_gc_tags(CLUSTER)) for _ in range(12)]
    paging = aws.client("ec2", region_name=REGION)
    served = paged(paging, page_size=5)

    deleted, _, _ = sweep(paging, vpc)

    assert served[-3:] == [5, 5, 2]  # the deletion's listing, after the settle check's
    assert deleted == sorted(ours)
    assert existing(ec2, vpc) == set()


def test_a_second_sweep_finds_nothing_and_raises_nothing(ec2):
    vpc, subnet = make_vpc(ec2)
    make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    sweep(ec2, vpc)

    assert sweep(ec2, vpc)[0] == []


def test_an_interface_deleted_meanwhile_is_neither_an_error_nor_reported(ec2):
    vpc, subnet = make_vpc(ec2)
    first, second = (make_eni(ec2, subnet, eni_gc_tags(CLUSTER)) for _ in range(2))
    racing = FailingDeletes(
        ec2, {1: lambda eni: ec2.delete_network_interface(NetworkInterfaceId=eni)}
    )

    deleted, _, _ = sweep(racing, vpc)

    gone_meanwhile = racing.calls[0]
    assert deleted == sorted({first, second} - {gone_meanwhile})
    assert existing(ec2, vpc) == set()


# The codes EC2 (RequestLimitExceeded) and botocore's retry modes call throttling.
@pytest.mark.parametrize("code", ["RequestLimitExceeded", "Throttling", "ThrottlingException"])
def test_a_throttled_delete_is_retried_after_a_pause(ec2, code):
    vpc, subnet = make_vpc(ec2)
    eni = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    throttled = FailingDeletes(ec2, {1: code, 2: code})

    deleted, _, clock = sweep(throttled, vpc)

    assert deleted == [eni]
    assert throttled.calls == [eni, eni, eni]
    assert clock.sleeps == [1, 2]  # a pause that doubles
    assert existing(ec2, vpc) == set()


def test_throttling_that_does_not_end_gives_up_after_bounded_retries(ec2):
    vpc, subnet = make_vpc(ec2)
    make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    always = FailingDeletes(ec2, dict.fromkeys(range(1, 100), "Throttling"))

    with pytest.raises(SweepError, match="Throttling"):
        sweep(always, vpc)
    # six tries over about half a minute: 1, 2, 4, 8, 16 s between them
    assert len(always.calls) == 6


def test_errors_do_not_stop_the_other_deletions_and_are_named_at_the_end(ec2):
    vpc, subnet = make_vpc(ec2)
    enis = {make_eni(ec2, subnet, eni_gc_tags(CLUSTER)) for _ in range(4)}
    failing = FailingDeletes(
        ec2, {1: "InvalidNetworkInterfaceID.InUse", 3: "UnauthorizedOperation"}
    )

    with pytest.raises(SweepError) as raised:
        sweep(failing, vpc)

    in_use, unauthorized = failing.calls[0], failing.calls[2]
    message = str(raised.value)
    assert f"{in_use}: InvalidNetworkInterfaceID.InUse: simulated" in message
    assert f"{unauthorized}: UnauthorizedOperation: simulated" in message
    assert "make destroy" in message
    assert existing(ec2, vpc) == {in_use, unauthorized}
    assert set(failing.calls) == enis


def instances_in(client: Any, state: str) -> None:
    """Make every instance DescribeInstances returns be in `state` (moto has no
    transient states)."""

    def after(parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed["Reservations"]:
            for instance in reservation["Instances"]:
                instance["State"]["Name"] = state

    client.meta.events.register("after-call.ec2.DescribeInstances", after)


@pytest.mark.parametrize("state", ["shutting-down", "terminated", "stopping"])
def test_interfaces_of_ending_instances_are_waited_for_then_swept(ec2, state):
    vpc, subnet = make_vpc(ec2)
    eni = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    instance, attachment = attach_to_new_instance(ec2, subnet, eni)
    clock = Clock()

    def ec2_detaches_on_the_second_poll() -> None:
        if len(clock.sleeps) == 2:
            ec2.detach_network_interface(AttachmentId=attachment, Force=True)

    clock.on_sleep = ec2_detaches_on_the_second_poll
    logs: list[str] = []

    instances_in(ec2, state)

    deleted = sweep_enis(
        ec2, vpc, CLUSTER, poll_interval=10, log=logs.append, sleep=clock.sleep, clock=clock.clock
    )

    assert deleted == [eni]
    assert clock.sleeps == [10, 10]
    assert len(logs) == 2
    assert all(eni in line and instance in line and state in line for line in logs)


def test_the_wait_is_bounded_and_then_the_sweep_goes_on(ec2):
    vpc, subnet = make_vpc(ec2)
    stuck = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    detached = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    instance, _ = attach_to_new_instance(ec2, subnet, stuck)
    ec2.terminate_instances(InstanceIds=[instance])

    deleted, logs, clock = sweep(ec2, vpc, settle_timeout=30, poll_interval=10)

    assert deleted == [detached]
    assert sum(clock.sleeps) == 30
    assert stuck in logs[-2] and "30 s" in logs[-1]
    assert stuck in existing(ec2, vpc)


def test_interfaces_of_running_instances_are_neither_waited_for_nor_touched(ec2):
    vpc, subnet = make_vpc(ec2)
    eni = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    instance, _ = attach_to_new_instance(ec2, subnet, eni)
    state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"

    deleted, logs, clock = sweep(ec2, vpc)

    assert (deleted, logs, clock.sleeps) == ([], [], [])
    assert eni in existing(ec2, vpc)


# The dynamic provider: what `pulumi up` records and what `pulumi destroy` runs.

RECORD = {"region": REGION, "vpc_id": "vpc-0abc", "cluster_name": CLUSTER, "subnet_ids": ["s-1"]}


def test_create_records_what_delete_needs_and_calls_no_aws(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("create made a client"))

    result = EniSweeperProvider().create(dict(RECORD))

    assert result.id == f"{CLUSTER}-eni-sweeper"
    assert result.outs == RECORD


def test_a_changed_record_is_an_in_place_update_never_a_replacement(monkeypatch):
    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("diff/update made a client"))
    provider = EniSweeperProvider()
    news = {**RECORD, "vpc_id": "vpc-0def", "cluster_name": "renamed"}

    assert provider.diff("id", RECORD, dict(RECORD)).changes is False
    diff = provider.diff("id", RECORD, news)
    assert diff.changes is True
    assert not diff.replaces
    # Pulumi's default update returns no outputs: delete would have lost its record.
    assert provider.update("id", RECORD, news).outs == news


def test_delete_sweeps_in_the_recorded_region(ec2):
    vpc, subnet = make_vpc(ec2)
    make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    untagged = make_eni(ec2, subnet)

    EniSweeperProvider().delete(
        f"{CLUSTER}-eni-sweeper", {**RECORD, "vpc_id": vpc, "__provider": "..."}
    )

    assert existing(ec2, vpc) == {untagged}


def test_the_serialized_provider_is_stable_and_loads_in_a_fresh_process():
    """What Pulumi stores in the state and its dynamic-provider host (started in the
    project directory) unpickles before calling delete. Loading it imports
    components.teardown, as every `pulumi up` does: boto3 waits for delete."""
    serialized = serialize_provider(EniSweeperProvider())
    assert serialize_provider(EniSweeperProvider()) == serialized
    loaded, boto3_imported, reserialized = load_provider_in_fresh_process(serialized)
    assert loaded == "components.teardown EniSweeperProvider"
    assert not boto3_imported
    assert reserialized == serialized


def test_a_detaching_interface_of_an_ending_instance_is_waited_for(ec2):
    vpc, subnet = make_vpc(ec2)
    eni = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    _, attachment = attach_to_new_instance(ec2, subnet, eni)
    instances_in(ec2, "terminated")

    def detaching(parsed: dict[str, Any], **_: Any) -> None:
        for interface in parsed["NetworkInterfaces"]:
            if interface["Status"] == "in-use":
                interface["Status"] = "detaching"  # on its way to available

    ec2.meta.events.register("after-call.ec2.DescribeNetworkInterfaces", detaching)
    clock = Clock()
    clock.on_sleep = lambda: ec2.detach_network_interface(AttachmentId=attachment, Force=True)

    deleted = sweep_enis(ec2, vpc, CLUSTER, poll_interval=10, sleep=clock.sleep, clock=clock.clock)

    assert deleted == [eni] and clock.sleeps == [10]


def test_delete_asks_for_botocore_s_standard_retries(ec2, monkeypatch):
    made: list[dict[str, Any]] = []
    real = boto3.client

    def client(service: str, **kwargs: Any) -> Any:
        made.append(kwargs)
        return real(service, region_name=kwargs["region_name"])

    monkeypatch.setattr(boto3, "client", client)
    vpc, _ = make_vpc(ec2)
    EniSweeperProvider().delete("id", {**RECORD, "vpc_id": vpc})
    (kwargs,) = made
    assert kwargs["region_name"] == REGION
    assert kwargs["config"].retries == {"mode": "standard", "max_attempts": 10}


def test_delete_reports_through_pulumi_s_log(ec2, monkeypatch):
    # the dynamic provider's stdout is not the user's terminal: pulumi.log reaches the CLI,
    # for the sweep's progress (what it waits for) and for its result
    vpc, subnet = make_vpc(ec2)
    eni = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "info", lambda message, *a, **k: logged.append(message))
    real_sweep = teardown.sweep_enis

    def sweep_logging(*args: Any, **kwargs: Any) -> list[str]:
        kwargs["log"]("progress")  # what the sweep says while it waits
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(teardown, "sweep_enis", sweep_logging)
    EniSweeperProvider().delete("id", {**RECORD, "vpc_id": vpc})
    assert logged[0] == "progress"
    assert eni in logged[-1] and vpc in logged[-1]


# --- instances Karpenter launched and did not terminate -----------------------------------

KARPENTER_TAGS = {
    "karpenter.sh/nodepool": "default",
    "karpenter.k8s.aws/ec2nodeclass": "default",
    "eks:eks-cluster-name": CLUSTER,
}


def karpenter_instance(ec2: Any, subnet: str, tags: dict[str, str]) -> str:
    (instance,) = ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"]  # fmt: skip
    return instance["InstanceId"]


def test_a_karpenter_instance_still_running_fails_the_sweep_naming_it(ec2):
    # Its NodeClass's delete should have terminated it: a subnet delete would fail later
    # with a bare DependencyViolation; the sweep says which instance and what to do.
    vpc, subnet = make_vpc(ec2)
    instance = karpenter_instance(ec2, subnet, KARPENTER_TAGS)
    leaked = make_eni(ec2, subnet, eni_gc_tags(CLUSTER))
    with pytest.raises(SweepError) as err:
        sweep(ec2, vpc)
    message = str(err.value)
    assert instance in message and "running" in message
    assert f"aws ec2 terminate-instances --instance-ids {instance}" in message
    assert leaked in existing(ec2, vpc)  # nothing deleted before the leftover is dealt with


@pytest.mark.parametrize(
    "tags",
    [
        {**KARPENTER_TAGS, "eks:eks-cluster-name": "another-cluster"},
        {k: v for k, v in KARPENTER_TAGS.items() if k != "karpenter.sh/nodepool"},
        {"eks:eks-cluster-name": CLUSTER},  # a managed node, say
    ],
    ids=["other-cluster", "not-karpenters", "not-karpenter-at-all"],
)
def test_instances_karpenter_did_not_launch_for_this_cluster_are_not_in_the_way(ec2, tags):
    vpc, subnet = make_vpc(ec2)
    karpenter_instance(ec2, subnet, tags)
    sweep(ec2, vpc)  # no SweepError


def test_a_terminated_karpenter_instance_is_fine(ec2):
    vpc, subnet = make_vpc(ec2)
    instance = karpenter_instance(ec2, subnet, KARPENTER_TAGS)
    ec2.terminate_instances(InstanceIds=[instance])
    sweep(ec2, vpc)
