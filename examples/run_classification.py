"""Fine-tune S2MAE for image classification with the Transformers Trainer: single-label or multi-label.

- Single-label (accuracy): EuroSAT-MS style class folders (`--train_dir`), or a dataset in the s2mae Hub format
  (`--dataset_name`) with a `label` column.
- Multi-label (micro and macro mAP over the whole evaluation set): BigEarthNet-S2 v1 patch folders (`--train_dir`,
  BigEarthNet-19 labels), or a Hub-format dataset with a `labels` column.

Start from a pretraining checkpoint with `--model_name_or_path` (encoder carried over, a new head; another
`--image_size` interpolates the position tables), or from scratch with `--preset`. Full fine-tuning is the default;
`--linear_probe` freezes the encoder (only the pooler LayerNorm and the linear head train), `--layer_decay 0.75` sets
layer-wise learning-rate decay (groups from `model.layer_id` / `model.no_weight_decay`).

With no arguments it fine-tunes a small model on the six EuroSAT-MS tiles in `sample_data/eurosat_ms` for a few steps
and writes the model, the processor, `metrics.json` and a model card to `outputs/s2mae-classification-sample/`.

Examples:
    python examples/run_classification.py --model_name_or_path runs/vitb --train_dir EuroSAT_MS/ \
        --image_size 128 --scaling standardize --band_statistics eurosat --layer_decay 0.75 --drop_path_rate 0.2 \
        --label_smoothing_factor 0.1 --learning_rate 5e-4 --num_train_epochs 150 --output_dir runs/eurosat
    python examples/run_classification.py --model_name_or_path runs/vitb --train_dir BigEarthNet-v1.0/ \
        --validation_dir BigEarthNet-val/ --linear_probe --learning_rate 1e-2 --output_dir runs/ben-linprobe
    python examples/run_classification.py --dataset_name org/eurosat-s2mae --max_steps 5000

Killing a run and starting it again with the same `--output_dir` resumes from the last complete checkpoint (with the
same `--linear_probe` / `--layer_decay`: the optimizer state holds one group per layer).
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, TrainingArguments

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification
from modeling_s2mae.data import MULTI_LABEL, collate_pixels
from modeling_s2mae.data.pipeline import (
    SpectralDataArguments,
    build_datasets,
    build_processor,
    local_training_records,
    statistics_samples,
)
from modeling_s2mae.metrics import MultiLabelMetrics, accuracy_metrics
from modeling_s2mae.model_card import hub_id
from modeling_s2mae.training import (
    DATA_SOURCE_FLAGS,
    S2MAETrainer,
    SkippedSamplesCallback,
    build_config,
    check_checkpoint_labels,
    check_metric_for_best_model,
    check_model_name_or_path,
    check_resume_compatible,
    end_run,
    find_resume_checkpoint,
    freeze_encoder,
    gives_flag,
    label_settings,
    parse_script_arguments,
    prepare_training_arguments,
    record_run_settings,
    save_fine_tuned,
    start_run,
    train_and_evaluate,
)

logger = logging.getLogger("run_classification")

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_RUN_DEFAULTS = [
    "--output_dir", "outputs/s2mae-classification-sample",
    "--max_steps", "20",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "8",
    "--learning_rate", "1e-3",
    "--warmup_steps", "2",
    "--lr_scheduler_type", "cosine",
    "--weight_decay", "0.05",
    "--logging_steps", "5",
    "--save_strategy", "steps",
    "--save_steps", "10",
    "--save_total_limit", "1",
    "--dataloader_num_workers", "0",
    "--seed", "42",
]  # fmt: skip


@dataclass
class ModelArguments:
    """Which model to fine-tune and how."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An S2MAE checkpoint (pretraining or classifier; folder or Hub id)."}
    )
    preset: str = field(default="sample", metadata={"help": "Size of a new model: vit-s/b/l/h or sample."})
    image_size: int | None = field(default=None, metadata={"help": "Input size (default: the checkpoint's)."})
    band_names: list[str] | None = field(default=None, metadata={"help": "Bands of a new model (default S2)."})
    config_overrides: str | None = field(default=None, metadata={"help": "Other fields of a new model's config."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth (recipe: 0.2)."})
    linear_probe: bool = field(default=False, metadata={"help": "Freeze the encoder; train pooler norm + head."})
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise lr decay, e.g. 0.75."})
    reset_classifier: bool = field(
        default=False, metadata={"help": "A new head when --model_name_or_path classifies other classes."}
    )


@dataclass
class DataArguments(SpectralDataArguments):
    """Labelled data (see SpectralDataArguments); 20 % of local samples held out per class by default."""

    validation_fraction: float = field(default=0.2, metadata={"help": "Share held out (per class), in [0, 1)."})
    dataset_eval_split: str | None = field(default="validation", metadata={"help": "Evaluation split; '' for none."})


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse the command line; with no data source the sample run's defaults come first (the user's win)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    sample_run = not gives_flag(argv, DATA_SOURCE_FLAGS)
    defaults = [*SAMPLE_RUN_DEFAULTS, "--train_dir", str(SAMPLE_DATA / "eurosat_ms")] if sample_run else []
    defaults = defaults or ["--output_dir", "outputs/s2mae-classification"]
    model_args, data_args, training_args = parse_script_arguments(parser, argv, defaults)
    if not data_args.has_source:
        raise ValueError("Give a data source: --train_dir or --dataset_name.")
    if model_args.layer_decay is not None and not 0.0 < model_args.layer_decay <= 1.0:
        raise ValueError(f"--layer_decay must be in (0, 1], got {model_args.layer_decay}.")
    if data_args.dataset_name and training_args.max_steps <= 0:
        raise ValueError("A streamed --dataset_name has no length: give --max_steps.")
    prepare_training_arguments(training_args)
    return model_args, data_args, training_args


def model_config(model_args: ModelArguments) -> S2MAEConfig:
    """The checkpoint's config, or a new model's from the preset and overrides."""
    if model_args.model_name_or_path is not None:
        return S2MAEConfig.from_pretrained(check_model_name_or_path(model_args.model_name_or_path))
    fields = {"image_size": model_args.image_size, "band_names": model_args.band_names}
    return build_config(model_args.preset, model_args.config_overrides, **fields)


def load_model(model_args: ModelArguments, config: S2MAEConfig, labels: dict[str, Any]) -> S2MAEForImageClassification:
    """A new classifier, or a checkpoint's encoder (and head, when it classifies the same classes)."""
    overrides: dict[str, Any] = {}
    if model_args.drop_path_rate is not None:
        overrides["drop_path_rate"] = model_args.drop_path_rate
    if model_args.linear_probe:
        overrides.update(drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    source = model_args.model_name_or_path
    if source is None:
        config.update({**overrides, **labels})
        return S2MAEForImageClassification(config)
    classifier = any("ForImageClassification" in name for name in (config.architectures or []))
    if classifier and not model_args.reset_classifier:
        check_checkpoint_labels(config, labels["id2label"].values(), labels["problem_type"], source)
    model = S2MAEForImageClassification.from_pretrained(
        source, **labels, **overrides, ignore_mismatched_sizes=classifier and model_args.reset_classifier
    )
    if classifier and model_args.reset_classifier:
        model.classifier.reset_parameters()  # also when the class count matches: the old head means other classes
        torch.nn.init.zeros_(model.classifier.bias)
    if model_args.image_size is not None and model_args.image_size != model.config.image_size:
        model.resize_position_embeddings(image_size=model_args.image_size)
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    start_run(training_args)

    config = model_config(model_args)
    if model_args.image_size is not None:
        config.image_size = model_args.image_size  # the processor's size; the model is resized to it below
    local = bool(data_args.train_dir or data_args.scene_paths)
    records = local_training_records(data_args, training_args.seed, True, config.band_names) if local else None
    processor = build_processor(
        config, data_args, checkpoint=model_args.model_name_or_path,
        statistics_samples=statistics_samples(data_args, records),
    )  # fmt: skip
    data = build_datasets(data_args, processor, seed=training_args.seed, with_labels=True, records=records)
    if data.skipped_files:
        print(f"Skipped {len(data.skipped_files)} bad file(s) (--skip_bad_files): {data.skipped_files[0].path} ...")
    if data.problem_type == MULTI_LABEL and training_args.label_smoothing_factor:
        raise ValueError("--label_smoothing_factor applies to single-label data only (it assumes a softmax).")
    model = load_model(model_args, model_config(model_args), label_settings(data.class_names, data.problem_type))
    if model_args.linear_probe:
        logger.info("Linear probe: %d trainable parameters.", freeze_encoder(model))
    if data.evaluation is None:
        training_args.eval_strategy = "no"
        logger.warning("No evaluation data: metrics.json will hold training metrics only.")
    if data_args.dataset_name:
        training_args.accelerator_config.dispatch_batches = False

    resume = training_args.resume_from_checkpoint or find_resume_checkpoint(training_args.output_dir)
    if resume:
        check_resume_compatible(resume, model.config)
    settings = {"linear_probe": model_args.linear_probe, "layer_decay": model_args.layer_decay}
    record_run_settings(training_args.output_dir, settings, resuming=bool(resume))
    multi_label = data.problem_type == MULTI_LABEL
    compute_metrics = MultiLabelMetrics(data.class_names) if multi_label else accuracy_metrics
    check_metric_for_best_model(training_args, MultiLabelMetrics.metric_names if multi_label else ["accuracy"])
    skipped = SkippedSamplesCallback(data.train_transform, data.eval_transform)
    trainer = S2MAETrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.evaluation,
        data_collator=collate_pixels,
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=[skipped],
        layer_decay=model_args.layer_decay,
    )
    metrics = train_and_evaluate(trainer, resume)
    absent: list[str] = []
    if data.evaluation is not None:
        if multi_label:
            metrics["eval_per_class_ap"] = compute_metrics.per_class
            metrics["eval_classes_without_positives"] = absent = compute_metrics.classes_without_positives
    metrics.update(skipped.counts())
    trainer.log_metrics("all", {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))})
    output_dir = save_outputs(trainer, processor, metrics, model_args, data_args, data, absent)
    if output_dir is not None:
        print(f"Done: model, processor, metrics.json and model card in {output_dir}")
    end_run()
    return metrics


