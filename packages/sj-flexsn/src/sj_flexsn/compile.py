"""Compile: write generated kernel source to a content-keyed file and import it.

Triton reads a ``@triton.jit`` function's source from its file (``inspect.getsource``),
so generated code must live in a real module. The file name is a hash of the source and
of the sj-flexsn and Triton versions; it is written once (atomically, so concurrent
processes are safe) and any later process that generates the same source imports the
existing file. Triton's own cache then reuses the compiled binary.

The directory is ``$SJ_FLEXSN_CACHE_DIR`` if set, else ``~/.cache/sj_flexsn``.

Example::

    >>> generated = load_generated_module(source)
    >>> generated.path, generated.created
    (PosixPath('/home/me/.cache/sj_flexsn/flexsn_3f2a....py'), False)
    >>> kernel = generated.module.flexsn_inference_kernel
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

from .__about__ import __version__

__all__ = ["CACHE_DIR_ENV", "GeneratedModule", "cache_dir", "load_generated_module", "source_key"]

CACHE_DIR_ENV = "SJ_FLEXSN_CACHE_DIR"
_MODULE_PREFIX = "sj_flexsn_generated_"
_LOCK = threading.Lock()
# One module per source in a process, so identical cores share Triton's compiled kernels.
_LOADED: dict[str, GeneratedModule] = {}


@dataclasses.dataclass(frozen=True)
class GeneratedModule:
    """An imported generated module.

    Attributes:
        module: the module object.
        path: the cache file it was imported from.
        created: whether this call wrote the file (``False``: it was already there).
    """

    module: types.ModuleType
    path: Path
    created: bool


def cache_dir() -> Path:
    """Where generated sources are kept (read from the environment at every call)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "sj_flexsn"


def source_key(source: str) -> str:
    """Content key of ``source`` (also covers the sj-flexsn and Triton versions)."""
    import triton

    digest = hashlib.sha256()
    for part in (__version__, triton.__version__, source):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _write_once(path: Path, source: str) -> bool:
    """Write ``source`` to ``path`` unless an identical file is there; True if written."""
    try:
        if path.read_text() == source:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(source)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def load_generated_module(source: str) -> GeneratedModule:
    """Import ``source`` from its cache file (writing the file first if needed).

    Returns the already-imported module when this process loaded the same source before.

    Raises:
        OSError: the cache directory cannot be written (set ``SJ_FLEXSN_CACHE_DIR``).
    """
    key = source_key(source)
    with _LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            return dataclasses.replace(loaded, created=False)
        path = cache_dir() / f"flexsn_{key}.py"
        try:
            created = _write_once(path, source)
        except OSError as exc:
            raise OSError(
                f"sj_flexsn cannot write its kernel cache {path}: {exc}; "
                f"set {CACHE_DIR_ENV} to a writable directory"
            ) from exc
        name = _MODULE_PREFIX + key
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        loaded = GeneratedModule(module=module, path=path, created=created)
        _LOADED[key] = loaded
        return loaded
