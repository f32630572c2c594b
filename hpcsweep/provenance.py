"""Where a result came from: the hpcsweep checkout and the versions of the packages that made it."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "numpy", "h5py", "uproot", "awkward", "pandas", "submitit", "pydantic", "pythia8mc", "fastjet")


def git_commit() -> str:
    """The commit of the hpcsweep checkout ('-dirty' if it has local changes), or '' outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package ('' when it is not installed)."""
    return {name: _installed(name) for name in packages}


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""
