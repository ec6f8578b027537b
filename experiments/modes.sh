#!/usr/bin/env bash
# Mode coverage (VEEGAN / PacGAN protocol): plain GAN vs entropy-regularised GAN, same budget,
# 5 seeds each, on the 25-mode grid and the 8-mode ring (docs/training.md).
#
# Grid = the defaults of `spectral-backprop modes` (20,000 steps, R1 gamma 0.1 decayed to 0
# over the second half, beta 0.01 decayed to 0 over the first half;
# src/spectral_backprop/studies/configs/modes_grid.json), and the same at 15,000 steps.
# "grid, beta over the whole run" = the previous grid protocol (beta 0.003, decayed with R1),
# at widths 128 and 400 ("width 400" = both networks 400 wide, PacGAN's generator).
# "grid, no R1" = the first protocol (beta 0.03 constant, no R1), at 20,000 and 5,000 steps.
# Ring = the defaults (10,000 steps, beta 0.03) and a 3,000-step budget.
# Seeds are split over two processes and summarised at the end (finished runs are reused).
# One thread per process: on a shared CPU, spinning OpenMP threads slow small nets ~40x.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
OUT=${OUT:-runs}
M="python -m spectral_backprop modes --no-progress --resume"
NO_R1="--r1-weight 0 --r1-decay-shape constant --r1-decay-start 0 --entropy-weight 0.03"
NO_R1="$NO_R1 --entropy-decay-shape constant --entropy-decay-end 1"
WHOLE="--entropy-weight 0.003 --entropy-decay-start 0.5 --entropy-decay-end 1"  # beta decays with R1

$M --dataset grid --seeds 3 --out "$OUT/modes_grid_r1_early" &
$M --dataset grid --first-seed 3 --seeds 5 --out "$OUT/modes_grid_r1_early" &
wait
$M --dataset grid --seeds 5 --out "$OUT/modes_grid_r1_early"   # summary of all 5 seeds

$M --dataset grid --seeds 3 --steps 15000 --out "$OUT/modes_grid_r1_early_15k" &
$M --dataset grid --first-seed 3 --seeds 5 --steps 15000 --out "$OUT/modes_grid_r1_early_15k" &
wait
$M --dataset grid --seeds 5 --steps 15000 --out "$OUT/modes_grid_r1_early_15k"

$M --dataset grid --seeds 3 --out "$OUT/modes_grid_r1" $WHOLE &
$M --dataset grid --first-seed 3 --seeds 5 --out "$OUT/modes_grid_r1" $WHOLE &
wait
$M --dataset grid --seeds 5 --out "$OUT/modes_grid_r1" $WHOLE

$M --dataset grid --seeds 3 --out "$OUT/modes_grid_long" $NO_R1 &
$M --dataset grid --first-seed 3 --seeds 5 --out "$OUT/modes_grid_long" $NO_R1 &
$M --dataset ring --seeds 5 --out "$OUT/modes_ring_long" &
wait
$M --dataset grid --seeds 5 --out "$OUT/modes_grid_long" $NO_R1

$M --dataset grid --seeds 3 --width 400 --out "$OUT/modes_grid_r1_w400" $WHOLE &
$M --dataset grid --first-seed 3 --seeds 5 --width 400 --out "$OUT/modes_grid_r1_w400" $WHOLE &
wait
$M --dataset grid --seeds 5 --width 400 --out "$OUT/modes_grid_r1_w400" $WHOLE

$M --dataset grid --seeds 5 --steps 5000 --out "$OUT/modes_grid" $NO_R1 &
$M --dataset ring --seeds 5 --steps 3000 --out "$OUT/modes_ring" &
wait
python experiments/modes_table.py "$OUT/modes_grid_r1_early" "$OUT/modes_grid_r1_early_15k" \
    "$OUT/modes_grid_r1" "$OUT/modes_grid_r1_w400" \
    "$OUT/modes_grid_long" "$OUT/modes_ring_long" "$OUT/modes_grid" "$OUT/modes_ring"
python experiments/modes_figure.py "$OUT/modes_grid_r1_early" --seed 0 --out docs/figures
python experiments/modes_figure.py "$OUT/modes_grid_r1" --seed 0 --out docs/figures
python experiments/modes_figure.py "$OUT/modes_grid_r1_w400" --seed 0 --out docs/figures
python experiments/grid_logdet_map.py "$OUT/modes_grid_r1_early" --seed 0 --out docs/figures
python experiments/grid_logdet_map.py "$OUT/modes_grid_r1" --seed 0 --out docs/figures
