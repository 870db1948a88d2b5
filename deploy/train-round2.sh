#!/usr/bin/env bash
# Model round 2 in one command: 1.1.0's recipe (A) and the radiologist-box
# loss (B) on the same 5 patient-wise folds, the backbone comparison, the paired
# comparison, per-fold calibration, the pointing game, amendment 3's Lite1 run (C),
# the B+C ensemble scored out of fold and the candidates' edge cost, amendments 4
# and 5's D (blocks 8-15 trained), amendment 8's G (D with distillation 1.0),
# the final fit, operating points, region sources and export of the run the
# pre-registered rules pick
# (docs/model-round2/preregistered.md).
# Runs on a GPU when torch sees one (sized for the device tool's 10-minute call;
# not yet run on one: no GPU has been lent to this work)
# and on the CPU otherwise (hours on 2 cores; there the folds of each run go
# side by side, one single-threaded process per core, joined by 'train merge-folds').
# Everything it makes lands in runs/round2/ and, when $OUT is set (the device
# tool's result folder), is copied there too; the manifest records the command.
# Usage: deploy/train-round2.sh [VERSION]   (default 1.4.0: the next after the shipped 1.3.0)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-1.4.0}"
[ -x .venv/bin/goldenhour ] || deploy/bootstrap.sh test
gh=.venv/bin/goldenhour
root=runs/round2
cache="$root/cache-384.pt"
mkdir -p "$root"
common=(--cache-file "$cache" --distill 0.5)
gpu=$(.venv/bin/python -c 'import torch; print(int(torch.cuda.is_available()))')

cv() {  # cv NAME CACHE EXTRA...: the 5 folds of one run
  local name="$1" views="$2"; shift 2
  local args=(--cache-file "$views" --distill 0.5 --no-final)
  if [ "$gpu" = 1 ]; then
    "$gh" train classify --out "$root/$name" "${args[@]}" "$@"
  else
    OMP_NUM_THREADS=1 "$gh" train classify --out "$root/$name-p1" "${args[@]}" --only-folds 0,1,2 "$@" &
    OMP_NUM_THREADS=1 "$gh" train classify --out "$root/$name-p2" "${args[@]}" --only-folds 3,4 "$@"
    wait
    "$gh" train merge-folds --part "$root/$name-p1" --part "$root/$name-p2" --out "$root/$name" --cache-file "$views"
  fi
}

# the cache first (one process writes it, the others read it)
"$gh" train classify --out "$root/cache-only" "${common[@]}" --cache-only
cv a "$cache"
cv b "$cache" --box-loss 0.5
"$gh" train compare-runs --run "$root/a" --run "$root/b" --label "A: 1.1.0's recipe" \
  --label "B: + box loss 0.5" --out "$root/round2.md"
for run in a b; do
  "$gh" train calibrate-folds --run "$root/$run" --cache-file "$cache"
  "$gh" train evaluate-localisation --run "$root/$run"
done
"$gh" train compare --backbones efficientnet-lite0,efficientnet-lite1,efficientnet-lite2 --size 384 \
  --views 2 --epochs 8 --out "$root/backbones"
pick=$(.venv/bin/python -m training.round2_rule "$root/a" "$root/b")
recipe=(); [ "$pick" = b ] && recipe=(--box-loss 0.5)
echo "pre-registered rule picks run $pick"

# amendment 3: Lite1 with the box loss (C) on the same folds, and the B+C ensemble
lite1=(--backbone efficientnet-lite1 --cut -1)
"$gh" train classify --out "$root/cache-only-lite1" --cache-file "$root/cache-384-lite1.pt" --distill 0.5 \
  "${lite1[@]}" --cache-only
cv c "$root/cache-384-lite1.pt" --box-loss 0.5 "${lite1[@]}"
"$gh" train calibrate-folds --run "$root/c" --cache-file "$root/cache-384-lite1.pt"
"$gh" train evaluate-localisation --run "$root/c"
"$gh" train ensemble-oof --run "$root/b" --run "$root/c" --out "$root/e"
"$gh" train compare-runs --run "$root/b" --run "$root/c" --run "$root/e" --label "B: Lite0 + box loss" \
  --label "C: Lite1 + box loss" --label "E: B and C averaged" --out "$root/round3.md"
"$gh" train edge-cost | tee "$root/edge-cost.txt"
echo "amendment 3's rule (AUC and pointing; the edge budget is edge-cost.txt) picks run" \
  "$(.venv/bin/python -m training.round3_rule "$root/b" "$root/c")"

# amendments 4 and 5: B's recipe with blocks 8-15 trained (D), against B on all 5 folds
cut8="$root/cache-384-cut8.pt"
"$gh" train classify --out "$root/cache-only-cut8" --cache-file "$cut8" --distill 0.5 --cut 8 --cache-only
cv d "$cut8" --box-loss 0.5 --cut 8
"$gh" train calibrate-folds --run "$root/d" --cache-file "$cut8"
"$gh" train evaluate-localisation --run "$root/d"
"$gh" train compare-runs --run "$root/b" --run "$root/d" --label "B: 1.2.1's recipe" \
  --label "D: B with blocks 8-15 trained" --out "$root/round4.md"
if [ "$pick" = b ] && [ "$(.venv/bin/python -m training.round5_rule "$root/b" "$root/d")" = d ]; then
  pick=d recipe=(--box-loss 0.5 --cut 8) cache="$cut8"
fi
echo "amendment 5's rule leaves run $pick"

# amendment 8: D with the teacher's weight doubled (G), against D on all 5 folds
cv g "$cut8" --box-loss 0.5 --cut 8 --distill 1.0
"$gh" train evaluate-localisation --run "$root/g"
"$gh" train compare-runs --run "$root/d" --run "$root/g" --label "D: 1.3.0's recipe" \
  --label "G: D with distillation 1.0" --out "$root/round8.md"
if [ "$pick" = d ] && [ "$(.venv/bin/python -m training.round3_rule "$root/d" "$root/g")" = c ]; then
  pick=g recipe=(--box-loss 0.5 --cut 8 --distill 1.0)
fi
echo "amendment 8's rule leaves run $pick"
common=(--cache-file "$cache" --distill 0.5)
"$gh" train classify --out "$root/$pick" "${common[@]}" "${recipe[@]}" --final-only
"$gh" train operating-points --run "$root/$pick" --specificity 0.90 --specificity-for Pneumothorax=0.95
"$gh" train evaluate --run "$root/$pick"
"$gh" train region-sources --run "$root/$pick"
cp "$root/round2.md" "$root/round3.md" "$root/round4.md" "$root/round8.md" "$root/$pick/"  # the card includes the run's comparisons
"$gh" train export --run "$root/$pick" --name chest-effnetlite0 --version "$version"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/models" "$OUT/runs"
  cp -r models/manifest.json models/chest-effnetlite0 "$OUT/models/"
  find "$root" -maxdepth 2 \( -name '*.md' -o -name '*.json' -o -name '*.csv' -o -name '*.png' \) \
    -exec cp --parents {} "$OUT/runs/" \;
fi
