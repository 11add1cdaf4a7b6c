"""The development tooling behind ``make run`` and ``make test``.

Real servers and real processes: the embedded PostgreSQL and Redis start in a scratch
directory on free ports, and the supervisor manages real child processes.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from devtools import virtualenv
from devtools.console import Console
from devtools.credentials import dev_admin_password
from devtools.errors import DevtoolsError
from devtools.owner import SYSTEM_USER, postgres_owner
from devtools.ports import free_port, port_answers
from devtools.postgres_server import EmbeddedPostgres, _run
from devtools.procfile import read_procfile
from devtools.redis_server import EmbeddedRedis
from devtools.run import banner
from devtools.server_users import ServerUsers
from devtools.servers import ProjectServers, ServerUrls, write_runtime_file
from devtools.supervisor import StepFailed, Supervisor, run_step
from tests.support.worker import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Give a scratch directory outside pytest's private (mode 0700) temp tree.

    As root the embedded PostgreSQL runs as another user, which must be able to reach it.
    """
    path = Path(tempfile.mkdtemp(prefix="devtools-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def quiet() -> Console:
    return Console(io.StringIO())


def live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait (bounded) until none of ``pids`` lives (reparented ones take a beat); return []."""
    wait_for(
        lambda: not [pid for pid in pids if live(pid)],
        timeout=timeout,
        message=lambda: f"processes {[pid for pid in pids if live(pid)]} to be gone",
    )
    return []


def postgres_url_for_psycopg(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


# --- embedded PostgreSQL ----------------------------------------------------------------------


def test_embedded_postgres_answers_sql_and_keeps_data_across_restart(scratch: Path) -> None:
    server = EmbeddedPostgres(scratch / "postgres", preferred_port=free_port(), console=quiet())
    try:
        url = server.start()
        assert url.startswith("postgres://postgres@127.0.0.1:")
        assert url.endswith("/backoffice")
        with psycopg.connect(postgres_url_for_psycopg(url), autocommit=True) as connection:
            version = connection.execute("SHOW server_version").fetchone()
            assert version is not None
            assert version[0].startswith("18.")
            connection.execute("CREATE TABLE kept (note text)")
            connection.execute("INSERT INTO kept VALUES ('survives a restart')")
        server.stop()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert server.running_port() is None
        assert not port_answers(port)

        url_again = server.start()
        with psycopg.connect(postgres_url_for_psycopg(url_again)) as connection:
            rows = connection.execute("SELECT note FROM kept").fetchall()
        assert rows == [("survives a restart",)]
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_postgresql_programs_run_from_a_checkout_only_root_may_enter(scratch: Path) -> None:
    # As a fresh clone made by `mktemp -d` is: its programs sit below a 0700 directory.
    private = scratch / "private"
    (private / "bin").mkdir(parents=True)
    private.chmod(0o700)
    program = private / "bin" / "say-who"
    program.write_text("#!/bin/sh\nid -un\n")
    program.chmod(0o755)

    said = _run([str(program)], owner=postgres_owner(), cwd=Path("/"), timeout=10)

    assert said.strip() == SYSTEM_USER


def test_embedded_postgres_reuses_a_server_already_running_on_its_data_dir(scratch: Path) -> None:
    first = EmbeddedPostgres(scratch / "postgres", preferred_port=free_port(), console=quiet())
    try:
        url = first.start()
        pid_before = (scratch / "postgres" / "postmaster.pid").read_text().splitlines()[0]
        output = io.StringIO()
        second = EmbeddedPostgres(
            scratch / "postgres", preferred_port=free_port(), console=Console(output)
        )
        assert second.start() == url
        pid_after = (scratch / "postgres" / "postmaster.pid").read_text().splitlines()[0]
        assert pid_after == pid_before
        assert "reusing it" in output.getvalue()
    finally:
        first.stop()


def test_embedded_postgres_takes_another_port_when_the_preferred_one_is_busy(
    scratch: Path,
) -> None:
    busy = EmbeddedRedis(scratch / "redis", preferred_port=free_port(), console=quiet())
    busy_url = busy.start()
    busy_port = int(busy_url.rsplit(":", 1)[1].split("/")[0])
    server = EmbeddedPostgres(scratch / "postgres", preferred_port=busy_port, console=quiet())
    try:
        url = server.start()
        assert f":{busy_port}/" not in url
        with psycopg.connect(postgres_url_for_psycopg(url)) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        busy.stop()


# --- embedded Redis ---------------------------------------------------------------------------


def test_embedded_redis_answers_and_keeps_data_across_restart(scratch: Path) -> None:
    server = EmbeddedRedis(scratch / "redis", preferred_port=free_port(), console=quiet())
    try:
        url = server.start()
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.set("devtools:kept", "survives a restart") is True
        client.close()
        server.stop()
        assert server.running_port() is None
        assert not port_answers(int(url.rsplit(":", 1)[1].split("/")[0]))

        client = redis.Redis.from_url(server.start())
        assert client.get("devtools:kept") == b"survives a restart"
        client.close()
        assert (scratch / "redis" / "appendonly.aof").exists()
    finally:
        server.stop()


def test_embedded_redis_reuses_a_server_already_running_on_its_data_dir(scratch: Path) -> None:
    first = EmbeddedRedis(scratch / "redis", preferred_port=free_port(), console=quiet())
    try:
        url = first.start()
        pid = json.loads((scratch / "redis" / "server.json").read_text())["pid"]
        second = EmbeddedRedis(scratch / "redis", preferred_port=free_port(), console=quiet())
        assert second.start() == url
        assert json.loads((scratch / "redis" / "server.json").read_text())["pid"] == pid
    finally:
        first.stop()
    assert not live(pid)


# --- resolving servers ------------------------------------------------------------------------


def test_project_servers_use_the_environment_and_start_nothing(scratch: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/elsewhere",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/7",
    }
    with ProjectServers(scratch, env=env, console=quiet()) as urls:
        assert urls == ServerUrls(
            database_url=env["DATABASE_URL"], redis_url=env["CELERY_BROKER_URL"], embedded=()
        )
    assert not (scratch / "postgres").exists()
    assert not (scratch / "redis").exists()


USER_SCRIPT = textwrap.dedent(
    """
    import io, sys
    from pathlib import Path
    from devtools.console import Console
    from devtools.servers import ProjectServers

    servers = ProjectServers(
        Path(sys.argv[1]), env={}, console=Console(io.StringIO()),
        postgres_port=int(sys.argv[2]), redis_port=int(sys.argv[3]),
    )
    urls = servers.acquire()
    print(urls.database_url, urls.redis_url, flush=True)
    sys.stdin.readline()
    servers.release()
    """
)


def test_embedded_servers_are_shared_and_the_last_user_stops_them(scratch: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", USER_SCRIPT, str(scratch), str(free_port()), str(free_port())],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None
    assert other.stdout is not None
    try:
        database_url, redis_url = other.stdout.readline().split()

        ours = ProjectServers(scratch, env={}, console=quiet())
        urls = ours.acquire()
        assert (urls.database_url, urls.redis_url) == (database_url, redis_url)
        assert urls.embedded == ("PostgreSQL", "Redis")
        assert ours.release() is False  # the other user is still there: nothing stops

        with psycopg.connect(postgres_url_for_psycopg(database_url)) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(redis_url).ping() is True

        other.stdin.write("\n")
        other.stdin.flush()
        assert other.wait(timeout=60) == 0
        assert EmbeddedPostgres(scratch / "postgres").running_port() is None
        assert EmbeddedRedis(scratch / "redis").running_port() is None
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        EmbeddedRedis(scratch / "redis", console=quiet()).stop()
        EmbeddedPostgres(scratch / "postgres", console=quiet()).stop()


def test_server_users_forget_processes_that_died(scratch: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    users = ServerUsers(scratch / "redis.users.json")
    (scratch / "redis.users.json").write_text(json.dumps([dead_pid, os.getpid()]))
    assert users.live() == [os.getpid()]
    assert users.leave(os.getpid()) == []


def test_runtime_file_records_the_urls_in_use(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEBUG", raising=False)
    path = scratch / ".local" / "runtime.json"
    write_runtime_file(
        path, ServerUrls(database_url="postgres://a@127.0.0.1:1/b", redis_url="redis://c:2/0")
    )
    assert json.loads(path.read_text()) == {
        "DATABASE_URL": "postgres://a@127.0.0.1:1/b",
        "REDIS_URL": "redis://c:2/0",
    }


def test_runtime_file_never_records_debug(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings take DEBUG from the environment only; a file that carried it would still be
    # read by an older checkout's settings.
    monkeypatch.setenv("DEBUG", "true")
    path = scratch / ".local" / "runtime.json"
    write_runtime_file(
        path, ServerUrls(database_url="postgres://a@127.0.0.1:1/b", redis_url="redis://c:2/0")
    )
    assert "DEBUG" not in json.loads(path.read_text())


def test_with_servers_exports_the_environment_servers_to_the_command() -> None:
    env = dict(os.environ)
    env.update(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/devtools_probe",
        REDIS_URL="redis://127.0.0.1:6379/9",
    )
    env.pop("CELERY_BROKER_URL", None)
    env.pop("DEBUG", None)
    probe = (
        "import os; print(os.environ['DATABASE_URL'], os.environ['REDIS_URL'], os.environ['DEBUG'])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "devtools.with_servers", "--", sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.splitlines()[-1] == (
        "postgres://postgres@127.0.0.1:5432/devtools_probe redis://127.0.0.1:6379/9 true"
    )
    assert "starting embedded" not in result.stdout


def test_with_servers_returns_the_command_exit_code() -> None:
    env = dict(os.environ)
    env.update(DATABASE_URL="postgres://x@127.0.0.1:1/x", REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run(
        [sys.executable, "-m", "devtools.with_servers", "--", sys.executable, "-c", "exit(5)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 5


# --- the supervisor ---------------------------------------------------------------------------

# Each child leaves a grandchild in its process group, as gunicorn and Celery leave workers.
SLEEPER = "sleep 600 & exec sleep 600"

SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from devtools.console import Console
    from devtools.supervisor import Supervisor

    supervisor = Supervisor(Console(), grace_seconds=float(sys.argv[1]))
    supervisor.install_signal_handlers()
    for name, command in zip(("web", "worker", "beat"), sys.argv[2:]):
        supervisor.start(name, ["/bin/sh", "-c", command], env={"PATH": "/usr/bin:/bin"},
                         cwd=Path.cwd())
    print("READY", flush=True)
    died = supervisor.wait()
    supervisor.stop()
    sys.exit(0 if died is None else 1)
    """
)


def start_supervisor(grace: float, *commands: str) -> tuple[subprocess.Popen[str], list[int]]:
    """Start the supervisor script; return it and every process below it once all are up."""
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, str(grace), *commands],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "READY":
            break
    supervisor = psutil.Process(process.pid)
    # Each sleeper shell becomes two sleeps; wait until all of them exist.
    wait_for(
        lambda: len(supervisor.children(recursive=True)) >= 2 * len(commands),
        timeout=10,
        message="the children to all start",
    )
    return process, [child.pid for child in supervisor.children(recursive=True)]


