"""scripts/day2.py: `make verify` re-runs the stack's checks on the live cluster; `make
hubble` opens Hubble UI. A fake `kubectl` plays the cluster (a JSON world: the check
CronJobs and how each Job they spawn ends) and logs every call; a fake `pulumi` answers
its version, the backend it is logged in to and the kubeconfig output, or fails as
Pulumi does."""

from __future__ import annotations

import contextlib
import io
import json
import stat
import sys
from pathlib import Path

import pytest

from components.checks import PART_OF
from scripts import day2

FAKE_KUBECTL = """#!{python} -S
import json, os, sys
args = sys.argv[1:]
world_file = os.environ["FAKE_WORLD"]
world = json.load(open(world_file))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "kubeconfig": os.environ.get("KUBECONFIG"),
                          "readable": os.path.exists(os.environ.get("KUBECONFIG", ""))}}) + "\\n")
if args[:2] == ["get", "cronjobs"]:
    print(json.dumps({{"items": [{{"metadata": {{"namespace": ns, "name": n}}}}
                                for ns, n in world["cronjobs"]]}}))
elif "create" in args:
    name = args[args.index("job") + 1]
    cronjob = next(a for a in args if a.startswith("--from=")).split("/", 1)[1]
    world["jobs"][name] = {{"cronjob": cronjob, "looks": 0}}
    json.dump(world, open(world_file, "w"))
elif "get" in args and "job" in args:
    name = args[args.index("job") + 1]
    job = world["jobs"][name]
    job["looks"] += 1
    json.dump(world, open(world_file, "w"))
    end = world["ends"][job["cronjob"]]
    conditions = [{{"type": end, "status": "True"}}] if job["looks"] >= 2 and end else []
    status = {{"conditions": conditions}}
    print(json.dumps({{"spec": {{"activeDeadlineSeconds": 900}}, "status": status}}))
elif "logs" in args:
    name = args[args.index("logs") + 1].split("/", 1)[1]
    print(world["logs"][world["jobs"][name]["cronjob"]])
elif "port-forward" in args:
    pass
sys.exit(0)
"""
FAKE_PULUMI = """#!/bin/sh
echo "$@" >> "$HOME/pulumi.log"
case "$1" in
  version) echo v3.200.0; exit 0;;
  whoami)
    # logged in nowhere, in the CLI's words (pulumi/pulumi pkg/backend/httpstate/login.go)
    [ -n "$LOGGED_OUT" ] && {{ echo "error: PULUMI_ACCESS_TOKEN must be set for login \
during non-interactive CLI sessions" >&2; exit 255; }}
    echo "User: me"; echo "Backend URL: file://~"; exit 0;;
esac
if [ -n "$PULUMI_SAYS" ]; then echo "$PULUMI_SAYS" >&2; exit 255; fi
echo '{{"apiVersion": "v1", "clusters": []}}'
"""
NO_OUTPUT = "error: current stack does not have output property 'kubeconfig'"

LOGS = {
    "verify-tiefighter": "verifying: SHIP=tiefighter\nwaiting for x\n"
    "PASS tiefighter-request-landing: landed (try 1)\nOK: tiefighter sees policy l7",
    "verify-xwing": "verifying: SHIP=xwing\n"
    "FAIL xwing-request-landing: expected blocked, observed landed",
}


