"""The demo admin's development password: generated once, kept in ``.local/``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

PASSWORD_FILE_NAME = "demo-admin-password"


def dev_admin_password(local_dir: Path, env: Mapping[str, str]) -> str:
    """Return ``DEMO_ADMIN_PASSWORD`` if set, else this checkout's stored password.

    The password is generated on first use and stored readable by its owner only, so it
    stays the same from one ``make run`` to the next and is never a well-known default.
    """
    override = env.get("DEMO_ADMIN_PASSWORD")
    if override:
        return override
    path = local_dir / PASSWORD_FILE_NAME
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    password = secrets.token_urlsafe(12)
    local_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    return password
