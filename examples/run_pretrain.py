"""Pretrain S2MAE with the Transformers Trainer, on one CPU or on many GPUs with `accelerate launch`.

With no arguments it pretrains a small S2MAE on the sample imagery shipped in `sample_data/` (real Sentinel-2,
EuroSAT-MS and BigEarthNet files) for a few minutes on a CPU, and writes to `outputs/s2mae-sample/`: a checkpoint
that loads with `AutoModelForPreTraining.from_pretrained`, the image processor, a model card, `metrics.json` and
`reconstructions.png` (original / masked / reconstructed at mask ratios 50/75/90/95 %).

Examples:
    python examples/run_pretrain.py                                     # the sample run
    python examples/run_pretrain.py --train_dir my_tiles/ --preset vit-b --image_size 128 \
        --output_dir runs/vitb --per_device_train_batch_size 64 --num_train_epochs 100
    python examples/run_pretrain.py --dataset_name org/my-spectral-dataset --max_steps 10000   # streamed
    accelerate launch --config_file examples/accelerate_configs/ddp.yaml examples/run_pretrain.py --train_dir ...
    # progressive pretraining: continue from a checkpoint at another image size
    python examples/run_pretrain.py --model_name_or_path runs/stage1 --image_size 128 --train_dir stage2/

Killing a run and starting it again with the same `--output_dir` resumes from the last checkpoint.
"""

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

import modeling_s2mae
from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import (
    bigearthnet_folder,
    eurosat_folder,
    load_spectral_dataset,
    raster_info,
    scene_tiles,
    to_model_inputs,
)
from modeling_s2mae.data.raster import RASTER_SUFFIXES
from modeling_s2mae.data.training import PixelCollator, RasterRecordDataset, split_records

logger = logging.getLogger("run_pretrain")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO_ROOT / "sample_data"

# The sample run: a small model on the shipped imagery, a few minutes on 2 CPU cores.
SAMPLE_RUN_DEFAULTS = [
    "--output_dir", "outputs/s2mae-sample",
    "--max_steps", "400",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "8",
    "--learning_rate", "1e-3",
    "--warmup_steps", "40",
    "--lr_scheduler_type", "cosine",
    "--weight_decay", "0.05",
    "--adam_beta2", "0.95",
    "--logging_steps", "10",
    "--eval_strategy", "steps",
    "--eval_steps", "100",
    "--save_strategy", "steps",
    "--save_steps", "100",
    "--save_total_limit", "2",
    "--dataloader_num_workers", "0",
    "--seed", "42",
]  # fmt: skip


