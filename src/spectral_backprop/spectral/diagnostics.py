r"""What every estimator does when the answer is not to be trusted: one policy, one place.

**Singular metrics.** For ``g`` singular at 0 (``log``, ``√``), ``S_g(JᵀJ)`` is not
finite when ``J`` loses rank. An eigenvalue counts as zero below the numerical-rank
cut-off ``k · eps · λ_max`` (as in ``numpy.linalg.matrix_rank``; Golub & Van Loan,
*Matrix Computations*, §5.4.1): below it an eigenvalue of ``JᵀJ`` carries no
information in the working precision. The exact mode tests the eigenvalues (for log
det it works on a QR factor of ``J``, whose singular values carry information down to
``k · eps · σ_max``: there the cut-off is ``σ_min ≤ k · eps · σ_max``), the
stochastic modes the Ritz values of their Lanczos runs (the probes' own and the
sketch's). ``on_singular="warn"`` returns ``g`` with the zero eigenvalues set to 0
(``−inf`` for log det) for those samples with a :class:`SingularMetricWarning` and
leaves them out of the gradient; ``on_singular="raise"`` raises ``ValueError``;
``jitter`` (``JᵀJ + jitter·I``) is the opt-in regularisation. The same policy covers
any other non-finite value (a user's ``g`` evaluated outside its domain): never a NaN
without a warning or an error naming the samples.

**Non-convergence.** An iterative kernel that stops at its budget before its tolerance
leaves a biased value and gradient: :class:`NonConvergenceWarning`, or
:class:`NonConvergenceError` with ``on_nonconvergence="raise"``. A requested accuracy
(``rtol``, ``grad_rtol``) not met within ``max_probes``: :class:`AccuracyNotMetWarning` (a
:class:`NonConvergenceWarning`), or the same error.

Warnings point at the first caller outside the package, so that they name the user's
line whatever the depth of the call.

Example:
    >>> import torch
    >>> singular_samples(torch.tensor([[0.0, 1.0], [0.5, 2.0]])).tolist()
    [True, False]
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import torch
from torch import Tensor

from .functions import SpectralFunction

__all__ = [
    "AccuracyNotMetWarning",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "SingularMetricWarning",
    "check_singular_options",
    "rank_cutoff",
    "report_accuracy",
    "report_gradient_accuracy",
    "report_nonconvergence",
    "report_nonfinite",
    "ritz_singular_samples",
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


class AccuracyNotMetWarning(NonConvergenceWarning):
    """A requested accuracy (``rtol`` or ``grad_rtol``) was not reached before the probe
    budget ran out."""


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside the ``spectral_backprop`` package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _check_number(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        0 <= value < float("inf")
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_singular_options(
    on_singular: str, jitter: float, rank_tol: float | None = None
) -> None:
    """Validate the options shared by every method (``on_singular``, ``jitter``) and the
    exact mode's ``rank_tol`` (``check_coupling`` is validated where it is used, by
    :func:`~..linalg.jacobian.check_generator`)."""
    if not isinstance(on_singular, str) or on_singular not in ("warn", "raise"):
        raise ValueError(f"on_singular must be 'warn' or 'raise', got {on_singular!r}")
    _check_number("jitter", jitter)
    _check_number("rank_tol", rank_tol, allow_none=True)


def rank_cutoff(lam_max: Tensor, k: int) -> Tensor:
    """The numerical-rank cut-off ``k · eps · λ_max`` (``λ_max`` clamped at 0), ``[B]``."""
    return k * torch.finfo(lam_max.dtype).eps * lam_max.clamp_min(0)


def singular_samples(lam: Tensor, rank_tol: float | Tensor | None = None) -> Tensor:
    """Boolean mask of samples whose smallest eigenvalue is numerically zero.

    ``lam[B, k]`` ascending. The default threshold :func:`rank_cutoff`, ``k · eps · λ_max``,
    is the usual numerical-rank cut-off (see the module docstring).
    """
    tol = rank_tol if rank_tol is not None else rank_cutoff(lam[..., -1], lam.shape[-1])
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


def ritz_singular_samples(
    smallest: Tensor,
    largest: Tensor,
    k: int,
    fn: SpectralFunction,
    on_singular: str,
    reported: Tensor | None = None,
) -> Tensor:
    """Samples whose Ritz values show a numerically singular metric, reported.

    ``smallest[B]`` and ``largest[B]`` are each sample's extreme Ritz values (from the
    Lanczos sketch or the probes' own runs; a Ritz value never lies below ``λ_min``).
    Only ``log``/``√``-type ``g`` (``fn.needs_positive``) are tested; the cut-off is the
    exact mode's, ``θ_min ≤ k · eps · θ_max``. Samples in ``reported`` are flagged again
    but not reported twice.
    """
    singular = torch.zeros(smallest.shape[0], dtype=torch.bool, device=smallest.device)
    if not fn.needs_positive:
        return singular
    lam = torch.stack([smallest, largest], -1)
    tol = rank_cutoff(largest, k)
    singular = singular_samples(lam, tol) | torch.isnan(smallest)
    new = singular if reported is None else singular & ~reported
    report_singular(new, smallest, fn, on_singular)
    return singular


def sketch_singular_samples(
    ritz_values: Tensor, k: int, fn: SpectralFunction, on_singular: str
) -> Tensor:
    """Samples whose Lanczos sketch shows a numerically singular metric, reported.

    ``ritz_values[B, s]`` ascending (``+inf`` padding); see :func:`ritz_singular_samples`.
    """
    top = torch.where(torch.isfinite(ritz_values), ritz_values, -torch.inf).amax(-1)
    return ritz_singular_samples(ritz_values[:, 0], top, k, fn, on_singular)


def report_nonfinite(
    value: Tensor, reported: Tensor, fn: SpectralFunction, on_singular: str, method: str
) -> Tensor:
    """Samples whose value is not finite and not already reported singular, reported.

    Such a value means ``g`` was evaluated outside its domain (a ``g`` singular at 0 not
    marked ``needs_positive``, a spectrum estimate that left ``[0, ∞)``); it follows the
    singular-metric policy: :class:`SingularMetricWarning` (the caller leaves the samples
    out of the gradient) or, with ``on_singular="raise"``, ``ValueError``.
    """
    bad = ~torch.isfinite(value.detach()) & ~reported
    if not bool(bad.any()):
        return bad
    msg = (
        f"method={method!r} gave a non-finite {fn.name} for samples "
        f"{bad.nonzero().flatten().tolist()}: g was evaluated outside its domain (a metric "
        "numerically singular for a g not marked needs_positive=True?). They are left "
        "out of the gradient. Pass jitter=... to regularise."
    )
    if on_singular == "raise":
        raise ValueError(msg)
    warn(msg, SingularMetricWarning)
    return bad


def report_nonconvergence(
    converged: Tensor,
    residual: Tensor,
    skip: Tensor,
    *,
    method: str,
    budget: object,
    tol: float | str,
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
    target = f"tol={tol:g}" if isinstance(tol, (int, float)) else tol
    fix = "Raise num_matvecs or tol." if isinstance(tol, (int, float)) else (
        "Raise num_matvecs, or pass tol=... to accept a relative tolerance.")
    msg = (
        f"method={method!r} did not reach {target} within num_matvecs={budget} for samples "
        f"{bad} ({int(failed.sum())} of {converged.numel()} vectors; worst "
        f"residual {worst:.3g}): the value and gradient are biased. {fix}"
    )
    _warn_or_raise(msg, NonConvergenceWarning, on_nonconvergence)


def _warn_or_raise(msg: str, category: type[Warning], on_nonconvergence: str) -> None:
    """The ``on_nonconvergence`` policy: :class:`NonConvergenceError`, or a warning."""
    if on_nonconvergence == "raise":
        raise NonConvergenceError(msg)
    warn(msg, category)


def _advice(budget: str, target: str) -> str:
    """Raise the probe budget if it was the limit; once every probe of a population is
    drawn only the quadrature's error is left, which more probes cannot lower."""
    more = "Raise max_probes, l" if budget.startswith("max_probes") else "L"
    return f"{more}oosen {target}, or use method='exact'."


