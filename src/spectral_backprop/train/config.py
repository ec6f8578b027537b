"""Training configurations: small dataclasses, printed and saved as JSON with each run.

A config is a tree of dataclasses: :class:`GANConfig` holds an :class:`R1` and an
:class:`EntropyTerm`, each with its own :class:`Decay`. It is built from a (partial)
nested dict with :meth:`~_Config.from_dict` (missing keys take their defaults), and it
validates itself on construction, raising ``ValueError`` that names the field
(``r1.decay.start must be in [0, 1), got 1.5``). The ``Attributes:`` section of each
class's docstring is also the ``--help`` text of its command-line flag.

A checkpoint stores the config it was written with; resuming with a config that differs
in anything but the fields of ``RESUMABLE`` (how long to run, how often to log, where) is
an error, because the continuation would silently be a different experiment. With a
decaying learning rate or regulariser, ``steps`` is fixed too: the schedule depends on it.

Example:
    >>> config = GANConfig.from_dict({"r1": {"weight": 0.1, "decay": {"shape": "cosine"}}})
    >>> config.r1
    R1(weight=0.1, decay=Decay(shape='cosine', start=0.0, end=1.0))
    >>> config.differences({**config.to_dict(), "r1": {"weight": 0.5}})
    {'r1.decay.shape': ('constant', 'cosine'), 'r1.weight': (0.5, 0.1)}
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from spectral_backprop.models import ARCHITECTURES
from spectral_backprop.models.mlp import ACTIVATIONS
from spectral_backprop.runfiles import write_json
from spectral_backprop.spectral import METHODS
from spectral_backprop.train.targets import TARGETS

__all__ = ["ConfigError", "Decay", "EntropyTerm", "GANConfig", "R1", "ReverseKLConfig",
           "check_estimator", "merge_dicts"]


class ConfigError(ValueError):
    """An invalid config value; ``path`` names its field (``r1.decay.start``)."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path} {problem}" if path else problem)

    def under(self, parent: str) -> ConfigError:
        """The same error, its path prefixed with the field that holds it."""
        return ConfigError(f"{parent}.{self.path}" if self.path else parent, self.problem)


