r"""Exact spectral backpropagation.

With ``M = JᵀJ = V diag(λ) Vᵀ`` and any spectral function ``g``,

.. math::
    dS_g = \operatorname{tr}(g'(M)\, dM)
         = \sum_i g'(\lambda_i)\, v_i^\top dM\, v_i
         = d\Big[\sum_i g'(\lambda_i) \lVert J v_i \rVert^2\Big]_{\lambda, v\ \text{fixed}},

(Ramesh & LeCun 2018, arXiv 1806.00499, §3). We build ``J`` once with ``k``
forward-mode products, eigendecompose the ``k×k`` metric *outside* the graph, and
attach the gradient through the surrogate

.. math::  s = 2 \sum J \odot X, \qquad X = \bar J\, W, \quad W = V g'(\Lambda) V^\top,

where ``J̄`` is ``J`` detached: ``ds = 2 tr(W J̄ᵀ dJ) = tr(W dM)``. ``W`` is a
well-defined matrix function even when eigenvalues repeat, so the gradient stays
finite there, unlike autograd through ``eigh`` (whose backward divides by
``λ_i − λ_j``). The returned value is ``S + (s − s.detach())``: numerically ``S``,
with the gradient of ``s`` (first order only: :mod:`.surrogate`).

**Memory.** ``s`` is summed column chunk by column chunk, ``s = 2 Σ_c Σ J_c ⊙ X_c``,
so neither ``J ⊙ X`` nor the full gradient of ``J`` is ever formed. With
``chunk_size`` set (and gradients enabled) each chunk of columns is wrapped in a
non-reentrant activation checkpoint: its forward-mode graph is dropped after the
forward pass and rebuilt one chunk at a time during the backward pass, so the graph
follows ``chunk_size`` rather than ``k``, for one extra forward-mode pass. ``J`` and
``X`` themselves (``B·n·k`` numbers each) are always held: for generators whose
activations are small next to their output (MLPs), they, not the graph, set the peak.

**Log det** (``g = log``, ``W = M⁻¹``). Forming ``JᵀJ`` squares the condition number
of ``J``: rounding of size ``eps·λ_max`` in ``M`` moves ``log det`` by about
``eps·λ_max·tr(M⁻¹) = eps·Σ_i λ_max/λ_i``. The value is ``2 Σ log diag L`` with
``M = LLᵀ`` (Cholesky) while ``λ_max·tr(M⁻¹) ≤ 100·k`` (``λ_max`` from a few power
steps): there the measured error of Cholesky stayed within ~10× of QR's, at most
7e-5 nats in float32 and 5e-13 in float64 (QR: 4e-5 and 1e-13; ``n = 64…3072``,
``k = 8…128``). Otherwise ``J = QR`` (Householder; Golub & Van Loan, §5.2),
``log det M = 2 Σ log |R_ii|`` and ``W = (RᵀR)⁻¹``, without squaring: for linear maps
with ``cond(J) = 10⁴`` in float32 or ``10⁸`` in float64 the error falls from 0.1–1.5
nats to ``slogdet``'s level (4e-5 and 2e-9 nats). A singular value of ``J`` counts as
zero below ``k · eps · σ_max``. ``jitter`` factors ``[J; √jitter·I]``, whose Gram
matrix is ``M + jitter·I``. No LU factorisation is used (``slogdet``): batched LU has
been seen to hang in MKL after ``torch.set_num_threads``.

**Other g** use ``eigh`` of ``M`` (float32 arithmetic for float16/bfloat16 inputs, as
everywhere in the metric algebra; the value is float32 then).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..linalg.jacobian import Generator, jacobian_chunks, jacobian_columns, work_dtype
from ..linalg.memory import check_allocation
from .diagnostics import (
    SingularMetricWarning,
    check_singular_options,
    rank_cutoff,
    report_nonfinite,
    report_singular,
    singular_samples,
)
from .estimate import SpectralEstimate
from .functions import SPECTRAL_FUNCTIONS, SpectralFunction
from .surrogate import first_order_only

__all__ = [
    "GRAM_AMPLIFICATION",
    "SingularMetricWarning",
    "cholesky_logdet",
    "exact_spectral_sum",
    "gram",
    "qr_logdet",
]

# Cholesky of JᵀJ while λ_max·tr(M⁻¹) ≤ GRAM_AMPLIFICATION·k, QR of J beyond (module
# docstring). The benchmark generators in float32 give 7 (MLP, k = 64) and 4 (DCGAN,
# k = 128): both stay on the faster Cholesky route.
GRAM_AMPLIFICATION = 100.0
_POWER_STEPS = 8


def _columns_fn(G: Generator, z: Tensor, chunk_size: int | None):
    if chunk_size is None or not torch.is_grad_enabled():
        return None
    return partial(checkpoint, partial(jacobian_columns, G, z), use_reentrant=False)


def gram(J: Tensor | list[Tensor], jitter: float = 0.0) -> Tensor:
    """``JᵀJ + jitter·I`` for ``J[B, n, k]`` (or its column chunks), outside the graph."""
    chunks = [c.detach() for c in (J if isinstance(J, list) else [J])]
    if len(chunks) == 1:
        M = chunks[0].mT @ chunks[0]
    else:
        k = sum(c.shape[-1] for c in chunks)
        M = chunks[0].new_empty(chunks[0].shape[0], k, k)
        lo = 0
        for a in chunks:
            hi, left = lo + a.shape[-1], 0
            for b in chunks:
                M[:, lo:hi, left : left + b.shape[-1]] = a.mT @ b
                left += b.shape[-1]
            lo = hi
    if jitter:
        M = M + jitter * torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return M


def _times(chunks: list[Tensor], W: Tensor) -> list[Tensor]:
    """``X = J̄ W`` in the column chunks of ``J``: ``X_c = Σ_{c'} J̄_{c'} W[c', c]``."""
    bounds = [0]
    for c in chunks:
        bounds.append(bounds[-1] + c.shape[-1])
    cuts = list(zip(bounds[:-1], bounds[1:], strict=True))
    out = []
    for lo, hi in cuts:
        X = sum(c.detach() @ W[:, a:b, lo:hi] for c, (a, b) in zip(chunks, cuts, strict=True))
        out.append(X)
    return out


def _largest_eigenvalue(M: Tensor, steps: int = _POWER_STEPS) -> Tensor:
    """``λ_max`` of SPD ``M[B, k, k]`` by power iteration (Rayleigh quotient; an estimate
    from below, within a few percent after 8 steps unless the top eigenvalues cluster)."""
    g = torch.Generator().manual_seed(0)
    v = torch.rand(M.shape[-1], 1, generator=g, dtype=torch.float64).to(M)
    v = v.expand(M.shape[0], -1, -1)
    for _ in range(steps):
        w = M @ v
        v = w / torch.linalg.vector_norm(w, dim=-2, keepdim=True).clamp_min(
            torch.finfo(M.dtype).tiny)
    return (v * (M @ v)).sum((-2, -1))


def cholesky_logdet(M: Tensor, rank_tol: float | None = None) -> tuple[Tensor, Tensor] | None:
    """``(log det M, M⁻¹)`` by Cholesky, or ``None`` when ``M`` is too ill-conditioned for it.

    Cholesky is used while ``λ_max·tr(M⁻¹) = Σ_i λ_max/λ_i`` (the factor by which forming
    ``M`` amplifies rounding in log det) is at most ``GRAM_AMPLIFICATION · k`` (module
    docstring); with ``rank_tol``, ``λ_min ≥ 1/tr(M⁻¹)`` must also be above it. Otherwise
    the caller turns to QR (log det) or ``eigh``, which decide singularity exactly.
    """
    L, info = torch.linalg.cholesky_ex(M)
    if (info != 0).any():
        return None
    W = torch.cholesky_inverse(L)
    k = M.shape[-1]
    inv_trace = W.diagonal(dim1=-2, dim2=-1).sum(-1)
    amplification = _largest_eigenvalue(M) * inv_trace
    ok = torch.isfinite(amplification) & (amplification <= GRAM_AMPLIFICATION * k)
    if rank_tol is not None:
        ok &= 1.0 / inv_trace > rank_tol
    if not ok.all():
        return None
    return 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1), W


