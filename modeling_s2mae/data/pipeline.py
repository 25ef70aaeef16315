"""From command-line data arguments to train / evaluation datasets: the part of every script that is not Trainer.

`SpectralDataArguments` holds what all scripts accept about data (sources, bands, nodata, tiling, scaling,
nodata-robust sampling, split) and checks it; `build_processor` makes the image processor (computing dataset
statistics on the training data when the scaling needs them and none are given); `build_datasets` lists, splits and
wraps the samples, local files and streamed rows alike, through one `SampleTransform` each for training and
evaluation.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..hyperspectral import DEFAULT_MAX_TOKENS, check_token_budget
from ..image_processing_s2mae import (
    EUROSAT_BAND_MEAN,
    EUROSAT_BAND_STD,
    FMOW_SENTINEL_BAND_MEAN,
    FMOW_SENTINEL_BAND_STD,
    S2MAEImageProcessor,
)
from ..sensors import SENTINEL2_BANDS, band_positions, get_sensor, known_band_wavelengths
from .builders import RecordSet, SkippedFile
from .hub_format import MULTI_LABEL, SINGLE_LABEL, label_info, load_spectral_dataset, to_model_inputs
from .samples import record_to_sample
from .sources import collect_records
from .statistics import BandStatistics, compute_band_statistics
from .training import SampleDataset, split_records
from .transforms import DEFAULT_MIN_VALID_FRACTION, SampleTransform, SpectralBinning

logger = logging.getLogger(__name__)

NAMED_BAND_STATISTICS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "eurosat": (EUROSAT_BAND_MEAN, EUROSAT_BAND_STD),
    "fmow-sentinel": (FMOW_SENTINEL_BAND_MEAN, FMOW_SENTINEL_BAND_STD),
}
"""Published per-band mean / std by name, for `--band_statistics` with "standardize" / "sigma" scaling."""

SENSOR_FROM_DATA = "data"
"""`--sensor data`: the bands and their wavelengths are read from the first training file's metadata."""


