"""Work that makes a user wait says so (``sj_core.waiting.long_work``): the start and the
end at INFO, one WARNING when it outlasts the patience, nothing visible when it is quick;
and the inductor backend's first call announces its compile."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from sj_core import inductor, neuron, waiting

LOGGER = logging.getLogger("sj_core.test_waiting")


def _records(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_quick_work_logs_only_at_info(caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    with waiting.long_work(LOGGER, "adding numbers"):
        _ = 1 + 1
    info = _records(caplog, logging.INFO)
    assert info[0] == "adding numbers ..."
    assert info[1].startswith("adding numbers: done in ") and info[1].endswith(" s")
    assert _records(caplog, logging.WARNING) == []


def test_slow_work_warns_once_with_the_hint(caplog, monkeypatch) -> None:
    monkeypatch.setattr(waiting, "PATIENCE_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    with waiting.long_work(LOGGER, "compiling a kernel", hint="only the first call compiles"):
        time.sleep(0.5)
    assert _records(caplog, logging.WARNING) == [
        "still compiling a kernel after 0 s; only the first call compiles"
    ]


def test_failed_work_says_so_and_raises(caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    with pytest.raises(ZeroDivisionError), waiting.long_work(LOGGER, "dividing"):
        _ = 1 / 0
    assert _records(caplog, logging.INFO)[-1].startswith("dividing: failed after ")


def test_the_patience_timer_stops_with_the_work(caplog, monkeypatch) -> None:
    monkeypatch.setattr(waiting, "PATIENCE_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    with waiting.long_work(LOGGER, "a quick step"):
        pass
    time.sleep(0.4)  # past the patience: the cancelled timer must stay silent
    assert _records(caplog, logging.WARNING) == []


def test_the_inductor_backend_announces_its_first_compile(caplog, monkeypatch) -> None:
    # The compile itself is replaced by the plain loop: only the announcement is checked.
    monkeypatch.setattr(inductor, "_compile", lambda fn: fn)
    inductor.clear_cache()
    caplog.set_level(logging.INFO, logger="sj_core.inductor")
    node = neuron.IFNode(step_mode="m", backend="inductor")
    node(torch.ones(3, 2, 5))
    node.reset()
    node(torch.ones(3, 2, 5))  # cached: no second announcement
    info = _records(caplog, logging.INFO)
    inductor.clear_cache()
    assert info[0] == (
        "compiling if.multi_step with torch.compile (inductor) for torch.float32 inputs of "
        "shape (3, 2, 5) on cpu ..."
    )
    assert len(info) == 2 and "done in" in info[1]