def report_accuracy(
    met: Tensor, rel_std_error: Tensor, *, rtol: float, target: float, probes: int,
    budget: str, method: str, on_nonconvergence: str,
) -> None:
    """Warn (:class:`AccuracyNotMetWarning`) or raise when some samples ``[B]`` did not reach
    a relative error of ``rtol`` at 95% confidence (a relative standard error of
    ``target``) within the probe ``budget`` (``"max_probes=…"`` or a population)."""
    if bool(met.all()):
        return
    bad = (~met).nonzero().flatten().tolist()
    worst = rel_std_error[~met].max().item()
    msg = (
        f"method={method!r} did not reach rtol={rtol:g} within {budget} for "
        f"samples {bad} (relative standard error {worst:.3g} after {probes} probes, "
        f"{target:.3g} needed). {_advice(budget, 'rtol')}"
    )
    _warn_or_raise(msg, AccuracyNotMetWarning, on_nonconvergence)


def report_gradient_accuracy(
    rel_std_error: float, *, grad_rtol: float, probes: int, budget: str, method: str,
    on_nonconvergence: str, default: bool = False,
) -> None:
    """Warn (:class:`AccuracyNotMetWarning`) or raise when the parameter gradient's
    relative standard error is still above ``grad_rtol`` within the probe ``budget``.

    For the default target (``default``, no option given) the message carries no
    figures, so that a training loop is told once per call site, not every step."""
    if default:
        msg = (
            f"method={method!r} did not reach its default gradient target "
            f"(grad_rtol={grad_rtol:g}) within {budget}: the parameter gradient is noisier "
            "than a cosine of about 0.9 to the exact one (estimate.info['grad_rel_std_error'] "
            "has the figure). Pass num_probes=... for a fixed count (noisy gradients, "
            "as SGD tolerates), grad_rtol and max_probes for a larger budget, or use "
            "method='exact' (cheaper than this many probes)."
        )
        _warn_or_raise(msg, AccuracyNotMetWarning, on_nonconvergence)
        return
    msg = (
        f"method={method!r} did not reach grad_rtol={grad_rtol:g} within "
        f"{budget} (the gradient's relative standard error is "
        f"{rel_std_error:.3g} after {probes} probes). {_advice(budget, 'grad_rtol')}"
    )
    _warn_or_raise(msg, AccuracyNotMetWarning, on_nonconvergence)
