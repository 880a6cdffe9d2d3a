"""The backend registry.

A *backend* runs neurons: ``torch`` (built in, the reference), ``inductor`` (built in,
``torch.compile``), and plugins such as ``triton`` (``pip install sj-triton``) and
``cupy`` (``pip install sj-cupy[cuda12]``). Modules look up an *operator key* such as
``"lif.multi_step"`` (see :mod:`sj_core.backends.operators`) in the backend the user
chose; plugins are discovered through the entry-point group ``sj.backends`` (see
:class:`BackendSpec`).

>>> from sj_core import backends
>>> backends.backend_names()[:2]
('torch', 'inductor')
>>> 'torch' in backends.supported_backends('lif.multi_step')
True
"""

from .errors import (
    BackendError,
    BackendLoadError,
    BackendNotInstalledError,
    BackendUnavailableError,
    UnknownBackendError,
    UnsupportedByBackendError,
    UnsupportedOperatorError,
)
from .first_party import FIRST_PARTY_PACKAGES, FirstPartyPackage
from .operators import OPERATORS
from .registry import (
    ENTRY_POINT_GROUP,
    BackendInfo,
    available_backends,
    backend_names,
    broken_backends,
    get_backend,
    get_operator,
    list_backends,
    refresh,
    supported_backends,
)
from .spec import PLUGIN_API_VERSION, BackendSpec, check_requirements

__all__ = [
    "ENTRY_POINT_GROUP",
    "FIRST_PARTY_PACKAGES",
    "OPERATORS",
    "PLUGIN_API_VERSION",
    "BackendError",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotInstalledError",
    "BackendSpec",
    "BackendUnavailableError",
    "FirstPartyPackage",
    "UnknownBackendError",
    "UnsupportedByBackendError",
    "UnsupportedOperatorError",
    "available_backends",
    "backend_names",
    "broken_backends",
    "check_requirements",
    "get_backend",
    "get_operator",
    "list_backends",
    "refresh",
    "supported_backends",
]