def test_supervisor_stops_every_child_and_grandchild_on_sigint() -> None:
    process, descendants = start_supervisor(10, SLEEPER, SLEEPER, SLEEPER)
    assert len(descendants) == 6
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert wait_until_gone(descendants) == []
    for name in ("web", "worker", "beat"):
        assert f"{name:<8} | stopping (SIGTERM)" in output


def test_supervisor_kills_a_child_that_ignores_sigterm_after_the_grace_period() -> None:
    stubborn = "trap '' TERM; sleep 600 & exec sleep 600"
    process, descendants = start_supervisor(1, SLEEPER, stubborn)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert wait_until_gone(descendants) == []
    assert "worker   | did not stop in time: SIGKILL" in output


def test_supervisor_reports_a_child_that_dies_and_stops_the_others() -> None:
    process, descendants = start_supervisor(10, SLEEPER, "sleep 0.5; exit 3")
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "worker   | exited with code 3" in output
    assert wait_until_gone(descendants) == []


def test_run_step_returns_output_and_raises_on_failure(scratch: Path) -> None:
    console_output = io.StringIO()
    lines = run_step(
        "token",
        ["/bin/sh", "-c", "echo noise; echo abc123"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=scratch,
        console=Console(console_output),
        echo=False,
    )
    assert lines == ["noise", "abc123"]
    assert console_output.getvalue() == ""
    with pytest.raises(StepFailed) as failure:
        run_step(
            "seed",
            ["/bin/sh", "-c", "echo Unknown command: seed_demo; exit 1"],
            env={"PATH": "/usr/bin:/bin"},
            cwd=scratch,
            console=quiet(),
        )
    assert failure.value.returncode == 1
    assert failure.value.output == ["Unknown command: seed_demo"]


def test_supervisor_in_process_returns_the_child_that_exited(scratch: Path) -> None:
    supervisor = Supervisor(quiet(), grace_seconds=5)
    env = {"PATH": "/usr/bin:/bin"}
    sleeper = supervisor.start("web", ["sleep", "600"], env=env, cwd=scratch)
    supervisor.start("beat", ["/bin/sh", "-c", "exit 4"], env=env, cwd=scratch)
    try:
        died = supervisor.wait()
        assert died is not None
        assert died.name == "beat"
        assert died.process.returncode == 4
    finally:
        supervisor.stop()
    assert sleeper.process.returncode == -signal.SIGTERM


def test_supervisor_restarts_a_restartable_child_and_gives_up_when_it_keeps_dying(
    scratch: Path,
) -> None:
    output = io.StringIO()
    supervisor = Supervisor(Console(output), grace_seconds=5, restart=("worker",), max_restarts=2)
    env = {"PATH": "/usr/bin:/bin"}
    web = supervisor.start("web", ["sleep", "600"], env=env, cwd=scratch)
    counter = scratch / "starts"
    supervisor.start(
        "worker", ["/bin/sh", "-c", f"echo x >> {counter}; exit 3"], env=env, cwd=scratch
    )
    try:
        died = supervisor.wait()
        assert died is not None and died.name == "worker"
    finally:
        supervisor.stop()
    # Started once, restarted twice, then given up on; the web server was left alone until then.
    assert counter.read_text().count("x") == 3
    assert output.getvalue().count("exited with code 3: restarting it") == 2
    assert "giving up" in output.getvalue()
    assert web.process.returncode == -signal.SIGTERM


# --- configuration files and small pieces -----------------------------------------------------


def test_the_api_benchmark_runs_the_procfiles_web_server() -> None:
    # bench/api.py measures gunicorn as the Procfile runs it; a change to one alone would
    # publish figures for a server nobody runs.
    from bench import api

    entries = {entry.name: entry.command for entry in read_procfile(ROOT / "Procfile")}
    words = entries["web"].split()
    options = {word: value for word, value in itertools.pairwise(words) if word.startswith("--")}
    assert options["--worker-class"] == api.GUNICORN_CLASS
    assert int(options["--workers"]) == api.GUNICORN_WORKERS
    assert int(options.get("--threads", "1")) == api.GUNICORN_THREADS


def test_procfile_lists_web_worker_and_beat() -> None:
    entries = {entry.name: entry.command for entry in read_procfile(ROOT / "Procfile")}
    assert set(entries) == {"web", "worker", "beat"}
    assert entries["web"].startswith("gunicorn config.wsgi --bind 127.0.0.1:${PORT:-8000}")
    assert entries["worker"].startswith("celery -A config worker")
    assert "-s .local/celerybeat-schedule" in entries["beat"]


def test_procfile_rejects_a_line_without_a_name(scratch: Path) -> None:
    (scratch / "Procfile").write_text("web: gunicorn x\njust a command\n")
    with pytest.raises(DevtoolsError, match="Procfile:2"):
        read_procfile(scratch / "Procfile")


def test_dev_admin_password_is_generated_once_and_kept_private(scratch: Path) -> None:
    first = dev_admin_password(scratch, {})
    assert len(first) >= 16
    assert dev_admin_password(scratch, {}) == first
    mode = (scratch / "demo-admin-password").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert dev_admin_password(scratch, {"DEMO_ADMIN_PASSWORD": "chosen-pw"}) == "chosen-pw"


def test_banner_shows_urls_credentials_and_token() -> None:
    urls = ServerUrls(
        database_url="postgres://postgres@127.0.0.1:54329/backoffice",
        redis_url="redis://127.0.0.1:63799/0",
        embedded=("PostgreSQL", "Redis"),
    )
    text = banner(urls, port=8123, password="pw-123", token="tok-456")
    for expected in (
        "http://127.0.0.1:8123/admin/",
        "http://127.0.0.1:8123/api/ ",
        "http://127.0.0.1:8123/api/docs/",
        "http://127.0.0.1:8123/api/health/",
        "user admin, password pw-123",
        "Authorization: Token tok-456",
        "(embedded, data in .local/postgres)",
    ):
        assert expected in text


def test_virtualenv_install_is_skipped_while_requirements_are_unchanged(scratch: Path) -> None:
    (scratch / "requirements.txt").write_text("this is not a requirement line\n")
    venv_bin = scratch / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    stamp = virtualenv.stamp_path(scratch / ".venv", virtualenv.RUNTIME_REQUIREMENTS)
    stamp.write_text(
        virtualenv.requirements_digest(scratch, virtualenv.RUNTIME_REQUIREMENTS) + "\n"
    )
    # The stamp matches: pip is not run, so the broken line goes unnoticed.
    assert virtualenv.ensure_virtualenv(scratch, dev=False) == venv_bin / "python"

    (scratch / "requirements.txt").write_text("this is still not a requirement line\n")
    with pytest.raises(subprocess.CalledProcessError):
        virtualenv.ensure_virtualenv(scratch, dev=False)
