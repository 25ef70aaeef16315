"""Fine-tune S2MAE for image classification with the Transformers Trainer: single-label or multi-label.

- Single-label (accuracy): an EuroSAT-MS style folder `--train_dir` (`<class>/<tile>.tif`), or a dataset in the s2mae
  Hub format `--dataset_name` with a `label` column.
- Multi-label (micro and macro mAP over the whole evaluation set): BigEarthNet-S2 patch folders `--bigearthnet_dir`
  (BigEarthNet-19 labels), or a Hub-format dataset with a `labels` column.

Start from a pretraining checkpoint with `--model_name_or_path` (the encoder is carried over, a new head is added; a
different `--image_size` interpolates the position tables), or from scratch with `--preset`. Full fine-tuning is the
default; `--linear_probe` freezes the encoder, `--layer_decay 0.75` sets layer-wise learning-rate decay.

With no arguments it fine-tunes a small model on the six EuroSAT-MS tiles in `sample_data/eurosat_ms` (2 classes) for
a few steps and writes to `outputs/s2mae-classification-sample/`: the model, the image processor, `metrics.json` and
a model card (README.md) with the results.

Examples:
    python examples/run_classification.py                                   # the sample run
    # the EuroSAT recipe from a pretraining checkpoint (64 px tiles resized to 128, z-score with EuroSAT statistics)
    python examples/run_classification.py --model_name_or_path runs/vitb --train_dir EuroSAT_MS/ \
        --image_size 128 --scaling standardize --band_statistics eurosat --layer_decay 0.75 --drop_path_rate 0.2 \
        --label_smoothing_factor 0.1 --learning_rate 5e-4 --num_train_epochs 150 --output_dir runs/eurosat
    # BigEarthNet-19, multi-label, linear probe
    python examples/run_classification.py --model_name_or_path runs/vitb --bigearthnet_dir BigEarthNet-v1.0/ \
        --validation_dir BigEarthNet-val/ --linear_probe --learning_rate 1e-2 --output_dir runs/ben-linprobe
    # a dataset in the s2mae Hub format (streamed: give --max_steps)
    python examples/run_classification.py --dataset_name org/eurosat-s2mae --max_steps 5000

Linear probe: every parameter of the encoder is frozen (cube embedding, position tables, transformer blocks and the
final LayerNorm); only the pooler's LayerNorm and the linear classifier train. Pretraining never trains the pooler's
LayerNorm (the MAE pools no tokens), so it is part of the new head: it normalises the mean-pooled features (as the MAE
linear probe's BatchNorm does) and its elementwise affine composed with the linear layer is still a linear map of the
normalised features. Dropout and stochastic depth are switched off in the frozen encoder.

Weight decay applies to weight matrices and the cube embedding, never to biases, norms or position tables. With
`--layer_decay d`, the cube embedding and position tables learn at lr * d^(N+1), encoder block i (0-based) at
lr * d^(N-i), and the final norm, pooler and classifier at lr (N = num_hidden_layers).

Killing a run and starting it again with the same `--output_dir` resumes from the last checkpoint (the same
`--linear_probe` / `--layer_decay` are required: the optimizer state holds one group per layer).
"""

import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import EvalPrediction, HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from modeling_s2mae import S2MAE_PRESETS, S2MAEConfig, S2MAEForImageClassification, S2MAEImageProcessor
from modeling_s2mae.data import (
    MULTI_LABEL,
    SINGLE_LABEL,
    RasterReadError,
    SkippedFile,
    bigearthnet_folder,
    eurosat_folder,
)
from modeling_s2mae.data.training import RasterRecordDataset, collate_pixels, split_records
from modeling_s2mae.image_processing_s2mae import (
    EUROSAT_BAND_MEAN,
    EUROSAT_BAND_STD,
    FMOW_SENTINEL_BAND_MEAN,
    FMOW_SENTINEL_BAND_STD,
    S2MAEImageProcessorKwargs,
)

logger = logging.getLogger("run_classification")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO_ROOT / "sample_data"


