"""The deployment recipes of deploy/, run where this machine can run them: supervisord's
config under a real supervisord, the systemd unit's command line with its environment
file and kill signal, the compose file's web and worker commands with its environment
(gunicorn and two workers), and the health checks of compose, the Dockerfile and the
Kubernetes manifest; against a real Redis. Docker, systemd and Kubernetes themselves do
not run here: their files are read and checked (and the unit verified by
systemd-analyze when it is installed). README's "Deploying" shows the files verbatim."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from redistimers import TimerScheduler

from ._deploy_support import (
    DEADLINE,
    DEPLOY,
    EXAMPLE,
    NAMESPACE,
    TOPICS,
    cli_variables,
    dockerfile_env,
    dockerfile_instructions,
    example_environment,
    free_port,
    free_port_prefix,
    local_command,
    read_env_file,
    redistimers_variables,
    resolved,
    run,
    schedule_reminder,
    scrape,
    seconds,
)
from ._processes import Processes
from .helpers import REPO, SchedulerFactory, cli_command, cli_environment, closed_port, wait_for

pytestmark = pytest.mark.slow

UNIT = DEPLOY / "systemd" / "redistimers-worker.service"
UNIT_ENV = DEPLOY / "systemd" / "redistimers-worker.env"
SUPERVISORD = DEPLOY / "supervisord.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes" / "worker.yaml"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    pool = Processes(tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def timers(make_scheduler: SchedulerFactory) -> TimerScheduler:
    """A scheduler of the recipes' namespace on the session's Redis (flushed), without
    handlers: it schedules and lists live workers."""
    return make_scheduler(namespace=NAMESPACE)


def substituted(text: str, replacements: dict[str, str]) -> str:
    """`text` with each key replaced by its value; each key must be there."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the recipe: update the test"
        text = text.replace(old, new)
    return text