def save_outputs(trainer, processor, metrics, model_args, data_args, data, absent: list[str]) -> Path | None:
    """Save the fine-tuned checkpoint, and on the main process metrics.json and its model card (README.md)."""
    mode = "linear probe (frozen encoder)" if model_args.linear_probe else "full fine-tuning"
    details = [mode, f"{len(data.class_names)} classes ({data.problem_type})"]
    if data.num_train is not None:
        details.append(f"{data.num_train} training / {data.num_eval} evaluation samples")
    if model_args.layer_decay:
        details.append(f"layer-wise lr decay {model_args.layer_decay}")
    notes = None
    if absent:
        notes = (
            f"Macro mAP averages the {len(data.class_names) - len(absent)} classes with a positive in the evaluation "
            f"set; it leaves out {', '.join(absent)}."
        )
    return save_fine_tuned(
        trainer, processor, metrics, task="image-classification",
        card_metrics=("micro_map", "macro_map") if data.problem_type == MULTI_LABEL else ("accuracy",),
        data=data_args.dataset_name or ", ".join(data_args.train_dir or []), script="examples/run_classification.py",
        details=details, notes=notes, start_from=model_args.model_name_or_path,
        base_model=hub_id(model_args.model_name_or_path), datasets=hub_id(data_args.dataset_name),
    )  # fmt: skip


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"error: {error}")