BAND_STATISTICS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "eurosat": (EUROSAT_BAND_MEAN, EUROSAT_BAND_STD),
    "fmow-sentinel": (FMOW_SENTINEL_BAND_MEAN, FMOW_SENTINEL_BAND_STD),
}
"""Per-band statistics for `--scaling standardize` / `sigma`."""

RUN_ARGS_FILE = "run_classification_args.json"
"""Written into the output folder: the model arguments a resumed run must repeat."""

# The sample run: a small model on the six shipped EuroSAT-MS tiles, well under a minute on 2 CPU cores.
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


class DataError(ValueError):
    """The data or labels cannot be used as given; the message says what to change."""


@dataclass
class ModelArguments:
    """Which model to fine-tune and how."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "An S2MAE checkpoint (pretraining or classifier; folder or Hub id). None: from scratch."},
    )
    preset: str = field(
        default="sample",
        metadata={"help": "Encoder size when training from scratch: vit-s, vit-b, vit-l, vit-h, sample."},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Input size in pixels (default: the checkpoint's, or 64 for a new model)."}
    )
    band_names: list[str] | None = field(
        default=None, metadata={"help": "Model bands of a new model (default: the 12 Sentinel-2 bands)."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Other config fields of a new model, e.g. 'hidden_size=256,num_hidden_layers=6'."},
    )
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth rate (recipe: 0.2)."})
    linear_probe: bool = field(
        default=False, metadata={"help": "Freeze the encoder; train only the pooler LayerNorm and the classifier."}
    )
    layer_decay: float | None = field(
        default=None, metadata={"help": "Layer-wise learning-rate decay, e.g. 0.75 (the EuroSAT recipe)."}
    )
    reset_classifier: bool = field(
        default=False,
        metadata={"help": "Start a new head when --model_name_or_path is a classifier for other classes."},
    )


@dataclass
class DataArguments:
    """Where the labelled imagery comes from and how it is prepared."""

    train_dir: str | None = field(
        default=None, metadata={"help": "Single-label folder of class sub-folders of GeoTIFFs (EuroSAT-MS layout)."}
    )
    bigearthnet_dir: str | None = field(
        default=None, metadata={"help": "Multi-label: folder of BigEarthNet-S2 v1 patch folders (BigEarthNet-19)."}
    )
    validation_dir: str | None = field(
        default=None,
        metadata={
            "help": "Evaluation folder in the same layout; default: --validation_fraction of the training data."
        },
    )
    validation_fraction: float = field(
        default=0.2, metadata={"help": "Share held out for evaluation (per class for single-label data)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset in the s2mae Hub format (repo id or local folder) with labels."}
    )
    dataset_train_split: str = field(default="train")
    dataset_eval_split: str | None = field(default="validation", metadata={"help": "Evaluation split; '' for none."})
    streaming: bool = field(default=True, metadata={"help": "Stream --dataset_name (needs --max_steps)."})
    input_band_names: list[str] | None = field(
        default=None, metadata={"help": "Band names of the --train_dir files (default: EuroSAT-MS order, B8A last)."}
    )
    scaling: str | None = field(
        default=None,
        metadata={
            "help": "minmax, reflectance, standardize or sigma (default: the checkpoint processor's, or minmax)."
        },
    )
    band_statistics: str | None = field(
        default=None, metadata={"help": "Statistics for standardize / sigma scaling: eurosat or fmow-sentinel."}
    )
    nodata: float | None = field(default=None, metadata={"help": "Nodata value when the files do not define one."})
    augment: bool = field(default=True, metadata={"help": "RandomResizedCrop(0.2-1) + horizontal flip (local data)."})
    skip_bad_files: bool = field(
        default=False, metadata={"help": "Skip unreadable files (counted) instead of failing."}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)


# --- metrics -----------------------------------------------------------------------------------------------------------


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one ranking: the mean, over the positives, of the precision at each positive's rank.

    Tied scores share one threshold: a positive's precision is taken over every item scored at least as high, so the
    result does not depend on how ties are ordered (the same value as scikit-learn's `average_precision_score`).

    Args:
        scores: (N,) higher means more likely positive (logits or probabilities: only the order matters).
        targets: (N,) 1 for positives, 0 for negatives.

    Returns:
        AP in [0, 1], or NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = np.asarray(targets).ravel() > 0.5
    if not targets.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, targets = scores[order], targets[order]
    true_positives = np.cumsum(targets)
    group_ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # last index of each run of equal scores
    group_of = np.cumsum(np.r_[False, scores[1:] != scores[:-1]])  # which run each position belongs to
    end = group_ends[group_of]
    precision = true_positives[end] / (end + 1)
    return float(precision[targets].mean())


def multilabel_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Micro and macro mean average precision of multi-label predictions over a whole evaluation set.

    Args:
        scores: (N, K) per-class scores (logits or probabilities).
        targets: (N, K) multi-hot ground truth.

    Returns:
        (micro mAP: AP of all N * K (sample, class) pairs ranked together; macro mAP: mean of the per-class APs over the
        classes with at least one positive; per-class AP (K,), NaN for classes without a positive).
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores and targets must both be (N, K), got {scores.shape} and {targets.shape}.")
    per_class = np.array([average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])])
    micro = average_precision(scores.ravel(), targets.ravel())
    macro = float(np.nanmean(per_class)) if not np.isnan(per_class).all() else float("nan")
    return micro, macro, per_class


class MultiLabelMetrics:
    """`compute_metrics` for multi-label runs: micro / macro mAP of the concatenated predictions of the whole
    evaluation set (never averaged per batch). Keeps the per-class APs of the last call in `per_class`."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = list(class_names)
        self.per_class: dict[str, float | None] = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        micro, macro, per_class = multilabel_average_precision(logits, prediction.label_ids)
        self.per_class = {
            name: (None if math.isnan(value) else value) for name, value in zip(self.class_names, per_class)
        }
        absent = self.classes_without_positives
        if absent:
            logger.info(
                "Macro mAP leaves out %d class(es) with no positive in the evaluation set: %s", len(absent), absent
            )
        return {"micro_map": micro, "macro_map": macro, "macro_map_num_classes": int(np.sum(~np.isnan(per_class)))}

    @property
    def classes_without_positives(self) -> list[str]:
        return [name for name, value in self.per_class.items() if value is None]


