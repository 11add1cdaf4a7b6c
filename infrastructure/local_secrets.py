"""Secrets a development checkout generates once and keeps in ``.local/``.

Plain Python, no Django: settings and ``make run``'s launcher read them before Django is set
up. A secret is written readable by its owner only, whole under a temporary name and then
linked into place, so a process starting beside the one writing it (a worker beside the web
server) reads either no file or the whole secret, and two processes generating at once agree
on the first one linked.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def local_secret(path: Path, generate: Callable[[], str]) -> str:
    """Return the secret stored at ``path``, generating and storing it on first use."""
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    value = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        temporary.unlink()
    return value