@dataclass
class SpectralDataArguments:
    """What every script accepts about its data. Exactly one kind of source: local folders / scenes, or a dataset."""

    train_dir: list[str] | None = field(
        default=None,
        metadata={
            "help": "Dataset folders of any layout: EuroSAT-style class folders, BigEarthNet-S2 v1 patch folders, or "
            "folders of rasters / per-band scene folders (cut into --tile_size tiles)."
        },
    )
    scene_paths: list[str] | None = field(
        default=None, metadata={"help": "Large scenes (a file, or a folder of per-band files) cut into tiles."}
    )
    validation_dir: list[str] | None = field(
        default=None, metadata={"help": "Evaluation folders in the same layout (default: a held-out fraction)."}
    )
    tile_size: int | None = field(
        default=None, metadata={"help": "Tile side in pixels for scenes (default: one sample per scene)."}
    )
    tile_stride: int | None = field(default=None, metadata={"help": "Step between tiles (default: --tile_size)."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset in the s2mae Hub format (repo id or local folder), streamed."}
    )
    dataset_format: str = field(
        default="s2mae",
        metadata={"help": "Format of --dataset_name: s2mae (this project's parquet) or majortom (Major-TOM Core-S2)."},
    )
    max_cloud_fraction: float | None = field(
        default=None, metadata={"help": "Major-TOM: drop tiles whose cloud mask covers more than this share."}
    )
    benv2_lmdb: str | None = field(default=None, metadata={"help": "BigEarthNet v2 (reBEN): the LMDB folder."})
    benv2_metadata: list[str] | None = field(
        default=None, metadata={"help": "BigEarthNet v2: metadata.parquet (and the snow/cloud metadata file)."}
    )
    dataset_train_split: str = field(default="train")
    dataset_eval_split: str | None = field(default=None, metadata={"help": "Evaluation split of --dataset_name."})
    input_band_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names of the files' bands in file order, where the files do not declare them."},
    )
    nodata: float | None = field(
        default=None, metadata={"help": "Nodata value for files that define none (each file's own value wins)."}
    )
    scaling: str | None = field(
        default=None,
        metadata={
            "help": "dataset_range (per-band 1st-99th percentiles of the training data -> [0, 1]; computed when not "
            "given), minmax (per image), reflectance, standardize or sigma. Default: the checkpoint's, else the "
            "script's."
        },
    )
    band_statistics: str | None = field(
        default=None,
        metadata={
            "help": "Band statistics: a JSON file written by compute_band_statistics (BandStatistics.to_dict), or "
            "'eurosat' / 'fmow-sentinel' (mean/std for standardize and sigma)."
        },
    )
    range_percentiles: list[float] = field(
        default_factory=lambda: [1.0, 99.0],
        metadata={"help": "Low and high percentile of each band mapped to 0 and 1 by dataset_range scaling."},
    )
    statistics_max_samples: int = field(
        default=256, metadata={"help": "Training samples read to compute band statistics when none are given."}
    )
    reflectance_scale: float | None = field(default=None, metadata={"help": "reflectance scaling: divisor."})
    reflectance_offset: float | None = field(
        default=None, metadata={"help": "reflectance scaling: added first (-1000 for S2 baseline >= 04.00)."}
    )
    min_valid_fraction: float = field(
        default=DEFAULT_MIN_VALID_FRACTION,
        metadata={"help": "Share of valid pixels a sample or random crop needs; sparser ones are skipped / redrawn."},
    )
    validation_fraction: float = field(default=0.15, metadata={"help": "Share of local samples held out, in [0, 1)."})
    augment: bool = field(default=True, metadata={"help": "RandomResizedCrop(0.2-1) + horizontal flip."})
    skip_bad_files: bool = field(
        default=False, metadata={"help": "Skip unreadable files (counted) instead of failing."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a seeded random subset of this many local samples."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on a seeded random subset of this many local samples."}
    )
    sensor: str | None = field(
        default=None,
        metadata={
            "help": "The sensor of the data: a registry name (sentinel2a, landsat5_tm, landsat7_etm, landsat8_oli, "
            "...; a new model takes its default bands and their wavelengths), or 'data' (band names, wavelengths "
            "and bandwidths read from the first training file: ENVI 'wavelength = {...}', GDAL band metadata)."
        },
    )
    spectral_bins: int | None = field(
        default=None,
        metadata={
            "help": "Average the bands into this many equal-width wavelength bins before the model (hyperspectral "
            "cubes: e.g. 198 bands -> 24 bins); the model's bands are the bins. Needs known wavelengths."
        },
    )
    max_tokens: int = field(
        default=DEFAULT_MAX_TOKENS,
        metadata={"help": "Refuse (before training) a model whose input makes more tokens than this."},
    )

    def __post_init__(self) -> None:
        local = bool(self.train_dir or self.scene_paths)
        if sum((local, bool(self.dataset_name), bool(self.benv2_lmdb))) > 1:
            raise ValueError(
                "Give one kind of data: --train_dir / --scene_paths, --dataset_name or --benv2_lmdb, not both."
            )
        if bool(self.benv2_lmdb) != bool(self.benv2_metadata):
            raise ValueError("--benv2_lmdb and --benv2_metadata go together (the LMDB folder and metadata.parquet).")
        if self.dataset_format not in ("s2mae", "majortom"):
            raise ValueError(f"--dataset_format must be s2mae or majortom, got {self.dataset_format!r}.")
        if self.dataset_format == "majortom" and self.tile_size is None:
            raise ValueError("--dataset_format majortom needs --tile_size (its grid cells are 1068 px wide).")
        if self.validation_dir and not local:
            raise ValueError("--validation_dir goes with --train_dir / --scene_paths.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"--validation_fraction must be in [0, 1), got {self.validation_fraction}.")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"--min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}.")
        if self.sensor is not None and self.sensor != SENSOR_FROM_DATA:
            get_sensor(self.sensor)  # an unknown name fails here, listing the known ones
        names = ("tile_size", "tile_stride", "statistics_max_samples", "max_train_samples", "max_eval_samples")
        for name in (*names, "spectral_bins", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")
        percentiles = list(self.range_percentiles or [])
        if len(percentiles) != 2 or not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
            raise ValueError(
                f"--range_percentiles must be two numbers 0 <= low < high <= 100, got {self.range_percentiles}."
            )

    @property
    def has_source(self) -> bool:
        return bool(self.train_dir or self.scene_paths or self.dataset_name or self.benv2_lmdb)


@dataclass
class TrainingData:
    """The datasets a script trains and evaluates on, with what is known about them."""

    train: Any
    evaluation: Any | None
    train_transform: SampleTransform
    eval_transform: SampleTransform
    problem_type: str | None = None
    class_names: list[str] = field(default_factory=list)
    num_train: int | None = None
    num_eval: int | None = None
    skipped_files: list[SkippedFile] = field(default_factory=list)


@dataclass
class SpectralBands:
    """The bands a new model is built for, from `--sensor` / `--band_names` / `--spectral_bins`.

    Attributes:
        band_names: The model's C band names (the bins' names with binning).
        band_wavelengths: C centre wavelengths in nm.
        band_bandwidths: C bandwidths in nm, or None (estimated from the spacing where needed).
        sensor: The registry name for the config, or None.
        source_band_names: The bands every file must have (the binned bands with binning).
        binning: The `SpectralBinning` applied to every sample, or None.
    """

    band_names: list[str]
    band_wavelengths: list[float]
    band_bandwidths: list[float] | None
    sensor: str | None
    source_band_names: list[str]
    binning: SpectralBinning | None = None

    def config_fields(self) -> dict[str, Any]:
        """Keyword arguments of `S2MAEConfig` / `build_config`."""
        return {
            "band_names": list(self.band_names),
            "band_wavelengths": list(self.band_wavelengths),
            "band_bandwidths": None if self.band_bandwidths is None else list(self.band_bandwidths),
            "sensor": self.sensor,
        }


def _first_raster(args: SpectralDataArguments, records: tuple[RecordSet, list, list] | None) -> Any:
    """The first training sample's `RasterSample` (read now), for `--sensor data`."""
    if records is not None:
        if records[1]:
            return record_to_sample(records[1][0]).raster
        raise ValueError("--sensor data reads the bands from the first training file, but there is none.")
    for item in statistics_samples(args, records):
        return getattr(item, "raster", item)
    raise ValueError("--sensor data reads the bands from the first training file, but there is none.")


def spectral_bands(
    args: SpectralDataArguments,
    band_names: Sequence[str] | None = None,
    records: tuple[RecordSet, list, list] | None = None,
) -> SpectralBands | None:
    """The bands of a new model from `--sensor` and `--spectral_bins` (None when neither is given).

    Args:
        args: The data arguments.
        band_names: `--band_names`, if given: a subset / order of the sensor's (or the file's) bands.
        records: Local records (`local_training_records`), for `--sensor data`.

    Raises:
        ValueError: `--sensor data` on a file without wavelength metadata, `--spectral_bins` without known
            wavelengths, or band names the sensor lacks.
    """
    if args.sensor is None and args.spectral_bins is None:
        return None
    sensor_name, wavelengths, bandwidths = None, None, None
    if args.sensor == SENSOR_FROM_DATA:
        raster = _first_raster(args, records)
        if band_names is not None:
            raster = raster.select(band_names)
        if raster.band_wavelengths is None:
            raise ValueError(
                f"--sensor data: {raster.source[0]} has no wavelength metadata (ENVI 'wavelength = {{...}}', GDAL band "
                "'wavelength' items or descriptions such as '450.0 Nanometers'). Name a registered sensor with "
                "--sensor, or add the wavelengths to the file."
            )
        names, wavelengths, bandwidths = list(raster.band_names), raster.band_wavelengths, raster.band_bandwidths
    elif args.sensor is not None:
        sensor = get_sensor(args.sensor)
        names = list(band_names) if band_names is not None else list(sensor.default_bands)
        sensor_name, wavelengths, bandwidths = sensor.name, sensor.wavelengths(names), sensor.bandwidths(names)
    else:  # binning of the model's own bands (Sentinel-2 by default): their wavelengths must be known
        names = list(band_names) if band_names is not None else list(SENTINEL2_BANDS)
        known = known_band_wavelengths(names)
        if known is None:
            raise ValueError(
                f"--spectral_bins needs the wavelengths of the bands {names}: give --sensor NAME, or --sensor data "
                "to read them from the files."
            )
        wavelengths, bandwidths = known
    if args.spectral_bins is None:
        return SpectralBands(
            names, list(wavelengths), None if bandwidths is None else list(bandwidths), sensor_name, names
        )
    binning = SpectralBinning.from_wavelengths(names, wavelengths, args.spectral_bins, bandwidths)
    logger.info(
        "Spectral binning: %d bands (%.0f-%.0f nm) -> %d bins of about %.0f nm.", len(names), min(wavelengths),
        max(wavelengths), len(binning.bin_names), (max(wavelengths) - min(wavelengths)) / args.spectral_bins,
    )  # fmt: skip
    return SpectralBands(
        list(binning.bin_names), list(binning.wavelengths), list(binning.bandwidths), None, names, binning
    )


def wants_band_wavelengths(config: Any) -> bool:
    """Whether a run's batches carry `band_wavelengths` / `band_bandwidths`: for models whose spectral positions
    are computed from wavelengths. Index-table models keep their batches as before (pixel_values / pixel_mask)."""
    return getattr(config, "position_embedding_type", None) == "wavelength"


def check_run_token_budget(config: Any, args: SpectralDataArguments, batch_size: int) -> str:
    """Refuse, before training, a model whose input makes more than `--max_tokens` tokens.

    Returns:
        The budget described in one line (for the log).

    Raises:
        ValueError: with the options (in the library's words and as command-line flags).
    """
    try:
        budget = check_token_budget(
            config, config.num_channels, config.image_size, batch_size=batch_size, max_tokens=args.max_tokens
        )
    except ValueError as error:
        raise ValueError(
            f"{error} On the command line: --spectral_patch_size N, --spectral_bins N, --image_size N, "
            "--per_device_train_batch_size N, or --max_tokens N."
        ) from error
    return budget.describe()


def _scaling_overrides(args: SpectralDataArguments) -> dict[str, Any]:
    """The processor settings the command line gives (None: not given)."""
    overrides: dict[str, Any] = {
        "scaling": args.scaling,
        "nodata": args.nodata,
        "reflectance_scale": args.reflectance_scale,
        "reflectance_offset": args.reflectance_offset,
    }
    if args.band_statistics in NAMED_BAND_STATISTICS:
        overrides["band_mean"], overrides["band_std"] = NAMED_BAND_STATISTICS[args.band_statistics]
    elif args.band_statistics is not None:
        path = Path(args.band_statistics)
        if not path.is_file():
            raise ValueError(
                f"--band_statistics {args.band_statistics!r} is neither {sorted(NAMED_BAND_STATISTICS)} nor a JSON "
                "file of BandStatistics."
            )
        statistics = BandStatistics.from_dict(json.loads(path.read_text(encoding="utf-8")))
        overrides["band_statistics"] = statistics
    return overrides


def build_processor(
    config: Any,
    args: SpectralDataArguments,
    *,
    checkpoint: str | None = None,
    default_scaling: str | None = None,
    statistics_samples: Any = None,
    binning: SpectralBinning | None = None,
) -> S2MAEImageProcessor:
    """The image processor of a run: the checkpoint's settings, then the command line's.

    With "dataset_range" scaling and no bounds (from the checkpoint or `--band_statistics`), per-band statistics are
    computed over the valid pixels of up to `--statistics_max_samples` training samples (`statistics_samples`, an
    iterable of samples / records), logged, and stored in the processor.

    Args:
        config: The model's `S2MAEConfig` (bands and size).
        args: The data arguments.
        checkpoint: Folder or repo id whose `preprocessor_config.json` to start from.
        default_scaling: The script's scaling when neither the checkpoint nor the command line sets one.
        statistics_samples: Training samples for the statistics (records, `Sample`s or `RasterSample`s).
        binning: The run's `SpectralBinning`, applied to the statistics samples (the model's bands are the bins).
    """
    from ..training import load_image_processor, saved_processor_settings

    saved = saved_processor_settings(checkpoint)
    overrides = {key: value for key, value in _scaling_overrides(args).items() if value is not None}
    low, high = args.range_percentiles
    given = overrides.pop("band_statistics", None)
    if given is not None:
        overrides = {**given.processor_kwargs(config.band_names, low, high), **overrides}
    overrides["scaling"] = overrides.get("scaling") or saved.get("scaling") or default_scaling or "minmax"
    needs_statistics = overrides["scaling"] == "dataset_range" and "band_low" not in overrides
    if needs_statistics and (saved.get("band_low") is None or saved.get("scaling") != "dataset_range"):
        if statistics_samples is None:
            raise ValueError("dataset_range scaling needs band statistics: pass --band_statistics stats.json.")
        statistics = compute_band_statistics(
            (_binned(_as_raster_sample(item), binning) for item in statistics_samples),
            band_names=config.band_names,
            max_samples=args.statistics_max_samples,
            nodata=args.nodata,
        )
        low_high = statistics.value_range(low, high, config.band_names)
        logger.info(
            "Band statistics of %d training samples (valid pixels; saved with the processor), %g-%g percentiles: %s",
            statistics.num_samples, low, high,
            ", ".join(f"{name} [{low_high[0][name]:g}, {low_high[1][name]:g}]" for name in config.band_names),
        )  # fmt: skip
        overrides = {**statistics.processor_kwargs(config.band_names, low, high), **overrides}
    return load_image_processor(config, checkpoint, **overrides)


def _as_raster_sample(item: Any) -> Any:
    if isinstance(item, dict) and "paths" in item:
        return record_to_sample(item)
    return item


def _binned(item: Any, binning: SpectralBinning | None) -> Any:
    if binning is None:
        return item
    return binning.apply(getattr(item, "raster", item))


def check_record_bands(found: RecordSet, model_bands: Sequence[str], skip_bad_files: bool) -> None:
    """Fail before training (or, skipping, drop and count) records whose files lack a band the model reads."""
    kept = []
    for record in found.records:
        available = record.get("bands") or record.get("band_names")
        if available is not None:
            try:
                band_positions(model_bands, available)
            except ValueError:
                missing = [band for band in model_bands if band not in available]
                message = (
                    f"{record['paths'][0]}: the file's bands {list(available)} lack {missing}, which the model reads "
                    f"({list(model_bands)}). Check --input_band_names, or remove the file (--skip_bad_files skips it)."
                )
                if not skip_bad_files:
                    raise ValueError(message) from None
                logger.warning("Skipping %s", message)
                found.skipped.append(SkippedFile(record["paths"][0], message))
                continue
        kept.append(record)
    found.records = kept


def local_training_records(
    args: SpectralDataArguments, seed: int, labelled: bool = False, model_bands: Sequence[str] | None = None
) -> tuple[RecordSet, list, list]:
    """(all found, train records, eval records) of the local sources, split by class, scene or at random.

    Records whose files lack one of `model_bands` fail here, before any training (or are skipped and counted).
    """
    options = {
        "tile_size": args.tile_size,
        "tile_stride": args.tile_stride,
        "band_names": args.input_band_names,
        "nodata": args.nodata,
        "skip_bad_files": args.skip_bad_files,
    }
    options["labelled"] = labelled
    found = collect_records(args.train_dir or [], args.scene_paths or [], **options)
    if model_bands is not None:
        check_record_bands(found, model_bands, args.skip_bad_files)
    if args.validation_dir:
        held_out = collect_records(args.validation_dir, [], **options)
        if model_bands is not None:
            check_record_bands(held_out, model_bands, args.skip_bad_files)
        found.skipped += held_out.skipped
        if labelled and held_out.classes != found.classes:
            raise ValueError(
                f"The classes of --validation_dir {held_out.classes} differ from those of the training data "
                f"{found.classes}: give both the same class sub-folders."
            )
        train, evaluation = list(found.records), list(held_out.records)
    else:
        by = "scene" if all("scene" in record for record in found.records) else "random"
        if labelled and all("label" in record for record in found.records):
            by = "label"
        train, evaluation = split_records(found.records, args.validation_fraction, seed, by=by)
    train = _random_subset(train, args.max_train_samples, seed)
    return found, train, _random_subset(evaluation, args.max_eval_samples, seed + 1)


def _random_subset(records: Sequence[Any], count: int | None, seed: int) -> list[Any]:
    """A reproducible random `count` of `records` in their listed order (all when None or not fewer).

    Listed records are grouped (by class folder, stratified split, scene): their first `count` would be one class or
    one scene, so `--max_train_samples` / `--max_eval_samples` draw at random instead.
    """
    if not count or count >= len(records):
        return list(records)
    chosen = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))[:count]
    return [records[i] for i in sorted(chosen.tolist())]