def accuracy_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for single-label runs: accuracy over the whole evaluation set."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


# --- optimizer ---------------------------------------------------------------------------------------------------------


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise lr decay: 0 for the embeddings, i + 1 for encoder block i, num_layers + 1
    for everything above the blocks (final norm, pooler, classifier)."""
    if name.startswith("s2mae.embeddings."):
        return 0
    prefix = "s2mae.encoder.layers."
    if name.startswith(prefix):
        return int(name[len(prefix) :].split(".")[0]) + 1
    return num_layers + 1


def optimizer_param_groups(
    model: S2MAEForImageClassification,
    weight_decay: float,
    layer_decay: float | None = None,
    decay_parameter_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups of the trainable parameters, one per (depth, weight decay or not).

    Each group has `lr_scale` = layer_decay^(num_layers + 1 - depth) (1.0 without layer decay) and an `lr` that
    `Trainer`'s learning rate multiplies (set by `ClassificationTrainer.create_optimizer`). Weight decay applies to
    `decay_parameter_names` (Trainer's rule: no biases or norms) minus the position tables.
    """
    num_layers = model.config.num_hidden_layers
    if decay_parameter_names is None:
        decay_parameter_names = [name for name, param in model.named_parameters() if param.ndim > 1]
    decay_names = {name for name in decay_parameter_names if "position_embeddings" not in name}
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth, decays = layer_id(name, num_layers), name in decay_names
        if (depth, decays) not in groups:
            scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - depth)
            groups[(depth, decays)] = {
                "params": [],
                "param_names": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": scale,
            }
        groups[(depth, decays)]["params"].append(param)
        groups[(depth, decays)]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


