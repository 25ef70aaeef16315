#!/usr/bin/env bash
# Does pretraining learn? Pretrain a small S2MAE on a real scene (labels unused), then probe the frozen encoder on
# OpenStreetMap land-use labels of that scene with a spatial train / test split, next to the same architecture at
# random init (3 seeds) and the raw per-band statistics of the tiles. One pretraining run per configuration below;
# each prints its probe table and writes benchmarks/results/probe_<name>.json.
#
#   bash benchmarks/probe_pretraining.sh [SHARED_DATA_DIR] [CONFIG_NAME ...]
#
# SHARED_DATA_DIR defaults to ../shared/data (the project's real imagery). About 15 minutes per configuration on
# 2 CPU cores (MAX_STEPS=600, as measured; 11-14 of them pretraining). Results: benchmarks/README_probe.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
shift || true
SCENE=$DATA/sentinel2_l1c_scene
LABELS=$DATA/sentinel2_l1c_scene_osm_landuse/osm_landuse_10m.tif
CLASSES=$DATA/sentinel2_l1c_scene_osm_landuse/osm_landuse_classes.json
OUT=benchmarks/results
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# name -> pretraining arguments (all on 32 px tiles of the scene, stride 16, the small "sample" encoder)
declare -A CONFIGS=(
  [minmax]="--scaling minmax --mask_ratio 0.75"  # the two measured in benchmarks/README_probe.md
  [range_mask75]="--scaling dataset_range --mask_ratio 0.75"
  [range_mask90]="--scaling dataset_range --mask_ratio 0.9"
  [range_mask75_normpix]="--scaling dataset_range --mask_ratio 0.75 --norm_pix_loss true"
)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(range_mask75 minmax)

for name in "${NAMES[@]}"; do
  ckpt=outputs/probe-$name
  start=$(date +%s)
  # shellcheck disable=SC2086
  python examples/run_pretrain.py --scene_paths "$SCENE" --tile_size 32 --tile_stride 16 --image_size 32 \
    --preset sample --max_steps "${MAX_STEPS:-600}" --per_device_train_batch_size 32 --learning_rate 1e-3 \
    --warmup_steps 60 --lr_scheduler_type cosine --weight_decay 0.05 --adam_beta2 0.95 --logging_steps 100 \
    --eval_strategy no --save_strategy no --dataloader_num_workers 0 --seed 0 --report_to none --disable_tqdm true \
    --output_dir "$ckpt" ${CONFIGS[$name]} > "$OUT/pretrain_$name.log" 2>&1
  trained=$(( $(date +%s) - start ))
  python examples/run_probe.py --model_name_or_path "$ckpt" --scene_paths "$SCENE" --label_raster "$LABELS" \
    --class_names_json "$CLASSES" --tile_size 32 --test_fraction 0.3 --seed 0 --k 10 \
    --random_init_seeds 0 1 2 --output_json "$OUT/probe_$name.json" | tee "$OUT/probe_$name.txt"
  python examples/run_probe.py --model_name_or_path "$ckpt" --scene_paths "$SCENE" --label_raster "$LABELS" \
    --class_names_json "$CLASSES" --tile_size 16 --test_fraction 0.3 --seed 0 --k 10 \
    --random_init_seeds 0 1 2 --output_json "$OUT/probe_${name}_tile16.json" | tee "$OUT/probe_${name}_tile16.txt"
  echo "$name: pretraining took ${trained}s" | tee -a "$OUT/probe_$name.txt"
done
