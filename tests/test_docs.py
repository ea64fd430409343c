"""The documentation: every relative link leads to a file, and every number the
pages state about the stack is the one the code gives. Fast: no containers.

Each claim is a pattern whose groups are numbers a page states, and the values
the code gives for them: wherever a pattern matches (README.md, docs/, the
comments of compose.yaml, deploy/swarm/ and deploy/kubernetes/) it must state those values,
and each page a claim names must state it. The code's values come from the
real start-up: the entrypoint runs with Supervisord left out, and the Nginx
config it renders, the Gunicorn config and supervisord.conf are read back. A
page that states a number no claim checks should say it without the number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gunicorn.config import LimitRequestFields

import stack.metrics
import stack.settings
from harness.checks import STOP_BUDGET_SECONDS
from harness.deployfiles import (
    KUBERNETES_MINIMUM,
    SWARM_STACK,
    compose,
    deployment_container,
    haproxy,
    manifest,
    seconds,
    swarm_stack,
)
from harness.paths import ROOT
from harness.startup import start
from harness.variants import DEFAULT, VARIANTS
from stack import entrypoint, gunicorn_args, logs, watchdog
from stack.metrics import DURATION_BUCKETS
from stack.settings import Settings, load

pytestmark = pytest.mark.app

GENERATED = {ROOT / "docs" / "xray.md"}  # made by tools.xray: its figures are the image's
PAGES = [ROOT / "README.md", *sorted(set((ROOT / "docs").glob("*.md")) - GENERATED)]
COMMENTED = [ROOT / "compose.yaml", SWARM_STACK,
             *sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))]

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


# --- links


def prose(path: Path) -> str:
    """A page without its code blocks and code spans, where a link is only text."""
    return CODE_SPAN.sub("", FENCE.sub("", path.read_text()))


def anchors(path: Path) -> set[str]:
    """GitHub's ids for a page's headings: lower case, punctuation out, spaces to hyphens."""
    headings = HEADING.findall(FENCE.sub("", path.read_text()))
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def relative_links(page: Path) -> Iterator[tuple[str, Path, str]]:
    """(as written, the file it names, its #fragment) for each link to this repository."""
    for target in LINK.findall(prose(page)):
        if SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        yield target, (page.parent / path).resolve() if path else page, fragment


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_lead_to_files(page: Path) -> None:
    broken = []
    for target, path, fragment in relative_links(page):
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading #{fragment} in {path.name}")
    assert not broken, broken


def test_the_link_check_sees_links() -> None:
    """The control: the README links to docs/, and a broken link would be caught."""
    targets = {target for target, _, _ in relative_links(ROOT / "README.md")}
    assert "docs/deployment.md" in targets and "LICENSE" in targets
    assert "how-a-replica-stops-without-losing-a-request" in anchors(
        ROOT / "docs" / "deployment.md")


# --- what the code gives


def flat(path: Path) -> str:
    """A page's text with whitespace collapsed; in YAML, comment lines joined up."""
    text = path.read_text()
    if path.suffix == ".yaml":
        text = re.sub(r"\n[ \t]*#[ \t]*", " ", text)
    return re.sub(r"\s+", " ", text)


@dataclass(frozen=True)
class Claim:
    pattern: str  # its groups are what a page states
    values: tuple[object, ...]  # what the code gives, in the same order
    pages: tuple[str, ...]  # pages that must state it at least once


def claims(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Claim]:
    default = start(monkeypatch, tmp_path, {})
    app = compose()["services"]["app"]
    in_compose = start(monkeypatch, tmp_path, app["environment"])
    container = deployment_container()
    in_kubernetes = start(monkeypatch, tmp_path,
                          {item["name"]: item["value"] for item in container["env"]})
    balancer = haproxy()
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    autoscaler = manifest("HorizontalPodAutoscaler")["spec"]
    rollout = manifest("Deployment")["spec"]["strategy"]["rollingUpdate"]
    liveness = container["livenessProbe"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    template = re.search(r"^\s*server-template\s+\S+\s+(\d+)\s", balancer["text"], re.M)
    assert template

    # The stop: the drain, then Nginx's graceful stop, then Gunicorn's quick one.
    drain, graceful = in_compose.settings.drain_seconds, in_compose.settings.graceful_timeout
    nginx_spare = in_compose.waits["program:nginx"] - graceful
    gunicorn_wait = in_compose.waits["program:gunicorn"]
    assert set(in_compose.waits) == {"program:gunicorn", "program:nginx"}, in_compose.waits
    assert in_compose.stop_ceiling == drain + graceful + nginx_spare + gunicorn_wait
    assert in_compose.stop_ceiling == in_compose.settings.stop_ceiling
    assert default.stop_ceiling == default.settings.stop_ceiling
    formula = (nginx_spare + gunicorn_wait,)

    nginx_wait = default.seconds("proxy_read_timeout")
    upstream_keepalive = default.seconds("keepalive_timeout", upstream=True)
    timeout = default.gunicorn["timeout"]
    max_requests = default.gunicorn["max_requests"]
    jitter = 100 * default.gunicorn["max_requests_jitter"] / max_requests
    assert jitter.is_integer(), jitter
    compose_cpus = math.ceil(float(app["deploy"]["resources"]["limits"]["cpus"]))
    compose_workers = start(monkeypatch, tmp_path, {}, cpus=compose_cpus).gunicorn["workers"]
    inter, fall = int(balancer["inter"]), balancer["fall"]
    check, connect = int(balancer["timeouts"]["check"]), int(balancer["timeouts"]["connect"])
    swarm_app = swarm_stack()["services"]["app"]
    in_swarm = start(monkeypatch, tmp_path, swarm_app["environment"])
    swarm_cpus = math.ceil(float(swarm_app["deploy"]["resources"]["limits"]["cpus"]))
    swarm_workers = start(monkeypatch, tmp_path, {}, cpus=swarm_cpus).gunicorn["workers"]
    swarm_replicas = swarm_app["deploy"]["replicas"]
    (secret,) = swarm_app["secrets"]
    (network,) = compose()["networks"].values()
    (ipam,) = network["ipam"]["config"]
    times = r"\N{MULTIPLICATION SIGN}"
    return [
        # README
        Claim(r"publishes port \**(\d+)", (default.settings.port,), ("README.md",)),
        Claim(r"Nginx opens (\d+) only once", (default.settings.port,), ("README.md",)),
        Claim(r"exits 0 within Docker's (\d+) s",
              (STOP_BUDGET_SECONDS,),
              ("README.md",)),
        Claim(r"crashes (\d+) times in (\d+) s",
              (watchdog.CRASHES, watchdog.CRASH_WINDOW_SECONDS), ("README.md",)),
        Claim(r"`MAX_REQUESTS` \(([\d,]+) \+ up to (\d+) % jitter\)",
              (max_requests, int(jitter)), ("README.md",)),
        Claim(r"plus up to (\d+)% jitter", (int(jitter),), ("README.md",)),
        Claim(r"exit code (\d+)", (entrypoint.EX_CONFIG,), ("README.md",)),
        Claim(r"over (\d+) headers",
              (default.gunicorn.get("limit_request_fields", LimitRequestFields.default),),
              ("README.md",)),
        Claim(r"`TIMEOUT` \+ (\d+)", (nginx_wait - timeout,),
              ("README.md", "docs/deployment.md")),
        Claim(r"Nginx waits (\d+) s longer", (nginx_wait - timeout,), ("README.md",)),
        Claim(r"(\w+) hardened replicas behind HAProxy", (WORDS[app["deploy"]["replicas"]],),
              ("README.md", "docs/deployment.md")),
        Claim(r"Kubernetes (\d+\.\d+) or later", (KUBERNETES_MINIMUM.rsplit(".", 1)[0],),
              ("README.md", "docs/deployment.md")),
        # docs/deployment.md: the stop
        Claim(r"gives Nginx `GRACEFUL_TIMEOUT` \+ (\d+) s and Gunicorn (\d+) s",
              (nginx_spare, gunicorn_wait), ("docs/deployment.md",)),
        Claim(r"`DRAIN_SECONDS` \+ `GRACEFUL_TIMEOUT` \+ (\d+) = (\d+) s",
              (*formula, in_compose.stop_ceiling), ("docs/deployment.md",)),
        Claim(r"and (\d+) s with the image's defaults, inside Docker's and Compose's (\d+) s",
              (default.stop_ceiling, STOP_BUDGET_SECONDS), ("docs/deployment.md",)),
        Claim(r"\(`DRAIN_SECONDS` \+ `GRACEFUL_TIMEOUT` \+ (\d+), plus",
              formula, ("docs/deployment.md",)),
        # docs/deployment.md: the timeout budget's reasons (test_deploy checks its values)
        Claim(r"well before Nginx's (\d+) s", (default.seconds("keepalive_timeout"),),
              ("docs/deployment.md",)),
        Claim(r"longer than Nginx's (\d+) s", (nginx_wait,), ("docs/deployment.md",)),
        Claim(r"longer than the balancer's (\d+) s idle timeout",
              (int(balancer["timeouts"]["client"]),), ("docs/deployment.md",)),
        Claim(r"Gunicorn keeps those connections (\d+) s longer than Nginx does",
              (default.gunicorn["keepalive"] - upstream_keepalive,),
              ("docs/deployment.md",)),
        Claim(rf"(\d+) s \((\d+) s {times} (\d+)\)", (inter * fall, inter, fall),
              ("docs/deployment.md",)),
        Claim(r"\((\d+) s above\)", (inter * fall,), ("docs/deployment.md",)),
        Claim(r"The image's default is (\d+) \(no balancer\)",
              (default.settings.drain_seconds,), ("docs/deployment.md",)),
        Claim(r"Supervisord's ceiling of (\d+) s", (in_compose.stop_ceiling,),
              ("docs/deployment.md",)),
        Claim(r"(\d+) s \+ (\d+) s, with room to spare", (pre_stop, in_kubernetes.stop_ceiling),
              ("docs/deployment.md",)),
        # docs/deployment.md: the files
        Claim(r"gives\s+containers \(`([^`]+)`\)", (ipam["ip_range"],), ("docs/deployment.md",)),
        Claim(r"network's gateway \(`([^`]+)`\)", (ipam["gateway"],), ("docs/deployment.md",)),
        Claim(r"`TRUSTED_PROXIES` is `([^`]+)` as a placeholder",
              (",".join(in_kubernetes.settings.trusted_proxies),), ("docs/deployment.md",)),
        Claim(r"up to (\d+) without editing", (int(template[1]),), ("docs/deployment.md",)),
        Claim(r"\((\d+) with the (\d+) CPU `compose.yaml` gives it\)",
              (compose_workers, compose_cpus), ("docs/deployment.md",)),
        Claim(r"keeps (\d+) to (\d+) pods at (\d+) % of their CPU request",
              (autoscaler["minReplicas"], autoscaler["maxReplicas"],
               autoscaler["metrics"][0]["resource"]["target"]["averageUtilization"]),
              ("docs/deployment.md",)),
        Claim(r"`maxSurge: (\d+)`, `maxUnavailable: (\d+)`",
              (rollout["maxSurge"], rollout["maxUnavailable"]), ("docs/deployment.md",)),
        # docs/observability.md, and the README's rows of it
        Claim(r"on `METRICS_PORT` \((\d+)\)", (default.settings.metrics_port,),
              ("docs/observability.md",)),
        Claim(r"Prometheus metrics on port (\d+) \(`METRICS_PORT`\), never through (\d+)",
              (default.settings.metrics_port, default.settings.port), ("README.md",)),
        Claim(r"\| Ports \| (\d+), and (\d+) for the metrics",
              (default.settings.port, default.settings.metrics_port), ("README.md",)),
        Claim(r"Buckets: OpenTelemetry's, (\d+) ms to (\d+) s",
              (round(DURATION_BUCKETS[0] * 1000), round(DURATION_BUCKETS[-1])),
              ("docs/observability.md",)),
        Claim(r"from a buffer of (\d+) MiB", (logs.MAX_BUFFER >> 20,),
              ("docs/observability.md",)),
        Claim(r"keeps up to (\d+) MiB of lines waiting", (logs.MAX_BUFFER >> 20,),
              ("docs/deployment.md",)),
        Claim(r"what is left gets (\d+) s at most", (round(logs.FINAL_FLUSH_SECONDS),),
              ("docs/observability.md",)),
        Claim(r"through a pipe PID 1 reads every ([\d.]+) s", (logs.FLUSH_SECONDS,),
              ("docs/observability.md",)),
        Claim(r"access log lines within (\d+) s", (round(logs.LATE_SECONDS),), ("README.md",)),
        # Compression (README, docs/your-app.md)
        Claim(r"text answers over (\d+) KiB", (default.settings.gzip_min_length // 1024,),
              ("README.md",)),
        Claim(r"plain text over\s+(\d+) KiB", (default.settings.gzip_min_length // 1024,),
              ("docs/your-app.md",)),
        # docs/deployment.md: Docker Swarm
        Claim(r"`monitor: (\d+)s`, longer than the health check's start period of (\d+) s",
              (int(seconds(swarm_app["deploy"]["update_config"]["monitor"])),
               int(seconds(swarm_app["healthcheck"]["start_period"]))), ("docs/deployment.md",)),
        Claim(r"`stop_grace_period: (\d+)s` is longer than the stop's ceiling of (\d+) s",
              (int(seconds(swarm_app["stop_grace_period"])), in_swarm.stop_ceiling),
              ("docs/deployment.md",)),
        Claim(r'`user: "(\d+:\d+)"`', (swarm_app["user"],), ("docs/deployment.md",)),
        Claim(r"/run/secrets/([\w.-]*\w)", (secret["target"],),
              ("docs/deployment.md", "deploy/swarm/stack.yaml")),
        Claim(r"with mode `(0\d+)`", (f"0{secret['mode']:o}",), ("docs/deployment.md",)),
        Claim(r"`docker service scale` (\d+) → (\d+) → (\d+)",
              (swarm_replicas, 2 * swarm_replicas, swarm_replicas), ("docs/deployment.md",)),
        Claim(r"`timeout\s+connect`, (\d+) s", (connect,), ("docs/deployment.md",)),
        Claim(rf"= (\d+) {times} \((\d+) s \+ (\d+) s\) = (\d+) s",
              (fall, inter, check, fall * (inter + check)), ("docs/deployment.md",)),
        # docs/performance.md, docs/hardening.md
        Claim(r"`THREADS` (\d+)", (default.gunicorn["threads"],), ("docs/performance.md",)),
        Claim(r"`MAX_REQUESTS` ([\d,]+), with up to (\d+) % jitter",
              (max_requests, int(jitter)), ("docs/performance.md",)),
        Claim(r"The uncompressed one, ([\d.]+) MB, is met",
              (f"{DEFAULT.max_size / 1e6:g}",), ("docs/hardening.md",)),
        Claim(r"compressed image under ([\d.]+) MB",
              (f"{DEFAULT.max_compressed / 1e6:g}",), ("docs/hardening.md",)),
        # docs/your-app.md: the variants
        Claim(r"the size bound \((\d+) MB for `py3\.13`, (\d+) MB\s+for `py3\.14`",
              tuple(f"{v.max_size / 1e6:g}" for v in VARIANTS), ("docs/your-app.md",)),
        *(Claim(rf"\| `{v.name}`[^|]*\| Debian (?:\d+ )?{v.suite}, \w+ \| ([\d.]+) \| ([\d.]+) \|",
                (v.python, v.nginx), ("docs/your-app.md",)) for v in VARIANTS),
        Claim(r"--build-arg BASE_IMAGE=(\S+) --build-arg PYTHON_VERSION=(\S+) "
              r"--build-arg NGINX_VERSION=(\S+) -t flask-stack:py3\.14",
              tuple(VARIANTS[1].build_args.values()), ("docs/your-app.md",)),
        # The comments of compose.yaml and deploy/kubernetes/
        Claim(r"at least \d+: (\d+) here", (compose_workers,), ("compose.yaml",)),
        Claim(r"answers 503 for (\d+) s while", (drain,), ("compose.yaml",)),
        Claim(r"HAProxy \(checks every (\d+) s, (\d+) failures\)", (inter, fall),
              ("compose.yaml",)),
        Claim(r"HAProxy finds up to (\d+)", (int(template[1]),), ("compose.yaml",)),
        Claim(r"ceiling after SIGTERM is DRAIN \+ GRACEFUL \+ (\d+) = (\d+) s",
              (*formula, in_compose.stop_ceiling), ("compose.yaml",)),
        Claim(r"ceiling: DRAIN \+ GRACEFUL \+ (\d+) = (\d+) s",
              (*formula, in_kubernetes.stop_ceiling), ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"terminationGracePeriodSeconds (\d+) >= (\d+) \+ (\d+)",
              (pod["terminationGracePeriodSeconds"], pre_stop, in_kubernetes.stop_ceiling),
              ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"preStop sleep (\d+) s", (pre_stop,), ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"\bDRAIN_SECONDS (\d+) s", (in_kubernetes.settings.drain_seconds,),
              ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"\bGRACEFUL_TIMEOUT (\d+) s", (in_kubernetes.settings.graceful_timeout,),
              ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"(\d+) x (\d+) s is longer than a whole stop",
              (liveness["failureThreshold"], liveness["periodSeconds"]),
              ("deploy/kubernetes/deployment.yaml",)),
        Claim(r"The stop's ceiling with these settings: DRAIN \+ GRACEFUL \+ (\d+) = (\d+) s",
              (*formula, in_swarm.stop_ceiling), ("deploy/swarm/stack.yaml",)),
        Claim(r"Swarm's default of (\d+) s", (STOP_BUDGET_SECONDS,), ("deploy/swarm/stack.yaml",)),
        Claim(r"at least \d+ \((\d+) with this limit\)", (swarm_workers,),
              ("deploy/swarm/stack.yaml",)),
        Claim(r"Of the CPU request \((\w+)\)", (container["resources"]["requests"]["cpu"],),
              ("deploy/kubernetes/hpa.yaml",)),
        Claim(r"Never fewer than (\d+) replicas", (autoscaler["minReplicas"],),
              ("deploy/kubernetes/hpa.yaml",)),
    ]


def texts() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): flat(path) for path in PAGES + COMMENTED}


def mismatches(claims: list[Claim], texts: dict[str, str]) -> list[str]:
    wrong = []
    for claim in claims:
        expected = tuple(str(value) for value in claim.values)
        for page in claim.pages:
            if not re.search(claim.pattern, texts[page]):
                wrong.append(f"{page}: nothing matches {claim.pattern!r} (the code: {expected})")
        for page, text in texts.items():
            for match in re.finditer(claim.pattern, text):
                stated = tuple(group.replace(",", "") for group in match.groups())
                if stated != expected:
                    wrong.append(f"{page}: {match[0]!r} states {stated}, the code {expected}")
    return wrong


def test_numbers_in_the_docs_are_the_codes(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    wrong = mismatches(claims(monkeypatch, tmp_path), texts())
    assert not wrong, "\n".join(wrong)


def test_a_drifted_number_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The controls: the docs drifting from the code, and the code from the docs."""
    pages = texts()
    edited = dict(pages, **{"README.md": pages["README.md"].replace(
        "crashes 5 times in", "crashes 4 times in")})
    assert any("crashes 4 times" in line for line in mismatches(
        claims(monkeypatch, tmp_path), edited))
    # Nginx waiting one more second than the docs say, in the config it renders.
    monkeypatch.setattr(Settings, "proxy_timeout", property(lambda self: self.timeout + 6))
    wrong = mismatches(claims(monkeypatch, tmp_path), pages)
    assert any("Nginx waits 5 s longer" in line for line in wrong), wrong
    assert any("README.md: '`TIMEOUT` + 5'" in line for line in wrong), wrong


# --- rules the docs state in words


def at_least(pattern: str) -> set[int]:
    return {int(match[1]) for path in PAGES + COMMENTED
            for match in re.finditer(pattern, flat(path))}


def test_worker_counts_follow_the_cpus_as_the_docs_say(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """'One more than the CPUs, at least N' wherever the docs speak of the worker count."""
    for path in PAGES + COMMENTED:
        assert not re.search(r"workers? per CPU", flat(path)), f"{path.name}: workers per CPU"
    (minimum,) = at_least(r"\bone (?:Gunicorn )?(?:worker )?more\b[^.]*?at least (\d+)")
    for cpus in range(1, 17):
        monkeypatch.setattr(stack.settings, "available_cpus", lambda *_, n=cpus: n)
        assert load({}).web_concurrency == max(minimum, cpus + 1), cpus
    started = start(monkeypatch, tmp_path, {}, cpus=5)
    assert started.gunicorn["workers"] == started.settings.web_concurrency == max(minimum, 6)


def test_nginx_workers_follow_the_cpus_as_the_docs_say(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    (rule,) = re.findall(r"One Nginx worker per (\d+) CPUs, at least (\d+)",
                         flat(ROOT / "docs" / "performance.md"))
    per, minimum = map(int, rule)
    for cpus in range(1, 41):
        monkeypatch.setattr(stack.settings, "available_cpus", lambda *_, n=cpus: n)
        assert load({}).nginx_workers == max(minimum, cpus // per), cpus
    started = start(monkeypatch, tmp_path, {}, cpus=2 * per)
    assert started.directive("worker_processes") == str(started.settings.nginx_workers)


def test_worker_connections_as_the_docs_say(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """'Open-files limit raised toward the hard limit; worker_connections half of it,
    at most N'."""
    (cap,) = {int(match.replace(",", "")) for match in re.findall(
        r"`worker_connections` half of it, at most ([\d,]+)",
        flat(ROOT / "docs" / "performance.md"))}
    generous = start(monkeypatch, tmp_path, {}, open_files=(1024, 1 << 20))
    assert int(generous.directive("worker_connections")) == cap
    tight = start(monkeypatch, tmp_path, {}, open_files=(1024, 3000))
    assert int(tight.directive("worker_connections")) == 3000 // 2


def test_the_refused_gunicorn_options_are_the_ones_the_docs_list() -> None:
    page = (ROOT / "docs" / "your-app.md").read_text()
    refused = re.search(r"options the stack relies on are refused(.*?)\(`APP_DIR`", page, re.S)
    assert refused, "docs/your-app.md no longer lists the refused options"
    listed = set(re.findall(r"`--([a-z-]+)`", refused[1]))
    assert listed == {name.replace("_", "-") for name in gunicorn_args.REFUSED}
