"""Gauss–Legendre quadrature on [0, 1]: the one builder of the node tables that the Debye function
(:mod:`cloud_hf.debye`) and the DOS integration (:mod:`cloud_hf.thermodynamics`) use.

Tables are computed in float64 with numpy (inside a traced graph they are constants), cast to the requested dtype,
cached per (nodes, dtype, device, rule) in eager calls and built afresh inside a traced graph (a cached tensor made
while tracing would be a placeholder). They are built outside inference mode, so a table first made during a
pipeline call can later enter an autograd graph.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch

from cloud_hf.errors import CloudConfigError
from cloud_hf.validation import in_traced_graph

__all__ = ["QuadratureRule", "gauss_legendre"]

QuadratureRule = Literal["golub-welsch", "numpy"]
"""How the nodes are computed: ``"golub-welsch"`` (eigen-decomposition of the Jacobi matrix; the Debye function's
16-node table) or ``"numpy"`` (``numpy.polynomial.legendre.leggauss``: eigenvalues plus one Newton step; the DOS
segments' 8-node table). Both are exact to ~5e-16, but not bit for bit the same, and the float64 results built on
each (DOS-derived labels, equivalent θ_D) are kept bit for bit; so each table keeps the rule it was made with."""


def gauss_legendre(num_nodes: int, dtype: torch.dtype, device: torch.device,
                   rule: QuadratureRule = "golub-welsch") -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Legendre nodes and weights on ``[0, 1]``, each ``(num_nodes,)``: ∫₀¹ f ≈ Σ wᵢ f(uᵢ), exact for
    polynomials of degree < 2·``num_nodes``."""
    if in_traced_graph():
        return _table.__wrapped__(num_nodes, dtype, device, rule)
    return _table(num_nodes, dtype, device, rule)


@functools.lru_cache(maxsize=16)
def _table(num_nodes: int, dtype: torch.dtype, device: torch.device,
           rule: QuadratureRule) -> tuple[torch.Tensor, torch.Tensor]:
    """The nodes and weights of :func:`gauss_legendre`, computed in float64."""
    if rule == "golub-welsch":
        k = np.arange(1, num_nodes, dtype=np.float64)
        off_diagonal = k / np.sqrt(4.0 * k**2 - 1.0)
        nodes, vectors = np.linalg.eigh(np.diag(off_diagonal, 1) + np.diag(off_diagonal, -1))
        unit_nodes = (nodes + 1.0) / 2.0
        unit_weights = vectors[0] ** 2  # 2 v₀² on [−1, 1], halved on [0, 1]
    elif rule == "numpy":
        nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
        unit_nodes, unit_weights = (nodes + 1.0) / 2.0, weights / 2.0
    else:
        raise CloudConfigError(f"unknown quadrature rule {rule!r}; choose 'golub-welsch' or 'numpy'")
    with torch.inference_mode(False):
        return (torch.as_tensor(unit_nodes, dtype=dtype, device=device),
                torch.as_tensor(unit_weights, dtype=dtype, device=device))
