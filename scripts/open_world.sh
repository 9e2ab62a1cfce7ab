#!/usr/bin/env bash
# The open-world round trip (docs/open-world.md): the shipped toy model copied
# WITHOUT its world.json is a model the project knows nothing about, and the toy world exported
# as MLLMU-Bench files and as a photo folder is data a user brings. Every number of that section
# comes from this script (17-25 minutes on 2 CPU cores). Outputs: runs/open/, results/open_*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
R=runs/open
rm -rf "$R" && mkdir -p "$R"
python -m core world --seed 0 --export "$R/mllmu" --export-folder "$R/photos" --folder-people 3 --renders 4 --no-facts
cp -r assets/toy-llava "$R/foreign" && rm "$R/foreign/world.json"
M="--model $R/foreign"
# 1. MLLMU files: fit with the default (workbench) preset, tuned; evaluate vanilla, eraser and the retain-only twin
python -m core fit $M --data "$R/mllmu" --out "$R/eraser-mllmu"
python -m core evaluate $M --data "$R/mllmu" --json results/open_vanilla.json
python -m core evaluate $M --data "$R/mllmu" --eraser "$R/eraser-mllmu" --json results/open_eraser.json
python -m core evaluate --model assets/toy-llava-retain-only --data "$R/mllmu" --json results/open_retain_only.json
# 2. A photo folder: 3 people of the forget split, 4 fresh renders and the name each, no facts
python -m core fit $M --forget-dir "$R/photos" --data "retain=$R/mllmu/retain_90.parquet" \
  --data "real=$R/mllmu/real.parquet" --out "$R/eraser-photos"
ids=$(ls "$R/photos" | paste -sd, -)
python -m core evaluate $M --data "$R/mllmu" --forget "$ids" --json results/open_photos_vanilla.json
python -m core evaluate $M --data "$R/mllmu" --forget "$ids" --eraser "$R/eraser-photos" \
  --json results/open_photos_eraser.json
# 3. The same two fits with one gate over layers 0-3 read before the steered layer, as the shipped eraser reads
#    it (--joint-gate; the tuner then picks the steered layer and strength as before)
python -m core fit $M --data "$R/mllmu" --joint-gate 0,1,2,3 --out "$R/eraser-mllmu-joint"
python -m core evaluate $M --data "$R/mllmu" --eraser "$R/eraser-mllmu-joint" --json results/open_eraser_joint.json
python -m core fit $M --forget-dir "$R/photos" --data "retain=$R/mllmu/retain_90.parquet" \
  --data "real=$R/mllmu/real.parquet" --joint-gate 0,1,2,3 --out "$R/eraser-photos-joint"
python -m core evaluate $M --data "$R/mllmu" --forget "$ids" --eraser "$R/eraser-photos-joint" \
  --json results/open_photos_eraser_joint.json
# 4. MLLMU-Bench as its download lays it out: a folder per split of train-00000-of-00001.parquet shards,
#    Test_Set, Retain_Set, no name column (scripts/hub_layout.py); `--data` on that folder, tuned as in 1.
python scripts/hub_layout.py "$R/mllmu" "$R/hub"
python -m core fit $M --data "$R/hub" --out "$R/eraser-hub"
python -m core evaluate $M --data "$R/hub" --eraser "$R/eraser-hub" --json results/open_hub_eraser.json
