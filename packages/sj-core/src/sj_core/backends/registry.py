"""Backend discovery and lookup.

Built-in backends (``torch``, ``inductor``) are listed without importing anything.
Plugins are found through the entry-point group ``sj.backends``; discovery runs once
and is cached (:func:`refresh` clears the cache). Listing is forgiving: a plugin that
fails to load is reported with a warning and skipped. Asking for a backend by name is
strict: every failure raises an error from :mod:`sj_core.backends.errors` that says what
to do. A plugin written for another plugin API than this sj-core's
(:data:`~sj_core.backends.spec.PLUGIN_API_VERSION`) counts as failing to load, with a
message naming the package to upgrade.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..caller import user_stacklevel
from .builtin import BUILTIN_BACKENDS
from .errors import (
    BackendLoadError,
    BackendNotInstalledError,
    BackendUnavailableError,
    UnknownBackendError,
    UnsupportedOperatorError,
)
from .first_party import FIRST_PARTY_BACKENDS, FIRST_PARTY_OPERATORS
from .spec import BackendSpec, api_version_problem

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendInfo",
    "available_backends",
    "backend_names",
    "get_backend",
    "get_operator",
    "list_backends",
    "refresh",
    "supported_backends",
]

ENTRY_POINT_GROUP = "sj.backends"


@dataclass(frozen=True)
class BackendInfo:
    """A backend as installed: every distribution's share merged into one view."""

    name: str
    specs: tuple[BackendSpec, ...]

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(spec.distribution for spec in self.specs)

    @property
    def operators(self) -> dict[str, str]:
        """Operator key -> ``"module:function"``; the first distribution wins a clash."""
        merged: dict[str, str] = {}
        for spec in self.specs:
            for key, target in spec.operators.items():
                merged.setdefault(key, target)
        return merged

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for spec in self.specs for d in spec.devices))

    @property
    def priority(self) -> int:
        return max(spec.priority for spec in self.specs)

    def spec_for(self, operator: str) -> BackendSpec | None:
        """The spec that provides ``operator``, or ``None``."""
        for spec in self.specs:
            if operator in spec.operators:
                return spec
        return None

    def available(self, operator: str | None = None) -> tuple[bool, str]:
        """Availability of the backend (of the distribution providing ``operator``)."""
        spec = self.spec_for(operator) if operator is not None else self.specs[0]
        return (spec or self.specs[0]).available()


@dataclass(frozen=True)
class _Discovery:
    backends: dict[str, BackendInfo]
    broken: dict[str, str]  # backend name -> why its plugin failed to load


def _entry_points():
    """The ``sj.backends`` entry points (a seam for tests)."""
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


@functools.cache
def _discover() -> _Discovery:
    specs: dict[str, list[BackendSpec]] = {name: [spec] for name, spec in BUILTIN_BACKENDS.items()}
    broken: dict[str, str] = {}
    for entry_point in sorted(_entry_points(), key=lambda ep: (ep.name, ep.value)):
        try:
            spec = entry_point.load()
        except Exception as exc:  # a broken plugin must not break listing
            broken[entry_point.name] = f"{entry_point.value}: {type(exc).__name__}: {exc}"
            continue
        if not isinstance(spec, BackendSpec):
            broken[entry_point.name] = (
                f"{entry_point.value} is a {type(spec).__name__}, not a sj_core BackendSpec"
            )
            continue
        if spec.name != entry_point.name:
            broken[entry_point.name] = (
                f"{entry_point.value} describes backend {spec.name!r}, but its entry point "
                f"is named {entry_point.name!r}"
            )
            continue
        mismatch = api_version_problem(spec)
        if mismatch is not None:
            broken[entry_point.name] = mismatch
            continue
        specs.setdefault(spec.name, []).append(spec)
    backends = {name: BackendInfo(name, tuple(group)) for name, group in specs.items()}
    return _Discovery(backends, broken)


def refresh() -> None:
    """Forget discovered backends and loaded operators (after installing a plugin)."""
    _discover.cache_clear()
    _OPERATOR_CACHE.clear()


def backend_names() -> tuple[str, ...]:
    """Names of the installed backends, built-ins first."""
    names = list(BUILTIN_BACKENDS)
    names += sorted(n for n in _discover().backends if n not in BUILTIN_BACKENDS)
    return tuple(names)


