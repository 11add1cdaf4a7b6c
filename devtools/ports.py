"""Choose and probe TCP ports on the loopback interface."""

from __future__ import annotations

import socket
import time

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, *, host: str = LOOPBACK) -> bool:
    """Return whether nothing listens on ``host:port`` and we could bind it now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: connections a server closed linger in TIME_WAIT on its port for a
        # minute, which would otherwise make the port look taken right after a restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_answers(port, host=host)


def port_answers(port: int, *, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(*, host: str = LOOPBACK) -> int:
    """Return a port the kernel considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def choose_port(preferred: int, *, host: str = LOOPBACK) -> int:
    """Return ``preferred`` when it is free, else any free port.

    The usual port keeps URLs stable from one run to the next; falling back keeps a second
    checkout, or another program on that port, from stopping the run.
    """
    return preferred if port_is_free(preferred, host=host) else free_port(host=host)


def wait_for_port(port: int, *, host: str = LOOPBACK, timeout: float = 30.0) -> bool:
    """Wait until ``host:port`` accepts connections; return False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers(port, host=host):
            return True
        time.sleep(0.1)
    return False