class ClassificationTrainer(Trainer):
    """`Trainer` whose optimizer has one parameter group per layer (for `--layer_decay`) and no weight decay on the
    position tables. The optimizer class and its settings come from `TrainingArguments` (`--optim`, betas, eps); the
    learning-rate scheduler multiplies each group's own initial lr, so layer decay holds through warmup, decay and
    resumption."""

    def __init__(self, *args: Any, layer_decay: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        groups = optimizer_param_groups(
            opt_model, self.args.weight_decay, self.layer_decay, self.get_decay_parameter_names(opt_model)
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        for group in groups:
            group["lr"] = optimizer_kwargs.get("lr", self.args.learning_rate) * group["lr_scale"]
            del group["param_names"]
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


# --- arguments ---------------------------------------------------------------------------------------------------------


def sample_run_requested(argv: Sequence[str]) -> bool:
    """True when no data source is given: the run uses the shipped EuroSAT sample and its defaults."""
    sources = ("--train_dir", "--bigearthnet_dir", "--dataset_name")
    return not any(arg.split("=")[0] in sources for arg in argv)


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments, bool]:
    """Parse the command line; with no data source the sample run's defaults come first (the user's win)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(argv[0]))
        sample_run = False
    else:
        sample_run = sample_run_requested(argv)
        defaults = SAMPLE_RUN_DEFAULTS if sample_run else ["--output_dir", "outputs/s2mae-classification"]
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=defaults + argv)
        if sample_run:
            data_args.train_dir = str(SAMPLE_DATA / "eurosat_ms")
    sources = [data_args.train_dir, data_args.bigearthnet_dir, data_args.dataset_name]
    if sum(source is not None for source in sources) != 1:
        raise DataError("Give exactly one of --train_dir, --bigearthnet_dir and --dataset_name.")
    if model_args.layer_decay is not None and not 0.0 < model_args.layer_decay <= 1.0:
        raise DataError(f"--layer_decay must be in (0, 1], got {model_args.layer_decay}.")
    if data_args.band_statistics is not None and data_args.band_statistics not in BAND_STATISTICS:
        raise DataError(
            f"--band_statistics must be one of {sorted(BAND_STATISTICS)}, got {data_args.band_statistics!r}."
        )
    if not 0.0 <= data_args.validation_fraction < 1.0:
        raise DataError(f"--validation_fraction must be in [0, 1), got {data_args.validation_fraction}.")
    training_args.remove_unused_columns = False  # the collator needs pixel_mask
    training_args.ddp_find_unused_parameters = False
    return model_args, data_args, training_args, sample_run


# --- data --------------------------------------------------------------------------------------------------------------


@dataclass
class LabelledData:
    """Training and evaluation datasets with their labels."""

    train: Any
    evaluation: Any | None
    problem_type: str
    class_names: list[str]
    num_train: int | None = None
    num_eval: int | None = None
    skipped: list[SkippedFile] = field(default_factory=list)


def _check_record_bands(
    record_set: Any, model_bands: Sequence[str], skip_bad_files: bool, skipped: list[SkippedFile]
) -> list[dict]:
    """Keep the records whose files hold every band the model reads; raise (or skip) for the others."""
    kept = []
    for record in record_set:
        available = record.get("bands") or record.get("band_names")
        missing = [band for band in model_bands if available is not None and band not in available]
        if missing:
            message = (
                f"{record['paths'][0]}: the file's bands {list(available)} lack {missing}, which the model reads "
                f"({list(model_bands)}). Check --input_band_names, or remove the file (--skip_bad_files skips it)."
            )
            if not skip_bad_files:
                raise DataError(message)
            logger.warning("Skipping %s", message)
            skipped.append(SkippedFile(record["paths"][0], message))
            continue
        kept.append(record)
    return kept


def _read_folder(path: str, multi_label: bool, model_bands: Sequence[str], data_args: DataArguments):
    """Records and class names of one local folder; a folder that does not exist or is empty is a clear error."""
    if not Path(path).is_dir():
        raise DataError(f"{path!r} is not a folder.")
    if multi_label:
        found = bigearthnet_folder(path, bands=list(model_bands), skip_bad_files=data_args.skip_bad_files)
    else:
        kwargs = {"band_names": data_args.input_band_names} if data_args.input_band_names else {}
        found = eurosat_folder(path, skip_bad_files=data_args.skip_bad_files, **kwargs)
    skipped = list(found.skipped)
    records = _check_record_bands(found, model_bands, data_args.skip_bad_files, skipped)
    if not records:
        raise DataError(f"{path}: no usable sample ({len(skipped)} bad file(s) skipped).")
    return records, list(found.classes), skipped


def local_data(data_args: DataArguments, model_bands: Sequence[str], seed: int) -> LabelledData:
    """Records of `--train_dir` / `--bigearthnet_dir` (and `--validation_dir`) as datasets of processed tiles."""
    multi_label = data_args.bigearthnet_dir is not None
    train_path = data_args.bigearthnet_dir if multi_label else data_args.train_dir
    records, classes, skipped = _read_folder(train_path, multi_label, model_bands, data_args)
    if data_args.validation_dir:
        eval_records, eval_classes, eval_skipped = _read_folder(
            data_args.validation_dir, multi_label, model_bands, data_args
        )
        skipped += eval_skipped
        if eval_classes != classes:
            raise DataError(
                f"The classes of --validation_dir {eval_classes} differ from those of the training folder {classes}: "
                "give both folders the same class sub-folders."
            )
        train_records = records
    else:
        train_records, eval_records = split_records(
            records, data_args.validation_fraction, seed, stratify=not multi_label
        )
    if data_args.max_train_samples:
        train_records = train_records[: data_args.max_train_samples]
    if data_args.max_eval_samples:
        eval_records = eval_records[: data_args.max_eval_samples]
    return LabelledData(
        train=train_records,
        evaluation=eval_records or None,
        problem_type=MULTI_LABEL if multi_label else SINGLE_LABEL,
        class_names=classes,
        num_train=len(train_records),
        num_eval=len(eval_records),
        skipped=skipped,
    )


def hub_data(data_args: DataArguments) -> LabelledData:
    """Raw rows of a Hub-format dataset (train and evaluation splits) and their labels, checked for consistency."""
    from modeling_s2mae.data.hub_format import label_info, load_spectral_dataset

    def load(split: str):
        dataset = load_spectral_dataset(data_args.dataset_name, split=split, streaming=data_args.streaming)
        problem_type, names = label_info(dataset)
        if problem_type is None:
            raise DataError(
                f"{data_args.dataset_name} split {split!r} has no label column (label or labels): it cannot train a "
                "classifier."
            )
        if problem_type == SINGLE_LABEL:
            dataset = dataset.filter(lambda row: row["label"] >= 0)  # unlabeled rows are stored as -1
        return dataset, problem_type, names

    train, problem_type, names = load(data_args.dataset_train_split)
    evaluation = None
    if data_args.dataset_eval_split:
        evaluation, eval_problem_type, eval_names = load(data_args.dataset_eval_split)
        if (eval_problem_type, eval_names) != (problem_type, names):
            raise DataError(
                f"Split {data_args.dataset_eval_split!r} has {eval_problem_type} labels {eval_names} but split "
                f"{data_args.dataset_train_split!r} has {problem_type} labels {names}."
            )
    if data_args.max_train_samples:
        train = train.take(data_args.max_train_samples)
    if evaluation is not None and data_args.max_eval_samples:
        evaluation = evaluation.take(data_args.max_eval_samples)
    data = LabelledData(train=train, evaluation=evaluation, problem_type=problem_type, class_names=names)
    if not data_args.streaming:
        data.num_train, data.num_eval = len(train), len(evaluation) if evaluation is not None else 0
    return data


def check_hub_bands(dataset: Any, model_bands: Sequence[str], name: str) -> None:
    """Fail early, naming the row, when the first row of a Hub-format split lacks a band the model reads."""
    row = next(iter(dataset), None)
    if row is None:
        raise DataError(f"{name}: the split is empty.")
    missing = [band for band in model_bands if band not in row["band_names"]]
    if missing:
        raise DataError(
            f"{name}: row {row['id']!r} has bands {row['band_names']} and lacks {missing}, which the model reads "
            f"({list(model_bands)})."
        )


# --- model -------------------------------------------------------------------------------------------------------------


def label_settings(data: LabelledData) -> dict[str, Any]:
    """The config fields that describe the dataset's labels."""
    return {
        "num_labels": len(data.class_names),
        "id2label": dict(enumerate(data.class_names)),
        "label2id": {name: index for index, name in enumerate(data.class_names)},
        "problem_type": data.problem_type,
    }


def new_config(model_args: ModelArguments) -> S2MAEConfig:
    """The config of a model trained from scratch: a preset plus the overrides of the command line."""
    if model_args.preset == "sample":
        values: dict[str, Any] = {
            "hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768,
            "image_size": 64,
        }  # fmt: skip
    elif model_args.preset in S2MAE_PRESETS:
        values = dict(S2MAE_PRESETS[model_args.preset])
    else:
        raise DataError(f"--preset must be one of {sorted(S2MAE_PRESETS) + ['sample']}, got {model_args.preset!r}.")
    if model_args.image_size is not None:
        values["image_size"] = model_args.image_size
    if model_args.band_names is not None:
        values["band_names"] = model_args.band_names
    config = S2MAEConfig(**values)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
        config = S2MAEConfig(**config.to_dict())  # re-validate the combination
    return config


def _is_classifier(config: S2MAEConfig) -> bool:
    return any("ForImageClassification" in name for name in (config.architectures or []))


def check_checkpoint_labels(config: S2MAEConfig, data: LabelledData, source: str) -> None:
    """Raise when a classifier checkpoint was trained for other classes than the dataset's."""
    theirs = [config.id2label[i] for i in sorted(config.id2label)]
    hint = "Pass --reset_classifier to train a new head for the dataset's classes instead."
    if config.problem_type is not None and config.problem_type != data.problem_type:
        raise DataError(f"{source} is a {config.problem_type} model but the dataset is {data.problem_type}. {hint}")
    if len(theirs) != len(data.class_names):
        raise DataError(
            f"{source} classifies {len(theirs)} classes {theirs} but the dataset has {len(data.class_names)} "
            f"classes {data.class_names}. {hint}"
        )
    if theirs != data.class_names:
        differing = [(i, a, b) for i, (a, b) in enumerate(zip(theirs, data.class_names)) if a != b]
        raise DataError(
            f"The class names of {source} differ from the dataset's (index, checkpoint, dataset): {differing}. "
            f"Label i must mean the same class in both. {hint}"
        )


def load_model(model_args: ModelArguments, data: LabelledData) -> S2MAEForImageClassification:
    """A new classifier, or a checkpoint's encoder (and head, when it is a classifier for the same classes)."""
    overrides: dict[str, Any] = {}
    if model_args.drop_path_rate is not None:
        overrides["drop_path_rate"] = model_args.drop_path_rate
    if model_args.linear_probe:
        overrides.update(drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if model_args.model_name_or_path is None:
        config = new_config(model_args)
        for key, value in {**overrides, **label_settings(data)}.items():
            setattr(config, key, value)
        return S2MAEForImageClassification(config)

    source = model_args.model_name_or_path
    config = S2MAEConfig.from_pretrained(source)
    classifier = _is_classifier(config)
    if classifier and not model_args.reset_classifier:
        check_checkpoint_labels(config, data, source)
    if model_args.band_names is not None or model_args.config_overrides:
        logger.warning("--band_names and --config_overrides only apply to a new model; ignored for %s.", source)
    model = S2MAEForImageClassification.from_pretrained(
        source, **label_settings(data), **overrides, ignore_mismatched_sizes=classifier and model_args.reset_classifier
    )
    if classifier and model_args.reset_classifier:
        model.classifier.reset_parameters()  # also when the class count matches: the old head means other classes
        torch.nn.init.zeros_(model.classifier.bias)
    if model_args.image_size is not None and model_args.image_size != model.config.image_size:
        old = model.config.image_size
        model.resize_position_embeddings(image_size=model_args.image_size)
        logger.info("Resized %s from %d to %d px (position tables interpolated).", source, old, model_args.image_size)
    return model


def freeze_encoder(model: S2MAEForImageClassification) -> None:
    """Linear probe: freeze every encoder parameter; the pooler LayerNorm and the classifier stay trainable."""
    for name, param in model.named_parameters():
        if name.startswith("s2mae.") and not name.startswith("s2mae.pooler."):
            param.requires_grad_(False)


def build_processor(model: S2MAEForImageClassification, model_args: ModelArguments, data_args: DataArguments):
    """The image processor: the checkpoint's settings when it has one (the scaling it was trained with), the model's
    bands and size, and the command line's overrides."""
    settings: dict[str, Any] = {}
    if model_args.model_name_or_path is not None:
        try:
            saved = S2MAEImageProcessor.from_pretrained(model_args.model_name_or_path)
        except OSError:
            logger.info(
                "%s has no preprocessor_config.json; using the default scaling.", model_args.model_name_or_path
            )
        else:
            settings = {key: getattr(saved, key) for key in S2MAEImageProcessorKwargs.__annotations__}
    settings.pop("band_names", None)
    settings.pop("size", None)
    settings.pop("input_band_names", None)  # each record carries its own band names
    if data_args.scaling is not None:
        settings["scaling"] = data_args.scaling
    if data_args.band_statistics is not None:
        settings["band_mean"], settings["band_std"] = BAND_STATISTICS[data_args.band_statistics]
    if data_args.nodata is not None:
        settings["nodata"] = data_args.nodata
    return S2MAEImageProcessor.from_model_config(model.config, **settings)


# --- outputs -----------------------------------------------------------------------------------------------------------


def check_resume_settings(output_dir: Path, model_args: ModelArguments, resuming: bool) -> None:
    """Refuse to resume a run with another optimizer layout; record this run's settings for the next one."""
    path = output_dir / RUN_ARGS_FILE
    current = asdict(model_args)
    if resuming and path.is_file():
        previous = json.loads(path.read_text())
        changed = [key for key in ("linear_probe", "layer_decay") if previous.get(key) != current[key]]
        if changed:
            raise DataError(
                f"{output_dir} holds a checkpoint of a run with "
                + ", ".join(f"--{key} {previous.get(key)}" for key in changed)
                + "; resume with the same settings or choose another --output_dir."
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def write_card(
    trainer: Trainer,
    processor: S2MAEImageProcessor,
    metrics: dict[str, Any],
    model_args: ModelArguments,
    data_args: DataArguments,
    data: LabelledData,
    sample_run: bool,
    absent_classes: list[str],
) -> None:
    """The model card (README.md) of the fine-tuned checkpoint, with its evaluation results."""
    from modeling_s2mae.model_card import write_model_card

    output_dir = Path(trainer.args.output_dir)
    model, args = trainer.model, trainer.args
    base = model_args.model_name_or_path
    hub_base = base if base is not None and not os.path.isdir(base) else None
    hub_dataset = (
        data_args.dataset_name if data_args.dataset_name and not os.path.isdir(data_args.dataset_name) else None
    )
    if sample_run:
        source = "the six EuroSAT-MS tiles shipped in the s2mae repository (a smoke test, not a benchmark)"
    else:
        source = data_args.dataset_name or data_args.train_dir or data_args.bigearthnet_dir
    if model_args.linear_probe:
        mode = "linear probe (frozen encoder; pooler LayerNorm and classifier trained)"
    else:
        mode = "full fine-tuning"
    start = f"Fine-tuned from the encoder of `{base}`" if base else "Trained from scratch (no pretraining)"
    counts = f"{data.num_train} training / {data.num_eval} evaluation samples, " if data.num_train is not None else ""
    summary = (
        f"{start} with `examples/run_classification.py` on {source}: {mode}, "
        f"{len(data.class_names)} classes ({data.problem_type}), {counts}{metrics.get('train_steps')} steps, batch "
        f"{args.per_device_train_batch_size} x {args.world_size} process(es), learning rate {args.learning_rate}"
        + (f", layer-wise lr decay {model_args.layer_decay}" if model_args.layer_decay else "")
        + "."
    )
    if absent_classes:
        summary += (
            f" Macro mAP averages the {len(data.class_names) - len(absent_classes)} classes with a positive in the "
            f"evaluation set; it leaves out {', '.join(absent_classes)}."
        )
    if data.problem_type == MULTI_LABEL:
        names = ("micro_map", "macro_map")
    else:
        names = ("accuracy",)
    card_metrics = {name: metrics[f"eval_{name}"] for name in names if metrics.get(f"eval_{name}") is not None}
    write_model_card(
        output_dir,
        model.config,
        processor,
        model_name=output_dir.name,
        base_model=hub_base,
        datasets=hub_dataset,
        training_summary=summary,
        task="image-classification",
        metrics=card_metrics or None,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, training_args, sample_run = parse_arguments(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)

    # the model's bands decide which bands the data must hold: read the checkpoint's config first
    if model_args.model_name_or_path is not None:
        model_bands = list(S2MAEConfig.from_pretrained(model_args.model_name_or_path).band_names)
    else:
        model_bands = list(new_config(model_args).band_names)
    if data_args.dataset_name:
        data = hub_data(data_args)
    else:
        data = local_data(data_args, model_bands, training_args.seed)
    if data.skipped:
        names = ", ".join(Path(item.path).name for item in data.skipped[:5]) + (
            " ..." if len(data.skipped) > 5 else ""
        )
        print(f"Skipped {len(data.skipped)} bad file(s) (--skip_bad_files): {names}")
    if data.problem_type == MULTI_LABEL and training_args.label_smoothing_factor:
        raise DataError("--label_smoothing_factor applies to single-label data only (it assumes a softmax).")

    model = load_model(model_args, data)
    if model_args.linear_probe:
        freeze_encoder(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("%d of %d parameters trainable.", trainable, sum(p.numel() for p in model.parameters()))
    processor = build_processor(model, model_args, data_args)

    if data_args.dataset_name:
        from modeling_s2mae.data.hub_format import to_model_inputs

        if data_args.streaming and training_args.max_steps <= 0:
            raise DataError("A streamed --dataset_name has no length: give --max_steps (or --streaming false).")
        check_hub_bands(data.train, model_bands, f"{data_args.dataset_name} split {data_args.dataset_train_split!r}")
        train_dataset = to_model_inputs(data.train, processor)
        eval_dataset = to_model_inputs(data.evaluation, processor) if data.evaluation is not None else None
        training_args.accelerator_config.dispatch_batches = False
    else:
        train_dataset = RasterRecordDataset(data.train, processor, augment=data_args.augment, with_labels=True)
        eval_dataset = RasterRecordDataset(data.evaluation, processor, with_labels=True) if data.evaluation else None
        logger.info(
            "%d training and %d evaluation samples, classes %s.", data.num_train, data.num_eval, data.class_names
        )
    if eval_dataset is None:
        training_args.eval_strategy = "no"
        logger.warning("No evaluation data: metrics.json will hold training metrics only.")

    output_dir = Path(training_args.output_dir)
    last_checkpoint = get_last_checkpoint(output_dir) if output_dir.is_dir() else None
    resume = training_args.resume_from_checkpoint or last_checkpoint
    check_resume_settings(output_dir, model_args, bool(resume))
    if resume:
        logger.info("Resuming from %s.", resume)

    compute_metrics = MultiLabelMetrics(data.class_names) if data.problem_type == MULTI_LABEL else accuracy_metrics
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_pixels,
        compute_metrics=compute_metrics,
        layer_decay=model_args.layer_decay,
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, Any] = dict(train_result.metrics)
    metrics["train_steps"] = trainer.state.global_step
    absent_classes: list[str] = []
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
        loss = metrics.get("eval_loss")
        if loss is not None and not math.isfinite(loss):
            raise RuntimeError(f"Evaluation loss is {loss}: the run diverged; lower --learning_rate.")
        if isinstance(compute_metrics, MultiLabelMetrics):
            metrics["eval_per_class_ap"] = compute_metrics.per_class
            absent_classes = compute_metrics.classes_without_positives
            metrics["eval_classes_without_positives"] = absent_classes
    trainer.log_metrics("all", {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))})

    trainer.save_model()
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_card(trainer, processor, metrics, model_args, data_args, data, sample_run, absent_classes)
        print(f"Done: model, processor, metrics.json and model card in {output_dir}")
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (DataError, RasterReadError) as error:
        sys.exit(f"error: {error}")
