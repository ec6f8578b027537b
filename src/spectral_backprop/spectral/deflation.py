r"""A Lanczos sketch of the spectrum of ``M``: bounds and a deflation basis.

A few Lanczos steps from one random start give Ritz pairs ``(θ_i, y_i)`` with
residuals ``‖M y_i − θ_i y_i‖``; the extreme ones converge first (Kaniel–Paige–Saad
theory). They serve twice:

* **Spectrum bounds** for Chebyshev series: ``[a, b]`` with
  ``b = (θ_max + r_max)(1 + margin)`` (the residual-augmented top Ritz value, as in
  Zhou & Li 2011, "Bounding the spectrum of large Hermitian matrices") and
  ``a = max((θ_min − r_min)(1 − margin), θ_min / 10)``. A Ritz value is never below
  ``λ_min``, so ``a`` is a guess made safe by the margin; the Chebyshev kernel
  certifies it afterwards (its recurrence grows when the interval is missed).
* **Deflation.** For any orthonormal ``V`` and ``P = I − VVᵀ``,

  .. math::  \operatorname{tr} A = \operatorname{tr}(V^\top A V) + \operatorname{tr}(P A P),

  exactly. With ``V`` the Ritz vectors where ``|g'(θ)|`` is largest (for log det:
  the smallest eigenpairs, which dominate ``M^{-1}``), the first term is computed
  column by column and only the complement is probed, which removes those directions'
  share of the variance. ``V`` is drawn independently of the probes, so the estimator
  stays unbiased whether or not the Ritz vectors have converged (Gambhir, Stathopoulos &
  Orginos 2017, arXiv 1603.05988, deflate the same way; Hutch++, Meyer et al. 2021,
  arXiv 2010.09649, uses a random sketch instead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..linalg.lanczos import lanczos, ritz_pairs

__all__ = ["SpectrumSketch", "sketch_spectrum"]


@dataclass
class SpectrumSketch:
    """Ritz pairs of ``M`` per sample from :func:`sketch_spectrum`.

    Attributes:
        values: ``θ[B, s]`` ascending (``+inf`` padding after an early breakdown).
        vectors: ``Y[B, k, s]`` orthonormal Ritz vectors.
        residuals: ``[B, s]`` residual norms ``‖M y − θ y‖``.
        matvecs: products with ``M`` used per sample.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    matvecs: int

    def bounds(self, margin: float = 0.05) -> tuple[Tensor, Tensor]:
        """``(a[B], b[B])``, an interval meant to contain the whole spectrum.

        ``b = max_i(θ_i + r_i)(1 + margin)`` (Zhou & Li 2011),
        ``a = max((θ_min − r_min)(1 − margin), θ_min/10)``; see the module docstring.
        """
        finite = torch.isfinite(self.values)
        theta_min = self.values[:, 0]
        hi = torch.where(finite, self.values + self.residuals, torch.zeros_like(self.values))
        b = hi.amax(-1) * (1 + margin)
        a = torch.maximum((theta_min - self.residuals[:, 0]) * (1 - margin), theta_min / 10)
        return a, b

    def deflation_basis(
        self, r: int, weight: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The ``r`` Ritz pairs with the largest ``|weight(θ)|``: ``(V[B, k, r], θ[B, r])``.

        ``θ_i = y_iᵀ M y_i`` are the Rayleigh quotients of the chosen vectors; the trace
        splits as ``tr A = tr(VᵀAV) + tr(PAP)`` (Gambhir, Stathopoulos & Orginos 2017).
        """
        if r == 0:
            return self.vectors[..., :0], self.values[:, :0]
        score = torch.where(
            torch.isfinite(self.values), weight(self.values.clamp_min(0)).abs(), -torch.inf
        )
        score = torch.nan_to_num(score, nan=-torch.inf, posinf=torch.finfo(score.dtype).max)
        idx = score.topk(r, dim=-1).indices
        V = self.vectors.gather(-1, idx[:, None, :].expand(-1, self.vectors.shape[1], -1))
        # Re-orthonormalise: Ritz vectors are orthonormal only to working precision.
        return torch.linalg.qr(V).Q, self.values.gather(-1, idx)


def sketch_spectrum(
    matvec: Callable[[Tensor], Tensor],
    batch: int,
    k: int,
    steps: int,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> SpectrumSketch:
    """``steps`` Lanczos steps from a Gaussian start per sample, and the Ritz pairs.

    ``T_m = S diag(θ) Sᵀ``, ``y_i = Q_m s_i``, residual ``β_m |S_{mi}|`` (Golub & Van
    Loan, §10.1; Kaniel–Paige–Saad: the extreme pairs converge first).
    """
    start = torch.randn(batch, k, 1, generator=generator, dtype=dtype, device=device)
    decomp = lanczos(matvec, start, steps)
    theta, Y, res = ritz_pairs(decomp)
    return SpectrumSketch(theta[:, 0], Y[:, 0], res[:, 0], decomp.alpha.shape[-1])
