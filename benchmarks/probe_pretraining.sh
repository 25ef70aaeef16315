#!/usr/bin/env bash
# Does pretraining learn? Pretrain a small S2MAE on a real scene (labels unused), then probe the frozen encoder on
# OpenStreetMap land-use labels of that scene with a spatial train / test split, next to the same architecture at
# random init (3 seeds) and the raw per-band statistics of the tiles. One pretraining run per configuration below;
# each prints its probe tables and writes $RESULTS/probe_<name>_tile<N>.json.
#
#   bash benchmarks/probe_pretraining.sh [SHARED_DATA_DIR] [CONFIG_NAME ...]
#
# SHARED_DATA_DIR defaults to ../shared/data (the project's real imagery); SCENE, LABELS and CLASSES override the
# scene folder, label raster and class-name file (e.g. the crop in sample_data/), RESULTS the output folder,
# CHECKPOINTS where the checkpoints go (outputs/),
# MAX_STEPS every configuration's step count, PROBE_TILES the probe tile sizes ("16 32"). The default configuration,
# `small_data`, is the shipped small-data recipe: 4000 steps, about 10 minutes of pretraining on 2 idle CPU cores
# (212 samples / s measured), then about 2 minutes per probe. Results: benchmarks/README_probe.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
shift || true
SCENE=${SCENE:-$DATA/sentinel2_l1c_scene}
LABELS=${LABELS:-$DATA/sentinel2_l1c_scene_osm_landuse/osm_landuse_10m.tif}
CLASSES=${CLASSES:-$DATA/sentinel2_l1c_scene_osm_landuse/osm_landuse_classes.json}
OUT=${RESULTS:-benchmarks/results}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# name -> pretraining arguments and steps (all on 32 px tiles of the scene, stride 16, the small "sample" encoder)
declare -A CONFIGS=(
  [small_data]="--scaling dataset_range --mask_ratio 0.75"  # the shipped recipe (README_probe.md)
  [range_mask75]="--scaling dataset_range --mask_ratio 0.75"
  [minmax]="--scaling minmax --mask_ratio 0.75"
  [tube75]="--scaling dataset_range --mask_ratio 0.75 --masking_strategy tube"
  [groups6]="--scaling dataset_range --mask_ratio 0.75 --spectral_patch_size 6"
  [range_mask90]="--scaling dataset_range --mask_ratio 0.9"
  [range_mask75_normpix]="--scaling dataset_range --mask_ratio 0.75 --norm_pix_loss true"
)
declare -A STEPS=([small_data]=4000 [range_mask75]=600 [minmax]=600 [tube75]=2400 [groups6]=5000 [range_mask90]=4000)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(small_data)

for name in "${NAMES[@]}"; do
  ckpt=${CHECKPOINTS:-outputs}/probe-$name
  steps=${MAX_STEPS:-${STEPS[$name]:-2400}}
  start=$(date +%s)
  # shellcheck disable=SC2086
  python examples/run_pretrain.py --scene_paths "$SCENE" --tile_size 32 --tile_stride 16 --image_size 32 \
    --preset sample --max_steps "$steps" --per_device_train_batch_size 32 --learning_rate 1e-3 \
    --warmup_steps $(( steps < 1000 ? steps / 10 : 100 )) --lr_scheduler_type cosine --weight_decay 0.05 --adam_beta2 0.95 \
    --logging_steps 100 --eval_strategy no --save_strategy no --dataloader_num_workers 0 --seed 0 --report_to none \
    --disable_tqdm true --probe_scene_paths "$SCENE" --probe_label_raster "$LABELS" --probe_tile_size 16 \
    --probe_every_n_steps $(( steps / 10 > 0 ? steps / 10 : 1 )) \
    --output_dir "$ckpt" ${CONFIGS[$name]} > "$OUT/pretrain_$name.log" 2>&1
  trained=$(( $(date +%s) - start ))
  for tile in ${PROBE_TILES:-16 32}; do
    python examples/run_probe.py --model_name_or_path "$ckpt" --scene_paths "$SCENE" --label_raster "$LABELS" \
      --class_names_json "$CLASSES" --tile_size "$tile" --test_fraction 0.3 --seed 0 --k 10 \
      --random_init_seeds 0 1 2 --output_json "$OUT/probe_${name}_tile$tile.json" | tee "$OUT/probe_${name}_tile$tile.txt"
  done
  echo "$name: $steps steps of pretraining took ${trained}s" | tee -a "$OUT/pretrain_$name.log"
done