def make_transforms(
    processor: S2MAEImageProcessor,
    args: SpectralDataArguments,
    *,
    with_labels: bool,
    with_ids: bool = False,
    config: Any | None = None,
    binning: SpectralBinning | None = None,
) -> tuple[SampleTransform, SampleTransform]:
    """The training transform (augmented) and the evaluation transform (not augmented) of a run.

    With a `config` whose positions are computed from wavelengths (`wants_band_wavelengths`), the samples carry
    `band_wavelengths` / `band_bandwidths` (their own, else the config's); `binning` is applied to every sample.
    """
    common = {"min_valid_fraction": args.min_valid_fraction, "nodata": args.nodata, "with_labels": with_labels}
    if config is not None and wants_band_wavelengths(config):
        common.update(
            with_wavelengths=True,
            fallback_wavelengths=config.band_wavelengths,
            fallback_bandwidths=config.band_bandwidths,
        )
    if binning is not None:
        common["binning"] = binning
    return (
        SampleTransform(processor, augment=args.augment, with_ids=with_ids, **common),
        SampleTransform(processor, augment=False, **common),
    )


def build_datasets(
    args: SpectralDataArguments,
    processor: S2MAEImageProcessor,
    *,
    seed: int,
    with_labels: bool,
    with_ids: bool = False,
    records: tuple[RecordSet, list, list] | None = None,
    model_bands: Sequence[str] | None = None,
    config: Any | None = None,
    binning: SpectralBinning | None = None,
) -> TrainingData:
    """Train and evaluation datasets of local records (map-style) or a streamed dataset, through `SampleTransform`s.

    Args:
        args: The data arguments.
        processor: The run's image processor.
        seed: Seed of the train / validation split.
        with_labels: Return labels (classification); the problem type and class names are then known.
        with_ids: Return each training sample's id (for `PixelCollator(record_ids_to=...)`).
        records: Local records already listed by `local_training_records` (listed now when None).
        model_bands: The bands the model reads: local files lacking one fail before training.
        config: The model's config: a wavelength model's batches carry `band_wavelengths` / `band_bandwidths`.
        binning: The run's `SpectralBinning` (from `spectral_bands`), applied to every sample.
    """
    train_transform, eval_transform = make_transforms(
        processor, args, with_labels=with_labels, with_ids=with_ids, config=config, binning=binning
    )
    if args.dataset_name and args.dataset_format == "majortom":
        if with_labels:
            raise ValueError("Major-TOM has no labels: use it for pretraining.")
        return _majortom(args, train_transform, eval_transform, with_ids)
    if args.dataset_name:
        return _streamed(args, train_transform, eval_transform, with_labels, with_ids)
    if args.benv2_lmdb:
        return _benv2(args, train_transform, eval_transform)
    found, train, evaluation = records or local_training_records(args, seed, with_labels, model_bands)
    problem_type = None
    if with_labels:
        if all(record.get("labels") is not None for record in found.records):
            problem_type = MULTI_LABEL
        elif all(record.get("label") is not None for record in found.records):
            problem_type = SINGLE_LABEL
        else:
            raise ValueError(
                "The local data has no labels: classification needs class folders or BigEarthNet patches."
            )
    return _map_style(train, evaluation, train_transform, eval_transform, problem_type, found.classes, found.skipped)


