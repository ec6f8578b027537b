"""Two-process data-parallel training (gloo, CPU) matches one process on the global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import torchrun
from spectral_backprop.cli import build_parser
from spectral_backprop.cli.train import config_from_args
from spectral_backprop.train import read_metrics, train_gan

ARGS = ["--dataset", "ring", "--data-option", "num_samples=2000", "--width", "16", "--depth",
        "2", "--batch-size", "32", "--steps", "12", "--lr-g", "1e-3", "--lr-d", "1e-3",
        "--entropy-weight", "0.1", "--entropy-batch", "8", "--log-every", "1",
        "--device", "cpu", "--no-progress"]


def _torchrun(nproc: int, out: Path) -> None:
    torchrun(["train", *ARGS, "--out", str(out)], nproc)


def _single_process(out: Path) -> None:
    # The same command line, run in this process (saves a third interpreter start-up).
    args = build_parser().parse_args(["train", *ARGS, "--out", str(out)])
    train_gan(config_from_args(args), out)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.usefixtures("one_thread")
def test_two_process_gloo_matches_one_process(tmp_path):
    _torchrun(2, tmp_path / "ddp")
    _single_process(tmp_path / "single")
    ddp, single = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert [r["step"] for r in ddp] == list(range(1, 13))
    for key in ("d_loss", "g_loss", "entropy"):
        a = torch.tensor([r[key] for r in ddp])
        b = torch.tensor([r[key] for r in single])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    params = [torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["modules"]["G"]
              for d in ("ddp", "single")]
    for k in params[0]:
        torch.testing.assert_close(params[0][k], params[1][k], rtol=1e-4, atol=1e-5)
