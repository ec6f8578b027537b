r"""Random probe vectors for Hutchinson-type trace estimators.

For probes ``ε`` with ``E[εεᵀ] = P`` (``P`` the orthogonal projector onto the
complement of an optional orthonormal basis ``V``, ``P = I`` without one),

.. math::  \operatorname{tr}(P A P) = E_\varepsilon[\varepsilon^\top A \varepsilon]
           \approx \frac1p \sum_{j=1}^p \varepsilon_j^\top A \varepsilon_j

(Hutchinson 1989; Girard 1989). Kinds:

* ``"hadamard"`` (the estimators' default): ``D h_j``, ``D`` a random ±1 diagonal and
  ``h_j`` the columns of the Sylvester–Hadamard matrix of order ``K = 2^⌈log₂ k⌉`` (its
  first ``k`` rows) in random order, then projected. Each probe alone is exactly
  Rademacher; together they are drawn *without replacement* from ``K`` vectors with
  ``Σ_{j≤K} ε_j ε_jᵀ = K·P``, so the ``K`` forms sum to ``K·tr(PAP)`` exactly;
* ``"rademacher"``: i.i.d. ±1 entries (then projected), the smallest variance among
  i.i.d. probes, ``2 Σ_{i≠j} A_ij²`` without a basis;
* ``"gaussian"``: i.i.d. ``N(0, 1)`` entries (then projected), variance ``2‖PAP‖_F²``;
* ``"orthogonal"``: ``√d`` times orthonormal columns of a Haar-random basis of the
  ``d``-dimensional range of ``P``, drawn without replacement from those ``d``
  (variance ``2d/(d+2)·(‖PAP‖_F² − tr(PAP)²/d)`` per probe, which loses Rademacher's
  free diagonal).

**Without replacement** (``"hadamard"``, ``"orthogonal"``; a population of ``K`` or ``d``
probes): the forms ``Y_j`` are exchangeable and their population sum is fixed, so
``Cov(Y_i, Y_j) = −σ²/(K−1)`` and the mean of ``p`` has variance
``σ²/p · (K−p)/(K−1)`` — never more than i.i.d. probes of the same marginal, and zero at
``p = K``. Its unbiased estimate is the finite-population one, ``s²/p · (1 − p/K)``
(:func:`finite_population_factor`; Cochran 1977, *Sampling Techniques*, §2.5). The
same holds for any quadratic form in the probes, such as a gradient's surrogate.
:class:`ProbeStream` hands them out round after round.

Every sample of a batch gets its own probes; a ``torch.Generator`` makes them repeatable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .memory import check_allocation

__all__ = ["PROBE_KINDS", "ProbeStream", "finite_population_factor", "probe_population",
           "probes_to_match", "project_out", "sample_probes"]

PROBE_KINDS = ("hadamard", "rademacher", "gaussian", "orthogonal")


def project_out(X: Tensor, basis: Tensor | None) -> Tensor:
    """``(I − V Vᵀ) X`` per sample for ``X[B, k, p]`` and orthonormal ``V[B, k, r]``."""
    if basis is None or basis.shape[-1] == 0:
        return X
    return X - basis @ (basis.mT @ X)


def probe_population(kind: str, k: int, deflated: int = 0) -> int | None:
    """How many probes ``kind`` draws without replacement (``None``: i.i.d. probes).

    ``K = 2^⌈log₂ k⌉`` for ``"hadamard"``, ``d = k − deflated`` for ``"orthogonal"``.
    """
    if kind == "hadamard":
        return 1 << (k - 1).bit_length()
    if kind == "orthogonal":
        return k - deflated
    return None


def finite_population_factor(drawn: int, population: int | None) -> float:
    """``1 − p/K``: the variance of a mean of ``p`` probes drawn without replacement from
    ``K`` is ``(1 − p/K)`` times the i.i.d. formula ``s²/p`` (module docstring); 1 for
    i.i.d. probes."""
    return 1.0 if population is None else max(0.0, 1.0 - drawn / population)


def probes_to_match(iid: float, population: int | None) -> float:
    """Probes drawn without replacement from ``K`` whose standard error matches ``iid``
    i.i.d. probes of the same marginal: ``s²(1 − p/K)/p = s²/p_iid`` gives
    ``p = 1/(1/p_iid + 1/K)`` (never more than ``K``); ``iid`` for i.i.d. kinds."""
    return iid if population is None else 1.0 / (1.0 / iid + 1.0 / population)


def _hadamard_columns(signs: Tensor, columns: Tensor, size: int) -> Tensor:
    """``D h_c`` for columns ``c[B, num]`` of the Sylvester–Hadamard matrix of order
    ``size`` (a power of 2), its first ``k`` rows: ``[B, k, num]``.

    Entry ``(i, c)`` of the Sylvester matrix is ``(−1)^{popcount(i & c)}``.
    """
    k = signs.shape[-1]
    rows = torch.arange(k, dtype=torch.int32, device=columns.device)
    bits = rows[None, :, None] & columns.to(torch.int32)[:, None, :]
    width = (size - 1).bit_length()  # the indices have this many bits
    shift = 1 << max(0, (width - 1).bit_length() - 1)  # halves that cover them
    while shift:  # fold the bits onto bit 0 in place: its parity is the popcount's
        bits ^= bits >> shift
        shift >>= 1
    bits &= 1
    bits *= -2
    bits += 1  # ±1, in place
    return bits.to(signs.dtype).mul_(signs[..., None])


class ProbeStream:
    """The probes of one estimate, handed out round after round.

    For ``"hadamard"`` and ``"orthogonal"`` every call continues the same draw without
    replacement (at most :attr:`population` probes in all, which make the estimate
    exact); for the i.i.d. kinds every call draws afresh.

    Args:
        batch, k: samples and dimension.
        kind: one of :data:`PROBE_KINDS`.
        basis: optional orthonormal ``V[B, k, r]`` whose span the probes avoid.
        generator: source of randomness (on the probes' device).
        dtype, device: of the probes.
    """

    def __init__(self, batch: int, k: int, kind: str, *, basis: Tensor | None = None,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        if kind not in PROBE_KINDS:
            raise ValueError(f"probes must be one of {', '.join(PROBE_KINDS)}; got {kind!r}")
        if basis is not None and basis.shape[-1] >= k:
            raise ValueError(f"the deflation basis spans all k={k} dimensions: nothing left "
                             "to probe")
        self.batch, self.k, self.kind, self.basis = batch, k, kind, basis
        self.generator, self.dtype, self.device = generator, dtype, device
        self.population = probe_population(kind, k, 0 if basis is None else basis.shape[-1])
        self.drawn = 0
        self._haar: Tensor | None = None  # "orthogonal": the whole scaled basis
        self._signs: Tensor | None = None  # "hadamard": D[B, k] and the column order
        self._perm: Tensor | None = None

    @property
    def remaining(self) -> int | float:
        """Probes left to draw (``inf`` for i.i.d. kinds)."""
        return math.inf if self.population is None else self.population - self.drawn

    def draw(self, num: int) -> Tensor:
        """The next ``num`` probes, ``Tensor[B, k, num]``."""
        _check_count(num)
        if num > self.remaining:
            raise ValueError(f"{num} more {self.kind} probes asked for, {self.remaining} "
                             f"left of {self.population} (drawn without replacement)")
        B, k, kind = self.batch, self.k, self.kind
        # The probes, and for "hadamard" two int32 arrays of the same shape.
        check_allocation(B * k * num, self.dtype, self.device, copies=3,
                         what=f"probes [B={B}, k={k}, num_probes={num}]",
                         fix="Lower num_probes or the batch.")
        lo, self.drawn = self.drawn, self.drawn + num
        if kind == "orthogonal":
            if self._haar is None:
                self._haar = _haar_basis(B, k, self.basis, self.generator, self.dtype,
                                         self.device)
            return self._haar[..., lo:lo + num]
        if kind == "hadamard":
            if self._signs is None:
                self._signs = _rademacher((B, k), self.generator, self.dtype, self.device)
                # A uniform random order of the K columns (float64 keys: ties negligible).
                self._perm = torch.rand(B, self.population, generator=self.generator,
                                        dtype=torch.float64, device=self.device).argsort(-1)
            columns = self._perm[:, lo:lo + num]
            return project_out(_hadamard_columns(self._signs, columns, self.population),
                               self.basis)
        if kind == "gaussian":
            eps = torch.randn((B, k, num), generator=self.generator, dtype=self.dtype,
                              device=self.device)
        else:
            eps = _rademacher((B, k, num), self.generator, self.dtype, self.device)
        return project_out(eps, self.basis)


def _check_count(num: object) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num!r}")


def _rademacher(shape: tuple, generator, dtype, device) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def _haar_basis(batch: int, k: int, basis: Tensor | None, generator, dtype, device) -> Tensor:
    """``√d`` times a Haar-random orthonormal basis ``[B, k, d]`` of ``range(I − VVᵀ)``."""
    rank = k - (0 if basis is None else basis.shape[-1])
    check_allocation(batch * k * rank, dtype, device, copies=3,
                     what=f"an orthogonal probe basis [B={batch}, k={k}, {rank}]",
                     fix="Lower the batch, or use probes='hadamard'.")
    # QR of a projected Gaussian block: a Haar-distributed orthonormal basis of a random
    # rank-dimensional subspace of range(P); scaling by √rank makes E[εεᵀ] = P.
    Z = torch.randn(batch, k, rank, generator=generator, dtype=dtype, device=device)
    Q, R = torch.linalg.qr(project_out(Z, basis))
    # Fix QR's sign ambiguity so the distribution is exactly Haar.
    signs = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    Q = Q * torch.where(signs == 0, torch.ones_like(signs), signs)[..., None, :]
    # Project again: QR leaves rounding-size components along V.
    return project_out(Q, basis) * math.sqrt(rank)


def sample_probes(
    batch: int,
    k: int,
    num: int,
    kind: str = "hadamard",
    *,
    basis: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Probes ``ε[B, k, num]`` with ``E[εεᵀ] = I − VVᵀ`` for each sample.

    So ``(1/p) Σ_j ε_jᵀ A ε_j`` estimates ``tr(PAP)`` without bias (Hutchinson 1989).
    For the kinds drawn without replacement, ``num`` beyond their population stacks
    independent draws (use :class:`ProbeStream` to continue one draw instead).

    Args:
        batch: number of samples ``B``.
        k: dimension.
        num: probes per sample.
        kind: one of :data:`PROBE_KINDS`.
        basis: optional orthonormal ``V[B, k, r]`` whose span the probes avoid.
        generator: source of randomness (on the probes' device).
        dtype, device: of the result.

    Returns:
        ``Tensor[B, k, num]``.

    Example:
        >>> eps = sample_probes(1, 4, 4, "orthogonal", generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(eps[0] @ eps[0].T / 4, torch.eye(4), atol=1e-6)
        True
    """
    _check_count(num)
    blocks, left = [], num
    while left:
        stream = ProbeStream(batch, k, kind, basis=basis, generator=generator, dtype=dtype,
                             device=device)
        blocks.append(stream.draw(min(left, stream.remaining)))
        left -= blocks[-1].shape[-1]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, -1)
