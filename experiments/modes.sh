#!/usr/bin/env bash
# Mode coverage (DESIGN.md section 4): plain GAN vs entropy-regularised GAN, same budget,
# 5 seeds each, on the 25-mode grid and the 8-mode ring (docs/training.md).
#
# Long budget = the defaults of `spectral-backprop modes` (grid 20,000 steps, ring 10,000;
# spectral_backprop.train.modes.PROTOCOL). The grid seeds are split over two processes
# and summarised at the end (finished runs are not retrained). The short budget (grid
# 5,000, ring 3,000 steps) is the first set of runs in the docs.
# One thread per process: on a shared CPU, spinning OpenMP threads slow small nets ~40x.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
OUT=${OUT:-runs}
M="python -m spectral_backprop modes --no-progress --resume"

$M --dataset grid --seeds 3 --out "$OUT/modes_grid_long" &
$M --dataset grid --first-seed 3 --seeds 5 --out "$OUT/modes_grid_long" &
$M --dataset ring --seeds 5 --out "$OUT/modes_ring_long" &
wait
$M --dataset grid --seeds 5 --out "$OUT/modes_grid_long"   # summary of all 5 seeds

$M --dataset grid --seeds 5 --steps 5000 --out "$OUT/modes_grid" &
$M --dataset ring --seeds 5 --steps 3000 --out "$OUT/modes_ring" &
wait
python experiments/modes_table.py "$OUT/modes_grid_long" "$OUT/modes_ring_long" \
    "$OUT/modes_grid" "$OUT/modes_ring"