def _map_style(
    train: Sequence[Any],
    evaluation: Sequence[Any] | None,
    train_transform: SampleTransform,
    eval_transform: SampleTransform,
    problem_type: str | None,
    class_names: Sequence[str],
    skipped: Sequence[SkippedFile] = (),
) -> TrainingData:
    """Map-style training data over records or samples."""
    return TrainingData(
        train=SampleDataset(train, train_transform),
        evaluation=SampleDataset(evaluation, eval_transform, deterministic=True) if evaluation else None,
        train_transform=train_transform,
        eval_transform=eval_transform,
        problem_type=problem_type,
        class_names=list(class_names),
        num_train=len(train),
        num_eval=len(evaluation) if evaluation else 0,
        skipped_files=list(skipped),
    )


def _streamed(
    args: SpectralDataArguments,
    train_transform: SampleTransform,
    eval_transform: SampleTransform,
    with_labels: bool,
    with_ids: bool,
) -> TrainingData:
    def load(
        split: str, transform: SampleTransform, ids: bool, limit: int | None
    ) -> tuple[Any, str | None, list[str]]:
        dataset = load_spectral_dataset(args.dataset_name, split=split, streaming=True)
        problem_type, names = label_info(dataset)
        if with_labels and problem_type is None:
            raise ValueError(f"{args.dataset_name} split {split!r} has no label column: it cannot train a classifier.")
        if with_labels and problem_type == SINGLE_LABEL:
            dataset = dataset.filter(lambda row: row["label"] >= 0)  # unlabeled rows are stored as -1
        if limit:
            dataset = dataset.take(limit)
        return to_model_inputs(dataset, transform, with_labels=with_labels, with_ids=ids), problem_type, names

    train, problem_type, names = load(args.dataset_train_split, train_transform, with_ids, args.max_train_samples)
    evaluation = None
    if args.dataset_eval_split:
        evaluation, eval_type, eval_names = load(args.dataset_eval_split, eval_transform, False, args.max_eval_samples)
        if with_labels and (eval_type, eval_names) != (problem_type, names):
            raise ValueError(
                f"Split {args.dataset_eval_split!r} has {eval_type} labels {eval_names} but split "
                f"{args.dataset_train_split!r} has {problem_type} labels {names}."
            )
    return TrainingData(
        train=train,
        evaluation=evaluation,
        train_transform=train_transform,
        eval_transform=eval_transform,
        problem_type=problem_type,
        class_names=names,
    )


