"""sj-flexsn: Triton multi-step kernels generated from a user's single-step neuron.

Installing the package adds the ``flexsn`` operator to the ``triton`` and ``inductor``
backends (and provides the ``hop`` backend), so that
``sj_core.neuron.FlexSN(core, ..., backend='triton')`` runs generated kernels.

The pipeline, one module per stage:

* :mod:`sj_flexsn.capture` traces ``core`` to aten-level FX graphs (``make_fx``; a joint
  forward/backward trace for training) and lifts the tensors it captures into arguments;
* :mod:`sj_flexsn.partition` splits the joint graph into a forward graph (which also
  returns what the backward needs) and a backward graph;
* :mod:`sj_flexsn.lowering` turns a graph into a ``@triton.jit`` single-step function,
  with the op table in :mod:`sj_flexsn.op_table` (and :mod:`sj_flexsn.triton_helpers`);
* :mod:`sj_flexsn.template` inserts it into time-loop kernels;
* :mod:`sj_flexsn.compile` writes the source to a content-keyed cache file and imports it;
* :mod:`sj_flexsn.info` describes what a kernel reads and writes (``FlexSNInfo``);
* :mod:`sj_flexsn.kernel` / :mod:`sj_flexsn.wrapper` build and launch the kernels;
* :mod:`sj_flexsn.custom_ops` runs them through sj-core's kernel plumbing
  (:mod:`sj_core.kernels`): eagerly without the dispatcher's overhead, or, when traced,
  as ``torch.library`` operators (what ``torch.compile`` sees);
* :mod:`sj_flexsn.factory` is what sj-core's ``FlexSN`` calls.

Importing ``sj_flexsn`` imports neither Triton nor the kernels.
"""

from .__about__ import __version__

__all__ = ["__version__"]