@dataclass
class ModelArguments:
    """Which model to pretrain."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Continue from this S2MAE checkpoint (folder or Hub repo id), e.g. progressive pretraining."
        },
    )
    preset: str = field(default="sample", metadata={"help": "Encoder size: vit-s, vit-b, vit-l, vit-h or sample."})
    image_size: int | None = field(default=None, metadata={"help": "Input size in pixels (default 64 for sample)."})
    patch_size: int | None = field(default=None, metadata={"help": "Spatial cube side p."})
    spectral_patch_size: int | None = field(default=None, metadata={"help": "Bands per cube s."})
    band_names: list[str] | None = field(default=None, metadata={"help": "Model bands (default 12 Sentinel-2)."})
    mask_ratio: float | None = field(default=None, metadata={"help": "Fraction of cubes hidden (default 0.9)."})
    masking_strategy: str | None = field(default=None, metadata={"help": "random, tube or spectral."})
    norm_pix_loss: bool | None = field(default=None, metadata={"help": "Normalise each target cube."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Other config fields, e.g. 'drop_path_rate=0.1,decoder_num_hidden_layers=2'."}
    )


@dataclass
class DataArguments:
    """Where the imagery comes from and how it is prepared."""

    train_dir: list[str] | None = field(
        default=None,
        metadata={"help": "Folders of rasters (any layout, searched recursively; EuroSAT-MS class folders work)."},
    )
    bigearthnet_dir: list[str] | None = field(default=None, metadata={"help": "BigEarthNet-S2 patch folders."})
    scene_paths: list[str] | None = field(
        default=None, metadata={"help": "Large scenes (a file, or a folder of per-band files) cut into tiles."}
    )
    tile_size: int = field(default=64, metadata={"help": "Tile side for --scene_paths, in pixels."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset in the s2mae Hub format (repo id or local folder), streamed."}
    )
    dataset_train_split: str = field(default="train")
    dataset_eval_split: str | None = field(default=None, metadata={"help": "Evaluation split of --dataset_name."})
    input_band_names: list[str] | None = field(
        default=None, metadata={"help": "Names of the files' bands when they do not carry them (see the README)."}
    )
    scaling: str = field(default="minmax", metadata={"help": "minmax, reflectance, standardize or sigma."})
    nodata: float | None = field(default=None, metadata={"help": "Nodata value when the files do not define one."})
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of local samples held out."})
    augment: bool = field(default=True, metadata={"help": "RandomResizedCrop(0.2-1) + horizontal flip."})
    skip_bad_files: bool = field(
        default=False, metadata={"help": "Skip unreadable files (counted) instead of failing."}
    )
    max_train_samples: int | None = field(default=None)
    record_sample_ids: bool = field(
        default=False,
        metadata={
            "help": "Write the id of every training sample each process reads to output_dir/sample_ids.rank<N>."
        },
    )


def sample_run_requested(argv: list[str]) -> bool:
    """True when no data source is given: the run uses the shipped sample data and its defaults."""
    sources = ("--train_dir", "--bigearthnet_dir", "--scene_paths", "--dataset_name")
    return not any(arg.split("=")[0] in sources for arg in argv)


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments, bool]:
    """Parse the command line; with no data source the sample run's defaults come first (the user's win)."""
    sample_run = sample_run_requested(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(argv[0]))
        return model_args, data_args, training_args, False
    defaults = SAMPLE_RUN_DEFAULTS if sample_run else ["--output_dir", "outputs/s2mae-pretrain"]
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        defaults = [*defaults, "--use_cpu", "True"]  # several CPU processes (torchrun): DDP over gloo
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=defaults + argv)
    if sample_run:
        data_args.train_dir = [str(SAMPLE_DATA / "eurosat_ms"), str(SAMPLE_DATA / "sentinel2_tile")]
        data_args.bigearthnet_dir = [str(SAMPLE_DATA / "bigearthnet")]
        data_args.scene_paths = [str(SAMPLE_DATA / "sentinel2_scene")]
    training_args.remove_unused_columns = False  # the collator needs pixel_mask
    training_args.ddp_find_unused_parameters = False
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False
    return model_args, data_args, training_args, sample_run


def build_config(model_args: ModelArguments) -> S2MAEConfig:
    """The config of a new model: a preset plus the overrides given on the command line."""
    values: dict = {}
    if model_args.preset == "sample":
        values.update(
            hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768,
            decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
            decoder_intermediate_size=512, image_size=64,
        )  # fmt: skip
    else:
        values.update(modeling_s2mae.S2MAE_PRESETS[model_args.preset])
    for name in ("image_size", "patch_size", "spectral_patch_size", "band_names", "mask_ratio", "masking_strategy"):
        if getattr(model_args, name) is not None:
            values[name] = getattr(model_args, name)
    if model_args.norm_pix_loss is not None:
        values["norm_pix_loss"] = model_args.norm_pix_loss
    config = S2MAEConfig(**values)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
        config = S2MAEConfig(**config.to_dict())  # re-validate the combination
    return config


def load_model(model_args: ModelArguments) -> S2MAEForPreTraining:
    """A new model, or a checkpoint adapted to the requested image size / bands (position tables interpolated)."""
    if model_args.model_name_or_path is None:
        return S2MAEForPreTraining(build_config(model_args))
    model = S2MAEForPreTraining.from_pretrained(model_args.model_name_or_path)
    if model_args.image_size is not None or model_args.band_names is not None:
        old = (model.config.image_size, model.config.num_channels)
        model.resize_position_embeddings(image_size=model_args.image_size, band_names=model_args.band_names)
        logger.info(
            "Adapted %s from %s px / %s bands to %s px / %s bands (position tables interpolated).",
            model_args.model_name_or_path, *old, model.config.image_size, model.config.num_channels,
        )  # fmt: skip
    for name in ("mask_ratio", "masking_strategy", "norm_pix_loss"):
        if getattr(model_args, name) is not None:
            setattr(model.config, name, getattr(model_args, name))
    return model


def local_records(data_args: DataArguments) -> list[dict]:
    """Records of every local source, with the count of skipped bad files logged."""
    record_sets = []
    for folder in data_args.train_dir or []:
        record_sets.append(raster_folder(folder, data_args))
    for folder in data_args.bigearthnet_dir or []:
        record_sets.append(bigearthnet_folder(folder, skip_bad_files=data_args.skip_bad_files))
    if data_args.scene_paths:
        record_sets.append(
            scene_tiles(data_args.scene_paths, data_args.tile_size, skip_bad_files=data_args.skip_bad_files)
        )
    records = [record for record_set in record_sets for record in record_set]
    skipped = sum(record_set.num_skipped for record_set in record_sets)
    if skipped:
        print(f"Skipped {skipped} bad file(s) (--skip_bad_files); see the log for which.")
    if not records:
        raise ValueError("No training samples found in the given folders / scenes.")
    return records


def raster_folder(folder: str, data_args: DataArguments):
    """A folder of rasters: EuroSAT-MS class folders if it looks like one, else every raster file in it."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--train_dir {folder!r} is not a folder.")
    class_dirs = [path for path in root.iterdir() if path.is_dir()]
    if class_dirs and all(any(p.suffix.lower() in RASTER_SUFFIXES for p in d.iterdir()) for d in class_dirs):
        band_names = data_args.input_band_names  # None: EuroSAT-MS order, B8A last
        kwargs = {"band_names": band_names} if band_names else {}
        return eurosat_folder(root, skip_bad_files=data_args.skip_bad_files, **kwargs)
    files = sorted(path for path in root.rglob("*") if path.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise ValueError(f"--train_dir {folder!r} holds no raster file ({', '.join(RASTER_SUFFIXES)}).")
    # a whole file per sample: a tile as large as the file
    return scene_tiles(
        [str(path) for path in files],
        tile_size=_file_side(files[0]),
        band_names=data_args.input_band_names,
        skip_bad_files=data_args.skip_bad_files,
    )


def _file_side(path: Path) -> int:
    info = raster_info([path])
    return min(info.height, info.width)


def streamed_datasets(data_args: DataArguments, processor: S2MAEImageProcessor):
    """Train / eval datasets streamed from a dataset in the s2mae Hub format (repo id or local folder)."""

    def stream(split: str, with_ids: bool):
        dataset = load_spectral_dataset(data_args.dataset_name, split=split, streaming=True)
        return to_model_inputs(dataset, processor, with_labels=False, with_ids=with_ids)

    train = stream(data_args.dataset_train_split, data_args.record_sample_ids)
    evaluation = stream(data_args.dataset_eval_split, False) if data_args.dataset_eval_split else None
    return train, evaluation


def write_outputs(trainer: Trainer, processor, eval_dataset, metrics: dict, model_args, data_args, sample_run):
    """Save the model, processor, metrics, model card and reconstructions plot (main process only)."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return
    processor.save_pretrained(output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model = trainer.model.eval()
    if eval_dataset is not None:
        from visualize_reconstructions import plot_reconstructions

        pixel_values = next(iter(eval_dataset))["pixel_values"]
        plot_reconstructions(model, pixel_values, output_dir / "reconstructions.png", title="S2MAE reconstructions")
    write_card(output_dir, model, processor, metrics, model_args, data_args, sample_run, trainer.args)


def is_local(path_or_repo_id: str | None) -> bool:
    return path_or_repo_id is None or os.path.isdir(path_or_repo_id)


def write_card(output_dir, model, processor, metrics, model_args, data_args, sample_run, training_args):
    """The model card (README.md) of the checkpoint."""
    from modeling_s2mae.model_card import write_model_card

    sources = "the sample imagery shipped in the s2mae repository" if sample_run else ", ".join(
        str(value) for value in (data_args.dataset_name, data_args.train_dir, data_args.bigearthnet_dir,
                                 data_args.scene_paths) if value
    )  # fmt: skip
    start = f" starting from `{model_args.model_name_or_path}`" if model_args.model_name_or_path else ""
    summary = (
        f"Pretrained with `examples/run_pretrain.py`{start} on {sources}: {metrics.get('train_steps')} steps, "
        f"batch {training_args.per_device_train_batch_size} x {training_args.world_size} process(es), "
        f"learning rate {training_args.learning_rate}, mask ratio {model.config.mask_ratio} "
        f"({model.config.masking_strategy} masking). Final eval loss: {metrics.get('eval_loss')}."
    )
    write_model_card(
        output_dir,
        model.config,
        processor,
        model_name=output_dir.name,
        # only a Hub id makes a valid base_model link; a local folder is named in the training summary
        base_model=None if is_local(model_args.model_name_or_path) else model_args.model_name_or_path,
        training_summary=summary,
        task="pretraining",
        metrics={key: value for key, value in metrics.items() if key == "eval_loss" and value is not None},
    )


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, training_args, sample_run = parse_arguments(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)

    model = load_model(model_args)
    processor = S2MAEImageProcessor.from_model_config(model.config, scaling=data_args.scaling, nodata=data_args.nodata)
    if data_args.dataset_name:
        if training_args.max_steps <= 0:
            raise ValueError("A streamed --dataset_name has no length: give --max_steps.")
        train_dataset, eval_dataset = streamed_datasets(data_args, processor)
        # each rank reads its own shards of the stream (never also split_dataset_by_node: data would be lost)
        training_args.accelerator_config.dispatch_batches = False
    else:
        records = local_records(data_args)
        train_records, eval_records = split_records(records, data_args.validation_fraction, training_args.seed)
        if data_args.max_train_samples:
            train_records = train_records[: data_args.max_train_samples]
        train_dataset = RasterRecordDataset(
            train_records, processor, augment=data_args.augment, with_ids=data_args.record_sample_ids
        )
        eval_dataset = RasterRecordDataset(eval_records, processor) if eval_records else None
        logger.info("%d training and %d validation samples.", len(train_records), len(eval_records))
    if eval_dataset is None:
        training_args.eval_strategy = "no"

    last_checkpoint = (
        get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
    )
    resume = training_args.resume_from_checkpoint or last_checkpoint
    if resume:
        logger.info("Resuming from %s.", resume)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=PixelCollator(
            str(Path(training_args.output_dir) / "sample_ids") if data_args.record_sample_ids else None
        ),
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    metrics = dict(train_result.metrics)
    metrics["train_steps"] = trainer.state.global_step
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
        loss = metrics.get("eval_loss")
        if loss is not None and not math.isfinite(loss):
            raise RuntimeError(f"Evaluation loss is {loss}: the run diverged; lower --learning_rate.")
    trainer.log_metrics("all", metrics)
    write_outputs(trainer, processor, eval_dataset, metrics, model_args, data_args, sample_run)
    if trainer.is_world_process_zero():
        print(f"Done: checkpoint, processor, model card and reconstructions in {training_args.output_dir}")
    return metrics


if __name__ == "__main__":
    main()