def _benv2_split(args: SpectralDataArguments, split: str | None) -> Any:
    from .benv2 import BigEarthNetV2

    return BigEarthNetV2(args.benv2_lmdb, args.benv2_metadata, split=split)


def _benv2(
    args: SpectralDataArguments, train_transform: SampleTransform, eval_transform: SampleTransform
) -> TrainingData:
    """BigEarthNet v2 splits (map-style sequences of `Sample`s, 19-class multi-label)."""
    train = _benv2_split(args, args.dataset_train_split)
    evaluation = _benv2_split(args, args.dataset_eval_split) if args.dataset_eval_split else None
    train_items = _first(train, args.max_train_samples)
    eval_items = _first(evaluation, args.max_eval_samples) if evaluation is not None else None
    return _map_style(train_items, eval_items, train_transform, eval_transform, MULTI_LABEL, train.classes)


def _first(items: Sequence[Any], count: int | None) -> Sequence[Any]:
    """The first `count` items (all when None)."""
    return items if not count else [items[i] for i in range(min(count, len(items)))]


def _majortom_samples(args: SpectralDataArguments, row: dict[str, Any]) -> list[Any]:
    from .majortom import majortom_samples

    return list(
        majortom_samples(
            [row], tile_size=args.tile_size, stride=args.tile_stride, max_cloud_fraction=args.max_cloud_fraction,
            min_valid_fraction=args.min_valid_fraction, skip_bad_rows=args.skip_bad_files,
        )
    )  # fmt: skip


