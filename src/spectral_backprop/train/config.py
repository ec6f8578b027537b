"""Training configurations: plain dataclasses, printed and saved as JSON with each run.

A checkpoint stores the config it was written with; resuming with a config that differs
in anything but the fields of ``RESUMABLE`` (how long to run, how often to log, where) is
an error, because the continuation would silently be a different experiment. With a
decaying learning rate, ``steps`` is fixed too: the schedule depends on it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class _Config:
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"steps", "log_every", "ckpt_every", "progress", "device", "eval_samples"}
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)

    def describe(self) -> str:
        """One ``name = value`` line per field, for the start of a run's log."""
        width = max(len(f.name) for f in dataclasses.fields(self))
        lines = [f"{self.__class__.__name__}:"]
        lines += [f"  {k:<{width}} = {v!r}" for k, v in self.to_dict().items()]
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def resumable(self) -> frozenset[str]:
        """Fields that may change when resuming (a decaying schedule pins ``steps``)."""
        return self.RESUMABLE

    def differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (saved value, current value)}`` for fields outside :meth:`resumable`
        that differ from a saved config.

        A field missing from ``saved`` (a run from before the field existed) counts as
        its default, which is what that run used. Values are compared as JSON (a tuple
        saved to ``config.json`` comes back as a list).
        """
        def as_json(values: dict[str, Any]) -> dict[str, Any]:
            return json.loads(json.dumps(values))

        current = as_json(self.to_dict())
        old = as_json(type(self)().to_dict()) | as_json(saved)
        keys = (set(current) | set(old)) - self.resumable()
        return {k: (old.get(k, "<missing>"), current.get(k, "<missing>"))
                for k in sorted(keys) if current.get(k, "<missing>") != old.get(k, "<missing>")}

    def mismatches(self, saved: dict[str, Any]) -> list[str]:
        """The fields of :meth:`differences`, sorted."""
        return list(self.differences(saved))

    def mismatch_details(self, saved: dict[str, Any], label: str = "checkpoint") -> str:
        """``"field: <label> old, now new; ..."`` for every field of :meth:`differences`
        (empty when the configs agree)."""
        return "; ".join(f"{k}: {label} {old!r}, now {new!r}"
                         for k, (old, new) in self.differences(saved).items())

    def _check_positive(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class GANConfig(_Config):
    """A GAN run: non-saturating loss plus an optional entropy term ``−β·H[p_G]``.

    Attributes:
        dataset: a name of :func:`~spectral_backprop.data.load_dataset`.
        data_options: options for the loader (``path``, ``num_samples``, ...).
        arch: ``auto``, ``mlp`` or ``dcgan`` (:func:`~spectral_backprop.models.build_gan`).
        latent_dim: k; ``None`` picks 2 for 2-D points and 32 for images.
        width, depth: network size (``None``: the architecture's default).
        g_activation: hidden activation of an MLP generator (``None``: ``relu``).
        steps: generator updates.
        batch_size: global batch (split over processes in data-parallel runs).
        d_steps: discriminator updates per generator update.
        lr_g, lr_d, adam_betas: Adam settings.
        r1_weight: γ of the zero-centred gradient penalty on real data,
            ``γ/2 · E‖∇ₓD(x)‖²`` (Mescheder et al. 2018, arXiv 1801.04406); 0: none.
            It keeps D smooth, so that its gradient reaches modes the generator has
            not yet covered.
        lr_schedule: ``constant`` or ``cosine`` (decay of both learning rates to 0 over
            ``steps``; sharpens the modes at the end of training).
        entropy_weight: β; 0 trains a plain GAN.
        reg_schedule: ``constant``, ``linear`` or ``cosine``: how both regularisers, β
            and ``r1_weight``, decay to 0 between the fraction ``reg_decay_start`` of
            training and its end (:func:`~spectral_backprop.train.gan.regularizer_scale`):
            strong early for coverage, gone at the end for sharp modes.
        reg_decay_start: fraction of ``steps`` at which the decay begins.
        reg_decay_end: fraction of ``steps`` at which it reaches 0 (default 1, the end
            of training); after it the run trains a plain GAN.
        entropy_decay: ``None`` (default: β follows R1's window above) or a pair
            ``(start, end)`` of fractions of ``steps``: β alone decays to 0 over this
            window, with the same ``reg_schedule`` shape, while γ keeps its own. The
            entropy term is for coverage early in training; after ``end`` the entropy
            variant trains exactly as the plain GAN does. A window equal to R1's is
            stored as ``None``.
        entropy_batch: latents per step on which ``H`` is estimated (a sub-batch,
            since the log det costs k Jacobian-vector products per sample).
        entropy_method: ``exact`` or a stochastic estimator of the core library.
        entropy_options: options for that estimator (``num_probes``, ``jitter``, ...).
        entropy_dtype: ``float64`` (default) or ``float32``: precision of the entropy
            estimate (see :func:`~spectral_backprop.train.gan.generator_entropy`).
        entropy_cap: ``None`` (default: the entropy itself) or c: each sample's
            ``½ log det JᵀJ`` is clipped at c before averaging, so that the term pushes
            against contraction (collapse) but pays nothing for stretching beyond
            ``exp(c)`` in volume (see :func:`~spectral_backprop.train.gan.generator_entropy`).
        seed: seeds model initialisation and every random draw of the run.
        log_every, ckpt_every: in steps.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: show a progress bar.
    """

    dataset: str = "mnist"
    data_options: dict[str, Any] = field(default_factory=dict)
    arch: str = "auto"
    latent_dim: int | None = None
    width: int | None = None
    depth: int | None = None
    g_activation: str | None = None
    steps: int = 2000
    batch_size: int = 128
    d_steps: int = 1
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adam_betas: tuple[float, float] = (0.5, 0.999)
    lr_schedule: str = "constant"
    r1_weight: float = 0.0
    entropy_weight: float = 0.0
    reg_schedule: str = "constant"
    reg_decay_start: float = 0.0
    reg_decay_end: float = 1.0
    entropy_decay: tuple[float, float] | None = None
    entropy_batch: int = 32
    entropy_method: str = "exact"
    entropy_options: dict[str, Any] = field(default_factory=dict)
    entropy_dtype: str = "float64"
    entropy_cap: float | None = None
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    device: str = "auto"
    progress: bool = True

    def resumable(self) -> frozenset[str]:
        # entropy_decay needs a decaying reg_schedule, so it is covered here too.
        decaying = self.lr_schedule == "cosine" or self.reg_schedule != "constant"
        return self.RESUMABLE - {"steps"} if decaying else self.RESUMABLE

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        self._check_positive("steps", "batch_size", "d_steps", "lr_g", "lr_d", "log_every",
                             "ckpt_every")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.reg_schedule not in ("constant", "linear", "cosine"):
            raise ValueError("reg_schedule must be constant, linear or cosine, "
                             f"got {self.reg_schedule!r}")
        if not 0.0 <= self.reg_decay_start < 1.0:
            raise ValueError(
                f"reg_decay_start must be in [0, 1), got {self.reg_decay_start}")
        if not self.reg_decay_start < self.reg_decay_end <= 1.0:
            raise ValueError("reg_decay_end must be in (reg_decay_start, 1], got "
                             f"{self.reg_decay_end}")
        if self.entropy_decay is not None:
            self.entropy_decay = tuple(self.entropy_decay)
            if self.reg_schedule == "constant":
                raise ValueError("entropy_decay needs reg_schedule linear or cosine (the "
                                 "shape of the decay), got constant")
            if not (len(self.entropy_decay) == 2
                    and 0.0 <= self.entropy_decay[0] < self.entropy_decay[1] <= 1.0):
                raise ValueError("entropy_decay must be (start, end) with "
                                 f"0 <= start < end <= 1, got {self.entropy_decay}")
            if self.entropy_decay == (self.reg_decay_start, self.reg_decay_end):
                # R1's own window: the same run as no separate window, stored the same
                # way so that config comparisons see them as equal.
                self.entropy_decay = None
        if self.entropy_dtype not in ("float32", "float64"):
            raise ValueError(
                f"entropy_dtype must be float32 or float64, got {self.entropy_dtype!r}")
        if self.r1_weight < 0:
            raise ValueError(f"r1_weight must be >= 0, got {self.r1_weight}")
        if self.entropy_weight < 0:
            raise ValueError(f"entropy_weight must be >= 0, got {self.entropy_weight}")
        if self.entropy_weight > 0:
            self._check_positive("entropy_batch")
            if self.entropy_batch > self.batch_size:
                raise ValueError(f"entropy_batch ({self.entropy_batch}) must not exceed "
                                 f"batch_size ({self.batch_size})")


@dataclass
class ReverseKLConfig(_Config):
    """Fitting an invertible generator (k = n = 2) to an unnormalised density.

    Minimises ``KL(p_G ‖ p̃/Z) = E_z[log p_Z(z) − ½ log det JᵀJ − log p̃(G(z))] + log Z``.

    Attributes:
        target: a name of :data:`~spectral_backprop.train.targets.TARGETS`.
        num_layers, hidden, depth, mixing, transform, bins, bound: the
            :class:`~spectral_backprop.models.CouplingGenerator` (``transform`` is
            ``affine`` or ``spline``; ``bins`` and ``bound`` are the spline's).
        steps, batch_size, lr: optimisation (Adam, cosine-decayed learning rate).
        anneal_steps, anneal_start: tempering of the target (Rezende & Mohamed 2015,
            arXiv 1505.05770, Section 6.1): at step t the loss uses ``β_t log p̃`` with
            ``β_t = min(1, anneal_start + t / anneal_steps)``; 0 steps: no annealing.
        eval_samples: samples for the final reverse KL and effective sample size.
        seed, log_every, ckpt_every, device, progress: as in :class:`GANConfig`.
    """

    target: str = "U1"
    # Spline couplings by default: 8 × 128 is within 0.05 nats of the best zuko flow on
    # all of U1–U4, while affine couplings lose U4's lower branch (docs/reverse_kl.md).
    num_layers: int = 8
    hidden: int = 128
    depth: int = 2
    mixing: str = "rotation"
    transform: str = "spline"
    bins: int = 8
    bound: float = 5.0
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    anneal_steps: int = 0
    anneal_start: float = 0.01
    eval_samples: int = 100_000
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    device: str = "cpu"
    progress: bool = True

    def resumable(self) -> frozenset[str]:
        return self.RESUMABLE - {"steps"}  # the cosine schedule is tied to the step count

    def __post_init__(self):
        self._check_positive("num_layers", "hidden", "depth", "steps", "batch_size", "lr",
                             "eval_samples", "log_every", "ckpt_every", "bins", "bound")
        if self.transform not in ("affine", "spline"):
            raise ValueError(f"transform must be 'affine' or 'spline', got {self.transform!r}")
        if self.anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0, got {self.anneal_steps}")
        if not 0 < self.anneal_start <= 1:
            raise ValueError(f"anneal_start must be in (0, 1], got {self.anneal_start}")
