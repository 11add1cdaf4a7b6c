"""``make run``: the whole back office on this machine, with one command.

Bootstrap the servers (the environment's, else embedded PostgreSQL and Redis), record their
URLs in ``.local/runtime.json``, migrate, seed the demo data, then run every process of the
Procfile (web, Celery worker, Celery beat) with their output prefixed, until Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from devtools.console import Console, display_path
from devtools.credentials import dev_admin_password
from devtools.errors import DevtoolsError
from devtools.ports import LOOPBACK, port_is_free, wait_for_port
from devtools.procfile import read_procfile
from devtools.servers import ProjectServers, ServerUrls, write_runtime_file
from devtools.supervisor import StepFailed, Supervisor, run_step
from privacy.kek import dev_key

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = ROOT / ".local"
RUNTIME_FILE = LOCAL_DIR / "runtime.json"
DEFAULT_PORT = 8000
DEMO_ADMIN = "admin"
DEMO_CLIENT = "demo-client"


def child_environment(urls: ServerUrls, *, port: int) -> dict[str, str]:
    """Return the environment of every command we start: ours plus servers, port, venv."""
    env = dict(os.environ)
    env.update(urls.environment())
    env["PORT"] = str(port)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    # Procfile commands (gunicorn, celery) come from the virtualenv we run in.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def banner(urls: ServerUrls, *, port: int, password: str, token: str) -> str:
    """Return what to read once everything is up: where to go and how to log in."""
    base = f"http://{LOOPBACK}:{port}"
    embedded = set(urls.embedded)
    postgres_note = " (embedded, data in .local/postgres)" if "PostgreSQL" in embedded else ""
    redis_note = " (embedded, data in .local/redis)" if "Redis" in embedded else ""
    rule = "-" * 78
    return "\n".join(
        [
            rule,
            "The order back office is running.",
            f"  admin       {base}/admin/    user {DEMO_ADMIN}, password {password}",
            f"  API         {base}/api/      header  Authorization: Token {token}",
            f"              (the token of the demo API client '{DEMO_CLIENT}')",
            f"  API docs    {base}/api/docs/",
            f"  health      {base}/api/health/",
            f"  PostgreSQL  {urls.database_url}{postgres_note}",
            f"  Redis       {urls.redis_url}{redis_note}",
            "  DEBUG=true manage.py in this checkout reaches the same servers "
            "(.local/runtime.json).",
            "Press Ctrl-C to stop everything.",
            rule,
        ]
    )


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def seed_arguments(password: str) -> list[str]:
    """The ``seed_demo`` command line that gives the demo admin ``password``.

    --force: seeding the demo is what make run is for, DEBUG on or off (seed_demo still never
    touches an existing admin account). The password goes in the option's own argument
    (``--admin-password=…``): a separate argument starting with "-", as a generated
    password sometimes does, would be read by argparse as an option of its own.
    """
    return ["seed_demo", "--force", f"--admin-password={password}"]


def _bootstrap(env: Mapping[str, str], console: Console, password: str) -> str:
    """Migrate and seed; return the demo API client's token."""
    manage = [sys.executable, "manage.py"]
    console.step("applying migrations (manage.py migrate)…")
    run_step("migrate", [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, console=console)
    if env.get("DEBUG", "").strip().lower() not in {"1", "true", "yes", "on"}:
        console.step("collecting static files (DEBUG is off)…")
        run_step(
            "static", [*manage, "collectstatic", "--noinput"], env=env, cwd=ROOT, console=console
        )
    console.step("seeding demo data (manage.py seed_demo)…")
    run_step(
        "seed",
        [*manage, *seed_arguments(password)],
        env=env,
        cwd=ROOT,
        console=console,
    )
    # A new token each run (only digests are stored, so an old one cannot be shown again);
    # --replace revokes the previous runs' tokens of the demo client.
    console.step(f"issuing an API token for {DEMO_CLIENT} (manage.py create_api_token)…")
    lines = run_step(
        "token",
        [*manage, "create_api_token", DEMO_CLIENT, "--replace"],
        env=env,
        cwd=ROOT,
        console=console,
        echo=False,
    )
    printed = [line.strip() for line in lines if line.strip()]
    if not printed:
        raise DevtoolsError("create_api_token printed no token")
    return printed[-1]


def _explain(error: StepFailed) -> str:
    for line in error.output:
        match = re.search(r"Unknown command: '([^']+)'", line)
        if match:
            return (
                f"manage.py {match[1]} does not exist in this checkout yet; make run needs it "
                "(DESIGN.md, Management commands)."
            )
    return f"{error}: see its output above."


def _supervise(env: Mapping[str, str], console: Console, *, port: int, text: str) -> int:
    # The worker and beat come back on their own after a crash (a Celery worker can exit when
    # the broker restarts); the web server dying is a problem worth stopping for.
    supervisor = Supervisor(console, restart=("worker", "beat"))
    supervisor.install_signal_handlers()
    try:
        for entry in read_procfile(ROOT / "Procfile"):
            supervisor.start(entry.name, entry.argv(), env=env, cwd=ROOT)
        while not wait_for_port(port, timeout=0.5):
            if supervisor.stop_requested.is_set() or supervisor.exited() is not None:
                break
        else:
            console.text(text)
        died = supervisor.wait()
        if died is not None:
            console.error(
                f"{died.name} exited unexpectedly (code {died.process.returncode}): "
                "stopping the others"
            )
        return 0 if died is None else 1
    finally:
        supervisor.stop()


def main() -> int:
    """Run the back office until Ctrl-C; return the exit code."""
    console = Console()
    os.environ.setdefault("DEBUG", "true")
    port = int(os.environ.get("PORT") or DEFAULT_PORT)
    if not port_is_free(port):
        console.error(f"port {port} on {LOOPBACK} is in use: stop what uses it, or set PORT.")
        return 2
    # Until the supervisor takes over, SIGTERM and SIGHUP unwind like Ctrl-C, so the
    # embedded servers this run started are released on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    servers = ProjectServers(LOCAL_DIR, console=console)
    try:
        urls = servers.acquire()
    except DevtoolsError as error:
        console.error(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        write_runtime_file(RUNTIME_FILE, urls)
        console.step(f"recorded the servers' URLs in {display_path(RUNTIME_FILE)}")
        env = child_environment(urls, port=port)
        password = dev_admin_password(LOCAL_DIR, env)
        # One key-encryption key for every process started (settings would read the same
        # file; generating it here, once, spares the processes racing to create it).
        env.setdefault("PERSONAL_DATA_KEY", dev_key(LOCAL_DIR))
        token = _bootstrap(env, console, password)
        text = banner(urls, port=port, password=password, token=token)
        code = _supervise(env, console, port=port, text=text)
    except StepFailed as error:
        console.error(_explain(error))
        code = 1
    except DevtoolsError as error:
        console.error(str(error))
        code = 1
    except KeyboardInterrupt:
        console.step("interrupted")
        code = 130
    finally:
        # Stopping the servers must not be cut short by another Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if servers.release() and urls.embedded:
            # The embedded servers are gone: a stale URL would only mislead manage.py.
            RUNTIME_FILE.unlink(missing_ok=True)
    except DevtoolsError as error:
        console.error(str(error))
        code = code or 1
    console.step("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