def wait_workers(timers: TimerScheduler, processes: Processes, count: int) -> None:
    def registered() -> bool:
        processes.check_alive()
        return len(timers.workers()) == count

    try:
        wait_for(registered, DEADLINE, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {timers.workers()}\n{processes.logs()}") from exc


def assert_serve_the_example(timers: TimerScheduler, concurrency: int) -> None:
    """Every live worker delivers both of the example's topics, `concurrency` at once."""
    for worker in timers.workers():
        assert dict(worker.topics) == dict.fromkeys(TOPICS, concurrency), worker


def wait_delivered(timers: TimerScheduler, timer_id: str, logs: list[Path]) -> str:
    """The log line of the handler that delivered `timer_id`, once the timer is gone."""

    def delivered() -> bool:
        text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
        return timer_id in text and timers.get_timer(TOPICS[0], timer_id) is None

    try:
        wait_for(delivered, DEADLINE, interval=0.05)
    except AssertionError as exc:
        shown = "\n".join(f"--- {path.name} ---\n{path.read_text(errors='replace')}"
                          for path in logs if path.exists())
        raise AssertionError(f"{exc}: timer {timer_id} not delivered\n{shown}") from exc
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if timer_id in line:
                return line
    raise AssertionError("unreachable")


# -- supervisord -----------------------------------------------------------------------------


def test_supervisord_runs_two_workers_that_deliver_and_stop_cleanly(
    redis_url: str, timers: TimerScheduler, processes: Processes, tmp_path: Path
) -> None:
    from supervisor.datatypes import dict_of_key_value_pairs

    recipe = SUPERVISORD.read_text()
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(recipe)
    program = parsed["program:redistimers-worker"]
    assert (program["numprocs"], program["stopsignal"]) == ("2", "TERM")
    command = shlex.split(program["command"])
    for n in (0, 1):  # each process's environment, supervisord's %(...) expanded
        expansions = {"process_num": n, "program_name": "redistimers-worker"}
        environment = {name: value % expansions for name, value
                       in dict_of_key_value_pairs(program["environment"]).items()}
        worker = resolved(command, environment)
        assert worker.metrics_port is not None
        assert int(program["stopwaitsecs"]) > worker.shutdown_timeout.total_seconds()
        assert redistimers_variables(environment) <= cli_variables()

    # Paths of this machine; the socket's under a short folder (a unix socket's path
    # must stay under 108 bytes).
    run_folder = Path(tempfile.mkdtemp(prefix="rt-sv-"))
    prefix = free_port_prefix(2)
    config = tmp_path / "supervisord.conf"
    config.write_text(substituted(recipe, {
        "/srv/reminders/.venv/bin/redistimers": shlex.join(cli_command()),
        "directory=/srv/reminders": f"directory={EXAMPLE}",
        "user=reminders\n": "",  # this test is no root, to switch users
        "/run/": f"{run_folder}/",
        "/var/log/supervisor": str(tmp_path),
        "/var/log/reminders": str(tmp_path),
        'REDIS_URL="redis://localhost:6379/0"': f'REDIS_URL="{redis_url}"',
        'REDISTIMERS_METRICS_PORT="946%(process_num)d"':
            f'REDISTIMERS_METRICS_HOST="127.0.0.1",'
            f'REDISTIMERS_METRICS_PORT="{prefix}%(process_num)d"',
    }))
    bin_folder = Path(sys.executable).parent
    supervisorctl = [str(bin_folder / "supervisorctl"), "-c", str(config)]
    try:
        processes.spawn("supervisord", [str(bin_folder / "supervisord"), "-n", "-c",
                                        str(config)], cli_environment())
        wait_workers(timers, processes, 2)
        assert_serve_the_example(timers, int(environment["REDISTIMERS_CONCURRENCY"]))
        worker_logs = [tmp_path / f"redistimers-worker-{n}.log" for n in (0, 1)]
        timer_id = schedule_reminder(timers, "ada")
        wait_delivered(timers, timer_id, worker_logs)
        for port in (int(f"{prefix}0"), int(f"{prefix}1")):
            assert "redistimers_handlers_running" in scrape(port)

        stopped = subprocess.run(
            [*supervisorctl, "stop", "redistimers-worker:*"], capture_output=True, text=True,
            timeout=int(program["stopwaitsecs"]) + 10, check=False,
        )
        assert stopped.returncode == 0, (stopped, processes.logs())
        assert sorted(stopped.stdout.splitlines()) == [
            "redistimers-worker:redistimers-worker-0: stopped",
            "redistimers-worker:redistimers-worker-1: stopped",
        ], stopped
        assert timers.workers() == []  # each removed its record as it stopped
        log = (tmp_path / "supervisord.log").read_text()
        for n in (0, 1):
            assert f"stopped: redistimers-worker-{n} (exit status 0)" in log, log
            worker_log = worker_logs[n].read_text()
            assert "received SIGTERM" in worker_log, worker_log
            assert "Traceback" not in worker_log, worker_log
        assert processes.stop("supervisord", signal.SIGTERM, DEADLINE) == 0
    finally:
        processes.close()
        shutil.rmtree(run_folder, ignore_errors=True)


# -- systemd ---------------------------------------------------------------------------------


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    unit.read_string(UNIT.read_text())
    return unit


def test_systemd_unit_runs_a_worker_that_delivers_and_stops_on_its_kill_signal(
    redis_url: str, timers: TimerScheduler, processes: Processes, tmp_path: Path
) -> None:
    service = read_unit()["Service"]
    command = shlex.split(service["ExecStart"])
    environment = read_env_file(UNIT_ENV)
    kill_signal = signal.Signals[service["KillSignal"]]
    stop_within = seconds(service["TimeoutStopSec"])
    assert command[0].startswith("/")
    assert command[0].endswith("/redistimers")
    assert service["Restart"] == "always"  # a worker whose threads died exits 0
    assert stop_within > resolved(command, environment).shutdown_timeout.total_seconds()
    assert redistimers_variables(environment) <= cli_variables()

    # The environment file's variables, the test's Redis and a free metrics port; run from
    # the WorkingDirectory, where the app's package is (nothing on PYTHONPATH).
    metrics_port = free_port()
    env = cli_environment(**{**environment, "REDIS_URL": redis_url,
                             "REDISTIMERS_METRICS_HOST": "127.0.0.1",
                             "REDISTIMERS_METRICS_PORT": str(metrics_port)})
    worker = processes.spawn("worker", local_command(command), env, cwd=EXAMPLE)
    wait_workers(timers, processes, 1)
    assert timers.workers()[0].pid == worker.pid
    assert_serve_the_example(timers, int(environment["REDISTIMERS_CONCURRENCY"]))
    timer_id = schedule_reminder(timers, "grace")
    line = wait_delivered(timers, timer_id, [tmp_path / "worker.log"])
    if environment.get("REDISTIMERS_LOG_FORMAT") == "json":
        assert "reminder" in json.loads(line)["message"], line
    assert "redistimers_handlers_running" in scrape(metrics_port)

    assert processes.stop("worker", kill_signal, stop_within) == 0, processes.logs()
    assert timers.workers() == []
    assert "Traceback" not in processes.log("worker")


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    service = read_unit()["Service"]
    program = shlex.split(service["ExecStart"])[0]
    # This machine's paths; no User= (verify looks the user up).
    unit = tmp_path / UNIT.name
    unit.write_text(substituted(UNIT.read_text(), {
        f"ExecStart={program}": f"ExecStart={cli_command()[0]}",
        f"EnvironmentFile={service['EnvironmentFile']}": f"EnvironmentFile={UNIT_ENV}",
        f"WorkingDirectory={service['WorkingDirectory']}": f"WorkingDirectory={EXAMPLE}",
        f"User={service['User']}\n": "",
        f"Group={service['Group']}\n": "",
    }))
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                              timeout=DEADLINE, check=False)
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", ""), verified


