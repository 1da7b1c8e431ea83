"""Installing the app into a new project, as docs/install.md tells a user to.

Builds the wheel from this repository, installs it into a fresh virtualenv
(nothing of this repository on its path), makes a project with
`django-admin startproject`, adds the app and a command of the project's own,
then runs that command with `manage.py execute`, serves the project with
daphne, logs in and interrupts the run through the JSON API.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from executions.flow import DAPHNE_ARGS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Generous: to catch hangs, not to measure (the whole test takes ~30 s).
INSTALL_TIMEOUT = 300
COMMAND_TIMEOUT = 60
WAIT_TIMEOUT = 30

SETTINGS = """
# -- added as docs/install.md says ------------------------------------------------
INSTALLED_APPS = ["daphne", *INSTALLED_APPS, "channels", "executions", "release"]
ASGI_APPLICATION = "mysite.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
LOGIN_URL = "admin:login"
DATABASES["default"]["OPTIONS"] = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
"""

URLS = """
from django.urls import include

urlpatterns += [path("", include("executions.urls"))]
"""

# A command of the project's own: a long step that stops at its checkpoints,
# then one that an interrupt must keep from starting.
CMDS = """
import asyncio

from executions.engine import Cmd, Step, register


async def wait(ctx):
    for _ in range(600):
        ctx.checkpoint()
        await asyncio.sleep(0.1)
        ctx.progress.advance()


def publish(ctx):
    ctx.progress.message = "published"


register(
    Cmd(
        name="release.slow",
        title="A slow release",
        steps=[
            Step("wait", wait, title="Wait", total=600),
            Step("publish", publish, title="Publish", after=["wait"]),
        ],
    )
)
"""


def missing(message: str) -> None:
    """Something the test needs is not there: a failure in CI, else a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(argv: list, *, cwd: Path, env: dict, timeout: float = COMMAND_TIMEOUT):
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited with {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def pip(argv: list, *, cwd: Path, env: dict) -> None:
    """This interpreter's pip, for `argv`; offline is `missing`, not a bug."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if re.search(
            r"No matching distribution|Could not find a version|NewConnectionError"
            r"|Temporary failure in name resolution|Network is unreachable",
            output,
        ):
            missing(f"pip cannot reach the package index:\n{output}")
        pytest.fail(f"pip {' '.join(map(str, argv))} failed:\n{output}")


def clean_env() -> dict[str, str]:
    """The environment without this repository's settings or path."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "EXECUTIONS_"))
        and name not in {"PYTHONPATH", "DATABASE_URL", "REDIS_URL"}
    }


def pins(tmp: Path) -> Path:
    """requirements.txt as constraints (which may not carry extras), so the
    new virtualenv gets the versions this repository is tested with."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    constraints = tmp / "constraints.txt"
    constraints.write_text(
        "\n".join(re.sub(r"\[.*?\]", "", line) for line in lines) + "\n"
    )
    return constraints


def build_wheel(tmp: Path, env: dict) -> Path:
    # From a copy: setuptools writes build/ and *.egg-info into the tree it
    # builds, and a stale build/ could carry deleted files into the wheel.
    source = tmp / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "__pycache__",
            "build",
            "dist",
            "*.egg-info",
            "var",
            "artifacts",
            ".*_cache",
            ".hypothesis",
            "*.sqlite3*",
        ),
    )
    pip(["wheel", "--no-deps", "--quiet", "-w", tmp / "dist", source], cwd=tmp, env=env)
    (wheel,) = (tmp / "dist").glob("*.whl")
    return wheel


def make_venv(tmp: Path, wheel: Path, env: dict) -> Path:
    venv = tmp / "venv"
    # No pip of its own (ensurepip is most of venv's time): this
    # interpreter's pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    pip(
        ["--python", python, "install", "--quiet", wheel, "-c", pins(tmp)],
        cwd=tmp,
        env=env,
    )
    return venv


def make_project(tmp: Path, venv: Path, env: dict) -> Path:
    project = tmp / "project"
    project.mkdir()
    run(
        [venv / "bin" / "django-admin", "startproject", "mysite", project],
        cwd=tmp,
        env=env,
    )
    run(
        [venv / "bin" / "python", "manage.py", "startapp", "release"],
        cwd=project,
        env=env,
    )
    site = project / "mysite"
    with (site / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    with (site / "urls.py").open("a") as urls:
        urls.write(URLS)
    asgi = (site / "asgi.py").read_text()
    django_asgi = "from django.core.asgi import get_asgi_application"
    assert django_asgi in asgi
    (site / "asgi.py").write_text(
        asgi.replace(django_asgi, "from executions.asgi import get_asgi_application")
    )
    (project / "release" / "cmds.py").write_text(CMDS)
    return project


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, what: str, *processes: subprocess.Popen, logs: list[Path]):
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(
                    f"{process.args} exited with {process.returncode} while "
                    f"waiting for {what}:\n{output(logs)}"
                )
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"no {what} within {WAIT_TIMEOUT} s:\n{output(logs)}")


def output(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Session:
    """A browser-like client: cookies, and the CSRF token sent back."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def cookie(self, name: str) -> str:
        return next(cookie.value for cookie in self.cookies if cookie.name == name)

    def request(self, method: str, path: str, data=None, headers=None):
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def up(self) -> bool:
        try:
            return self.request("GET", "/admin/login/")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_in(self, username: str, password: str) -> None:
        self.request("GET", "/admin/login/")
        form = urllib.parse.urlencode(
            {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.cookie("csrftoken"),
                "next": "/admin/",
            }
        ).encode()
        status, body = self.request("POST", "/admin/login/?next=/admin/", form)
        assert status == 200
        assert "Log out" in body, body

    def json(self, method: str, path: str, body=None) -> tuple[int, dict]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            headers["X-CSRFToken"] = self.cookie("csrftoken")
        status, text = self.request(method, path, data, headers)
        return status, json.loads(text)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        stop(process)


