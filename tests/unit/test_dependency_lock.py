"""requirements.lock is what `make` installs (pip --require-hashes): it must pin every dependency that
pyproject.toml declares, at a version the declaration accepts, with the hashes pip checks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every pin in requirements.lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if m := PIN.match(line):
            current = canonicalize_name(m["name"])
            pins[current] = (m["version"], [])
        elif current and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(h.group(1))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_every_declared_dependency_is_pinned_at_an_accepted_version() -> None:
    locked = _locked()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is declared in pyproject.toml but not locked: run make lock"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} does not satisfy {req}"


def test_every_pin_carries_sha256_hashes() -> None:
    locked = _locked()
    assert len(locked) > len(_declared())  # transitive dependencies are pinned too
    unhashed = [name for name, (_, hashes) in locked.items() if not hashes]
    assert unhashed == []


def test_the_lock_names_no_index_or_local_wheel_folder() -> None:
    # A lock that names an index or a find-links folder would install differently on another machine.
    text = (REPO / "requirements.lock").read_text(encoding="utf-8")
    assert not re.search(r"(?m)^--(index-url|extra-index-url|find-links)", text)
