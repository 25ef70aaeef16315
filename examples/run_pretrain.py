"""Pretrain S2MAE with the Transformers Trainer, on one CPU or on many GPUs with `accelerate launch`.

With no arguments it pretrains a small S2MAE on the sample imagery shipped in `sample_data/` (real Sentinel-2,
EuroSAT-MS and BigEarthNet files) for a few minutes on a CPU, and writes to `outputs/s2mae-sample/`: a checkpoint
that loads with `AutoModelForPreTraining.from_pretrained`, the image processor (with the band statistics it computed),
a model card, `metrics.json` and `reconstructions.png` (original / masked / reconstructed at mask ratios
50/75/90/95 %).

Examples:
    python examples/run_pretrain.py                                     # the sample run
    python examples/run_pretrain.py --train_dir my_tiles/ --preset vit-b --image_size 128 \
        --output_dir runs/vitb --per_device_train_batch_size 64 --num_train_epochs 100
    python examples/run_pretrain.py --scene_paths landsat.tif --input_band_names B1 B2 B3 B4 B5 B7 \
        --band_names B1 B2 B3 B4 B5 B7 --spectral_patch_size 3 --tile_size 64 --nodata 0
    python examples/run_pretrain.py --dataset_name org/my-spectral-dataset --max_steps 10000   # streamed
    accelerate launch --config_file examples/accelerate_configs/ddp.yaml examples/run_pretrain.py --train_dir ...
    # another sensor, placed by wavelength: Landsat 7 ETM+ bands and wavelengths from the sensor registry
    python examples/run_pretrain.py --scene_paths landsat.tif --sensor landsat7_etm --spectral_patch_size 3 \
        --config_overrides position_embedding_type=wavelength --tile_size 64 --nodata 0
    # a ~200-band hyperspectral cube (ENVI header with wavelength = {...}), binned by wavelength to 24 bands
    python examples/run_pretrain.py --scene_paths cube.img --sensor data --spectral_bins 24 \
        --position_embedding_type wavelength --spectral_padding repeat --tile_size 32

Killing a run and starting it again with the same `--output_dir` resumes from the last complete checkpoint.
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from modeling_s2mae import S2MAEForPreTraining
from modeling_s2mae.data import PixelCollator, SampleDataset, SampleTransform
from modeling_s2mae.data.labelled_rasters import probe_records
from modeling_s2mae.data.pipeline import (
    SENSOR_FROM_DATA,
    SpectralBands,
    SpectralDataArguments,
    build_datasets,
    build_processor,
    check_run_token_budget,
    local_training_records,
    spectral_bands,
    statistics_samples,
)
from modeling_s2mae.model_card import hub_id, training_summary, write_model_card
from modeling_s2mae.probing import ProbeCallback
from modeling_s2mae.training import (
    DATA_SOURCE_FLAGS,
    S2MAETrainer,
    SkippedSamplesCallback,
    build_config,
    check_metric_for_best_model,
    check_model_name_or_path,
    check_resume_compatible,
    end_run,
    find_resume_checkpoint,
    gives_flag,
    parse_script_arguments,
    prepare_training_arguments,
    start_run,
    train_and_evaluate,
    write_text_safely,
)
from modeling_s2mae.visualization import plot_reconstructions

logger = logging.getLogger("run_pretrain")

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"

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
    "--tile_size", "64",
]  # fmt: skip
SAMPLE_SOURCES = [
    str(SAMPLE_DATA / name) for name in ("eurosat_ms", "sentinel2_tile", "bigearthnet", "sentinel2_scene")
]


@dataclass
class ModelArguments:
    """Which model to pretrain."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue from this S2MAE checkpoint (folder or Hub id): progressive pretraining."},
    )
    preset: str = field(default="sample", metadata={"help": "Encoder size: vit-s, vit-b, vit-l, vit-h or sample."})
    image_size: int | None = field(default=None, metadata={"help": "Input size in pixels (default 64 for sample)."})
    patch_size: int | None = field(default=None, metadata={"help": "Spatial cube side p."})
    spectral_patch_size: int | None = field(default=None, metadata={"help": "Bands per cube s."})
    band_names: list[str] | None = field(default=None, metadata={"help": "Model bands (default 12 Sentinel-2)."})
    mask_ratio: float | None = field(
        default=None, metadata={"help": "Fraction of cubes hidden (default 0.75 for --preset sample, else 0.9)."}
    )
    masking_strategy: str | None = field(default=None, metadata={"help": "random, tube or spectral."})
    norm_pix_loss: bool | None = field(default=None, metadata={"help": "Normalise each target cube."})
    position_embedding_type: str | None = field(
        default=None,
        metadata={"help": "separable, joint, sincos or wavelength (spectral positions computed from wavelengths)."},
    )
    spectral_padding: str | None = field(
        default=None,
        metadata={"help": "A band count not divisible by --spectral_patch_size: error (default) or repeat."},
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Other config fields, e.g. 'drop_path_rate=0.1,decoder_num_hidden_layers=2'."}
    )


