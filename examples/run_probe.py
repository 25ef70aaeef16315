"""Probe a frozen S2MAE checkpoint with k-NN and logistic regression, next to honest baselines on the same split.

The pretrained encoder, the same architecture at random initialisation (one row, mean ± std [min, max] over
`--random_init_seeds`) and the per-band mean / std of the inputs are probed on the same inputs (made by the
checkpoint's own image processor) and the same train / test split; the table is printed and `--output_json` gets the
numbers. Labelled data, one of:

- `--train_dir`: EuroSAT-style class folders (`root/<class>/<tile>.tif`), split at random per class;
- `--dataset_name`: a dataset in the project's Hub format (`examples/prepare_dataset.py`), single-label;
- `--scene_paths` + `--label_raster`: scenes with a label raster on each scene's grid, cut into `--tile_size` tiles
  labelled with their majority class and split by spatial blocks (no training tile touches a test tile).

Examples:
    python examples/run_probe.py --model_name_or_path outputs/s2mae-sample --scene_paths sample_data/sentinel2_scene \
        --label_raster sample_data/sentinel2_scene_labels/T33UUU_osm_landuse_10m.tif --tile_size 32 --k 5
    python examples/run_probe.py --model_name_or_path ckpt --train_dir EuroSAT_MS/ --output_json probe.json
"""

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoImageProcessor, HfArgumentParser

import modeling_s2mae  # noqa: F401  (registers the S2MAE image processor with AutoImageProcessor)
from modeling_s2mae.data import load_spectral_dataset, to_model_inputs
from modeling_s2mae.data.hub_format import SINGLE_LABEL, label_info
from modeling_s2mae.data.labelled_rasters import load_class_names, probe_records
from modeling_s2mae.data.training import SampleDataset
from modeling_s2mae.data.transforms import SampleTransform
from modeling_s2mae.probing import POOLINGS, compare_representations
from modeling_s2mae.training import check_model_name_or_path

logger = logging.getLogger("run_probe")


