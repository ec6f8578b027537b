"""fit-manifold under torchrun: two processes (gloo, CPU) match one on the global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import torchrun
from spectral_backprop.cli import build_parser
from spectral_backprop.train import read_metrics

ARGS = ["--data", "sphere", "--data-option", "num_samples=400", "--data-option",
        "num_test=100", "--width", "16", "--depth", "2", "--batch-size", "32", "--steps",
        "10", "--warmup", "0.2", "--ramp", "0.2", "--log-every", "1", "--eval-every", "5",
        "--device", "cpu", "--no-progress"]


def _torchrun(nproc: int, out: Path) -> None:
    torchrun(["fit-manifold", *ARGS, "--out", str(out)], nproc)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.usefixtures("one_thread")
def test_two_process_fit_manifold_matches_one_process(tmp_path):
    _torchrun(2, tmp_path / "ddp")
    args = build_parser().parse_args(["fit-manifold", *ARGS, "--out", str(tmp_path / "one")])
    assert args.func(args) == 0
    ddp = read_metrics(tmp_path / "ddp" / "seed_0")
    one = read_metrics(tmp_path / "one" / "seed_0")
    assert [r["step"] for r in ddp] == list(range(1, 11))
    for key in ("loss", "distance"):
        torch.testing.assert_close(torch.tensor([r[key] for r in ddp]),
                                   torch.tensor([r[key] for r in one]), rtol=1e-4, atol=1e-6)
    # the evaluations (after the likelihood term is on) agree too
    for key in ("test_nll", "manifold_distance"):
        a = [r[key] for r in ddp if key in r]
        b = [r[key] for r in one if key in r]
        assert len(a) == 2
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-6)
    params = [torch.load(tmp_path / d / "seed_0" / "checkpoint.pt",
                         weights_only=False)["modules"]
              for d in ("ddp", "one")]
    for net in ("G", "E"):
        for k in params[0][net]:
            torch.testing.assert_close(params[0][net][k], params[1][net][k], rtol=1e-4,
                                       atol=1e-6)
