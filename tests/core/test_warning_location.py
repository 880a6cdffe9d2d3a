"""Warnings about backends point at the line the user wrote, not into sj-core or torch
(``sj_core.caller.user_stacklevel``)."""

from __future__ import annotations

import inspect
import warnings

import pytest
from helpers import FakeEntryPoint, FakePlugins, make_spec

from sj_core import backends, functional, neuron
from sj_core.caller import user_stacklevel


@pytest.fixture
def plugins(monkeypatch):
    with FakePlugins(monkeypatch) as fake:
        # A CPU backend whose operator cannot be imported: 'auto' skips it with a warning.
        fake.add(make_spec("flaky", {"lif.multi_step": "sj_no_such_module:lif"}, priority=5))
        yield fake


def _line_after(frame) -> int:
    return frame.f_lineno + 1


def test_auto_fallback_warning_points_at_the_constructor_call(plugins) -> None:
    with pytest.warns(RuntimeWarning, match="backend='auto' skips 'flaky'") as caught:
        line = _line_after(inspect.currentframe())
        node = neuron.LIFNode(step_mode="m", backend="auto")
    assert node.backend == "auto"
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_auto_fallback_warning_points_at_set_backend(plugins) -> None:
    net = neuron.LIFNode(step_mode="s", backend="auto")  # no single-step operator to skip
    with pytest.warns(RuntimeWarning, match="backend='auto' skips 'flaky'") as caught:
        line = _line_after(inspect.currentframe())
        functional.set_step_mode(net, "m")
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_broken_plugin_warning_points_at_the_listing_call(plugins) -> None:
    plugins.add_entry_point(FakeEntryPoint("broken", "sj_broken:BACKEND", ImportError("boom")))
    with pytest.warns(RuntimeWarning, match="'broken' failed to load") as caught:
        line = _line_after(inspect.currentframe())
        backends.list_backends()
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_user_stacklevel_is_one_outside_the_library() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _line_after(inspect.currentframe())
        warnings.warn("here", UserWarning, stacklevel=user_stacklevel())
    assert user_stacklevel() == 1
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
