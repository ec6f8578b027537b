#!/usr/bin/env bash
# Mode coverage (DESIGN.md section 4): plain GAN vs entropy-regularised GAN, same budget,
# 5 seeds each, on the 25-mode grid and the 8-mode ring. Budgets and beta are the
# defaults of `spectral-backprop modes` (spectral_backprop.train.modes.PROTOCOL).
# One thread per process: on a shared CPU, spinning OpenMP threads slow small nets ~40x.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
OUT=${OUT:-runs}
python -m spectral_backprop modes --dataset grid --seeds 5 --out "$OUT/modes_grid" --no-progress --resume &
python -m spectral_backprop modes --dataset ring --seeds 5 --out "$OUT/modes_ring" --no-progress --resume &
wait
