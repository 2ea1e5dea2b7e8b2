"""Run the real __main__.py under Pulumi mocks and print the declared graph as JSON.

Run by tests/harness.py, one process per configuration, as `pulumi up` runs one process
per deployment: the Pulumi runtime's global state starts clean and the stack config
arrives the way the CLI sends it (the PULUMI_CONFIG environment variable).

Or, with MOCK_CONSTRUCT set ({"type", "name", "inputs", "kubernetes"}), it constructs one
of the package's components the way the package's provider does for a program in another
language (`ComponentProvider.construct`, components/package.py): inputs keyed by the
schema's camelCase names, numbers as doubles, enums as their values; with "kubernetes", a
Kubernetes provider of the consumer's passed in the options' providers, by package, as the
provider SDK's server hands them over (pulumi/provider/server.py _construct_options). The
component's outputs (the state the provider returns) are recorded as the stack's outputs.

`python tests/mock_run.py` runs once, in a fresh interpreter. `--serve` is the same run,
made cheap: a server runs the program once (warm_imports) and then forks a child per
request (one JSON line on stdin: PULUMI_CONFIG, MOCK_WORLD, MOCK_CONSTRUCT, an output
path). Each child is
still one process per configuration with fresh runtime state; it only skips the imports
and the SDK's per-type caches, which are most of a run's cost (about 1.7 s cold, a
fraction of that forked).

The recording monitor keeps, for every registered resource: type, name, URN, whether it
is custom or a remote component, parent, provider, explicit and property dependencies,
aliases, its inputs as sent to the engine, and which of them were secret (dotted paths);
and the outputs each component registers (resource references become {"$ref": urn};
secret values are unwrapped).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import runpy
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
REGION = "ap-northeast-2"
# EC2's published facts (DescribeInstanceTypes): architectures, hypervisor ("" for bare
# metal), max network interfaces, IPv4 addresses per interface, default vCPUs.
INSTANCE_TYPES = {
    "t3.medium": (["x86_64"], "nitro", 3, 6, 2),
    "t3.nano": (["x86_64"], "nitro", 2, 2, 2),
    "m5.large": (["x86_64"], "nitro", 3, 10, 2),
    "m5.8xlarge": (["x86_64"], "nitro", 8, 30, 32),
    "m5.metal": (["x86_64"], "", 15, 50, 96),
    "c5.18xlarge": (["x86_64"], "nitro", 15, 50, 72),
    "t4g.medium": (["arm64"], "nitro", 3, 6, 2),
    "m7g.large": (["arm64"], "nitro", 3, 10, 2),
    "m6g.large": (["arm64"], "nitro", 3, 10, 2),
    "a1.large": (["arm64"], "nitro", 3, 10, 2),
    "t2.medium": (["i386", "x86_64"], "xen", 3, 6, 2),
    "m4.large": (["x86_64"], "xen", 2, 10, 2),
}
# Zones the mock region offers; the world's "azs" overrides (to test a region with too few).
DEFAULT_AZS = "ap-northeast-2a,ap-northeast-2b,ap-northeast-2c,ap-northeast-2d"


def world() -> dict[str, Any]:
    """What already exists in the mock account (MOCK_WORLD, JSON), for the program's
    look-ups: "azs" (comma-separated), "eksCluster" ({name, vpcId, subnetIds}),
    "logGroups" (names), "stacks" (other stacks' outputs: {"org/project/stack":
    {"outputs": {...}, "secretOutputNames": [...]}}), and which stack this run is
    ("stack", "organization"; default organization/dev), and the project it is in
    ("project"; default cilium-eks: another is a consumer's program). Empty: a fresh
    account."""
    return json.loads(os.environ.get("MOCK_WORLD") or "{}")


FIXTURES = ROOT / "tests" / "fixtures"


def config_region() -> str:
    """The stack's region, as the CLI hands it over (or the mock region)."""
    return json.loads(os.environ.get("PULUMI_CONFIG") or "{}").get("aws:region", REGION)


def partition() -> str:
    """The AWS partition of the stack's region, as ARNs in it carry it."""
    region = config_region()
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if "-gov-" in region else "aws"


OPT_IN_ZONE = "ap-northeast-2-wl1-cjj-wlz-1"  # a Wavelength zone
IMPAIRED_ZONE = "ap-northeast-2-0"


def plain(value: Any) -> Any:
    """A wire-format property value as plain JSON."""
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return plain(value.get("value"))
        if sig == rpc._special_resource_sig:
            return {"$ref": value["urn"]}
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Struct numbers are doubles
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """The dotted paths (list items by index) of the secret values in a wire-format value."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return [path]
        return [p for k, v in value.items() for p in secret_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in secret_paths(v, f"{path}.{i}")]
    return []


def _has_resource_ref(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_resource_sig:
            return True
        return any(_has_resource_ref(v) for v in value.values())
    return isinstance(value, list) and any(_has_resource_ref(v) for v in value)


def _refs_as_urns(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_resource_sig:
            return value["urn"]
        return {k: _refs_as_urns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_refs_as_urns(v) for v in value]
    return value


def alias_of(alias: Any) -> Any:
    """An alias as sent to the engine: a URN, or a spec ({"name", "type", "parentUrn", ...})."""
    return alias.urn or plain(json_format.MessageToDict(alias.spec))


class Mocks(pulumi.runtime.Mocks):
    """Plausible outputs: ids and ARNs derived from names, so runs are deterministic."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ.startswith("aws:"):
            service = args.typ.split(":")[1].split("/")[0]
            state.setdefault("arn", f"arn:aws:{service}:ap-northeast-2:{ACCOUNT}:{args.name}")
        if args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}"
            state["name"] = args.name
            rid = args.name
        if args.typ == "eks:index:Cluster":
            name = args.inputs.get("name", args.name)
            issuer = f"oidc.eks.ap-northeast-2.amazonaws.com/id/{name.upper()}"
            state.update(
                kubeconfigJson=json.dumps({"apiVersion": "v1", "clusters": [{"name": name}]}),
                # IAM names the provider in the region's partition (the Cilium component
                # reads the partition of its policy's ARNs from this ARN)
                oidcProviderArn=f"arn:{partition()}:iam::{ACCOUNT}:oidc-provider/{issuer}",
                oidcIssuer=issuer,
                core={"endpoint": f"https://{name.upper()}.gr7.{REGION}.eks.amazonaws.com"},
                clusterSecurityGroupId="sg-cluster",  # the security group EKS made
            )
        if args.typ == "aws:ec2/vpc:Vpc":
            state["ownerId"] = ACCOUNT
            rid = f"vpc-{world().get('stack', 'id')}"  # each stack of a mesh its own VPC
        if args.typ == "pulumi-python:dynamic:MeshLink":
            # one peering per pair of VPCs, whichever side made it (the other adopts it)
            pair = sorted([args.inputs["vpc_id"], args.inputs["peer_vpc_id"]])
            state["peering_id"] = "pcx-" + "-".join(pair)
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        if args.typ == "aws:ecr/pullThroughCacheRule:PullThroughCacheRule":
            state["registryId"] = ACCOUNT
        if args.typ == "aws:sqs/queue:Queue":
            state["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{args.inputs['name']}"
            state["arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{args.inputs['name']}"
        if args.typ == "aws:cloudwatch/eventRule:EventRule":
            state["name"] = args.name
        if args.typ == "pulumi:pulumi:StackReference":
            # another stack's outputs (a read: the id is the stack's name); none if unknown
            found = world().get("stacks", {}).get(args.inputs["name"], {})
            state.update(
                outputs=found.get("outputs", {}),
                secretOutputNames=found.get("secretOutputNames", []),
            )
            rid = args.inputs["name"]
        if args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = (FIXTURES / "mesh-ca.key").read_text()
        if args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            state["certPem"] = (FIXTURES / "mesh-ca.crt").read_text()
        if (
            args.typ == "kubernetes:core/v1:Service"
            and args.inputs.get("spec", {}).get("type") == "LoadBalancer"
        ):
            # what the load balancer controller reports once the NLB exists
            host = f"{args.name}-0123456789abcdef.elb.{config_region()}.amazonaws.com"
            state["status"] = {"loadBalancer": {"ingress": [{"hostname": host}]}}
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            # the region's zones, a Wavelength zone the account opted in to, and a zone EC2
            # reports impaired (both sort first): EC2 answers with them unless the request
            # filters them out
            zones = {
                name: ("available", "opt-in-not-required")
                for name in world().get("azs", DEFAULT_AZS).split(",")
            }
            zones[OPT_IN_ZONE] = ("available", "opted-in")
            zones[IMPAIRED_ZONE] = ("impaired", "opt-in-not-required")
            if "state" in args.args:
                zones = {n: z for n, z in zones.items() if z[0] == args.args["state"]}
            for wanted in args.args.get("filters", []):
                if wanted["name"] == "opt-in-status":
                    zones = {n: z for n, z in zones.items() if z[1] in wanted["values"]}
            names = sorted(zones)
            return {"names": names, "zoneIds": [f"apne2-az{i + 1}" for i in range(len(names))]}
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            name = args.args["instanceType"]
            if name not in INSTANCE_TYPES:
                raise Exception(f"no EC2 instance type {name}")  # as the provider reports it
            arch, hypervisor, enis, ips, vcpus = INSTANCE_TYPES[name]
            return {
                "instanceType": name, "supportedArchitectures": arch, "hypervisor": hypervisor,
                "bareMetal": hypervisor == "", "maximumNetworkInterfaces": enis,
                "maximumIpv4AddressesPerInterface": ips, "defaultVcpus": vcpus,
            }  # fmt: skip
        if args.token == "aws:eks/getAddonVersion:getAddonVersion":
            # EKS's default version of an add-on for a Kubernetes minor, or its newest
            addon, k8s = args.args["addonName"], args.args["kubernetesVersion"]
            if addon not in ("coredns", "kube-proxy", "vpc-cni"):
                raise Exception(f"no EKS add-on {addon}")
            build = 3 if args.args.get("mostRecent") else 1
            return {**args.args, "version": f"v1.12.{k8s.split('.')[1]}-eksbuild.{build}"}
        if args.token == "aws:ec2/getVpcEndpointService:getVpcEndpointService":
            # S3 offers both kinds of endpoint: EC2 needs to be told which
            if args.args["service"] == "s3" and "serviceType" not in args.args:
                raise Exception("multiple VPC Endpoint Services matched")
            return {**args.args, "serviceName": f"com.amazonaws.{REGION}.{args.args['service']}"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer",
                    "userId": "AIDAEXAMPLE", "id": ACCOUNT}  # fmt: skip
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if args.token == "aws:eks/getClusters:getClusters":
            cluster = world().get("eksCluster")
            return {"names": [cluster["name"]] if cluster else []}
        if args.token == "aws:eks/getCluster:getCluster":
            cluster = world().get("eksCluster")
            if not cluster or cluster["name"] != args.args["name"]:
                raise Exception(
                    f"ResourceNotFoundException: No cluster found for name: {args.args['name']}"
                )
            return {
                "name": cluster["name"],
                "vpcConfig": {"vpcId": cluster["vpcId"], "subnetIds": cluster["subnetIds"]},
            }
        if args.token == "aws:cloudwatch/getLogGroups:getLogGroups":
            prefix = args.args.get("logGroupNamePrefix", "")
            names = [n for n in world().get("logGroups", []) if n.startswith(prefix)]
            return {
                "logGroupNames": names,
                "arns": [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{n}" for n in names],
            }
        raise NotImplementedError(f"no mock for invoke {args.token}")


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, m: Mocks) -> None:
        super().__init__(m)
        self.records: list[dict[str, Any]] = []
        self.component_outputs: dict[str, Any] = {}
        self.invokes: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []  # resources read, not managed (StackReferences)

    def Invoke(self, request):  # noqa: N802 (gRPC method name)
        self.invokes.append(
            {
                "token": request.tok,
                "args": plain(json_format.MessageToDict(request.args)),
                "provider": request.provider.rsplit("::", 1)[0] if request.provider else None,
            }
        )
        return super().Invoke(request)

    def RegisterResourceOutputs(self, request):  # noqa: N802 (gRPC method name)
        self.component_outputs[request.urn] = plain(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        wire = json_format.MessageToDict(request.object)
        if _has_resource_ref(wire):
            # The mock monitor would turn each resource reference (e.g. the Role handed to
            # pulumi-eks as serviceRole) into a resource read back from the engine: a
            # `get` that a run forked from the warm server cannot finish. The mocks need
            # only the URN.
            request.object.Clear()
            request.object.update(_refs_as_urns(wire))
        response = super().RegisterResource(request)
        inputs = plain(wire)
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "custom": request.custom,
                "remote": request.remote,
                "parent": request.parent or None,
                "provider": request.provider.rsplit("::", 1)[0] if request.provider else None,
                # a remote component's providers, by package (its children's)
                "providers": {k: v.rsplit("::", 1)[0] for k, v in request.providers.items()},
                "importId": request.importId or None,
                "retainOnDelete": request.retainOnDelete,
                "dependencies": list(request.dependencies),
                "propertyDependencies": {
                    k: list(v.urns) for k, v in request.propertyDependencies.items()
                },
                "inputs": inputs,
                "secretInputs": secret_paths(wire),
                "aliases": [alias_of(a) for a in request.aliases],
                "customTimeouts": plain(json_format.MessageToDict(request.customTimeouts)),
            }
        )
        return response

    def ReadResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().ReadResource(request)
        self.reads.append(
            {"urn": response.urn, "type": request.type, "id": request.id, "parent": request.parent}
        )
        return response


def resolve_outputs() -> dict[str, Any]:
    root = settings.get_root_resource()
    result: dict[str, Any] = {}
    for key, value in getattr(root, "outputs", {}).items():
        out = pulumi.Output.from_input(value)
        result[key] = {
            "value": _sync_await(out.future()),
            "secret": _sync_await(out.is_secret()),
        }
    return result


def main() -> None:
    mock = Mocks()
    monitor = RecordingMonitor(mock)
    pulumi.runtime.set_mocks(
        mock,
        world().get("project", "cilium-eks"),
        world().get("stack", "dev"),
        preview=False,
        monitor=monitor,
        organization=world().get("organization", "organization"),
    )
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    error = None
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        request = os.environ.get("MOCK_CONSTRUCT")
        if request:
            construct(json.loads(request))
        else:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        _sync_await(wait_for_rpcs())
        outputs = resolve_outputs()
    except Exception as exc:  # the test decides whether an error was expected
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
        outputs = {}
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    json.dump(
        {
            "resources": monitor.records,
            "componentOutputs": monitor.component_outputs,
            "invokes": monitor.invokes,
            "reads": monitor.reads,
            "outputs": outputs,
            "error": error,
            "seconds": seconds,
            "cpuSeconds": cpu_seconds,
        },
        sys.stdout,
        default=str,
    )


def construct(request: dict[str, Any]) -> None:
    """One component, as the package's provider constructs it for another language."""
    import pulumi_kubernetes as k8s

    from components.package import provider

    providers = {}
    if request.get("kubernetes"):
        kubeconfig = json.dumps({"apiVersion": "v1", "clusters": [{"name": "consumer"}]})
        providers["kubernetes"] = k8s.Provider("consumer-k8s", kubeconfig=kubeconfig)
    result = provider().construct(
        request["name"],
        request["type"],
        request["inputs"],
        pulumi.ResourceOptions(providers=providers),
    )
    for key, value in result.state.items():
        pulumi.export(key, value)


def serve() -> None:
    """Fork a child per request line; answer each with a line holding its exit code."""
    sys.path.insert(0, str(ROOT))
    warm_imports()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one configuration, like a `pulumi up` process
            # No garbage collection in a run of a few hundred milliseconds: a collection
            # walks every object inherited from the server, copying each page it touches
            # (copy-on-write), which cost 40% of a run.
            gc.disable()
            os.environ["PULUMI_CONFIG"] = request["config"]
            os.environ["MOCK_WORLD"] = request["world"]
            os.environ["MOCK_CONSTRUCT"] = request.get("construct", "")
            with open(request["out"], "w") as out:
                sys.stdout = out
                main()
                out.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)


def warm_imports() -> None:
    """Import what a run of the program imports, and fill the caches the Pulumi SDK keeps
    per type (type hints of every Args class it serializes: most of a run's CPU), by
    running it once in a thread of this process. A thread starts with fresh context
    variables (where the SDK keeps its runtime state, the root stack included) and an
    event loop of its own, so the forked runs start as clean as a new process."""
    errors: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                main()
        except BaseException as err:  # a warm-up that fails leaves the runs cold, not wrong
            errors.append(err)
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main()
