r"""Resource guards: refuse an allocation that cannot fit, before making it.

An estimator whose size follows its options (a Lanczos basis ``B·c·m·k``, a Jacobian
``B·n·k``, probes ``B·k·p``) checks the bytes it is about to hold,

.. math::  \text{bytes} = \text{numel} \times \text{itemsize} \times \text{copies},

against what the device can still give: on the CPU (Linux) ``MemAvailable + SwapFree``
of ``/proc/meminfo`` (memory the kernel can hand out without killing a process; the
definition of ``MemAvailable`` in the Linux kernel's ``Documentation/filesystems/proc``),
on CUDA the driver's free memory plus what PyTorch's caching allocator holds unused.
Above it, :class:`MemoryError` names the request, its size and the option that sets it,
instead of a crash deep in an allocator (or the out-of-memory killer). Where the free
memory cannot be read (other systems), nothing is refused. Requests below
``UNCHECKED_BYTES`` (16 MiB) are not checked at all: reading the free memory costs a
file read on the CPU and a device synchronisation on CUDA, on every training step.

Example:
    >>> check_allocation(10, torch.float64, "cpu", what="ten numbers")  # fits
"""

from __future__ import annotations

import torch

__all__ = ["UNCHECKED_BYTES", "available_bytes", "check_allocation"]

UNCHECKED_BYTES = 2**24


def _meminfo_bytes(*fields: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    except (OSError, ValueError, IndexError):
        return None
    if not all(name in values for name in fields):
        return None
    return sum(values[name] for name in fields)


def available_bytes(device: torch.device | str | None) -> int | None:
    """Bytes the device can still allocate, or ``None`` when that cannot be read."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cpu":
        return _meminfo_bytes("MemAvailable", "SwapFree")
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    return None


def check_allocation(
    numel: float,
    dtype: torch.dtype,
    device: torch.device | str | None,
    *,
    what: str,
    fix: str = "",
    copies: float = 1.0,
) -> None:
    """Raise :class:`MemoryError` if ``numel·itemsize·copies`` bytes cannot fit on ``device``.

    Args:
        numel: elements of the largest array about to be made (a float, so that an
            absurd size does not overflow first).
        dtype: its dtype.
        device: where it lives.
        what: what it is, for the message.
        fix: the option that sets the size, for the message.
        copies: arrays of that size held at the same time.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = float(numel) * itemsize * copies
    if need < UNCHECKED_BYTES:
        return
    have = available_bytes(device)
    if have is None or need <= have:
        return
    raise MemoryError(
        f"{what} needs {_format_bytes(need)} but {torch.device(device or 'cpu')} has "
        f"{_format_bytes(have)} available. {fix}".rstrip()
    )


def _format_bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.3g} {units[i]}"
