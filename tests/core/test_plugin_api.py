"""The plugin API version: a plugin written for another contract than this sj-core's is
refused when it registers, with a message that names the package to upgrade; the
first-party plugins declare the version this sj-core implements."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import warnings

import pytest
from helpers import FakePlugins, make_spec

import sj_core
from sj_core import backends
from sj_core.backends import PLUGIN_API_VERSION, BackendLoadError


@pytest.fixture
def plugins(monkeypatch):
    with FakePlugins(monkeypatch) as fake:
        yield fake


def _with_api(spec: backends.BackendSpec, version: int) -> backends.BackendSpec:
    return dataclasses.replace(spec, api_version=version)


def test_a_spec_declares_the_first_api_by_default() -> None:
    assert PLUGIN_API_VERSION == 1
    assert make_spec("fast", {}).api_version == 1


def test_a_matching_plugin_registers(plugins) -> None:
    op = plugins.operator("lif", len)
    plugins.add(_with_api(make_spec("fast", {"lif.multi_step": op}), PLUGIN_API_VERSION))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = [info.name for info in backends.list_backends()]
    assert names == ["torch", "inductor", "fast"]
    assert backends.get_operator("fast", "lif.multi_step") is len


@pytest.mark.parametrize(
    ("offset", "remedy"),
    [
        (-1, "upgrade it: pip install -U sj-old"),
        (+1, "upgrade sj-core: pip install -U sj-core"),
    ],
    ids=["older-plugin", "newer-plugin"],
)
def test_a_mismatched_plugin_is_refused_with_the_package_to_upgrade(
    plugins, offset: int, remedy: str
) -> None:
    version = PLUGIN_API_VERSION + offset
    op = plugins.operator("lif", len)
    plugins.add(_with_api(make_spec("old", {"lif.multi_step": op}), version))
    expected = (
        f"sj-old was written for sj-core's plugin API {version}, but sj-core "
        f"{sj_core.__version__} implements plugin API {PLUGIN_API_VERSION}; {remedy}"
    )
    assert backends.broken_backends() == {"old": expected}
    with pytest.warns(RuntimeWarning, match="'old' failed to load and is skipped") as caught:
        names = [info.name for info in backends.list_backends()]
    assert names == ["torch", "inductor"]
    assert expected in str(caught[0].message)
    with pytest.raises(BackendLoadError) as raised:
        backends.get_backend("old")
    assert str(raised.value) == (
        f"backend 'old' is installed but its plugin failed to load: {expected}"
    )


@pytest.mark.parametrize("distribution", ["sj-triton", "sj-cupy", "sj-flexsn"])
def test_first_party_plugins_declare_this_api(distribution: str) -> None:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed")
    entry_points = [ep for ep in dist.entry_points if ep.group == backends.ENTRY_POINT_GROUP]
    assert entry_points
    for entry_point in entry_points:
        assert entry_point.load().api_version == PLUGIN_API_VERSION, entry_point.value