@dataclass
class ProbeArguments:
    model_name_or_path: str = field(metadata={"help": "Checkpoint folder or Hub id, with its image processor."})
    train_dir: str | None = field(default=None, metadata={"help": "EuroSAT-style class folders of GeoTIFFs."})
    band_names: list[str] | None = field(
        default=None, metadata={"help": "Band names of the --train_dir files in file order (default: EuroSAT-MS)."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub-format dataset (repo id or folder)."})
    dataset_train_split: str = field(default="train")
    dataset_test_split: str = field(
        default="validation", metadata={"help": "Test split of --dataset_name; '' splits the train split instead."}
    )
    scene_paths: list[str] | None = field(default=None, metadata={"help": "Scenes (files or per-band folders)."})
    label_raster: list[str] | None = field(default=None, metadata={"help": "One label raster per scene."})
    class_names_json: str | None = field(default=None, metadata={"help": 'JSON {"1": "forest", ...} of the labels.'})
    tile_size: int = field(default=32, metadata={"help": "Tile side in pixels of the scene grid."})
    min_labelled_fraction: float = field(default=0.5, metadata={"help": "Least labelled share of a kept tile."})
    block_size: int | None = field(default=None, metadata={"help": "Spatial-split block in pixels (4 tiles)."})
    test_fraction: float = field(default=0.25, metadata={"help": "Share held out when no test split is given."})
    seed: int = field(default=0, metadata={"help": "Seed of the split and of the sample subsets."})
    max_train_samples: int | None = field(default=None, metadata={"help": "A seeded random subset of train."})
    max_test_samples: int | None = field(default=None, metadata={"help": "A seeded random subset of test."})
    layer: int = field(default=-1, metadata={"help": "Hidden state: 0 embeddings, i block i, -1 encoder output."})
    pooling: str = field(default="mean", metadata={"help": f"One of {POOLINGS}."})
    k: int = field(default=20, metadata={"help": "Neighbours of the k-NN probe."})
    knn_weighting: str = field(default="dino", metadata={"help": "dino (exp(cos / 0.07) votes) or majority."})
    linear: bool = field(default=True, metadata={"help": "Also run the logistic-regression probe."})
    l2: float | None = field(default=None, metadata={"help": "Fixed L2 penalty (default: cross-validated)."})
    random_init_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = field(default=64)
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    output_json: str | None = field(default=None, metadata={"help": "Write the report here."})


def check_arguments(args: ProbeArguments) -> None:
    """Refuse contradictory or unusable arguments before the (slow) feature extraction.

    Raises:
        ValueError: not exactly one data source; options of one source given with another (they would be
            ignored); counts and fractions out of range; a checkpoint folder that does not exist; an
            `--output_json` that is a folder.
    """
    sources = [bool(args.train_dir), bool(args.dataset_name), bool(args.scene_paths)]
    if sum(sources) != 1:
        raise ValueError("Give exactly one of --train_dir, --dataset_name, or --scene_paths with --label_raster.")
    if args.scene_paths and not args.label_raster:
        raise ValueError("--scene_paths needs --label_raster (one label raster per scene).")
    ignored = {
        "--label_raster": bool(args.label_raster) and not args.scene_paths,
        "--class_names_json": bool(args.class_names_json) and not args.scene_paths,
        "--block_size": args.block_size is not None and not args.scene_paths,
        "--band_names": bool(args.band_names) and bool(args.dataset_name),
    }
    if any(ignored.values()):
        given = [name for name, unused in ignored.items() if unused]
        raise ValueError(
            f"{', '.join(given)} apply to another data source than the one given (--label_raster, "
            "--class_names_json and --block_size to --scene_paths; --band_names to --train_dir and --scene_paths): "
            "they would be ignored. Leave them out."
        )
    for name in ("k", "batch_size", "tile_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    for name in ("max_train_samples", "max_test_samples", "block_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1 when given, got {getattr(args, name)}.")
    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test_fraction must be in (0, 1), got {args.test_fraction}.")
    if args.output_json and Path(args.output_json).is_dir():
        raise ValueError(f"--output_json {args.output_json} is a folder: give the path of the JSON file to write.")
    check_model_name_or_path(args.model_name_or_path)


def subset(items: list[Any], limit: int | None, seed: int) -> list[Any]:
    """A seeded random subset of at most `limit` items, in their original order."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


def record_splits(args: ProbeArguments) -> tuple[list[dict], list[dict]]:
    """Train / test records of --train_dir (random, per class) or of labelled scenes (spatial blocks)."""
    return probe_records(
        train_dir=args.train_dir, scene_paths=args.scene_paths, label_rasters=args.label_raster,
        tile_size=args.tile_size, test_fraction=args.test_fraction, seed=args.seed, band_names=args.band_names,
        class_names=load_class_names(args.class_names_json) if args.class_names_json else None,
        min_labelled_fraction=args.min_labelled_fraction, block_size=args.block_size,
    )  # fmt: skip


def dataset_splits(args: ProbeArguments, processor: Any) -> tuple[Any, Any]:
    """Train / test model inputs of a Hub-format dataset (its test split, or a stratified split of train)."""
    train = load_spectral_dataset(args.dataset_name, split=args.dataset_train_split, streaming=False)
    if label_info(train).problem_type != SINGLE_LABEL:
        raise ValueError(f"{args.dataset_name} has no single-label 'label' column; the probes are single-label.")
    if args.dataset_test_split:
        test = load_spectral_dataset(args.dataset_name, split=args.dataset_test_split, streaming=False)
    else:
        parts = train.train_test_split(args.test_fraction, seed=args.seed, stratify_by_column="label")
        train, test = parts["train"], parts["test"]
    train, test = (
        dataset.select(subset(list(range(len(dataset))), limit, args.seed))
        for dataset, limit in ((train, args.max_train_samples), (test, args.max_test_samples))
    )
    return to_model_inputs(train, processor), to_model_inputs(test, processor)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    (args,) = HfArgumentParser(ProbeArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_arguments(args)
    try:
        processor = AutoImageProcessor.from_pretrained(args.model_name_or_path)
    except OSError as error:
        raise ValueError(
            f"{args.model_name_or_path} has no image processor (preprocessor_config.json): save the processor the "
            "model was trained with next to it (processor.save_pretrained(folder))."
        ) from error
    if args.dataset_name:
        train_inputs, test_inputs = dataset_splits(args, processor)
    else:
        train_records, test_records = record_splits(args)
        train_records = subset(train_records, args.max_train_samples, args.seed)
        test_records = subset(test_records, args.max_test_samples, args.seed)
        logger.info("%d train and %d test samples.", len(train_records), len(test_records))
        transform = SampleTransform(processor, min_valid_fraction=0.0, with_labels=True)
        train_inputs, test_inputs = SampleDataset(train_records, transform), SampleDataset(test_records, transform)
    report = compare_representations(
        args.model_name_or_path,
        train_inputs,
        test_inputs,
        random_init_seeds=args.random_init_seeds,
        layer=args.layer,
        pooling=args.pooling,
        k=args.k,
        knn_weighting=args.knn_weighting,
        linear=args.linear,
        l2=args.l2,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(report)
    if args.output_json:
        report.write_json(args.output_json)
        print(f"Report written to {args.output_json}")
    return report.to_dict()


if __name__ == "__main__":
    main()
