r"""What every estimator does when the answer is not to be trusted: one policy, one place.

**Singular metrics.** For ``g`` singular at 0 (``log``, ``√``), ``S_g(JᵀJ)`` is not
finite when ``J`` loses rank. An eigenvalue counts as zero below the numerical-rank
cut-off ``k · eps · λ_max`` (as in ``numpy.linalg.matrix_rank``; Golub & Van Loan,
*Matrix Computations*, §5.4.1): below it an eigenvalue of ``JᵀJ`` carries no
information in the working precision. The exact mode tests the eigenvalues, the
stochastic modes the Ritz values of their Lanczos sketch. ``on_singular="warn"``
returns ``g(0)`` (``−inf`` for log det) for those samples with a
:class:`SingularMetricWarning` and leaves them out of the gradient;
``on_singular="raise"`` raises ``ValueError``; ``jitter`` (``JᵀJ + jitter·I``) is the
opt-in regularisation.

**Non-convergence.** An iterative kernel that stops at its budget before its tolerance
leaves a biased value and gradient: :class:`NonConvergenceWarning`, or
:class:`NonConvergenceError` with ``on_nonconvergence="raise"``.

Warnings point at the first caller outside the package, so that they name the user's
line whatever the depth of the call.

Example:
    >>> import torch
    >>> singular_samples(torch.tensor([[0.0, 1.0], [0.5, 2.0]])).tolist()
    [True, False]
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
from torch import Tensor

from .functions import SpectralFunction

__all__ = [
    "NonConvergenceError",
    "NonConvergenceWarning",
    "SingularMetricWarning",
    "check_singular_options",
    "report_nonconvergence",
    "report_singular",
    "singular_samples",
    "sketch_singular_samples",
    "warn",
]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class SingularMetricWarning(UserWarning):
    """The latent metric ``JᵀJ`` is singular (rank-deficient Jacobian) for some samples."""


class NonConvergenceWarning(UserWarning):
    """An iterative solver stopped at its budget before reaching the tolerance."""


class NonConvergenceError(RuntimeError):
    """Raised instead of :class:`NonConvergenceWarning` with ``on_nonconvergence="raise"``."""


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside the ``spectral_backprop`` package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def check_singular_options(on_singular: str, jitter: float) -> None:
    """Validate the singular-metric options shared by every method."""
    if on_singular not in ("warn", "raise"):
        raise ValueError(f"on_singular must be 'warn' or 'raise', got {on_singular!r}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")


def singular_samples(lam: Tensor, rank_tol: float | Tensor | None = None) -> Tensor:
    """Boolean mask of samples whose smallest eigenvalue is numerically zero.

    ``lam[B, k]`` ascending. The default threshold ``k · eps · λ_max`` is the usual
    numerical-rank cut-off (see the module docstring).
    """
    k = lam.shape[-1]
    lam_max = lam[..., -1].clamp_min(0)
    tol = rank_tol if rank_tol is not None else k * torch.finfo(lam.dtype).eps * lam_max
    return lam[..., 0] <= tol


def report_singular(
    singular: Tensor, smallest: Tensor, fn: SpectralFunction, on_singular: str
) -> None:
    """Warn (:class:`SingularMetricWarning`) or raise ``ValueError`` for singular samples.

    ``smallest`` holds each sample's smallest eigenvalue (or Ritz value) estimate.
    """
    if not singular.any():
        return
    msg = (
        f"JᵀJ is numerically singular for samples {singular.nonzero().flatten().tolist()} "
        f"(smallest eigenvalue {smallest[singular].min().item():.3g}); {fn.name} is not "
        "finite there. Pass jitter=... to regularise, or check that G is an immersion at z."
    )
    if on_singular == "raise":
        raise ValueError(msg)
    warn(msg, SingularMetricWarning)


def sketch_singular_samples(
    ritz_values: Tensor, k: int, fn: SpectralFunction, on_singular: str
) -> Tensor:
    """Samples whose Lanczos sketch shows a numerically singular metric, reported.

    ``ritz_values[B, s]`` ascending (``+inf`` padding); only ``log``/``√``-type ``g``
    (``fn.needs_positive``) are tested. The cut-off is the exact mode's,
    ``k · eps · θ_max``, on the Ritz values.
    """
    singular = torch.zeros(ritz_values.shape[0], dtype=torch.bool, device=ritz_values.device)
    if not fn.needs_positive:
        return singular
    top = torch.where(torch.isfinite(ritz_values), ritz_values, -torch.inf).amax(-1)
    lam = torch.stack([ritz_values[:, 0], top], -1)
    singular = singular_samples(lam, k * torch.finfo(ritz_values.dtype).eps * top.clamp_min(0))
    report_singular(singular, ritz_values[:, 0], fn, on_singular)
    return singular


def report_nonconvergence(
    converged: Tensor,
    residual: Tensor,
    skip: Tensor,
    *,
    method: str,
    budget: object,
    tol: float,
    on_nonconvergence: str,
) -> None:
    """Warn or raise when some vectors ``[B, c]`` did not reach ``tol`` within ``budget``.

    Samples in ``skip[B]`` (singular metrics) have been reported already.
    """
    failed = ~converged & ~skip[:, None]
    if not bool(failed.any()):
        return
    bad = failed.any(-1).nonzero().flatten().tolist()
    worst = residual[failed].max().item()
    msg = (
        f"method={method!r} did not reach tol={tol:g} within num_matvecs={budget} for samples "
        f"{bad} ({int(failed.sum())} of {converged.numel()} vectors; worst "
        f"residual {worst:.3g}): the value and gradient are biased. Raise num_matvecs or tol."
    )
    if on_nonconvergence == "raise":
        raise NonConvergenceError(msg)
    warn(msg, NonConvergenceWarning)
