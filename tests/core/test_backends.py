"""sj_core.backends: discovery, lookup and errors of the backend registry (DESIGN.md, "The
plugin contract"), with fake entry points; and import hygiene in a fresh interpreter.

Every test that needs a known set of plugins uses the ``plugins`` fixture: the real
entry points are replaced by a list the test fills, and the registry cache is refreshed
before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import pytest
from helpers import FakeEntryPoint, FakePlugins, make_spec

from sj_core import backends, fused, reference
from sj_core.backends import (
    BackendLoadError,
    BackendNotInstalledError,
    BackendSpec,
    BackendUnavailableError,
    UnknownBackendError,
    UnsupportedOperatorError,
    check_requirements,
)
from sj_core.neuron import IFNode, LIFNode


@pytest.fixture
def plugins(monkeypatch):
    with FakePlugins(monkeypatch) as fake:
        yield fake


def _no_warnings(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args)


# -- built-ins and discovery ---------------------------------------------------------------------


def test_builtins_are_listed_first_without_entry_points(plugins) -> None:
    assert backends.backend_names() == ("torch", "inductor")
    infos = _no_warnings(backends.list_backends)
    assert [info.name for info in infos] == ["torch", "inductor"]
    assert infos[0].distributions == ("sj-core",)
    assert infos[0].operators["lif.multi_step"] == "sj_core.fused:multistep_lif"
    assert backends.broken_backends() == {}


def test_builtins_stay_first_whatever_the_plugin_names(plugins) -> None:
    for name in ("zeta", "alpha", "inductorx"):
        plugins.add(make_spec(name, {}))
    assert backends.backend_names() == ("torch", "inductor", "alpha", "inductorx", "zeta")


def test_builtin_torch_provides_every_fused_loop(plugins) -> None:
    torch_backend = backends.get_backend("torch")
    for neuron in ("if", "lif", "plif", "qif", "eif", "izhikevich"):
        operator = backends.get_operator("torch", f"{neuron}.multi_step")
        assert operator is getattr(fused, f"multistep_{neuron}")
    assert torch_backend.available() == (True, "")
    assert set(backends.get_backend("inductor").operators) == {
        f"{neuron}.multi_step" for neuron in ("if", "lif", "plif", "qif", "eif", "izhikevich")
    }


def test_plugin_appears_in_names_operators_and_node_support(plugins) -> None:
    op = plugins.operator("lif_ms", reference.multistep_lif)
    plugins.add(make_spec("fake", {"lif.multi_step": op, "lif.single_step": op}))
    assert backends.backend_names() == ("torch", "inductor", "fake")
    assert backends.supported_backends("lif.multi_step") == ("torch", "inductor", "fake")
    assert backends.supported_backends("lif.single_step") == ("fake",)
    assert backends.supported_backends("if.multi_step") == ("torch", "inductor")
    assert backends.supported_backends("no.such_operator") == ()
    assert LIFNode(step_mode="m").supported_backends == ("torch", "inductor", "fake")
    assert LIFNode(step_mode="s").supported_backends == ("torch", "fake")
    assert IFNode(step_mode="m").supported_backends == ("torch", "inductor")
    assert IFNode(step_mode="s").supported_backends == ("torch",)


def test_two_distributions_for_one_backend_are_merged(plugins) -> None:
    op_a = plugins.operator("from_a", reference.multistep_lif)
    op_b = plugins.operator("from_b", reference.multistep_if)
    op_clash = plugins.operator("clash", reference.multistep_plif)
    spec_a = make_spec("fake", {"lif.multi_step": op_a}, distribution="sj-fake-a", priority=3)
    spec_b = make_spec(
        "fake",
        {"if.multi_step": op_b, "lif.multi_step": op_clash},
        distribution="sj-fake-b",
        devices=("cuda",),
        priority=7,
        check=lambda: (False, "sj-fake-b needs a GPU"),
    )
    plugins.add(spec_b)  # discovery order follows (entry point name, value), not this order
    plugins.add(spec_a)
    info = backends.get_backend("fake")
    assert backends.backend_names().count("fake") == 1
    assert info.distributions == ("sj-fake-a", "sj-fake-b")
    assert info.operators == {"lif.multi_step": op_a, "if.multi_step": op_b}  # first wins
    assert info.devices == ("cpu", "cuda")
    assert info.priority == 7
    # Each operator comes from (and is gated by) its own distribution.
    assert info.spec_for("if.multi_step") is spec_b
    assert backends.get_operator("fake", "lif.multi_step") is reference.multistep_lif
    with pytest.raises(BackendUnavailableError, match="sj-fake-b needs a GPU"):
        backends.get_operator("fake", "if.multi_step")
    assert info.available("lif.multi_step") == (True, "")
    assert info.available("if.multi_step") == (False, "sj-fake-b needs a GPU")


def test_plugin_can_add_an_operator_to_a_builtin_backend(plugins) -> None:
    # As sj-flexsn adds 'flexsn' to 'inductor'.
    op = plugins.operator("flexsn_factory", lambda *args: "kernel")
    plugins.add(make_spec("inductor", {"flexsn": op}, distribution="sj-flexsn"))
    assert backends.backend_names() == ("torch", "inductor")
    info = backends.get_backend("inductor")
    assert info.distributions == ("sj-core", "sj-flexsn")
    assert info.operators["lif.multi_step"] == "sj_core.inductor:multistep_lif"
    assert backends.get_operator("inductor", "flexsn")() == "kernel"
    assert backends.supported_backends("flexsn") == ("inductor",)


# -- broken plugins ----------------------------------------------------------------------------


def test_plugin_that_fails_to_load_warns_when_listed_and_raises_when_asked(plugins) -> None:
    plugins.add(make_spec("good", {}))
    plugins.add_entry_point(
        FakeEntryPoint(
            "broken",
            "sj_broken._backend:BACKEND",
            ModuleNotFoundError("No module named 'sj_broken_dependency'"),
        )
    )
    with pytest.warns(RuntimeWarning, match="'broken' failed to load and is skipped") as record:
        infos = backends.list_backends()
    assert "sj_broken_dependency" in str(record[0].message)
    assert [info.name for info in infos] == ["torch", "inductor", "good"]
    assert "broken" not in backends.backend_names()
    assert "broken" in backends.broken_backends()
    _no_warnings(backends.list_backends, False)  # warn=False: silent
    with pytest.raises(BackendLoadError) as info:
        backends.get_backend("broken")
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    for fragment in ("'broken'", "sj_broken._backend:BACKEND", "ModuleNotFoundError"):
        assert fragment in message
    assert "sj_broken_dependency" in message
    with pytest.raises(BackendLoadError, match="failed to load"):
        LIFNode(step_mode="m", backend="broken")


@pytest.mark.parametrize(
    ("entry_point", "fragments"),
    [
        (
            FakeEntryPoint("odd", "sj_odd:BACKEND", {"name": "odd"}),
            ["sj_odd:BACKEND", "is a dict, not a sj_core BackendSpec"],
        ),
        (
            FakeEntryPoint("alpha", "sj_alpha:BACKEND", make_spec("beta", {})),
            ["describes backend 'beta'", "entry point is named 'alpha'"],
        ),
    ],
    ids=["not-a-BackendSpec", "mismatched-name"],
)
def test_malformed_entry_point_is_reported_as_broken(plugins, entry_point, fragments) -> None:
    plugins.add_entry_point(entry_point)
    with pytest.warns(RuntimeWarning, match=f"'{entry_point.name}' failed to load"):
        names = [info.name for info in backends.list_backends()]
    assert names == ["torch", "inductor"]
    reason = backends.broken_backends()[entry_point.name]
    for fragment in fragments:
        assert fragment in reason
    with pytest.raises(BackendLoadError) as info:
        backends.get_backend(entry_point.name)
    for fragment in fragments:
        assert fragment in str(info.value)
    if entry_point.name == "alpha":
        with pytest.raises(UnknownBackendError):
            backends.get_backend("beta")  # never registered under the name it claims


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": 3}, "name must be a non-empty string"),
        ({"operators": {"lif.multi_step": "no_colon"}}, "'module:function' string"),
        ({"operators": {"lif.multi_step": "a:b:c"}}, "'module:function' string"),
        ({"operators": {"lif.multi_step": len}}, "'module:function' string"),
    ],
    ids=["empty-name", "int-name", "no-colon", "two-colons", "not-a-string"],
)
def test_backend_spec_validates_its_fields(kwargs, fragment) -> None:
    fields = {"name": "x", "distribution": "sj-x", "operators": {}} | kwargs
    with pytest.raises(ValueError, match=fragment):
        BackendSpec(**fields)


# -- errors when asking by name ------------------------------------------------------------------


def test_unknown_backend_lists_the_installed_ones(plugins) -> None:
    plugins.add(make_spec("fake", {}))
    with pytest.raises(UnknownBackendError) as info:
        backends.get_backend("nope")
    assert isinstance(info.value, ValueError)
    assert "unknown backend 'nope'" in str(info.value)
    assert "torch, inductor, fake" in str(info.value)
    with pytest.raises(UnknownBackendError, match="torch, inductor, fake"):
        backends.get_operator("nope", "lif.multi_step")
    with pytest.raises(UnknownBackendError, match="torch, inductor, fake"):
        LIFNode(backend="nope")


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("cupy", "pip install 'sj-cupy[cuda12]'"),
        ("triton", "pip install sj-triton"),
        ("hop", "pip install sj-flexsn"),
    ],
)
def test_absent_first_party_backend_says_what_to_install(plugins, name, command) -> None:
    with pytest.raises(BackendNotInstalledError) as info:
        backends.get_backend(name)
    assert isinstance(info.value, ImportError)
    assert f"backend {name!r} is not installed" in str(info.value)
    assert command in str(info.value)
    with pytest.raises(BackendNotInstalledError, match="not installed"):
        LIFNode(step_mode="m", backend=name)


def test_flexsn_operator_from_a_backend_without_it_says_pip_install_sj_flexsn(plugins) -> None:
    plugins.add(make_spec("fake", {"lif.multi_step": plugins.operator("f", len)}))
    for backend in ("torch", "inductor", "fake"):
        with pytest.raises(BackendNotInstalledError) as info:
            backends.get_operator(backend, "flexsn")
        assert "pip install sj-flexsn" in str(info.value)
        assert f"backend {backend!r} has no 'flexsn' operator" in str(info.value)


def test_missing_operator_names_the_backends_providing_it(plugins) -> None:
    op = plugins.operator("lif_ss", len)
    plugins.add(make_spec("fake", {"lif.single_step": op}))
    with pytest.raises(UnsupportedOperatorError) as info:
        backends.get_operator("torch", "lif.single_step")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "backend 'torch' does not provide operator 'lif.single_step'" in message
    assert "backends providing it: fake" in message
    assert "pip install" in message  # a first-party operator: how to get more of them
    with pytest.raises(UnsupportedOperatorError, match=r"'custom\.multi_step'$"):
        backends.get_operator("fake", "custom.multi_step")  # nobody provides it, no hint


def test_unavailable_backend_carries_its_reason(plugins) -> None:
    op = plugins.operator("never_called", reference.multistep_lif)
    plugins.add(make_spec("fake", {"lif.multi_step": op}, check=lambda: (False, "no fake chip")))
    info = _no_warnings(backends.get_backend, "fake")  # listing and lookup stay forgiving
    assert info.available() == (False, "no fake chip")
    assert "fake" in backends.supported_backends("lif.multi_step")
    assert "fake" not in backends.available_backends("lif.multi_step")
    with pytest.raises(BackendUnavailableError) as error:
        backends.get_operator("fake", "lif.multi_step")
    assert isinstance(error.value, RuntimeError)
    assert "backend 'fake' cannot run here: no fake chip" in str(error.value)
    with pytest.raises(BackendUnavailableError, match="no fake chip"):
        LIFNode(step_mode="m", backend="fake")


# -- requirements ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "ok", "fragments"),
    [
        ((), True, []),
        (("torch",), True, []),
        (("torch>=2.0",), True, []),
        (("torch >= 1.0",), True, []),
        (("torch[cuda]>=1.0",), True, []),
        (("sj-core>=0.1",), True, []),
        (("torch>=99",), False, ["torch", "is installed, needs torch>=99"]),
        (("torch>=2.0", "torch>=99.1"), False, ["needs torch>=99.1"]),
        (("sj-definitely-not-installed",), False, ["sj-definitely-not-installed is not installed"]),
        (
            ("sj-definitely-not-installed>=1.0",),
            False,
            ["(needs sj-definitely-not-installed>=1.0)"],
        ),
        (("torch<2",), False, ["cannot parse requirement 'torch<2'"]),
    ],
    ids=[
        "none",
        "name",
        "satisfied-minimum",
        "spaces",
        "extras",
        "sj-core",
        "too-old",
        "second-fails",
        "missing",
        "missing-with-minimum",
        "unparsable",
    ],
)
def test_check_requirements(requirements, ok, fragments) -> None:
    result_ok, reason = check_requirements(requirements)
    assert result_ok is ok
    assert (reason == "") is ok
    for fragment in fragments:
        assert fragment in reason


def test_requirements_are_checked_before_the_check_function(plugins) -> None:
    calls = []

    def check():
        calls.append(1)
        return True, ""

    spec = make_spec("fake", {"lif.multi_step": "x:y"}, requirements=("torch>=99",), check=check)
    ok, reason = spec.available()
    assert not ok and "needs torch>=99" in reason
    assert calls == []  # the requirement failed first: the check never ran
    plugins.add(spec)
    with pytest.raises(BackendUnavailableError, match="needs torch>=99"):
        backends.get_operator("fake", "lif.multi_step")
    ok_spec = make_spec("fake2", {}, requirements=("torch>=1.0",), check=check)
    assert ok_spec.available() == (True, "")
    assert calls == [1]


# -- lazy operator import, caching, refresh --------------------------------------------------------


def test_operators_are_imported_only_when_requested(plugins, tmp_path, monkeypatch) -> None:
    module_name = "sj_core_tests_lazy_operator"
    (tmp_path / f"{module_name}.py").write_text("def lif(*args, **kwargs):\n    return 'lazy'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    plugins.add(make_spec("lazy", {"lif.multi_step": f"{module_name}:lif"}))
    try:
        backends.list_backends()
        backends.get_backend("lazy")
        backends.supported_backends("lif.multi_step")
        assert backends.available_backends("lif.multi_step", "cpu")[0] == "lazy"
        assert LIFNode(step_mode="m").supported_backends[-1] == "lazy"
        assert module_name not in sys.modules
        assert backends.get_operator("lazy", "lif.multi_step")() == "lazy"
        assert module_name in sys.modules
    finally:
        sys.modules.pop(module_name, None)


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        (
            "sj_core_tests_no_such_module:op",
            ["ModuleNotFoundError", "sj_core_tests_no_such_module"],
        ),
        ("sj_core.reference:no_such_function", ["AttributeError", "no_such_function"]),
    ],
    ids=["missing-module", "missing-function"],
)
def test_operator_that_cannot_be_imported_fails_only_when_requested(
    plugins, target, fragments
) -> None:
    plugins.add(make_spec("fake", {"lif.multi_step": target, "if.multi_step": target}))
    assert _no_warnings(backends.get_backend, "fake").operators["lif.multi_step"] == target
    with pytest.raises(BackendLoadError) as info:
        backends.get_operator("fake", "lif.multi_step")
    message = str(info.value)
    assert "backend 'fake' (sj-fake) failed to load operator 'lif.multi_step'" in message
    assert repr(target) in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(info.value.__cause__, (ImportError, AttributeError))
    # An explicit backend whose operator cannot load is an error, never a fallback.
    with pytest.raises(BackendLoadError):
        IFNode(step_mode="m", backend="fake")


def test_get_operator_is_cached_until_refresh(plugins) -> None:
    def first(*args):
        return 1

    def second(*args):
        return 2

    target = plugins.operator("op", first)
    plugins.add(make_spec("fake", {"lif.multi_step": target}))
    assert backends.get_operator("fake", "lif.multi_step") is first
    plugins.operator("op", second)  # the module attribute changes ...
    assert backends.get_operator("fake", "lif.multi_step") is first  # ... the cache does not
    backends.refresh()
    assert backends.get_operator("fake", "lif.multi_step") is second


def test_discovery_is_cached_until_refresh(plugins) -> None:
    assert backends.backend_names() == ("torch", "inductor")
    plugins.add(make_spec("late", {}), refresh=False)  # installed after the first lookup
    assert backends.backend_names() == ("torch", "inductor")
    with pytest.raises(UnknownBackendError):
        backends.get_backend("late")
    backends.refresh()
    assert backends.backend_names() == ("torch", "inductor", "late")


def test_available_backends_order_and_device_filter(plugins) -> None:
    op = plugins.operator("lif", reference.multistep_lif)
    ops = {"lif.multi_step": op}
    plugins.add(make_spec("fast", ops, priority=30, devices=("cpu",)))
    plugins.add(make_spec("gpuonly", ops, priority=50, devices=("cuda",)))
    plugins.add(make_spec("bslow", ops, priority=5, devices=("cpu", "cuda")))
    plugins.add(make_spec("aslow", ops, priority=5, devices=("cpu",)))
    plugins.add(make_spec("down", ops, priority=100, check=lambda: (False, "off")))
    plugins.add(make_spec("other", {"if.multi_step": op}, priority=90))
    every = ["gpuonly", "fast", "aslow", "bslow", "torch", "inductor"]
    assert backends.available_backends("lif.multi_step") == every
    assert backends.available_backends("lif.multi_step", "cpu") == [
        "fast",
        "aslow",  # equal priority: by name
        "bslow",
        "torch",
        "inductor",  # priority -10: 'auto' never prefers compiling
    ]
    assert backends.available_backends("lif.multi_step", "cuda") == [
        "gpuonly",
        "bslow",
        "torch",
        "inductor",
    ]
    assert backends.available_backends("lif.multi_step", "mps") == ["torch"]
    assert backends.available_backends("lif.single_step", "cpu") == []


# -- import hygiene (a fresh interpreter) ----------------------------------------------------------

_HYGIENE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sj_core
    after_import = sorted(sys.modules)
    from sj_core import backends
    from sj_core.info import environment_report
    from sj_core.neuron import LIFNode
    backends.list_backends()
    names = backends.backend_names()
    for name in ("triton", "cupy"):
        if name in names:
            backends.get_backend(name).available()
    backends.supported_backends("lif.multi_step")
    backends.available_backends("lif.multi_step", "cuda")
    LIFNode(step_mode="m").supported_backends
    environment_report()
    print(json.dumps({"after_import": after_import, "after_listing": sorted(sys.modules),
                      "names": names}))
    """
)


def test_import_and_listing_import_no_heavy_module() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _HYGIENE_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])

    def heavy(modules):
        return [m for m in modules if m.split(".")[0] in ("triton", "cupy", "cupy_backends")]

    assert heavy(report["after_import"]) == []
    assert heavy(report["after_listing"]) == []
    # A plugin's entry point may import its light top-level package, never its kernels.
    for module in ("sj_triton.neuron_kernel", "sj_cupy.neuron_kernel"):
        assert module not in report["after_import"]
        assert module not in report["after_listing"]
    # Built-ins are listed without importing their operators either.
    assert "sj_core.inductor" not in report["after_listing"]
    assert report["names"][:2] == ["torch", "inductor"]