@dataclass
class DataArguments(SpectralDataArguments):
    """Where the imagery comes from and how it is prepared (see SpectralDataArguments)."""

    record_sample_ids: bool = field(
        default=False, metadata={"help": "Write the id of every training sample each process reads to output_dir."}
    )
    probe_train_dir: str | None = field(
        default=None, metadata={"help": "Labelled class folders for a k-NN probe during pretraining."}
    )
    probe_scene_paths: list[str] | None = field(
        default=None, metadata={"help": "Labelled scenes (with --probe_label_raster) for a k-NN probe."}
    )
    probe_label_raster: list[str] | None = field(default=None, metadata={"help": "One label raster per scene."})
    probe_tile_size: int = field(default=32, metadata={"help": "Tile side of the probe's scene tiles."})
    probe_every_n_steps: int = field(
        default=200, metadata={"help": "Probe every N steps (logged as probe_knn_accuracy, TensorBoard included)."}
    )
    probe_k: int = field(default=10, metadata={"help": "Neighbours of the k-NN probe."})


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments, bool]:
    """Parse the command line; with no data source the sample run's defaults come first (the user's win)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    from_json = len(argv) == 1 and argv[0].endswith(".json")
    sample_run = not from_json and not gives_flag(argv, DATA_SOURCE_FLAGS)
    defaults = SAMPLE_RUN_DEFAULTS + ["--train_dir", *SAMPLE_SOURCES] if sample_run else []
    defaults = defaults or ["--output_dir", "outputs/s2mae-pretrain"]
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        defaults = [*defaults, "--use_cpu", "True"]  # several CPU processes (torchrun): DDP over gloo
    model_args, data_args, training_args = parse_script_arguments(parser, argv, defaults)
    if not data_args.has_source:
        raise ValueError("Give a data source: --train_dir, --scene_paths or --dataset_name.")
    if data_args.dataset_name and training_args.max_steps <= 0:
        raise ValueError("A streamed --dataset_name has no length: give --max_steps.")
    prepare_training_arguments(training_args)
    return model_args, data_args, training_args, sample_run


def load_model(model_args: ModelArguments, spectral: SpectralBands | None = None) -> S2MAEForPreTraining:
    """A new model, or a checkpoint adapted to the requested image size / bands (position tables interpolated, or
    placed by wavelength for the bands of `--sensor` / `--spectral_bins`)."""
    fields = {name: getattr(model_args, name) for name in ("image_size", "patch_size", "spectral_patch_size",
                                                            "band_names", "mask_ratio", "masking_strategy",
                                                            "norm_pix_loss", "position_embedding_type",
                                                            "spectral_padding")}  # fmt: skip
    if spectral is not None:
        fields.update(spectral.config_fields())
    if model_args.model_name_or_path is None:
        return S2MAEForPreTraining(build_config(model_args.preset, model_args.config_overrides, **fields))
    model = S2MAEForPreTraining.from_pretrained(check_model_name_or_path(model_args.model_name_or_path))
    if spectral is not None:
        model.resize_position_embeddings(
            image_size=model_args.image_size, band_names=spectral.band_names,
            band_wavelengths=spectral.band_wavelengths, band_bandwidths=spectral.band_bandwidths,
        )  # fmt: skip
    elif model_args.image_size is not None or model_args.band_names is not None:
        model.resize_position_embeddings(image_size=model_args.image_size, band_names=model_args.band_names)
    for name in ("mask_ratio", "masking_strategy", "norm_pix_loss"):
        if fields[name] is not None:
            setattr(model.config, name, fields[name])
    return model


def probe_callback(data_args: DataArguments, processor, seed: int) -> ProbeCallback | None:
    """The k-NN probe run during pretraining on a labelled set, when one is given."""
    if not (data_args.probe_train_dir or data_args.probe_scene_paths):
        return None
    train, test = probe_records(
        train_dir=data_args.probe_train_dir, scene_paths=data_args.probe_scene_paths,
        label_rasters=data_args.probe_label_raster, tile_size=data_args.probe_tile_size, seed=seed,
    )  # fmt: skip
    if not train or not test:
        raise ValueError(
            f"The k-NN probe set splits into {len(train)} train / {len(test)} test samples: both need some. Give "
            "--probe_train_dir at least 2 samples per class (a class with one sample goes to train only), or more "
            "labelled tiles with --probe_scene_paths."
        )
    k = data_args.probe_k
    if k > len(train):
        logger.warning("--probe_k %d is more than the %d probe train samples: the probe uses k=%d.", k, len(train),
                       len(train))  # fmt: skip
        k = len(train)
    transform = SampleTransform(processor, min_valid_fraction=0.0, with_labels=True)
    logger.info("k-NN probe every %d steps on %d / %d labelled samples.", data_args.probe_every_n_steps,
                len(train), len(test))  # fmt: skip
    return ProbeCallback(
        SampleDataset(train, transform), SampleDataset(test, transform), data_args.probe_every_n_steps,
        k=k,
    )  # fmt: skip


def write_outputs(trainer, processor, data, metrics: dict, model_args, data_args, sample_run: bool) -> None:
    """Save the model, processor, metrics, model card and reconstructions figure (main process only)."""
    output_dir = Path(trainer.args.output_dir)
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return
    processor.save_pretrained(output_dir)
    write_text_safely(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    model = trainer.model.eval()
    padded = model.config.num_channels % model.config.spectral_patch_size != 0
    if data.evaluation is not None and padded:  # the figure cuts whole groups of s bands
        logger.warning("No reconstructions.png: %d bands are not whole groups of %d (spectral_padding='repeat').",
                       model.config.num_channels, model.config.spectral_patch_size)  # fmt: skip
    elif data.evaluation is not None:
        pixel_values = next(iter(data.evaluation))["pixel_values"]
        plot_reconstructions(model, pixel_values, output_dir / "reconstructions.png", title="S2MAE reconstructions")
    sources = "the sample imagery shipped in the s2mae repository" if sample_run else ", ".join(
        str(value) for value in (data_args.dataset_name, data_args.train_dir, data_args.scene_paths) if value
    )  # fmt: skip
    config, eval_loss = model.config, metrics.get("eval_loss")
    summary = training_summary(
        trainer.args, task="pretraining", data=sources, steps=metrics.get("train_steps"),
        script="examples/run_pretrain.py", start_from=model_args.model_name_or_path,
        details=[f"mask ratio {config.mask_ratio} ({config.masking_strategy} masking)", f"{processor.scaling} scaling"],
        notes=f"Final eval loss: {eval_loss}." if eval_loss is not None else None,
    )  # fmt: skip
    write_model_card(
        output_dir, config, processor, model_name=output_dir.name, base_model=hub_id(model_args.model_name_or_path),
        training_summary=summary, task="pretraining", metrics={"eval_loss": eval_loss} if eval_loss is not None else None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, sample_run = parse_arguments(sys.argv[1:] if argv is None else argv)
    start_run(training_args)

    local = bool(data_args.train_dir or data_args.scene_paths)
    records = None
    if local and data_args.sensor == SENSOR_FROM_DATA:  # the first file names the bands: list the files first
        records = local_training_records(data_args, training_args.seed, False, model_args.band_names)
    spectral = spectral_bands(data_args, model_args.band_names, records)
    model = load_model(model_args, spectral)
    logger.info("Token budget: %s.", check_run_token_budget(
        model.config, data_args, training_args.per_device_train_batch_size
    ))  # fmt: skip
    resume = training_args.resume_from_checkpoint or find_resume_checkpoint(training_args.output_dir)
    if resume:
        check_resume_compatible(resume, model.config)
        logger.info("Resuming from %s.", resume)
    if local and records is None:
        source_bands = spectral.source_band_names if spectral is not None else model.config.band_names
        records = local_training_records(data_args, training_args.seed, False, source_bands)
    binning = spectral.binning if spectral is not None else None
    processor = build_processor(
        model.config, data_args, checkpoint=resume or model_args.model_name_or_path,
        default_scaling="dataset_range", statistics_samples=statistics_samples(data_args, records), binning=binning,
    )  # fmt: skip
    data = build_datasets(
        data_args, processor, seed=training_args.seed, with_labels=False,
        with_ids=data_args.record_sample_ids, records=records, config=model.config, binning=binning,
    )  # fmt: skip
    if data.skipped_files:
        print(f"Skipped {len(data.skipped_files)} bad file(s) (--skip_bad_files); see the log for which.")
    if data.num_train is not None:
        logger.info("%d training and %d validation samples.", data.num_train, data.num_eval)
    if data_args.dataset_name:
        # each rank reads its own shards of the stream (never also split_dataset_by_node: data would be lost)
        training_args.accelerator_config.dispatch_batches = False
    if data.evaluation is None:
        training_args.eval_strategy = "no"
    check_metric_for_best_model(training_args, [])  # pretraining evaluates its loss only

    skipped = SkippedSamplesCallback(data.train_transform, data.eval_transform)
    ids_file = str(Path(training_args.output_dir) / "sample_ids") if data_args.record_sample_ids else None
    probe = probe_callback(data_args, processor, training_args.seed)
    trainer = S2MAETrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.evaluation,
        data_collator=PixelCollator(ids_file),
        processing_class=processor,  # saved in every checkpoint: a resumed run scales exactly as before
        callbacks=[skipped],
    )
    if probe is not None:
        probe.attach(trainer)
    metrics = train_and_evaluate(trainer, resume)
    metrics.update(skipped.counts())
    trainer.log_metrics("all", metrics)
    print(f"Skipped {metrics['skipped_samples']} sample(s) and redrew {metrics['redrawn_crops']} crop(s) with too few "
          f"valid pixels (--min_valid_fraction {data_args.min_valid_fraction}).")  # fmt: skip
    write_outputs(trainer, processor, data, metrics, model_args, data_args, sample_run)
    if trainer.is_world_process_zero():
        print(f"Done: checkpoint, processor, model card and reconstructions in {training_args.output_dir}")
    end_run()
    return metrics


if __name__ == "__main__":
    main()