# -- the Dockerfile, compose and Kubernetes: read and checked ------------------------------------


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def kubernetes_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The worker Deployment's pod spec and its one container."""
    documents = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


def image_environment() -> dict[str, str]:
    return dockerfile_env(DOCKERFILE)


def compose_environment(service: str) -> dict[str, str]:
    """A compose service's environment inside its container: the image's ENV, then the
    service's own."""
    own = compose_file()["services"][service].get("environment", {})
    assert isinstance(own, dict), "write the environment as a mapping"
    return {**image_environment(), **{name: str(value) for name, value in own.items()}}


def kubernetes_environment(redis_url: str) -> dict[str, str]:
    """The worker container's environment: the image's ENV, its values, REDIS_URL (from
    the Secret) as `redis_url`."""
    _pod, container = kubernetes_container()
    env = image_environment()
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        else:
            assert variable["name"] == "REDIS_URL", variable
            env["REDIS_URL"] = redis_url
    return env


def health_checks() -> dict[str, list[str]]:
    """Every `redistimers health` command of the recipes, by where it is."""
    instructions = dict(dockerfile_instructions(DOCKERFILE))
    docker = json.loads(instructions["HEALTHCHECK"].partition("CMD")[2])
    compose = compose_file()["services"]["worker"]["healthcheck"]["test"]
    assert compose[0] == "CMD", compose
    _pod, container = kubernetes_container()
    return {
        "Dockerfile HEALTHCHECK": docker,
        "compose worker healthcheck": compose[1:],
        "kubernetes readinessProbe": container["readinessProbe"]["exec"]["command"],
        "kubernetes livenessProbe": container["livenessProbe"]["exec"]["command"],
    }


