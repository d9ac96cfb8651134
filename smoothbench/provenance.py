"""Provenance columns shared by every result row and run folder."""

from __future__ import annotations

import platform
from importlib import metadata

from smoothbench import __version__


def package_versions() -> dict[str, str]:
    """Versions of the packages that change numbers: python, torch, torchvision, numpy, scipy."""
    versions = {"python": platform.python_version(), "smoothbench": __version__}
    for name in ("torch", "torchvision", "numpy", "scipy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional in odd installs
            versions[name] = "absent"
    return versions
