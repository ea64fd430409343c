"""deploy/swarm/stack.yaml deployed on a real one-node swarm of its own, as a user deploys it.

The swarm's daemon runs beside the machine's, in a network namespace of its own
(harness.swarm), with the seccomp profile and no-new-privileges as its defaults,
as a node's daemon.json gives them (Swarm services take neither themselves).
The session's image and the balancer's are loaded into it; a second build (one
more LABEL) and a broken one (a HEALTHCHECK that fails) are built there on top.
Steady clients inside the namespace go through the front balancer on its
loopback and count every request, while the stack is updated, rolled back by
Swarm itself, scaled out and back, and loses a replica to SIGKILL.
Docker's own commands: the ENGINE=docker pass runs them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

import harness.swarm
from harness.checks import assert_contract, assert_json_error, wait_serving
from harness.containers import Container
from harness.deployfiles import SWARM_STACK, app_settings, haproxy, seconds, swarm_stack
from harness.engine import Engine
from harness.images import IMAGE_TAG, SECCOMP_PROFILE, build_balancer, build_image
from harness.load import Outcome
from harness.swarm import Stack, Swarm

pytestmark = [pytest.mark.swarm, pytest.mark.docker]

STACK = "flask-stack"
BALANCER_IMAGE = f"{IMAGE_TAG}-balancer"
NEXT_IMAGE = f"{IMAGE_TAG}-next"  # the second build: one more label
BROKEN_IMAGE = f"{IMAGE_TAG}-broken"  # its health check always fails
NEXT_LABEL = ("io.flask-stack.test.build", "next")
BROKEN_HEALTHCHECK = 'HEALTHCHECK CMD ["/opt/venv/bin/python", "-c", "raise SystemExit(1)"]'
CLIENTS = 2  # closed loop: each has at most one request in flight
# Bounds on each wait; the stack's own timings are the file's. Rollouts and
# scaling take 10 to 50 s here, a rollback about 60 s.
CONVERGE_SECONDS = 150
SERVING_SECONDS = 30
MIN_ANSWERS = 200  # the clients send about 50 requests/s through the front
DEFAULT_UID = 10001  # the image's own user, which the stack replaces


def app_service() -> dict:
    return swarm_stack()["services"]["app"]


def replicas() -> int:
    return app_service()["deploy"]["replicas"]


def front_url() -> str:
    (port,) = swarm_stack()["services"]["balancer"]["ports"]
    return f"http://127.0.0.1:{port['published']}"


@pytest.fixture(scope="module")
def swarm(engine: Engine, image: str, require: Callable[[object, str], None],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    for tool in ("dockerd", "nsenter", "ip"):
        require(shutil.which(tool), f"{tool} is not installed (.ci/setup-host)")
    balancer = build_balancer(engine, BALANCER_IMAGE)
    with harness.swarm.started(tmp_path_factory.mktemp("swarm"), SECCOMP_PROFILE,
                               engine.command) as swarm:
        swarm.load_images(engine, image, balancer)
        yield swarm


@pytest.fixture(scope="module")
def built(swarm: Swarm, image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The second build and the broken one, FROM the session's image, on the swarm's daemon."""
    lines = {NEXT_IMAGE: "LABEL {}={}".format(*NEXT_LABEL), BROKEN_IMAGE: BROKEN_HEALTHCHECK}
    for tag, line in lines.items():
        context = tmp_path_factory.mktemp("build")
        (context / "Dockerfile").write_text(f"FROM {image}\n{line}\n")
        build_image(swarm.docker, tag, context=context)
    return {"first": image, "next": NEXT_IMAGE, "broken": BROKEN_IMAGE}


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    """The app's secret config, which the stack mounts as a file."""
    return {"SECRET_KEY": secrets.token_hex(16)}


@pytest.fixture(scope="module")
def stack(swarm: Swarm, image: str, config: dict[str, str]) -> Iterator[Stack]:
    """The stack as its file says, deployed and converged, and the front sending
    requests to every replica."""
    (secret,) = swarm_stack()["secrets"]
    secret_file = swarm.directory / "secret.json"
    secret_file.write_text(json.dumps(config))
    swarm.docker("secret", "create", secret, str(secret_file))
    secret_file.unlink()
    stack = Stack(swarm, STACK)
    stack.deploy(SWARM_STACK, {"FLASK_STACK_IMAGE": image,
                               "FLASK_STACK_BALANCER_IMAGE": BALANCER_IMAGE})
    try:
        stack.wait_converged("balancer", 1, BALANCER_IMAGE, CONVERGE_SECONDS)
        running = stack.wait_converged("app", replicas(), image, CONVERGE_SECONDS)
        # A converged service is not yet in the front's DNS answers: until it is,
        # the front answers 503 (no server), which no test's count should see.
        with swarm.load(front_url(), CLIENTS):
            serving(running, 0)
        yield stack
    finally:
        stack.remove()