def _majortom(
    args: SpectralDataArguments, train_transform: SampleTransform, eval_transform: SampleTransform, with_ids: bool
) -> TrainingData:
    """Major-TOM rows streamed and cut into tiles, through the same transforms."""
    from datasets import Array2D, Array3D, Features, List, Value

    from .majortom import load_majortom
    from .training import stream_model_inputs

    bands, size = len(train_transform.processor.band_names), train_transform.processor.size
    features = {
        "pixel_values": Array3D(shape=(bands, size, size), dtype="float32"),
        "pixel_mask": Array2D(shape=(size, size), dtype="int64"),
    }

    if train_transform.with_wavelengths:
        features["band_wavelengths"] = List(Value("float32"), length=bands)
        features["band_bandwidths"] = List(Value("float32"), length=bands)

    def load(split: str, transform: SampleTransform, ids: bool, limit: int | None) -> Any:
        dataset = load_majortom(args.dataset_name, split=split, streaming=True)
        if limit:
            dataset = dataset.take(limit)
        output = Features({**features, **({"sample_id": Value("string")} if ids else {})})
        return stream_model_inputs(dataset, transform, lambda row: _majortom_samples(args, row), output)

    train = load(args.dataset_train_split, train_transform, with_ids, args.max_train_samples)
    evaluation = (
        load(args.dataset_eval_split, eval_transform, False, args.max_eval_samples)
        if args.dataset_eval_split
        else None
    )
    return TrainingData(
        train=train, evaluation=evaluation, train_transform=train_transform, eval_transform=eval_transform
    )