@pytest.fixture
def cluster(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in {
        "kubectl": FAKE_KUBECTL,
        "pulumi": FAKE_PULUMI,
        "aws": "#!/bin/sh\n",
    }.items():
        path = bin_dir / name
        path.write_text(source.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def play(ends: dict[str, str | None], stack=("--stack", "dev"), **env: str | None):
        world = {
            "cronjobs": [["starwars", name] for name in sorted(ends)],
            "ends": ends,
            "jobs": {},
            "logs": LOGS,
        }
        (tmp_path / "world.json").write_text(json.dumps(world))
        environment = {"PATH": str(bin_dir), "HOME": str(tmp_path),
                       "FAKE_WORLD": str(tmp_path / "world.json"),
                       "FAKE_LOG": str(tmp_path / "calls.log"),
                       "PULUMI_CONFIG_PASSPHRASE": "the stack's", **env}  # fmt: skip
        environment = {k: v for k, v in environment.items() if v is not None}
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = day2.main(["verify", *stack], environment)
        log = tmp_path / "calls.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return code, out.getvalue(), err.getvalue(), calls

    return play


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(day2.time, "sleep", lambda _: None)


@pytest.fixture(autouse=True)
def datapath_as_configured(monkeypatch):
    # each node's datapath check (scripts/datapath.py) has its own tests: test_datapath.py
    monkeypatch.setattr(day2.datapath, "check_nodes", lambda env, run: True)


def test_verify_runs_each_check_cronjob_as_a_job_and_reports_every_line(cluster):
    code, out, err, calls = cluster({"verify-tiefighter": "Complete", "verify-xwing": "Complete"})
    assert code == 0, out + err
    created = [c["args"] for c in calls if "create" in c["args"]]
    assert sorted(a[-1] for a in created) == [
        "--from=cronjob/verify-tiefighter",
        "--from=cronjob/verify-xwing",
    ]
    assert all(a[:2] == ["-n", "starwars"] for a in created)
    # the checks' own verdict lines, not their progress
    assert "    PASS tiefighter-request-landing: landed (try 1)" in out
    assert "waiting for x" not in out
    assert out.rstrip().endswith("every check passed")
    # each Job it made is deleted afterwards
    deleted = [c["args"][c["args"].index("job") + 1] for c in calls if "delete" in c["args"]]
    made = [a[a.index("job") + 1] for a in created]
    assert sorted(deleted) == sorted(made)


def test_a_failed_check_fails_make_verify_naming_it(cluster):
    code, out, _, calls = cluster({"verify-tiefighter": "Complete", "verify-xwing": "Failed"})
    assert code == 1
    assert "    FAIL xwing-request-landing: expected blocked, observed landed" in out
    assert "FAILED: starwars/verify-xwing-" in out
    assert len([c for c in calls if "delete" in c["args"]]) == 2  # cleaned up all the same


def test_verify_finds_the_checks_by_the_label_the_stack_puts_on_them(cluster):
    _, _, _, calls = cluster({"verify-tiefighter": "Complete"})
    (listing,) = [c["args"] for c in calls if c["args"][:2] == ["get", "cronjobs"]]
    key, value = next(iter(PART_OF.items()))
    assert listing == ["get", "cronjobs", "-A", "-l", f"{key}={value}", "-o", "json"]


def test_every_kubectl_call_uses_the_stacks_kubeconfig_never_the_ambient_one(cluster):
    _, _, _, calls = cluster({"verify-tiefighter": "Complete"}, KUBECONFIG="/home/me/.kube/prod")
    assert calls and all(c["kubeconfig"] != "/home/me/.kube/prod" and c["readable"] for c in calls)
    assert all(c["kubeconfig"].endswith("kubeconfig.json") for c in calls)
    assert not Path(calls[0]["kubeconfig"]).exists()  # removed afterwards


def test_no_kubeconfig_output_says_to_deploy_first(cluster):
    code, _, err, calls = cluster({"verify-tiefighter": "Complete"}, PULUMI_SAYS=NO_OUTPUT)
    assert code == 1 and "stack dev has no kubeconfig output" in err and "make up" in err
    assert NO_OUTPUT in err  # and Pulumi's own words
    assert calls == []


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        # a new shell: the passphrase is gone, the stack is still there
        ({"PULUMI_CONFIG_PASSPHRASE": None}, "file://~ encrypts secrets (the kubeconfig) with "
                                             "a passphrase: export PULUMI_CONFIG_PASSPHRASE"),
        # a new shell: PULUMI_BACKEND_URL is gone, and `pulumi login` was never run
        ({"LOGGED_OUT": "1"}, "no Pulumi backend: PULUMI_BACKEND_URL is not set"),
    ],
)  # fmt: skip
def test_a_missing_session_prerequisite_is_named_not_taken_for_an_undeployed_stack(
    cluster, tmp_path, env, fragment
):
    code, _, err, calls = cluster({"verify-tiefighter": "Complete"}, **env)
    assert code == 1 and fragment in err and "1 prerequisite(s) missing" in err
    assert "no kubeconfig output" not in err and "make up` first" not in err
    assert calls == []
    assert "stack output" not in (tmp_path / "pulumi.log").read_text()  # nothing asked of it


def test_any_other_pulumi_error_is_shown_as_pulumi_printed_it(cluster):
    said = "error: no stack named 'prod' found"
    code, _, err, calls = cluster({"verify-tiefighter": "Complete"}, PULUMI_SAYS=said)
    assert code == 1 and err.endswith(f"Pulumi says:\n{said}\n")
    assert "no kubeconfig output" not in err and calls == []


def test_without_stack_it_is_the_stack_pulumi_has_selected(cluster, tmp_path):
    code, _, _, _ = cluster({"verify-tiefighter": "Complete"}, stack=())
    assert code == 0
    log = (tmp_path / "pulumi.log").read_text().splitlines()
    assert "stack output kubeconfig --show-secrets" in log  # no --stack: Pulumi's selection


def test_no_check_cronjob_says_why(cluster):
    code, _, err, _ = cluster({})
    assert code == 1 and "no check CronJob in the cluster" in err


def test_missing_tools_are_named_at_once(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = day2.main(["verify"], {"PATH": str(tmp_path)})
    assert code == 1
    for tool in ("the Pulumi CLI", "kubectl", "aws"):
        assert f"{tool} is not installed" in err.getvalue()
    assert "PULUMI_CONFIG_PASSPHRASE" in err.getvalue()


def test_a_job_that_never_ends_is_given_up_after_its_deadline(cluster, monkeypatch):
    times = iter(range(0, 100_000, 500))
    monkeypatch.setattr(day2.time, "monotonic", lambda: next(times))
    code, out, _, _ = cluster({"verify-tiefighter": None})
    assert code == 1 and "did not end in time" in out


def test_hubble_port_forwards_the_ui_with_the_stacks_kubeconfig(cluster, tmp_path):
    cluster({"verify-tiefighter": "Complete"})  # the fakes
    env = {
        "PATH": str(tmp_path / "bin"),
        "HOME": str(tmp_path),
        "PULUMI_BACKEND_URL": "https://api.pulumi.com",
        "FAKE_WORLD": str(tmp_path / "world.json"),
        "FAKE_LOG": str(tmp_path / "calls.log"),
    }
    (tmp_path / "calls.log").write_text("")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert day2.main(["hubble", "--stack", "dev"], env) == 0
    (call,) = [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    assert call["args"] == ["-n", "kube-system", "port-forward", "svc/hubble-ui", "12000:80"]
    assert call["readable"]
    assert "http://localhost:12000" in out.getvalue()


def test_the_session_is_judged_in_the_preflights_words(cluster, tmp_path):
    # one rule, shared (scripts/pulumi_session.py): a new shell gets the same fix from both
    from scripts import preflight

    cluster({"verify-tiefighter": "Complete"})  # the fakes
    env = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    (passphrase,) = [p for p in day2.missing(env) if "PULUMI_CONFIG_PASSPHRASE" in p]
    assert passphrase in preflight.prerequisites(env)[0]