def serving(replicas: list[Container], since: float) -> None:
    """Until the front has sent each replica a client's GET / since `since` (epoch s)."""
    for replica in replicas:
        wait_serving(replica, since, SERVING_SECONDS)


def in_container(container: Container, code: str) -> dict:
    """Python run in the replica as the service's user; what it prints, as JSON."""
    result = container.exec("python", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_none_failed(outcomes: list[Outcome]) -> None:
    failed = [(o.status, o.error) for o in outcomes if o.status != 200]
    print(f"{len(outcomes)} requests through the front")  # shown with -rP
    assert failed == [], f"{len(failed)} of {len(outcomes)} failed: {failed[:10]}"
    assert len(outcomes) >= MIN_ANSWERS


def test_the_contract_through_the_front(swarm: Swarm, stack: Stack) -> None:
    assert_contract(swarm.get(f"{front_url()}/"))
    assert_json_error(swarm.get(f"{front_url()}/nope"), 404)


def test_the_replicas_run_hardened(stack: Stack) -> None:
    """What the file asks (user, read-only, no capabilities), and what the node's
    daemon adds: no new privileges and the stack's own seccomp profile, told apart
    from Docker's default by a call only Docker's allows (getpgid)."""
    profile = json.loads(SECCOMP_PROFILE.read_text())
    assert "getpgid" not in {name for rule in profile["syscalls"] for name in rule["names"]}
    # Swarm took the stop's grace period as the file gives it, longer than the stop's ceiling.
    spec = stack.inspect("app")["Spec"]["TaskTemplate"]["ContainerSpec"]
    grace = seconds(app_service()["stop_grace_period"])
    assert spec["StopGracePeriod"] / 1e9 == grace
    assert grace > app_settings(app_service()["environment"]).stop_ceiling
    running = stack.containers("app")
    assert len(running) == replicas()
    for replica in running:
        assert replica.inspect("{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} "
                               "{{.HostConfig.CapDrop}}") == f"{app_service()['user']} true [ALL]"
        status = in_container(replica, """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/1/status").read().splitlines())
try:
    os.getpgid(0)
    getpgid = 0
except OSError as error:
    getpgid = error.errno
print(json.dumps({key: status[key].strip() for key in ("NoNewPrivs", "Seccomp", "CapEff")}
                 | {"getpgid": getpgid}))
""")
        assert status == {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000",
                          "getpgid": profile["defaultErrnoRet"]}


def test_the_secret_is_a_file_for_the_replicas_uid_alone(stack: Stack,
                                                         config: dict[str, str]) -> None:
    (mount,) = app_service()["secrets"]
    path = f"/run/secrets/{mount['target']}"
    uid, gid = (int(part) for part in app_service()["user"].split(":"))
    for replica in stack.containers("app"):
        # As docs/deployment.md says an app reads it: Flask's config from the file.
        read = in_container(replica, f"""
import json, os, flask
app = flask.Flask("app")
app.config.from_file({path!r}, load=json.load)
info = os.stat({path!r})
print(json.dumps({{"key": app.config["SECRET_KEY"], "uid": info.st_uid,
                   "mode": info.st_mode & 0o777}}))
""")
        assert read == {"key": config["SECRET_KEY"], "uid": uid, "mode": mount["mode"]}
        # No one else: the image's own user, another UID of group 0, root (without caps).
        for other in (f"{DEFAULT_UID}:{DEFAULT_UID}", f"{uid + 1}:{gid}", "0:0"):
            denied = replica.exec("python", "-c", f"open({path!r}).read()", user=other)
            assert denied.returncode != 0 and "PermissionError" in denied.stderr, other


def test_an_update_replaces_every_replica_without_a_failed_request(
        swarm: Swarm, stack: Stack, built: dict[str, str]) -> None:
    before = {c.id for c in stack.wait_converged("app", replicas(), built["first"], 0)}
    with swarm.load(front_url(), CLIENTS) as load:
        since = time.time()
        stack.docker("service", "update", "--detach", "--no-resolve-image", "--image",
                     built["next"], stack.service("app"))
        stack.wait_update("app", "completed", CONVERGE_SECONDS)
        after = stack.wait_converged("app", replicas(), built["next"], CONVERGE_SECONDS)
        serving(after, since)
    assert_none_failed(load.outcomes)
    assert not before & {c.id for c in after}, "a replica of the first build is left"
    # Each old replica drained and exited by itself (0), never SIGKILLed (137).
    assert {Container(stack.docker, cid, 0).inspect("{{.State.ExitCode}}")
            for cid in before} == {"0"}
    for replica in after:
        label, value = NEXT_LABEL
        assert json.loads(replica.inspect("{{json .Config.Labels}}"))[label] == value


def test_a_failing_health_check_rolls_back_by_itself(
        swarm: Swarm, stack: Stack, built: dict[str, str]) -> None:
    before = {c.id for c in stack.wait_converged("app", replicas(), built["next"], 0)}
    with swarm.load(front_url(), CLIENTS) as load:
        stack.docker("service", "update", "--detach", "--no-resolve-image", "--image",
                     built["broken"], stack.service("app"))
        stack.wait_update("app", "rollback_completed", CONVERGE_SECONDS)
        after = stack.wait_converged("app", replicas(), built["next"], CONVERGE_SECONDS)
    assert_none_failed(load.outcomes)
    assert stack.inspect("app")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == built["next"]
    # start-first: the broken replica never became healthy, so no replica was stopped.
    assert {c.id for c in after} == before
    # Swarm ran the broken image's health check, saw it fail and stopped it:
    # no task of that image is left, or meant to run.
    broken = [Container(stack.docker, cid, 0) for cid in stack.docker(
        "ps", "--all", "--quiet", "--no-trunc", "--filter", f"ancestor={built['broken']}").split()]
    states = {c.inspect("{{.State.Running}} {{.State.Health.Status}}") for c in broken}
    assert "false unhealthy" in states and states <= {"false unhealthy", "false starting"}
    assert all(task["DesiredState"] == "shutdown" for task in stack.all_tasks("app")
               if task["Spec"]["ContainerSpec"]["Image"] == built["broken"])


def test_scaling_out_and_back_loses_no_request(swarm: Swarm, stack: Stack,
                                               built: dict[str, str]) -> None:
    stack.wait_converged("app", replicas(), built["next"], 0)
    with swarm.load(front_url(), CLIENTS) as load:
        since = time.time()
        stack.docker("service", "scale", "--detach", f"{stack.service('app')}={2 * replicas()}")
        # The front finds each new replica: every one of them gets requests.
        serving(stack.wait_converged("app", 2 * replicas(), built["next"], CONVERGE_SECONDS),
                since)
        stack.docker("service", "scale", "--detach", f"{stack.service('app')}={replicas()}")
        stack.wait_converged("app", replicas(), built["next"], CONVERGE_SECONDS)
    assert_none_failed(load.outcomes)


def test_a_killed_replica_is_replaced_and_its_lost_requests_bounded(
        swarm: Swarm, stack: Stack, built: dict[str, str]) -> None:
    """SIGKILL leaves no drain: what the killed replica had in flight is lost, at
    most one request per client. Requests the front sends it before taking it out
    (Docker drops it from DNS at once; HAProxy's checks fail within fall x (inter
    + timeout check)) wait `timeout connect` and are redispatched, never lost."""
    balancer = haproxy()
    window = balancer["fall"] * (balancer["inter"] + balancer["timeouts"]["check"])
    first = stack.wait_converged("app", replicas(), built["next"], 0)
    victim = first[0]
    with swarm.load(front_url(), CLIENTS) as load:
        since = time.time()
        killed = time.monotonic()
        stack.docker("kill", "--signal", "KILL", victim.id)
        dead = time.monotonic()
        # Swarm starts a new replica in its place, and the front sends it requests.
        deadline = dead + CONVERGE_SECONDS
        while victim.id in {c.id for c in stack.wait_converged(
                "app", replicas(), built["next"], CONVERGE_SECONDS)}:
            assert time.monotonic() < deadline, "the killed replica still counts as running"
            time.sleep(harness.swarm.POLL)
        (new,) = [c for c in stack.containers("app") if c.id not in {f.id for f in first}]
        serving([new], since)
    after = [o for o in load.outcomes if o.started >= killed]
    failed = load.failed()
    delayed = [o for o in after if o.latency >= balancer["timeouts"]["connect"]]
    print(f"{len(failed)} lost, {len(delayed)} redispatched, of {len(load.outcomes)}")
    assert len(failed) <= CLIENTS, [(o.status, o.error) for o in failed]
    # Each lost request was on its way to the victim when it was killed...
    assert all(killed - balancer["timeouts"]["server"] <= o.started <= dead for o in failed)
    # ...and after the window, no request waits on a connection to it.
    assert all(o.started <= dead + window for o in delayed), [o.started - dead for o in delayed]
    assert len(after) >= MIN_ANSWERS // 2
