"""Fine-tune S2MAE for semantic segmentation (UPerNet decoder) with the Transformers Trainer.

Data: scenes (`--scene_paths`, each a multi-band file or a folder of per-band files) with one label raster each on
the same grid (`--label_paths`), or a CSV with `image,label` columns (`--pairs_csv`); both are cut into
`--tile_size` tiles together (grids checked: a clear error when CRS, transform or size differ). Label values in
`--ignore_values` (and the label rasters' nodata) are unlabelled; pixels without valid image data too: both are left
out of the loss and the metrics. Validation tiles are a spatial split (blocks, no training tile touching a test tile).
Metrics over the whole evaluation set: mIoU, per-class IoU, overall accuracy (`metrics.json`, model card).

With no data arguments it fine-tunes a tiny model on the 384 px T33UUU crop in `sample_data/sentinel2_scene` with its
OpenStreetMap land-use labels for a few steps. Killing a run and starting it again with the same `--output_dir`
resumes from the last complete checkpoint.

Example:
    python examples/run_segmentation.py --model_name_or_path runs/vitb --scene_paths scene/ \
        --label_paths osm.tif --class_names_file classes.json --tile_size 128 --max_steps 2000 --output_dir runs/seg
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from modeling_s2mae import S2MAEConfig
from modeling_s2mae.data.builders import load_record
from modeling_s2mae.data.labelled_rasters import load_class_names, spatial_split
from modeling_s2mae.data.pipeline import SpectralDataArguments, build_processor
from modeling_s2mae.data.segmentation import (
    IGNORE_INDEX,
    DenseRecordDataset,
    DenseTransform,
    collate_dense,
    label_values_in,
    pair_from_csv,
    segmentation_tiles,
)
from modeling_s2mae.metrics import SegmentationMetrics, argmax_logits
from modeling_s2mae.modeling_s2mae_dense import S2MAEForSemanticSegmentation
from modeling_s2mae.training import (
    DenseModelArguments,
    S2MAETrainer,
    check_metric_for_best_model,
    check_resume_compatible,
    end_run,
    find_resume_checkpoint,
    gives_flag,
    load_dense_model,
    parse_script_arguments,
    prepare_training_arguments,
    save_fine_tuned,
    start_run,
    train_and_evaluate,
)

logger = logging.getLogger("run_segmentation")

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_RUN_DEFAULTS = [
    "--output_dir", "outputs/s2mae-segmentation-sample",
    "--scene_paths", str(SAMPLE_DATA / "sentinel2_scene"),
    "--label_paths", str(SAMPLE_DATA / "sentinel2_scene_labels" / "T33UUU_osm_landuse_10m.tif"),
    "--class_names_file", str(SAMPLE_DATA / "sentinel2_scene_labels" / "T33UUU_osm_landuse_classes.json"),
    "--tile_size", "64",
    "--image_size", "64",
    "--config_overrides", "hidden_size=64,num_hidden_layers=4,num_attention_heads=4,intermediate_size=128",
    "--max_steps", "10",
    "--per_device_train_batch_size", "4",
    "--learning_rate", "1e-3",
    "--save_strategy", "no",
    "--dataloader_num_workers", "0",
]  # fmt: skip


@dataclass
class ModelArguments(DenseModelArguments):
    image_size: int | None = field(default=None, metadata={"help": "Input size (default: --tile_size)."})
    spectral_merge: str = field(default="mean", metadata={"help": "mean or concat (spectral groups -> one map)."})


@dataclass
class DataArguments(SpectralDataArguments):
    label_paths: list[str] | None = field(default=None, metadata={"help": "One label raster per --scene_paths."})
    pairs_csv: str | None = field(default=None, metadata={"help": "CSV with image,label columns."})
    class_names_file: str | None = field(default=None, metadata={"help": 'JSON {"1": "forest", ...}.'})
    class_values: list[int] | None = field(default=None, metadata={"help": "Label values of the classes."})
    ignore_values: list[int] = field(default_factory=lambda: [0], metadata={"help": "Unlabelled label values."})
    min_labelled_fraction: float = field(default=0.1, metadata={"help": "Least labelled share of a tile."})
    validation_fraction: float = field(default=0.2, metadata={"help": "Share of tiles held out (spatial split)."})


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    sample_run = not gives_flag(argv, ("--scene_paths", "--pairs_csv"))
    defaults = SAMPLE_RUN_DEFAULTS if sample_run else ["--output_dir", "outputs/s2mae-segmentation"]
    model_args, data_args, training_args = parse_script_arguments(parser, argv, defaults)
    if data_args.tile_size is None:
        raise ValueError("Give --tile_size: scenes are cut into tiles of the model's input size.")
    if bool(data_args.scene_paths) == bool(data_args.pairs_csv):
        raise ValueError("Give either --scene_paths with --label_paths, or --pairs_csv.")
    if data_args.scene_paths and len(data_args.label_paths or []) != len(data_args.scene_paths):
        raise ValueError("Give one --label_paths raster per --scene_paths scene, in the same order.")
    prepare_training_arguments(training_args)
    return model_args, data_args, training_args


def build_data(data_args: DataArguments, seed: int) -> tuple[list, list, list[int], list[str]]:
    """(train records, eval records, class values, class names)."""
    if data_args.pairs_csv:
        pairs = pair_from_csv(data_args.pairs_csv)
    else:
        pairs = list(zip(data_args.scene_paths, data_args.label_paths))
    records = segmentation_tiles(
        pairs, data_args.tile_size, data_args.tile_stride, ignore_values=data_args.ignore_values,
        min_labelled_fraction=data_args.min_labelled_fraction, band_names=data_args.input_band_names,
    ).records  # fmt: skip
    if len(records) < 2:
        raise ValueError(f"Only {len(records)} labelled tile(s): use smaller tiles or more scenes.")
    found = label_values_in(records, data_args.ignore_values)
    values = data_args.class_values or found
    unknown = sorted(set(found) - set(values))
    if unknown:
        raise ValueError(
            f"The label rasters hold values {unknown} that are neither in --class_values {values} nor in "
            f"--ignore_values {data_args.ignore_values}: the model would have no class for them. List every class "
            "value in --class_values, or add these to --ignore_values."
        )
    if len(values) < 2:
        raise ValueError(f"Segmentation needs at least 2 classes; the labelled tiles hold only {values}.")
    names_by_value = load_class_names(data_args.class_names_file) if data_args.class_names_file else {}
    names = [names_by_value.get(value, str(value)) for value in values]
    if data_args.validation_fraction > 0:
        train, evaluation = spatial_split(records, data_args.validation_fraction, seed)
    else:
        train, evaluation = records, []
    return train, evaluation, values, names


def load_model(model_args: ModelArguments, image_size: int, names: list[str]) -> S2MAEForSemanticSegmentation:
    if model_args.model_name_or_path:
        checkpoint = S2MAEConfig.from_pretrained(model_args.model_name_or_path)
        if S2MAEForSemanticSegmentation.__name__ in (checkpoint.architectures or []):
            theirs = [checkpoint.id2label[i] for i in sorted(checkpoint.id2label)]
            if theirs != list(names):
                raise ValueError(
                    f"{model_args.model_name_or_path} segments {len(theirs)} classes {theirs} but the data has "
                    f"{len(names)} classes {names}: class i must mean the same in both. Choose the classes with "
                    "--class_values (and --class_names_file), or start from a checkpoint without a segmentation head."
                )
    return load_dense_model(
        S2MAEForSemanticSegmentation, model_args, image_size, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={name: index for index, name in enumerate(names)},
        spectral_merge=model_args.spectral_merge, semantic_loss_ignore_index=IGNORE_INDEX,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    start_run(training_args)
    train, evaluation, class_values, names = build_data(data_args, training_args.seed)
    image_size = model_args.image_size or data_args.tile_size
    model = load_model(model_args, image_size, names)
    config: S2MAEConfig = model.config
    samples = (load_record(record) for record in train[: data_args.statistics_max_samples])
    processor = build_processor(
        config, data_args, checkpoint=model_args.model_name_or_path, statistics_samples=samples
    )
    transform = DenseTransform(processor, class_values, ignore_values=data_args.ignore_values)
    train_transform = DenseTransform(
        processor, class_values, ignore_values=data_args.ignore_values, augment=data_args.augment
    )
    evaluation_set = DenseRecordDataset(evaluation, transform) if evaluation else None
    if evaluation_set is None:
        training_args.eval_strategy = "no"
    metrics_fn = SegmentationMetrics(names, ignore_index=IGNORE_INDEX)
    check_metric_for_best_model(training_args, metrics_fn.metric_names)
    trainer = S2MAETrainer(
        model=model, args=training_args, train_dataset=DenseRecordDataset(train, train_transform),
        eval_dataset=evaluation_set, data_collator=collate_dense, processing_class=processor,
        compute_metrics=metrics_fn, preprocess_logits_for_metrics=argmax_logits,
    )  # fmt: skip
    resume = training_args.resume_from_checkpoint or find_resume_checkpoint(training_args.output_dir)
    if resume:
        check_resume_compatible(resume, model.config)
    metrics = train_and_evaluate(trainer, resume)
    metrics["num_train_tiles"], metrics["num_eval_tiles"] = len(train), len(evaluation)
    if evaluation_set is not None:
        metrics["eval_per_class_iou"] = metrics_fn.per_class_iou
    output_dir = save_fine_tuned(
        trainer, processor, metrics, task="semantic-segmentation", card_metrics=("mean_iou", "overall_accuracy"),
        data=", ".join(data_args.scene_paths or [data_args.pairs_csv]), script="examples/run_segmentation.py",
        start_from=model_args.model_name_or_path,
        details=[f"{len(names)} classes", f"{len(train)} training / {len(evaluation)} evaluation tiles"],
    )  # fmt: skip
    if output_dir is not None:
        print(f"Done: model, processor, metrics.json and model card in {output_dir}")
    end_run()
    return metrics


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"error: {error}")
