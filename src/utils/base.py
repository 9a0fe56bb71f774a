"""What every module of the library may import: the repository root and the configuration error.

It imports nothing of the library, so a low module (the packaged-model and packaged-data registries) can find the
repository without importing ``config``, and ``config`` can in turn import those registries at module level to
check a profile's names (no import cycle, no import inside a function).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


class ConfigError(ValueError):
    """A profile file or an override is invalid."""


PACKAGE_ROOT = Path(__file__).resolve().parents[2]     # the repository this package was installed from (editable)


def find_root(start: Optional[Path] = None) -> Path:
    """The repository root: the nearest folder upwards holding ``configs/`` and
    ``pyproject.toml`` (from ``start`` or the working directory), else the folder
    this package was installed from in editable mode."""
    here = Path(start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / "configs").is_dir() and (cand / "pyproject.toml").is_file():
            return cand
    if (PACKAGE_ROOT / "configs").is_dir():
        return PACKAGE_ROOT
    raise ConfigError(f"cannot find the repository root (a folder with configs/ and pyproject.toml) above {here}")
