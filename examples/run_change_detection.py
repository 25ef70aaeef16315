"""Fine-tune a Siamese S2MAE for change detection (two dates in, a 2-class change map out) with the Trainer.

Data: an OSCD folder (`--oscd_root`: the "Images" and "Train Labels" / "Test Labels" folders side by side; train.txt
cities for training, test.txt cities for evaluation) or a CSV of `before,after,change` rasters (`--triples_csv`;
a spatial split holds out `--validation_fraction` of the tiles). Dates with different bands or grids fail early.
Metrics over the whole evaluation set: precision, recall, F1 and IoU of the change class, overall accuracy
(`metrics.json`, model card). Change is rare: `--class_weights 1 10` weights the loss. Killing a run and starting it
again with the same `--output_dir` resumes from the last complete checkpoint.

Example:
    python examples/run_change_detection.py --model_name_or_path runs/vitb --oscd_root OSCD/ --tile_size 96 \
        --change_fusion difference --class_weights 1 10 --max_steps 2000 --output_dir runs/oscd
"""

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from modeling_s2mae.data.builders import load_record
from modeling_s2mae.data.change_detection import ChangeDetectionTransform, change_triples, oscd_records
from modeling_s2mae.data.labelled_rasters import spatial_split
from modeling_s2mae.data.pipeline import SpectralDataArguments, build_processor
from modeling_s2mae.data.segmentation import IGNORE_INDEX, DenseRecordDataset, collate_dense, pair_from_csv
from modeling_s2mae.metrics import SegmentationMetrics, argmax_logits
from modeling_s2mae.modeling_s2mae_dense import S2MAEForChangeDetection
from modeling_s2mae.training import (
    DenseModelArguments,
    S2MAETrainer,
    check_metric_for_best_model,
    check_resume_compatible,
    end_run,
    find_resume_checkpoint,
    load_dense_model,
    parse_script_arguments,
    prepare_training_arguments,
    save_fine_tuned,
    start_run,
    train_and_evaluate,
)

logger = logging.getLogger("run_change_detection")


@dataclass
class ModelArguments(DenseModelArguments):
    class_weights: list[float] | None = field(default=None, metadata={"help": "Loss weights (no change, change)."})
    change_fusion: str = field(default="difference", metadata={"help": "difference, concat or both."})


@dataclass
class DataArguments(SpectralDataArguments):
    oscd_root: str | None = field(default=None, metadata={"help": "An OSCD folder (images and labels folders)."})
    triples_csv: str | None = field(default=None, metadata={"help": "CSV with before,after,change columns."})
    change_values: list[int] = field(default_factory=lambda: [1], metadata={"help": "Change-raster change values."})
    validation_fraction: float = field(default=0.2, metadata={"help": "Triples: share of tiles held out."})


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parse_script_arguments(
        parser, argv, ["--output_dir", "outputs/s2mae-change-detection"]
    )
    if bool(data_args.oscd_root) == bool(data_args.triples_csv):
        raise ValueError("Give either --oscd_root or --triples_csv.")
    if data_args.tile_size is None:
        raise ValueError("Give --tile_size: the two dates are cut into tiles of the model's input size.")
    prepare_training_arguments(training_args)
    return model_args, data_args, training_args


def build_records(data_args: DataArguments, seed: int) -> tuple[list, list]:
    size, stride = data_args.tile_size, data_args.tile_stride
    if data_args.oscd_root:
        return oscd_records(data_args.oscd_root, "train", size, stride).records, oscd_records(
            data_args.oscd_root, "test", size, stride
        ).records
    triples = pair_from_csv(data_args.triples_csv, ("before", "after", "change"))
    records = change_triples(triples, size, stride, change_values=data_args.change_values).records
    if data_args.validation_fraction > 0:
        return spatial_split(records, data_args.validation_fraction, seed)
    return records, []


def load_model(model_args: ModelArguments, image_size: int) -> S2MAEForChangeDetection:
    return load_dense_model(
        S2MAEForChangeDetection, model_args, image_size, change_fusion=model_args.change_fusion,
        semantic_loss_ignore_index=IGNORE_INDEX,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    start_run(training_args)
    train, evaluation = build_records(data_args, training_args.seed)
    if not train:
        raise ValueError("No training tiles: check the data folders and --tile_size.")
    model = load_model(model_args, data_args.tile_size)
    samples = (load_record(record) for record in train[: data_args.statistics_max_samples])
    processor = build_processor(
        model.config, data_args, checkpoint=model_args.model_name_or_path, statistics_samples=samples
    )
    evaluation_set = DenseRecordDataset(evaluation, ChangeDetectionTransform(processor)) if evaluation else None
    if evaluation_set is None:
        training_args.eval_strategy = "no"
    metrics_fn = SegmentationMetrics(["no change", "change"], ignore_index=IGNORE_INDEX, change_class=1)
    check_metric_for_best_model(training_args, metrics_fn.metric_names)
    trainer = S2MAETrainer(
        model=model, args=training_args,
        train_dataset=DenseRecordDataset(train, ChangeDetectionTransform(processor, augment=data_args.augment)),
        eval_dataset=evaluation_set, data_collator=collate_dense, processing_class=processor,
        compute_metrics=metrics_fn, preprocess_logits_for_metrics=argmax_logits,
    )  # fmt: skip
    resume = training_args.resume_from_checkpoint or find_resume_checkpoint(training_args.output_dir)
    if resume:
        check_resume_compatible(resume, model.config)
    metrics = train_and_evaluate(trainer, resume)
    metrics["num_train_tiles"], metrics["num_eval_tiles"] = len(train), len(evaluation)
    output_dir = save_fine_tuned(
        trainer, processor, metrics, task="change-detection",
        card_metrics=("change_precision", "change_recall", "change_f1", "change_iou", "overall_accuracy"),
        data=data_args.oscd_root or data_args.triples_csv, script="examples/run_change_detection.py",
        start_from=model_args.model_name_or_path,
        details=[f"fusion {model_args.change_fusion}", f"{len(train)} training / {len(evaluation)} eval tiles"],
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
