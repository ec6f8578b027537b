"""Recompute ``eval.json`` of every finished run of a ``spectral-backprop modes`` folder
from its checkpoint, with the current :func:`~spectral_backprop.analysis.modes.mode_coverage`
(same latents: ``eval_seed`` of the run's seed). Used to add the ``spread`` figure to runs made
before it existed; the other figures must come out unchanged, and are checked.

Usage: ``python experiments/modes_reevaluate.py runs/modes_grid_long``, then
``spectral-backprop modes ... --resume`` to rewrite the summary.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from spectral_backprop.analysis.modes import evaluate_generator
from spectral_backprop.studies.modes import eval_seed
from spectral_backprop.train import load_gan_generator


def main() -> None:
    for folder in map(Path, sys.argv[1:]):
        for run in sorted(folder.glob("*/seed*")):
            eval_path = run / "eval.json"
            if not eval_path.exists():
                continue
            try:
                G, config, data = load_gan_generator(run)
            except ValueError as err:  # e.g. a pilot saved under older config field names
                print(f"{run}: skipped ({err})")
                continue
            new = evaluate_generator(G, 2, data.modes, data.mode_std, seed=eval_seed(config.seed))
            old = json.loads(eval_path.read_text())
            for key, value in old.items():
                same = (value == new[key]) or (math.isnan(value) and math.isnan(new[key]))
                if not same:
                    raise SystemExit(f"{run}: {key} changed from {value} to {new[key]}")
            eval_path.write_text(json.dumps(new) + "\n")
            print(f"{run}: {new}")


if __name__ == "__main__":
    main()