def merge_dicts(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``update``, recursing into dicts present in both.

    Example:
        >>> merge_dicts({"r1": {"weight": 0.1, "decay": {"start": 0.5}}},
        ...             {"r1": {"decay": {"shape": "cosine"}}})
        {'r1': {'weight': 0.1, 'decay': {'start': 0.5, 'shape': 'cosine'}}}
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def _one_of(choices: Collection[str]) -> str:
    choices = tuple(choices)
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def _non_finite(value: Any) -> bool:
    """Whether a setting holds NaN or ±inf anywhere (a number no run can be resumed with:
    NaN never equals itself, and strict JSON writes it as ``null``)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples become lists, as in a saved config.json


@dataclass
class _Node:
    """Base of every config class: built from partial nested dicts, validated on creation.

    ``CHOICES`` maps a string field to its allowed values: the one place where they are
    written, read by the validation and by the command line's ``choices``. A field whose
    default factory is another ``_Node`` class is a nested section: a dict given for it
    is turned into that class (so ``from_dict`` and ``dataclasses.replace`` take dicts).
    """

    CHOICES: ClassVar[dict[str, Collection[str]]] = {}

    @classmethod
    def sections(cls) -> dict[str, type[_Node]]:
        """``{field: class}`` of the nested sections."""
        return {f.name: f.default_factory for f in dataclasses.fields(cls)
                if isinstance(f.default_factory, type) and issubclass(f.default_factory, _Node)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a (partial) dict; unknown keys raise ``ValueError`` naming them."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError("", f"has no field(s) {', '.join(unknown)}: "
                                  f"{cls.__name__} has {', '.join(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        sections = self.sections()
        for f in dataclasses.fields(self):
            if f.name not in sections and _non_finite(getattr(self, f.name)):
                raise ConfigError(f.name, f"must be finite, got {getattr(self, f.name)!r}")
        for name, section in sections.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                try:
                    setattr(self, name, section.from_dict(value))
                except ConfigError as err:
                    raise err.under(name) from None
            elif not isinstance(value, section):
                raise ConfigError(name, f"must be a {section.__name__} or a dict, "
                                        f"got {type(value).__name__}")
        for name, choices in self.CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ConfigError(name, f"must be {_one_of(choices)}, got {value!r}")

    def _check_positive(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")

    def _check_non_negative(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")


@dataclass
class _Config(_Node):
    """A run's settings: saved with the run, compared with a checkpoint's on resume."""

    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"steps", "log_every", "ckpt_every", "progress", "device", "eval_samples"}
    )

    @classmethod
    def upgrade(cls, values: dict[str, Any], onto: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """``values`` with the field names of earlier versions replaced by today's.

        Args:
            values: a (partial) config dict, possibly from an old run.
            onto: the values it will be merged onto (default: the defaults), for
                renamings whose meaning depends on other fields.
        """
        return dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a (partial, possibly old) dict; unknown keys raise ``ValueError``."""
        values = cls.upgrade(values)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_layers(cls, *layers: dict[str, Any] | None):
        """Build from dicts applied in order (defaults, then each layer over the last).

        Each layer is upgraded (:meth:`upgrade`) against the values before it, so that an
        old field name keeps the meaning it had on top of those values.
        """
        values: dict[str, Any] = {}
        for layer in layers:
            if layer:
                values = merge_dicts(values, cls.upgrade(layer, onto=values))
        return cls.from_dict(values)

    def leaves(self) -> dict[str, Any]:
        """``{dotted field name: value}`` of every setting, nested sections flattened."""
        return _leaves(type(self), self.to_dict())

    def describe(self) -> str:
        """One ``name = value`` line per setting, for the start of a run's log."""
        leaves = self.leaves()
        width = max(len(k) for k in leaves)
        lines = [f"{self.__class__.__name__}:"]
        lines += [f"  {k:<{width}} = {v!r}" for k, v in leaves.items()]
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        """Write the config as strict JSON, atomically."""
        write_json(path, self.to_dict(), sort_keys=True)

    def resumable(self) -> frozenset[str]:
        """Fields that may change when resuming (a decaying schedule pins ``steps``)."""
        return self.RESUMABLE

    def differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{setting: (saved value, current value)}`` for the settings outside
        :meth:`resumable` that differ from a saved config, by dotted name.

        The saved dict is upgraded first (:meth:`upgrade`: a run from before a renaming
        compares by today's names), and a setting missing from it (a run from before the
        setting existed) counts as its default, which is what that run used. Values are
        compared as JSON (a tuple saved to ``config.json`` comes back as a list).
        """
        cls = type(self)
        current = _as_json(self.leaves())
        old = _leaves(cls, _as_json(merge_dicts(cls().to_dict(), cls.upgrade(saved))))
        keys = [k for k in sorted(set(current) | set(old))
                if k.split(".")[0] not in self.resumable()]
        return {k: (old.get(k, "<missing>"), current.get(k, "<missing>"))
                for k in keys if current.get(k, "<missing>") != old.get(k, "<missing>")}

    def mismatches(self, saved: dict[str, Any]) -> list[str]:
        """The settings of :meth:`differences`, sorted."""
        return list(self.differences(saved))

    def mismatch_details(self, saved: dict[str, Any], label: str = "checkpoint") -> str:
        """``"setting: <label> old, now new; ..."`` for every setting of :meth:`differences`
        (empty when the configs agree)."""
        return "; ".join(f"{k}: {label} {old!r}, now {new!r}"
                         for k, (old, new) in self.differences(saved).items())


def _leaves(cls: type[_Node], values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    sections = cls.sections()
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in sections and isinstance(value, dict):
            out |= _leaves(sections[key], value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass
class Decay(_Node):
    """How a regulariser's weight decays to 0 over training.

    With ``u = step / steps`` (``step`` 0-based), the factor on the weight is 1 for
    ``u ≤ start``, falls to 0 at ``u = end`` and stays 0 after it::

        linear:  1 − v            cosine:  ½(1 + cos πv),      v = min(1, (u − start)/(end − start))

    (the cosine shape of Loshchilov & Hutter's SGDR, arXiv 1608.03983, without restarts);
    ``constant`` is 1 throughout.

    Why decay: both of the GAN's regularisers trade sharpness for coverage. The
    generator's optimum under ``KL(p_G‖p_data) − β′H[p_G]`` is the tempered
    ``p_data^{1/(1+β′)}``, broader than the data, and an R1-smoothed discriminator cannot
    resolve modes narrower than its smoothness. Strong early, they keep mass on every
    mode while the generator is still moving; letting them go to 0 recovers sharp modes
    at the end. Ending the decay before the learning rate has decayed (``end < 1``)
    leaves a phase of plain GAN training in which the generator can still move.

    Attributes:
        shape: ``constant`` (no decay), ``linear`` or ``cosine``.
        start: fraction of the steps at which the decay begins.
        end: fraction of the steps at which the weight reaches 0; the term is off after it.

    Example:
        >>> decay = Decay("cosine", start=0.5)
        >>> [round(decay.scale(step, 1000), 6) for step in (0, 500, 750, 999)]
        [1.0, 1.0, 0.5, 1e-05]
    """

    CHOICES: ClassVar[dict[str, Collection[str]]] = {"shape": ("constant", "linear", "cosine")}

    shape: str = "constant"
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.start, self.end = float(self.start), float(self.end)
        if not 0.0 <= self.start < 1.0:
            raise ConfigError("start", f"must be in [0, 1), got {self.start}")
        if not self.start < self.end <= 1.0:
            raise ConfigError("end", f"must be in (start, 1] = ({self.start}, 1], "
                                     f"got {self.end}")

    def scale(self, step: int, steps: int) -> float:
        """The factor in [0, 1] on the weight at update ``step`` (0-based) of ``steps``."""
        u = step / steps
        if self.shape == "constant" or u <= self.start:
            return 1.0
        v = min(1.0, (u - self.start) / (self.end - self.start))
        if self.shape == "linear":
            return 1.0 - v
        return 0.5 * (1.0 + math.cos(math.pi * v))


@dataclass
class R1(_Node):
    """The R1 penalty ``γ/2 · E‖∇ₓD(x)‖²`` on real data in the discriminator's loss
    (zero-centred gradient penalty; Mescheder, Geiger & Nowozin 2018, arXiv 1801.04406).

    It keeps D smooth, so that its gradient reaches modes the generator has not yet
    covered.

    Attributes:
        weight: γ; 0: no penalty.
        decay: the decay of γ to 0 over training.
    """

    weight: float = 0.0
    decay: Decay = field(default_factory=Decay)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_non_negative("weight")


# Options of the estimator that the training loop sets itself.
_SET_BY_TRAINING = frozenset({"generator", "return_info"})


def check_estimator(method: str, options: Any, options_field: str = "options") -> None:
    """Refuse a log det estimator that is not registered, options that are not a dict,
    or options that the training loop sets itself (``generator``, ``return_info``).

    Raises:
        ConfigError: naming ``method`` or ``options_field``.
    """
    if method not in METHODS:
        raise ConfigError("method", f"must be {_one_of(sorted(METHODS))}, got {method!r}")
    if not isinstance(options, dict):
        raise ConfigError(options_field, f"must be a dict, got {type(options).__name__}")
    fixed = sorted(set(options) & _SET_BY_TRAINING)
    if fixed:
        raise ConfigError(options_field, f"cannot set {', '.join(fixed)}: the training "
                                         "loop sets it")


@dataclass
class EntropyTerm(_Node):
    """The entropy term ``−β·H[p_G]`` of the generator's loss, ``H[p_G] = H[p_Z] + ½ E_z
    log det JᵀJ`` (Ramesh & LeCun 2018, arXiv 1806.00499, section 4).

    Attributes:
        weight: β; 0 trains a plain GAN.
        batch: latents per step on which H is estimated (a sub-batch, since the log det
            costs k Jacobian-vector products per sample).
        method: ``exact`` or a stochastic estimator of the core library (``lanczos``,
            ``chebyshev``, ``auto``).
        options: options for that estimator (``num_probes``, ``jitter``, ...).
        dtype: precision of the estimate, ``float64`` or ``float32`` (see
            :func:`~spectral_backprop.train.gan.generator_entropy`).
        cap: ``None`` (the entropy itself) or c: each sample's ``½ log det JᵀJ`` is
            clipped at c before averaging, so that the term pushes against contraction
            (collapse) but pays nothing for stretching beyond ``exp(c)`` in volume.
        decay: the decay of β to 0 over training.
    """

    CHOICES: ClassVar[dict[str, Collection[str]]] = {"dtype": ("float64", "float32")}

    weight: float = 0.0
    batch: int = 32
    method: str = "exact"
    options: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    cap: float | None = None
    decay: Decay = field(default_factory=Decay)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_non_negative("weight")
        if self.weight > 0:
            self._check_positive("batch")
        check_estimator(self.method, self.options)


# The flat fields of GANConfig before R1 and EntropyTerm existed, by today's names.
_OLD_ENTROPY = {"entropy_weight": "weight", "entropy_batch": "batch",
                "entropy_method": "method", "entropy_options": "options",
                "entropy_dtype": "dtype", "entropy_cap": "cap"}
_OLD_WINDOW = {"reg_schedule": "shape", "reg_decay_start": "start", "reg_decay_end": "end"}
_OLD_KEYS = {*_OLD_ENTROPY, *_OLD_WINDOW, "r1_weight", "entropy_decay"}


@dataclass
class GANConfig(_Config):
    """A GAN run: non-saturating loss, an optional R1 penalty on D and an optional
    entropy term ``−β·H[p_G]`` on G (:mod:`spectral_backprop.train.gan`).

    Attributes:
        dataset: ``ring``, ``grid``, ``digits``, ``mnist``, ``idx``, ``folder`` or
            ``sprites`` (:func:`~spectral_backprop.data.load_dataset`).
        data_options: options for the loader (``path``, ``num_samples``, ...).
        arch: network pair (:func:`~spectral_backprop.models.build_gan`); ``auto`` picks
            ``dcgan`` for images of side 16 or more, else ``mlp``.
        latent_dim: k; ``None`` picks 2 for 2-D points and 32 for images.
        width: hidden width or base channels (``None``: the architecture's default).
        depth: hidden layers of an MLP (``None``: the architecture's default).
        g_activation: hidden activation of an MLP generator (``None``: ``relu``).
        steps: generator updates.
        batch_size: global batch (split over processes in data-parallel runs).
        d_steps: discriminator updates per generator update.
        lr_g: the generator's Adam learning rate.
        lr_d: the discriminator's Adam learning rate.
        adam_betas: Adam's β₁ and β₂, for both networks.
        lr_schedule: ``constant`` or ``cosine`` (decay of both learning rates to 0 over
            ``steps``; sharpens the modes at the end of training).
        r1: the R1 gradient penalty on real data (:class:`R1`).
        entropy: the entropy term on the generator (:class:`EntropyTerm`).
        ema: decay per step of an exponential moving average of the generator's weights
            (0: none). With ``ema > 0`` the run's generator (what is sampled, analysed
            and loaded) is the average, ``θ̄ ← ema·θ̄ + (1 − ema)·θ`` after each generator
            update (Yazıcı et al. 2019, arXiv 1806.04498): it smooths out the
            oscillation of simultaneous gradient play, which sharpens samples at no cost
            in gradient steps. Normalisation statistics are copied from the live
            generator. The live generator keeps training and is checkpointed beside it.
        seed: seeds model initialisation and every random draw of the run.
        log_every: steps between two records of ``metrics.jsonl``.
        ckpt_every: steps between two checkpoints.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        progress: show a progress bar.

    Runs saved before ``r1`` and ``entropy`` existed used flat fields; :meth:`upgrade`
    reads them with their old meaning (so their checkpoints still resume).
    """

    CHOICES: ClassVar[dict[str, Collection[str]]] = {
        "arch": ARCHITECTURES, "g_activation": tuple(ACTIVATIONS),
        "lr_schedule": ("constant", "cosine"), "device": ("auto", "cpu", "cuda")}

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
    r1: R1 = field(default_factory=R1)
    entropy: EntropyTerm = field(default_factory=EntropyTerm)
    ema: float = 0.0
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    device: str = "auto"
    progress: bool = True

    def resumable(self) -> frozenset[str]:
        decaying = (self.lr_schedule != "constant" or self.r1.decay.shape != "constant"
                    or self.entropy.decay.shape != "constant")
        return self.RESUMABLE - {"steps"} if decaying else self.RESUMABLE

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)
        super().__post_init__()
        self._check_positive("steps", "batch_size", "d_steps", "lr_g", "lr_d", "log_every",
                             "ckpt_every")
        if not 0 <= self.ema < 1:
            raise ConfigError("ema", f"must be in [0, 1), got {self.ema}")
        if self.entropy.weight > 0 and self.entropy.batch > self.batch_size:
            raise ConfigError("entropy.batch", f"({self.entropy.batch}) must not exceed "
                                               f"batch_size ({self.batch_size})")

    @classmethod
    def upgrade(cls, values: dict[str, Any], onto: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """Move the flat fields of earlier versions into ``r1`` and ``entropy``.

        With their old meaning: ``entropy_X`` is ``entropy.X`` and ``r1_weight`` is
        ``r1.weight``; ``reg_schedule``, ``reg_decay_start`` and ``reg_decay_end`` set the
        shape and window of both decays; ``entropy_decay = (start, end)`` gives β its own
        window (with that shape), and ``entropy_decay = None`` makes β's window R1's. A
        window change without ``entropy_decay`` moves β's window along when it was R1's.

        Example:
            >>> GANConfig.upgrade({"entropy_weight": 0.01, "reg_schedule": "cosine",
            ...                    "reg_decay_start": 0.5, "entropy_decay": [0.0, 0.5]})
            {'r1': {'decay': {'shape': 'cosine', 'start': 0.5}},
             'entropy': {'weight': 0.01, 'decay': {'shape': 'cosine', 'start': 0.0, 'end': 0.5}}}
        """
        if not _OLD_KEYS & values.keys():
            return dict(values)
        values = {k: v.to_dict() if isinstance(v, _Node) else v for k, v in values.items()}
        old = {k: v for k, v in values.items() if k in _OLD_KEYS}
        new = {k: v for k, v in values.items() if k not in _OLD_KEYS}
        now = merge_dicts(merge_dicts(cls().to_dict(), onto or {}), new)
        window = {key: old[name] for name, key in _OLD_WINDOW.items() if name in old}
        r1 = {"weight": old["r1_weight"]} if "r1_weight" in old else {}
        if window:
            r1["decay"] = window
        entropy = {key: old[name] for name, key in _OLD_ENTROPY.items() if name in old}
        decay = _old_entropy_window(old, window, now)
        if decay:
            entropy["decay"] = decay
        moved = {k: v for k, v in (("r1", r1), ("entropy", entropy)) if v}
        return merge_dicts(new, moved)


def _old_entropy_window(old: dict[str, Any], window: dict[str, Any], now: dict[str, Any]
                        ) -> dict[str, Any]:
    """β's decay from the flat fields ``old`` (see :meth:`GANConfig.upgrade`)."""
    r1_window = merge_dicts(now["r1"]["decay"], window)
    beta = now["entropy"]["decay"]
    shared = (beta["start"], beta["end"]) == (now["r1"]["decay"]["start"],
                                              now["r1"]["decay"]["end"])
    decay = {"shape": window["shape"]} if "shape" in window else {}
    own = old.get("entropy_decay")
    if own is not None:
        if not (len(own) == 2 and 0.0 <= own[0] < own[1] <= 1.0):
            raise ValueError("entropy_decay must be (start, end) with 0 <= start < end <= 1, "
                             f"got {tuple(own)}")
        if decay.get("shape", beta["shape"]) == "constant":
            raise ValueError("entropy_decay needs reg_schedule linear or cosine (the shape "
                             "of the decay), got constant")
        return decay | {"start": own[0], "end": own[1]}
    if "entropy_decay" in old or (shared and {"start", "end"} & window.keys()):
        decay |= {"start": r1_window["start"], "end": r1_window["end"]}
    return decay


@dataclass
class ReverseKLConfig(_Config):
    """Fitting an invertible generator (k = n = 2) to an unnormalised density.

    Minimises ``KL(p_G ‖ p̃/Z) = E_z[log p_Z(z) − ½ log det JᵀJ − log p̃(G(z))] + log Z``
    (:mod:`spectral_backprop.train.reverse_kl`).

    Attributes:
        target: the density, a name of :data:`~spectral_backprop.train.targets.TARGETS`.
        num_layers: coupling layers of the
            :class:`~spectral_backprop.models.CouplingGenerator`.
        hidden: width of each coupling's conditioner.
        depth: hidden layers of each conditioner.
        mixing: between coupling layers: a fixed random ``rotation`` or ``swap`` halves.
        transform: coupling transform: rational-quadratic ``spline`` or ``affine``.
        bins: spline bins.
        bound: the spline acts on ``[−bound, bound]``, the identity outside.
        steps: Adam steps (the learning rate decays to 0 over them, cosine).
        batch_size: latents per step.
        lr: initial learning rate.
        anneal_steps: T of the tempering of the target (Rezende & Mohamed 2015, arXiv
            1505.05770, Section 6.1): at step t the loss uses ``β_t log p̃`` with
            ``β_t = min(1, anneal_start + t / T)``; 0: no annealing.
        anneal_start: β₀ of the annealing.
        eval_samples: samples for the final reverse KL and effective sample size.
        seed: seeds model initialisation and every random draw of the run.
        log_every: steps between two records of ``metrics.jsonl``.
        ckpt_every: steps between two checkpoints.
        device: ``cpu`` or ``cuda``.
        progress: show a progress bar.
    """

    CHOICES: ClassVar[dict[str, Collection[str]]] = {
        "target": TARGETS, "mixing": ("rotation", "swap"), "transform": ("spline", "affine"),
        "device": ("cpu", "cuda")}

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

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive("num_layers", "hidden", "depth", "steps", "batch_size", "lr",
                             "eval_samples", "log_every", "ckpt_every", "bins", "bound")
        if self.anneal_steps < 0:
            raise ConfigError("anneal_steps", f"must be >= 0, got {self.anneal_steps}")
        if not 0 < self.anneal_start <= 1:
            raise ConfigError("anneal_start", f"must be in (0, 1], got {self.anneal_start}")