def test_dockerfile_copies_files_that_exist_and_runs_commands_the_cli_reads() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    keywords = dict(instructions)
    assert keywords["FROM"] == "python:3.12-slim"
    # The build context is the repository (compose: context .. of deploy/).
    build = compose_file()["x-app"]["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
    copied: list[str] = []
    for keyword, arguments in instructions:
        if keyword == "COPY":
            copied += shlex.split(arguments)[:-1]
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the context"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # the build context sends nothing but ...
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert sorted(allowed) == sorted(copied)  # ... what the Dockerfile copies
    [install] = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert "[flask,prometheus]" in install, install
    assert "gunicorn" in install, install
    user = keywords["USER"].split(":")[0]
    assert user not in ("root", "0"), keywords["USER"]
    assert keywords["STOPSIGNAL"] == "SIGTERM"

    env = image_environment()
    assert redistimers_variables(env) <= cli_variables()
    for command in [health_checks()["Dockerfile HEALTHCHECK"], json.loads(keywords["CMD"])]:
        resolved(command, {**env, "REDIS_URL": "redis://redis:6379/0"})
    worker = resolved(json.loads(keywords["CMD"]), env)  # routers from $REDISTIMERS_ROUTERS
    assert worker.command == "worker"
    assert worker.routers == ["reminders.tasks:router"]


def test_compose_runs_redis_the_web_app_and_two_workers_with_checks_and_grace() -> None:
    services = compose_file()["services"]
    assert set(services) == {"redis", "web", "worker"}
    redis_service = services["redis"]
    assert redis_service["image"] == "redis:7"
    assert " ".join(redis_service["command"]).count("--appendonly yes") == 1
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["web"]["command"][0] == "gunicorn"

    worker_env = compose_environment("worker")
    assert redistimers_variables(worker_env) <= cli_variables()
    assert redistimers_variables(compose_environment("web")) <= cli_variables()
    worker = resolved(services["worker"]["command"], worker_env)
    timeout = worker.shutdown_timeout.total_seconds()
    assert seconds(services["worker"]["stop_grace_period"]) > timeout
    web = services["web"]["command"]
    graceful = float(web[web.index("--graceful-timeout") + 1])
    assert seconds(services["web"]["stop_grace_period"]) > graceful
    resolved(services["worker"]["healthcheck"]["test"][1:], worker_env)


def test_kubernetes_worker_has_probes_a_grace_period_and_redis_url_from_a_secret() -> None:
    documents = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    [deployment] = documents
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod, container = kubernetes_container()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert container["image"] == compose_file()["x-app"]["image"]
    [url] = [v for v in container["env"] if v["name"] == "REDIS_URL"]
    assert set(url["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    assert pod["securityContext"]["runAsNonRoot"] is True

    env = kubernetes_environment("redis://redis:6379/0")
    assert redistimers_variables(env) <= cli_variables()
    worker = resolved(container["command"], env)
    assert pod["terminationGracePeriodSeconds"] > worker.shutdown_timeout.total_seconds()
    assert [p["containerPort"] for p in container["ports"]] == [worker.metrics_port]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(worker.metrics_port)
    for probe in ("readinessProbe", "livenessProbe"):
        assert resolved(container[probe]["exec"]["command"], env).command == "health"
        assert container[probe]["timeoutSeconds"] >= 5, probe  # a Python process starts


# -- the compose file's commands, run -------------------------------------------------------------


def gunicorn_options() -> list[str]:
    """gunicorn >= 24 opens a control socket at a fixed path; tests running at once
    would share it."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


def start_web(processes: Processes, redis_url: str) -> str:
    """The compose web service's command and environment (bound to a free local port
    instead of 0.0.0.0:8000); its base URL once it listens."""
    command = compose_file()["services"]["web"]["command"]
    argv = [arg.replace("0.0.0.0:8000", "127.0.0.1:0") for arg in command]
    assert argv != command, "the web service no longer binds 0.0.0.0:8000: update the test"
    env = example_environment(**{**compose_environment("web"), "REDIS_URL": redis_url})
    processes.spawn("web", [*local_command(argv[:-1]), *gunicorn_options(), argv[-1]], env)
    port = processes.wait_log("web", r"Listening at: http://127\.0\.0\.1:(\d+)")[1]
    return f"http://127.0.0.1:{port}"


def post(url: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
        return answer.status, json.loads(answer.read())


def test_compose_web_and_two_workers_deliver_and_their_health_checks_follow(
    redis_url: str, timers: TimerScheduler, processes: Processes, tmp_path: Path
) -> None:
    services = compose_file()["services"]
    base = start_web(processes, redis_url)
    web_check = services["web"]["healthcheck"]["test"][1:]
    local_check = [arg.replace("127.0.0.1:8000", base.removeprefix("http://"))
                   for arg in web_check]
    assert local_check != web_check, "the web check no longer asks 127.0.0.1:8000"
    assert run(local_check, example_environment()).returncode == 0

    worker = services["worker"]
    replicas = worker["deploy"]["replicas"]
    for n in range(replicas):  # in containers each has port 9464 to itself; here, not
        env = {**compose_environment("worker"), "REDIS_URL": redis_url,
               "REDISTIMERS_METRICS_HOST": "127.0.0.1",
               "REDISTIMERS_METRICS_PORT": str(free_port())}
        processes.spawn(f"worker-{n}", local_command(worker["command"]), example_environment(**env))
    wait_workers(timers, processes, replicas)
    assert_serve_the_example(timers, int(compose_environment("worker")["REDISTIMERS_CONCURRENCY"]))

    status, created = post(f"{base}/reminders", {"user": "ada", "text": "stand up"})
    assert status == 201
    worker_logs = [tmp_path / f"worker-{n}.log" for n in range(replicas)]
    assert "ada" in wait_delivered(timers, created["id"], worker_logs)

    checks = health_checks()
    environments = {
        name: kubernetes_environment(redis_url) if name.startswith("kubernetes")
        else {**compose_environment("worker"), "REDIS_URL": redis_url}
        for name in checks
    }
    for name, command in checks.items():
        result = run(command, example_environment(**environments[name]))
        assert result.returncode == 0, (name, result)

    # compose stops a service with the image's STOPSIGNAL, then waits stop_grace_period.
    grace = seconds(worker["stop_grace_period"])
    for n in range(replicas):
        assert processes.stop(f"worker-{n}", signal.SIGTERM, grace) == 0, processes.logs()
    assert timers.workers() == []
    for name, command in checks.items():  # no live worker any more
        result = run(command, example_environment(**environments[name]))
        assert (result.returncode, result.stdout) == (1, ""), (name, result)
        assert len(result.stderr.splitlines()) == 1, (name, result)
    unreachable = {**environments["compose worker healthcheck"],
                   "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    down = run(checks["compose worker healthcheck"], example_environment(**unreachable))
    assert down.returncode == 2, down

    assert processes.stop("web", signal.SIGTERM, seconds(services["web"]["stop_grace_period"])) == 0


def test_the_example_web_app_schedules_refuses_bad_input_and_answers_503_without_redis(
    redis_url: str, timers: TimerScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from reminders.web import create_app

    monkeypatch.setenv("REDISTIMERS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = create_app().test_client()
    created = client.post("/reminders", json={"user": "ada", "text": "stand up", "in": 60})
    assert created.status_code == 201
    timer = timers.get_timer(TOPICS[0], created.json["id"])
    assert timer is not None
    assert timer.payload == {"user": "ada", "text": "stand up"}
    assert client.post("/trials/ada").status_code == 201
    assert timers.get_timer(TOPICS[1], "ada") is not None
    assert client.post("/reminders", json={"user": "ada"}).status_code == 400
    assert client.post("/reminders", json={"user": "a", "text": "b", "in": -1}).status_code == 400

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    offline = create_app().test_client()
    assert offline.get("/healthz").status_code == 200  # no Redis needed
    down = offline.post("/reminders", json={"user": "ada", "text": "stand up"})
    assert (down.status_code, down.headers["Retry-After"]) == (503, "5")


# -- README ----------------------------------------------------------------------------------------




def find_deploying(text: str) -> str | None:
    """The "Deploying" section of `text`, up to the next section of its level."""
    found = re.search(r"^Deploying\n-{9}\n.*?(?=^\S[^\n]*\n-+\n|\Z)", text, re.M | re.S)
    return found[0] if found else None


def deploying_section() -> tuple[Path, str]:
    """README.rst's "Deploying" section."""
    readme = REPO / "README.rst"
    section = find_deploying(readme.read_text())
    assert section is not None, "README.rst has no Deploying section"
    return readme, section


def test_the_deploying_section_is_found_whole_among_others() -> None:
    _source, section = deploying_section()
    readme = "Title\n=====\n\nBefore\n------\n\ntext\n\n" + section.rstrip("\n")
    after = "\n\nConfiguration\n-------------\n\nmore\n"
    assert find_deploying(readme + after) == section.rstrip("\n") + "\n\n"


def shown_files(text: str) -> dict[str, str]:
    """Each code block that a line ending in ``deploy/PATH``: introduces, by PATH."""
    lines = text.splitlines()
    shown: dict[str, str] = {}
    for i, line in enumerate(lines):
        if not line.startswith(".. code-block::"):
            continue
        before = next(lines[j] for j in range(i - 1, -1, -1) if lines[j].strip())
        named = re.search(r"``(deploy/[\w./-]+)``:$", before)
        if not named:
            continue
        block: list[str] = []
        for body in lines[i + 1:]:
            if body.strip() and not body.startswith("    "):
                break
            block.append(body[4:])
        shown[named[1]] = "\n".join(block).strip("\n") + "\n"
    return shown


def test_readme_shows_the_deploy_files_as_they_are() -> None:
    source, text = deploying_section()
    shown = shown_files(text)
    assert set(shown) >= {
        "deploy/systemd/redistimers-worker.service", "deploy/systemd/redistimers-worker.env",
        "deploy/supervisord.conf", "deploy/Dockerfile", "deploy/compose.yaml",
        "deploy/kubernetes/worker.yaml",
    }, f"{source} shows {sorted(shown)}"
    for path, block in shown.items():
        assert block == (REPO / path).read_text(), f"{source} shows {path} otherwise than it is"


def test_the_readme_renders_without_a_warning() -> None:
    """The whole README, as PyPI and GitHub render it: a broken table or a link to a
    section that does not exist is a warning."""
    from docutils.core import publish_doctree

    publish_doctree((REPO / "README.rst").read_text(), settings_overrides={
        "halt_level": 2, "report_level": 2, "warning_stream": False,  # a warning raises
    })