def statistics_samples(args: SpectralDataArguments, records: tuple[RecordSet, list, list] | None = None) -> Any:
    """Training samples for `build_processor`'s statistics, read lazily (nothing is read unless they are needed).

    Args:
        args: The data arguments (the source).
        records: Local records from `local_training_records` (their training part is used).
    """
    from .hub_format import decode_row

    if records is not None:
        # evenly spaced over the list: the records are grouped by class / scene, the first ones are one class only
        train, count = records[1], min(args.statistics_max_samples, len(records[1]))
        chosen = sorted({round(i * (len(train) - 1) / max(count - 1, 1)) for i in range(count)})
        yield from (record_to_sample(train[i]) for i in chosen)
    elif args.benv2_lmdb:
        train = _benv2_split(args, args.dataset_train_split)
        yield from (train[i] for i in range(min(len(train), args.statistics_max_samples)))
    elif args.dataset_format == "majortom":
        from .majortom import load_majortom

        rows = load_majortom(args.dataset_name, split=args.dataset_train_split, streaming=True)
        for row in rows.take(max(1, args.statistics_max_samples // 16)):
            yield from _majortom_samples(args, row)
    else:
        dataset = load_spectral_dataset(args.dataset_name, split=args.dataset_train_split, streaming=True)
        yield from (decode_row(row) for row in dataset.take(args.statistics_max_samples))


__all__ = [
    "NAMED_BAND_STATISTICS",
    "SENSOR_FROM_DATA",
    "SpectralBands",
    "SpectralDataArguments",
    "TrainingData",
    "build_datasets",
    "build_processor",
    "check_record_bands",
    "check_run_token_budget",
    "local_training_records",
    "make_transforms",
    "spectral_bands",
    "statistics_samples",
    "wants_band_wavelengths",
]