def test_install_into_a_new_project_runs_and_interrupts_its_command(
    tmp_path, processes
):
    env = clean_env()
    wheel = build_wheel(tmp_path, env)
    venv = make_venv(tmp_path, wheel, env)
    project = make_project(tmp_path, venv, env)
    python = venv / "bin" / "python"
    env = {**env, "PYTHONUNBUFFERED": "1"}

    where = run(
        [python, "-c", "import executions; print(executions.__file__)"],
        cwd=project,
        env=env,
    )
    check = run([python, "manage.py", "check"], cwd=project, env=env)
    run([python, "manage.py", "migrate", "--noinput"], cwd=project, env=env)
    run(
        [python, "manage.py", "createsuperuser", "--noinput", "--username", "admin"],
        cwd=project,
        env={
            **env,
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "",
        },
    )

    execute_out = tmp_path / "execute.out"
    execute_err = tmp_path / "execute.err"
    daphne_log = tmp_path / "daphne.log"
    logs = [execute_out, execute_err, daphne_log]
    with execute_out.open("w") as out, execute_err.open("w") as err:
        execute = subprocess.Popen(
            [python, "manage.py", "execute", "release.slow"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=err,
        )
    processes.append(execute)
    port = free_port()
    with daphne_log.open("w") as log:
        daphne = subprocess.Popen(
            [venv / "bin" / "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + [*DAPHNE_ARGS, "mysite.asgi:application"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    processes.append(daphne)
    session = Session(f"http://127.0.0.1:{port}")

    execution_id = wait_for(
        lambda: (UUID.match(execute_out.read_text()) or [None])[0],
        "execution ID from execute",
        execute,
        logs=logs,
    )
    wait_for(session.up, "daphne", daphne, logs=logs)
    session.log_in("admin", PASSWORD)
    wait_for(
        lambda: (
            session.json("GET", f"/api/executions/{execution_id}/")[1]["status"]
            == "running"
        ),
        "running execution",
        execute,
        logs=logs,
    )
    page_status, page = session.request("GET", f"/executions/{execution_id}/")
    status, interrupting = session.json(
        "POST",
        f"/api/executions/{execution_id}/interrupt/",
        {"reason": "from the install test"},
    )
    try:
        exit_code = execute.wait(timeout=WAIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"execute did not stop:\n{output(logs)}")
    _, final = session.json("GET", f"/api/executions/{execution_id}/")

    assert Path(where.stdout.strip()).is_relative_to(venv)
    assert "System check identified no issues" in check.stdout
    assert page_status == 200
    assert '<a class="brand" href="/executions/">Executions</a>' in page
    assert "A slow release" in page
    assert status == 202, interrupting
    assert interrupting["status"] == "interrupting"
    assert exit_code == 130, output(logs)
    assert final["status"] == "interrupted"
    assert final["interrupt"]["source"] == "api"
    assert final["interrupt"]["by"] == "admin"
    assert final["interrupt"]["reason"] == "from the install test"
    assert final["outcome"]["steps_processed"] == []
    assert final["outcome"]["steps_not_processed"] == ["wait", "publish"]