def list_backends(warn: bool = True) -> list[BackendInfo]:
    """Every installed backend. Plugins that failed to load are skipped with a warning."""
    discovery = _discover()
    if warn:
        for name, reason in discovery.broken.items():
            warnings.warn(
                f"sj backend plugin {name!r} failed to load and is skipped: {reason}",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
    return [discovery.backends[name] for name in backend_names()]


def broken_backends() -> dict[str, str]:
    """Backend name -> the error its plugin raised while loading."""
    return dict(_discover().broken)


def get_backend(name: str) -> BackendInfo:
    """The installed backend ``name``.

    Raises:
        BackendLoadError: its plugin is installed but failed to load.
        BackendNotInstalledError: a first-party backend whose package is missing.
        UnknownBackendError: no backend of that name.
    """
    discovery = _discover()
    if name in discovery.backends:
        return discovery.backends[name]
    if name in discovery.broken:
        raise BackendLoadError(
            f"backend {name!r} is installed but its plugin failed to load: {discovery.broken[name]}"
        )
    if name in FIRST_PARTY_BACKENDS:
        raise BackendNotInstalledError(
            f"backend {name!r} is not installed: {FIRST_PARTY_BACKENDS[name]}"
        )
    raise UnknownBackendError(
        f"unknown backend {name!r}; installed backends: {', '.join(backend_names())}"
    )


def supported_backends(operator: str) -> tuple[str, ...]:
    """Installed backends that declare ``operator`` (not checking availability)."""
    discovery = _discover()
    return tuple(name for name in backend_names() if operator in discovery.backends[name].operators)


def available_backends(operator: str, device_type: str | None = None) -> list[str]:
    """Backends that declare ``operator``, can run here (and on ``device_type``), best first.

    The order is the ``backend='auto'`` preference: priority, then name.
    """
    discovery = _discover()
    found = []
    for name in supported_backends(operator):
        info = discovery.backends[name]
        spec = info.spec_for(operator)
        if device_type is not None and device_type not in spec.devices:
            continue
        if spec.available()[0]:
            found.append((-spec.priority, name))
    return [name for _, name in sorted(found)]


_OPERATOR_CACHE: dict[tuple[str, str], Callable] = {}


def get_operator(backend: str, operator: str) -> Callable:
    """Import (once) and return the function ``backend`` provides for ``operator``.

    Raises:
        UnknownBackendError, BackendNotInstalledError, BackendLoadError: see
            :func:`get_backend`.
        UnsupportedOperatorError: the backend does not declare the operator (or
            :class:`BackendNotInstalledError` when a first-party package would add it).
        BackendUnavailableError: the backend cannot run here; carries its reason.
    """
    cached = _OPERATOR_CACHE.get((backend, operator))
    if cached is not None:
        return cached
    return _load_operator(backend, operator)


def _load_operator(backend: str, operator: str) -> Callable:
    try:
        info = get_backend(backend)
    except (BackendNotInstalledError, UnknownBackendError):
        if operator == "flexsn" and backend in ("triton", "inductor", "hop"):
            # FlexSN's kernel backends come from sj-flexsn, whatever else is installed.
            raise BackendNotInstalledError(
                f"FlexSN backend {backend!r} is not installed: {FIRST_PARTY_OPERATORS[operator]}"
            ) from None
        raise
    spec = info.spec_for(operator)
    if spec is None:
        if operator == "flexsn" and operator in FIRST_PARTY_OPERATORS:
            raise BackendNotInstalledError(
                f"backend {backend!r} has no {operator!r} operator: FlexSN kernels come "
                f"from sj-flexsn: {FIRST_PARTY_OPERATORS[operator]}"
            )
        providers = supported_backends(operator)
        hint = f"backends providing it: {', '.join(providers)}" if providers else ""
        if operator in FIRST_PARTY_OPERATORS:
            hint += ("; " if hint else "") + f"to add one: {FIRST_PARTY_OPERATORS[operator]}"
        raise UnsupportedOperatorError(
            f"backend {backend!r} does not provide operator {operator!r}"
            + (f" ({hint})" if hint else "")
        )
    ok, reason = spec.available()
    if not ok:
        raise BackendUnavailableError(f"backend {backend!r} cannot run here: {reason}")
    module_name, _, attribute = spec.operators[operator].partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:
        raise BackendLoadError(
            f"backend {backend!r} ({spec.distribution}) failed to load operator "
            f"{operator!r} from {spec.operators[operator]!r}: {type(exc).__name__}: {exc}"
        ) from exc
    _OPERATOR_CACHE[(backend, operator)] = function
    return function
