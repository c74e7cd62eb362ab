#!/usr/bin/env bash
# Generator output evaluated end to end with the product's own commands, as a researcher would:
# sample a class-balanced set from a trained run, evaluate it against the real training images
# (distribution metrics, per class, downstream utility on the held-out test images) and audit it
# for memorisation against the training images, calibrated on the held-out ones.
#
#   benchmarks/end_to_end_pneumonia.sh WORKSPACE RUN OUT [N_PER_CLASS] [SAMPLER] [STEPS]
#
# WORKSPACE holds the dataset "pneumoniamnist" (ingested from ../shared/data/pneumoniamnist_balanced_28.npz,
# e.g. by benchmarks/bench_sample_quality.py --workspace WORKSPACE) and RUN, a class-conditional run
# trained on its train split (the ddpm-28-cond-cpu preset). Every step prints its --json result;
# OUT/{samples,evaluation,audit} hold the files (evaluation.html, audit report.html).
set -euo pipefail
WS=${1:?workspace}; RUN=${2:?run id}; OUT=${3:?output folder}
PER_CLASS=${4:-500}; SAMPLER=${5:-dpmpp2m}; STEPS=${6:-20}
cd "$(dirname "$0")/.."
R=".venv/bin/radsynth"
mkdir -p "$OUT"
classes=$(for _ in $(seq "$PER_CLASS"); do printf '0 1 '; done)

echo "== sample: $((2 * PER_CLASS)) images, $SAMPLER $STEPS steps, classes alternating 0 / 1"
/usr/bin/time -f "sample: %e s wall, %M kB max RSS" \
  $R sample --workspace "$WS" --run "$RUN" --n $((2 * PER_CLASS)) --sampler "$SAMPLER" --steps "$STEPS" \
  --class $classes --seed 0 --format npz --out "$OUT/samples" --quiet --json | tail -n 1 | cut -c1-400
GEN="$OUT/samples/synthetic_images.npz"

echo "== evaluate: against pneumoniamnist:train, floor from :test, utility on :test"
/usr/bin/time -f "evaluate: %e s wall, %M kB max RSS" \
  $R evaluate --workspace "$WS" --real pneumoniamnist:train --generated "$GEN" --holdout pneumoniamnist:test \
  --utility --utility-epochs 5 --out "$OUT/evaluation" --quiet --json > "$OUT/evaluation.json.txt"
tail -n 1 "$OUT/evaluation.json.txt" | cut -c1-300

echo "== audit: nearest training images, calibrated on :test"
/usr/bin/time -f "audit: %e s wall, %M kB max RSS" \
  $R audit --workspace "$WS" --generated "$GEN" --train pneumoniamnist:train --holdout pneumoniamnist:test \
  --out "$OUT/audit" --quiet --json > "$OUT/audit.json.txt"
tail -n 1 "$OUT/audit.json.txt" | cut -c1-300
