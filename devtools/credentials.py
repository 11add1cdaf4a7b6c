"""The demo admin's development password: generated once, kept in ``.local/``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from infrastructure.local_secrets import local_secret

PASSWORD_FILE_NAME = "demo-admin-password"


def dev_admin_password(local_dir: Path, env: Mapping[str, str]) -> str:
    """Return ``DEMO_ADMIN_PASSWORD`` if set, else this checkout's stored password.

    The password is generated on first use and stored readable by its owner only, so it
    stays the same from one ``make run`` to the next and is never a well-known default.
    """
    override = env.get("DEMO_ADMIN_PASSWORD")
    if override:
        return override
    return local_secret(local_dir / PASSWORD_FILE_NAME, lambda: secrets.token_urlsafe(12))
