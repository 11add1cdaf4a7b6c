"""Create the project's virtualenv and keep it installed: ``python3.11 -m devtools.virtualenv``.

Runs with the machine's Python before ``.venv`` exists, so it uses the standard library
only. Installing is skipped when the requirements files are unchanged since the last
install: a stamp file in ``.venv`` holds their hash.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import venv
from pathlib import Path

REQUIRED_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent
RUNTIME_REQUIREMENTS = ("requirements.txt",)
DEV_REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")


class VirtualenvError(Exception):
    """The virtualenv cannot be created or does not run the required Python."""


def requirements_digest(root: Path, names: tuple[str, ...]) -> str:
    """Hash the named requirements files (names and contents) into one hex digest."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def stamp_path(venv_dir: Path, names: tuple[str, ...]) -> Path:
    """Return the stamp file recording the last install of ``names``."""
    kind = "dev" if "requirements-dev.txt" in names else "runtime"
    return venv_dir / f".installed-{kind}.sha256"


def venv_python_version(python: Path) -> tuple[int, int]:
    """Return the (major, minor) version of the virtualenv's interpreter."""
    out = subprocess.run(
        [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def ensure_virtualenv(root: Path, *, dev: bool) -> Path:
    """Create ``root/.venv`` if needed and install the requirements when they changed.

    Return the virtualenv's Python. ``dev`` adds requirements-dev.txt (tests, linters).
    """
    wanted = ".".join(map(str, REQUIRED_PYTHON))
    venv_dir = root / ".venv"
    python = venv_dir / "bin" / "python"
    if not python.exists():
        if sys.version_info[:2] != REQUIRED_PYTHON:
            raise VirtualenvError(
                f"this project needs Python {wanted}, but {sys.executable} is "
                f"{sys.version.split()[0]}; install python{wanted} and run make again."
            )
        print(f"==> creating .venv with Python {sys.version.split()[0]} ({sys.executable})")
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    found = venv_python_version(python)
    if found != REQUIRED_PYTHON:
        raise VirtualenvError(
            f".venv runs Python {found[0]}.{found[1]}, not {wanted}: "
            f"remove .venv and run make again."
        )

    names = DEV_REQUIREMENTS if dev else RUNTIME_REQUIREMENTS
    stamp = stamp_path(venv_dir, names)
    digest = requirements_digest(root, names)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return python
    files = " and ".join(names)
    print(f"==> installing {files} into .venv (the first time takes a few minutes)…", flush=True)
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for name in names:
        command += ["-r", str(root / name)]
    subprocess.run(command, check=True, cwd=root)
    stamp.write_text(digest + "\n")
    if dev:
        # requirements-dev.txt includes requirements.txt, so the runtime set is installed too.
        runtime = RUNTIME_REQUIREMENTS
        stamp_path(venv_dir, runtime).write_text(requirements_digest(root, runtime) + "\n")
    return python


def main(argv: list[str] | None = None) -> int:
    """Create or update the virtualenv; exit non-zero with a message when that fails."""
    parser = argparse.ArgumentParser(prog="python -m devtools.virtualenv", description=__doc__)
    parser.add_argument("--dev", action="store_true", help="also install requirements-dev.txt")
    args = parser.parse_args(argv)
    try:
        ensure_virtualenv(ROOT, dev=args.dev)
    except VirtualenvError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"error: {' '.join(map(str, error.cmd))} failed (exit {error.returncode})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
