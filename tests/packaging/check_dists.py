"""Check the built wheels and sdists against the source tree (``nox -s build`` runs it).

Usage: ``python tests/packaging/check_dists.py DIST_DIR``

For each package: exactly one wheel and one sdist of the version in its ``__about__.py``;
every module of ``src/`` (the generated ones included) and ``py.typed`` in both; nothing
else in the wheel (no caches, no tests); the entry points the registry discovers; the
metadata users and installers rely on (Python range, classifiers, dependencies with the
sj-core range, sj-core's extras). Prints one line per artifact, exits non-zero on the first
problem.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
SJ_CORE_RANGE = "sj-core<0.2,>=0.1.0"

# Entry points of the group sj.backends, per distribution.
ENTRY_POINTS = {
    "sj-core": {},
    "sj-triton": {"triton": "sj_triton._backend:BACKEND"},
    "sj-cupy": {"cupy": "sj_cupy._backend:BACKEND"},
    "sj-flexsn": {
        "triton": "sj_flexsn._backend:TRITON",
        "inductor": "sj_flexsn._backend:INDUCTOR",
        "hop": "sj_flexsn._backend:HOP",
    },
}
# Files that a code generator writes and the repository keeps: they must ship.
GENERATED = {"sj-triton": ["sj_triton/neuron_kernel/equations.py"]}
CORE_EXTRAS = {"triton", "cupy-cuda12", "cupy-cuda13", "flexsn", "demo", "nir", "plot", "all"}


def fail(message: str) -> None:
    sys.exit(f"check_dists: {message}")


def source_files(package: str) -> set[str]:
    """``<import name>/...`` paths of the package's modules and ``py.typed``."""
    src = ROOT / "packages" / package / "src"
    files = {p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return {p.relative_to(src).as_posix() for p in files if p.suffix in (".py", ".typed")}


def version_of(package: str) -> str:
    about = ROOT / "packages" / package / "src" / package.replace("-", "_") / "__about__.py"
    return about.read_text().split('"')[1]


def only(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        fail(f"expected one {pattern} in {dist}, found {[p.name for p in found]}")
    return found[0]


def entry_points(text: str) -> dict[str, str]:
    """The ``sj.backends`` section of an ``entry_points.txt``."""
    points: dict[str, str] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and section == "sj.backends":
            name, _, value = line.partition("=")
            points[name.strip()] = value.strip()
    return points


def check_metadata(package: str, metadata_text: str) -> None:
    metadata = Parser().parsestr(metadata_text)
    if metadata["Name"] != package or metadata["Version"] != version_of(package):
        fail(f"{package}: metadata names {metadata['Name']} {metadata['Version']}")
    if metadata["Requires-Python"] != ">=3.10":
        fail(f"{package}: Requires-Python is {metadata['Requires-Python']}")
    classifiers = set(metadata.get_all("Classifier") or [])
    wanted = {f"Programming Language :: Python :: {v}" for v in PYTHONS} | {"Typing :: Typed"}
    if not wanted <= classifiers:
        fail(f"{package}: classifiers lack {sorted(wanted - classifiers)}")
    requires = [r.replace(" ", "") for r in metadata.get_all("Requires-Dist") or []]
    if not any(r.startswith("torch>=2.6") for r in requires):
        fail(f"{package}: no torch>=2.6 in {requires}")
    if package != "sj-core" and SJ_CORE_RANGE not in requires:
        fail(f"{package}: does not pin {SJ_CORE_RANGE}: {requires}")
    if package == "sj-core":
        extras = set(metadata.get_all("Provides-Extra") or [])
        if not extras >= CORE_EXTRAS:
            fail(f"sj-core: extras lack {sorted(CORE_EXTRAS - extras)}")
    if not (metadata.get_payload() or "").strip():
        fail(f"{package}: no long description (README)")


def check_wheel(package: str, wheel: Path) -> None:
    expected = source_files(package)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"{package.replace('-', '_')}-{version_of(package)}.dist-info"
        modules = {n for n in names if not n.startswith(info + "/")}
        if modules != expected:
            missing, unexpected = sorted(expected - modules), sorted(modules - expected)
            fail(f"{wheel.name}: missing {missing}, unexpected {unexpected}")
        for generated in GENERATED.get(package, []):
            if generated not in names:
                fail(f"{wheel.name}: the generated {generated} is missing")
        listed = f"{info}/entry_points.txt"
        points = entry_points(archive.read(listed).decode()) if listed in names else {}
        if points != ENTRY_POINTS[package]:
            fail(f"{wheel.name}: sj.backends entry points {points} != {ENTRY_POINTS[package]}")
        check_metadata(package, archive.read(f"{info}/METADATA").decode())


def check_sdist(package: str, sdist: Path) -> None:
    prefix = f"{package.replace('-', '_')}-{version_of(package)}/"
    with tarfile.open(sdist) as archive:
        names = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}
        check_metadata(package, archive.extractfile(prefix + "PKG-INFO").read().decode())
    expected = {f"src/{path}" for path in source_files(package)}
    expected |= {"pyproject.toml", "README.md", "PKG-INFO"}
    names.discard(".gitignore")  # hatch copies the repository's, for rebuilding from the sdist
    if names != expected:
        missing, unexpected = sorted(expected - names), sorted(names - expected)
        fail(f"{sdist.name}: missing {missing}, unexpected {unexpected}")


def main(dist: Path) -> None:
    for package in ENTRY_POINTS:
        stem = f"{package.replace('-', '_')}-{version_of(package)}"
        wheel = only(dist, f"{stem}-py3-none-any.whl")
        sdist = only(dist, f"{stem}.tar.gz")
        check_wheel(package, wheel)
        check_sdist(package, sdist)
        print(f"ok  {wheel.name}  {sdist.name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