def qr_logdet(
    J: Tensor, jitter: float, rank_tol: float | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(log det(JᵀJ + jitter·I), W = (JᵀJ + jitter·I)⁻¹, singular, σ_min²)`` by QR of ``J``.

    ``log det = 2 Σ log|R_ii|`` (Golub & Van Loan, §5.2; no squaring of ``cond(J)``).
    ``σ_min ≥ 1/‖R⁻¹‖_F`` and ``σ_max ≤ ‖R‖_F`` certify most samples non-singular;
    the others get the singular values of ``R``. Singular (``σ_min ≤ k·eps·σ_max``, or
    ``σ_min² ≤ rank_tol``) samples have value ``−inf`` and ``W = 0``.
    """
    B, _, k = J.shape
    if jitter:
        eye = (jitter**0.5) * torch.eye(k, dtype=J.dtype, device=J.device).expand(B, k, k)
        J = torch.cat([J, eye], 1)
    a, _ = torch.geqrf(J)
    R = a[..., :k, :].triu()
    del a
    # An exact zero on the diagonal means σ_min = 0: such a sample is singular whatever
    # W is, so invert a stand-in (the svdvals below still see R).
    zero = R.diagonal(dim1=-2, dim2=-1) == 0
    W = torch.cholesky_inverse(R + torch.diag_embed(zero.to(R.dtype)), upper=True)
    inv_trace = W.diagonal(dim1=-2, dim2=-1).sum(-1)  # = tr(M⁻¹) = ‖R⁻¹‖_F²
    trace = R.square().sum((-2, -1))
    rank2 = (k * torch.finfo(J.dtype).eps) ** 2  # the rank cut-off k·eps·σ_max, squared
    cut = rank2 * trace
    if rank_tol is not None:
        cut = torch.maximum(cut, torch.full_like(cut, rank_tol))
    smallest = 1.0 / inv_trace  # a lower bound on σ_min²
    unsure = ~(torch.isfinite(inv_trace) & (smallest > cut)) | zero.any(-1)
    singular = torch.zeros_like(unsure)
    if unsure.any():
        sigma = torch.linalg.svdvals(R[unsure])  # descending
        lam = sigma.flip(-1).square()
        tol = rank_tol if rank_tol is not None else rank2 * lam[:, -1]
        singular[unsure] = singular_samples(lam, tol)
        smallest = smallest.clone()
        smallest[unsure] = lam[:, 0]
    value = 2 * R.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
    value = torch.where(singular, torch.full_like(value, -torch.inf), value)
    W = torch.where(singular[:, None, None], torch.zeros_like(W), W)
    return value, W, singular, smallest


def _logdet_weights(
    chunks: list[Tensor], fn: SpectralFunction, jitter: float, on_singular: str,
    rank_tol: float | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Log det, ``W = M⁻¹`` and the singular samples: Cholesky when safe, else QR."""
    M = gram(chunks, jitter)
    fast = cholesky_logdet(M, rank_tol)
    if fast is not None:
        return *fast, torch.zeros(M.shape[0], dtype=torch.bool, device=M.device)
    J = torch.cat([c.detach() for c in chunks], -1) if len(chunks) > 1 else chunks[0].detach()
    value, W, singular, smallest = qr_logdet(J, jitter, rank_tol)
    report_singular(singular, smallest, fn, on_singular)
    return value, W, singular


def _eigh_value_and_weights(
    M: Tensor, fn: SpectralFunction, on_singular: str, rank_tol: float | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``Σ g(λ)``, ``W = V g'(Λ) Vᵀ`` and the singular samples, from ``eigh``.

    For a singular sample the eigenvalues at or below the cut-off count as 0: ``g(0)``
    enters the value (``−inf`` for log det, never a finite remainder of round-off).
    """
    lam, V = torch.linalg.eigh(M)
    singular = torch.zeros(lam.shape[0], dtype=torch.bool, device=lam.device)
    if fn.needs_positive:
        tol = rank_tol if rank_tol is not None else rank_cutoff(lam[:, -1], lam.shape[-1])
        singular = singular_samples(lam, tol)
        report_singular(singular, lam[:, 0], fn, on_singular)
        tol = tol[:, None] if isinstance(tol, Tensor) else tol
        lam = torch.where(singular[:, None] & (lam <= tol), torch.zeros_like(lam), lam)
    value = fn.g(lam).sum(-1)
    # Singular samples are left out of the gradient: g' is infinite there.
    weights = torch.where(singular[:, None], torch.zeros_like(lam), fn.dg(lam))
    return value, (V * weights[:, None, :]) @ V.mT, singular


def _jacobian(G: Generator, z: Tensor, chunk_size: int | None, check_coupling: bool
              ) -> tuple[Tensor, list[Tensor]]:
    """``G(z)`` flattened and ``J``'s column chunks (both with their graph), after the
    front door and a memory check."""

    def check_memory(n: int) -> None:
        B, k = z.shape
        check_allocation(B * n * k, work_dtype(z.dtype), z.device, copies=2,
                         what=f"the exact mode's Jacobian [B={B}, n={n}, k={k}]",
                         fix="Use a smaller batch, or a stochastic method "
                             "(method='lanczos'), which never forms J.")

    pieces = list(jacobian_chunks(G, z, chunk_size=chunk_size,
                                  column_fn=_columns_fn(G, z, chunk_size),
                                  check_coupling=check_coupling, check_memory=check_memory))
    return pieces[0][1], [cols for _, _, cols in pieces]


def exact_spectral_sum(
    G: Generator,
    z: Tensor,
    fn: SpectralFunction,
    *,
    chunk_size: int | None = None,
    jitter: float = 0.0,
    on_singular: str = "warn",
    rank_tol: float | None = None,
    check_coupling: bool = True,
    return_info: bool = False,
) -> Tensor | SpectralEstimate:
    """``Σ_i g(λ_i(JᵀJ + jitter·I))`` per sample, differentiable by spectral backprop.

    ``dS = d[Σ_i g'(λ_i)‖J v_i‖²]`` with ``λ, v`` held fixed (Ramesh & LeCun 2018,
    arXiv 1806.00499, §3); see the module docstring.

    Args:
        G: generator ``z[B, k] -> x[B, ...]``.
        z: latents ``[B, k]``.
        fn: the spectral function.
        chunk_size: Jacobian columns in flight at once, forward and backward.
        jitter: added to the metric's diagonal, ``JᵀJ + jitter·I`` (opt-in regularisation
            for rank-deficient generators).
        on_singular: for ``log``/``sqrt``-type ``g`` when ``JᵀJ`` is numerically singular:
            ``"warn"`` returns ``g`` of the spectrum with its zero eigenvalues set to 0
            (``-inf`` for log det) for those samples, warns with
            :class:`SingularMetricWarning`, and excludes them from the gradient;
            ``"raise"`` raises ``ValueError``. Any other non-finite value is treated alike.
        rank_tol: eigenvalues at or below it count as zero (default ``k·eps·λ_max``; for
            log det ``(k·eps)²·λ_max``, the same cut-off on the singular values of ``J``).
        check_coupling: test that ``G`` treats samples independently (raise otherwise);
            ``⌈log₄ B⌉ + 1`` extra forward-mode products (:mod:`~..linalg.jacobian`).
        return_info: return a :class:`SpectralEstimate` (standard error 0, ``info`` with
            ``method="exact"``, the ``singular`` samples and ``output``, ``G(z)``
            flattened to ``[B, n]`` with its graph) instead of the value.
    """
    check_singular_options(on_singular, jitter, rank_tol)
    output, chunks = _jacobian(G, z, chunk_size, check_coupling)
    dtype = work_dtype(z.dtype)
    algebra = [c.detach().to(dtype) for c in chunks]
    if fn is SPECTRAL_FUNCTIONS["logdet"]:
        value, W, singular = _logdet_weights(algebra, fn, jitter, on_singular, rank_tol)
    else:
        value, W, singular = _eigh_value_and_weights(gram(algebra, jitter), fn, on_singular,
                                                     rank_tol)
    bad = report_nonfinite(value, singular, fn, on_singular, "exact")
    if bad.any():
        singular = singular | bad
        W = torch.where(bad[:, None, None], torch.zeros_like(W), W)
    if any(c.requires_grad for c in chunks):
        X = _times(algebra, W)
        s = 2 * sum((c.to(dtype) * x).sum((1, 2)) for c, x in zip(chunks, X, strict=True))
        s = first_order_only(s)
        value = value + (s - s.detach())
    if return_info:
        # The forward-mode products computed G(z) on the way: callers that also need it
        # (the reconstruction of maximum likelihood on data) reuse it, graph included.
        info = {"method": "exact", "singular": singular, "output": output}
        return SpectralEstimate(value, torch.zeros_like(value.detach()), info)
    return value
