"""Convert a folder of multispectral GeoTIFFs into a Hub dataset for S2MAE (sharded parquet of GeoTIFF bytes).

The output folder is laid out like a Hugging Face dataset repository (`README.md` + `data/<split>-*.parquet`,
see `modeling_s2mae.data.hub_format`): load it with `datasets.load_dataset(OUTPUT_DIR)` or push it with
`--push_to_hub user/name` and load it by repo id.

Layouts of `--input_dir`:
- `eurosat`: `<class>/<tile>.tif`, multi-band tiles in class folders (EuroSAT-MS; bands B01..B12 with B8A last
  unless `--band_names` says otherwise). Single-label; the validation split is stratified by class.
- `bigearthnet`: `<patch>/<patch>_<band>.tif` + `<patch>_labels_metadata.json` (BigEarthNet-S2 v1); multi-label
  (BigEarthNet-19), bands resampled onto the 10 m grid.
- `scenes`: large scenes cut into `--tile_size` tiles, unlabeled (pretraining). Each sub-folder of `--input_dir` is
  one scene of per-band files, each raster file in it one multi-band scene; when every raster file directly in
  `--input_dir` is named with a band token (`..._B04.tif`), `--input_dir` itself is one scene. With two scenes or
  more, the validation split takes whole scenes (neighbouring tiles are alike, so a tile split would leak).
Without `--layout` the layout is detected (`modeling_s2mae.data.detect_layout`). The dataset is written to a staging
folder beside `--output_dir` and swapped in at the end: a failure leaves an existing dataset as it was.

Examples:
    python examples/prepare_dataset.py --input_dir sample_data/eurosat_ms --layout eurosat --output_dir eurosat_hub
    python examples/prepare_dataset.py --input_dir sample_data/sentinel2_scene --layout scenes --tile_size 96 \
        --output_dir scene_hub --validation_fraction 0.25 --rows_per_shard 4
    python examples/prepare_dataset.py --input_dir BigEarthNet-v1.0 --layout bigearthnet --output_dir ben_hub \
        --rows_per_shard 2000 --push_to_hub user/bigearthnet-s2mae
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser

from modeling_s2mae.data import RecordSet, folder_records, split_records
from modeling_s2mae.data.hub_format import DEFAULT_ROWS_PER_SHARD, push_hub_dataset, write_hub_dataset

logger = logging.getLogger(__name__)


@dataclass
class PrepareDatasetArguments:
    """Command-line arguments of prepare_dataset.py."""

    input_dir: str = field(metadata={"help": "Folder of GeoTIFFs in the given --layout."})
    output_dir: str = field(metadata={"help": "Folder to write the dataset to (must be empty unless --overwrite)."})
    layout: Literal["eurosat", "bigearthnet", "scenes"] | None = field(
        default=None,
        metadata={"help": "eurosat (<class>/<tile>.tif), bigearthnet (<patch>/<patch>_<band>.tif) or scenes."},
    )
    tile_size: int | None = field(default=None, metadata={"help": "Tile side in pixels (scenes layout, required)."})
    stride: int | None = field(default=None, metadata={"help": "Step between tiles (scenes; default: tile_size)."})
    nodata: float | None = field(default=None, metadata={"help": "Nodata of files that define none."})
    band_names: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated names of the bands of each file, in file order (eurosat: default EuroSAT-MS "
            "order; scenes: default from band descriptions, sidecars or file names)."
        },
    )
    validation_fraction: float = field(
        default=0.2, metadata={"help": "Fraction of the samples held out as the validation split (0: none)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle and of the validation split."})
    rows_per_shard: int = field(
        default=DEFAULT_ROWS_PER_SHARD,
        metadata={"help": "Rows per parquet file; keep at least (GPUs x dataloader workers) shards per split."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a dataset already in --output_dir."})
    skip_bad_files: bool = field(default=False, metadata={"help": "Leave out unreadable files instead of failing."})
    description: str | None = field(
        default=None, metadata={"help": "A paragraph for the dataset card: source, licence, attribution."}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "Hub dataset repo id (user/name) to upload the folder to."}
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"--validation_fraction must be in [0, 1), got {self.validation_fraction}.")
        if self.layout == "scenes" and self.tile_size is None:
            raise ValueError("--layout scenes needs --tile_size (tile side in pixels).")
        if self.layout not in (None, "scenes") and (self.tile_size is not None or self.stride is not None):
            raise ValueError(f"--tile_size and --stride apply to --layout scenes only, not {self.layout}.")
        source, target = Path(self.input_dir).resolve(), Path(self.output_dir).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise ValueError(
                f"--output_dir {self.output_dir} and --input_dir {self.input_dir} overlap: the dataset would be "
                "written among the files it is read from (and --overwrite would replace the input). Write it to a "
                "separate folder."
            )


def build_records(args: PrepareDatasetArguments) -> RecordSet:
    """List the samples of `--input_dir` with the builder of its layout."""
    band_names = [name.strip() for name in args.band_names.split(",")] if args.band_names else None
    return folder_records(
        args.input_dir, layout=args.layout, tile_size=args.tile_size, tile_stride=args.stride,
        band_names=band_names, nodata=args.nodata, skip_bad_files=args.skip_bad_files,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, list the samples, split them, write the dataset and optionally push it."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = HfArgumentParser(PrepareDatasetArguments).parse_args_into_dataclasses(args=argv)

    found = build_records(args)
    if not found.records:
        raise ValueError(f"No sample found in {args.input_dir} (layout {args.layout}).")
    by = "label" if found.classes and all("label" in r for r in found.records) else "random"
    by = "scene" if all("scene" in r for r in found.records) else by
    train, validation = split_records(found.records, args.validation_fraction, args.seed, by=by)
    splits = {"train": train, "validation": validation} if validation else {"train": train}

    written = write_hub_dataset(
        splits,
        args.output_dir,
        rows_per_shard=args.rows_per_shard,
        label_names=found.classes or None,
        overwrite=args.overwrite,
        description=args.description,
    )
    for split in written.values():
        print(f"{split.name}: {split.num_rows} rows in {len(split.shards)} shard(s)")
    if found.skipped:
        print(f"Skipped {found.num_skipped} bad sample(s), e.g. {found.skipped[0].path}: {found.skipped[0].reason}")
    print(f"Wrote {args.output_dir}; load it with datasets.load_dataset({str(args.output_dir)!r}, streaming=True)")

    if args.push_to_hub:
        url = push_hub_dataset(args.output_dir, args.push_to_hub, private=args.private)
        print(f"Pushed to https://huggingface.co/datasets/{args.push_to_hub} ({url})")


if __name__ == "__main__":
    main(sys.argv[1:])
