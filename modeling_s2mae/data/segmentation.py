"""Per-pixel training data: image rasters paired with label rasters on the same grid, cut into tiles together.

- `pair_by_name` / `pair_from_csv`: (image, label raster) pairs by file name or from a CSV.
- `segmentation_tiles`: checks that each pair's grids agree (CRS, transform, size; `labelled_raster_tiles`' rules
  and messages) and returns tile records (`RasterRecord`s with `label_path`, `label_band`) with enough labelled pixels.
- `DenseTransform` + `DenseRecordDataset`: a record -> {"pixel_values", "pixel_mask", "labels" (H, W) long}, raster
  values mapped to class ids and unlabelled / nodata pixels set to the ignore index.
"""

import csv
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .builders import RecordSet, load_record, scene_tiles
from .labelled_rasters import _window_hint, grids_differ
from .raster import RASTER_SUFFIXES, PathLike, RasterNotFoundError, RasterReadError, RasterSource, raster_info
from .transforms import valid_pixel_mask

logger = logging.getLogger(__name__)

IGNORE_INDEX = 255
"""Label of unlabelled / nodata pixels in model inputs (Transformers' `semantic_loss_ignore_index` default)."""


def pair_by_name(image_dir: PathLike, label_dir: PathLike, label_suffix: str = "") -> list[tuple[str, str]]:
    """Pair every raster of `image_dir` with the raster of `label_dir` of the same stem (+ `label_suffix`).

    Example: images/a.tif + labels/a_mask.tif with `label_suffix="_mask"`.

    Raises:
        ValueError: an image without a label raster (all such names listed), or no image at all.
    """
    images = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not images:
        raise ValueError(f"{image_dir}: no raster files ({', '.join(sorted(RASTER_SUFFIXES))}).")
    labels = {p.stem: p for p in Path(label_dir).iterdir() if p.suffix.lower() in RASTER_SUFFIXES}
    pairs, missing = [], []
    for image in images:
        label = labels.get(image.stem + label_suffix)
        if label is None:
            missing.append(image.name)
        else:
            pairs.append((str(image), str(label)))
    if missing:
        raise ValueError(
            f"No label raster named <image stem>{label_suffix}.<ext> in {label_dir} for {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}: pair them with a CSV (pair_from_csv) instead."
        )
    return pairs


def pair_from_csv(path: PathLike, columns: Sequence[str] = ("image", "label")) -> list[tuple[str, ...]]:
    """Rows of a CSV with a header naming `columns` (e.g. image,label or before,after,change); relative paths are
    taken from the CSV's folder.

    Raises:
        ValueError: a missing column or an empty file.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in columns if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: the header must name the columns {list(columns)}; missing {missing}.")
        rows = [tuple(str((path.parent / row[name]).resolve()) for name in columns) for row in reader]
    if not rows:
        raise ValueError(f"{path}: no rows.")
    return rows


def check_label_grid(
    image_source: RasterSource, label_path: PathLike, *, band_names: Sequence[str] | None = None
) -> None:
    """Raise a `ValueError` saying what differs when the label raster is not on the image's common grid."""
    scene = raster_info(image_source, band_names)
    if not Path(label_path).is_file():
        raise RasterNotFoundError(f"{label_path}: no such label raster file.")
    try:
        with rasterio.open(label_path) as labels:
            problems = grids_differ(scene, labels)
            hint = _window_hint(scene, labels) if problems else ""
    except RasterioError as error:
        raise RasterReadError(f"{label_path}: not a readable raster ({error}).") from error
    if problems:
        raise ValueError(
            f"The label raster {label_path} is not on the grid of the image {scene.source[0]} ({'; '.join(problems)}). "
            "Labels must line up pixel for pixel with the image's finest bands." + hint
        )


def read_label_window(label_path: PathLike, window: Mapping[str, int] | None, label_band: int = 1) -> np.ndarray:
    """(H, W) integer label values of a record's window (the whole raster without one).

    Raises:
        ValueError: a non-integer label band.
    """
    with rasterio.open(label_path) as labels:
        if not np.issubdtype(np.dtype(labels.dtypes[label_band - 1]), np.integer):
            raise ValueError(
                f"{label_path} band {label_band} holds {labels.dtypes[label_band - 1]}; labels must be integers."
            )
        rio_window = (
            Window(window["col_off"], window["row_off"], window["width"], window["height"]) if window else None
        )
        values = labels.read(label_band, window=rio_window)
        nodata = labels.nodata
    if nodata is not None:
        values = np.where(values == int(nodata), np.iinfo(np.int64).min, values.astype(np.int64))
    return values.astype(np.int64)


def segmentation_tiles(
    pairs: Sequence[tuple[RasterSource, PathLike]],
    tile_size: int,
    stride: int | None = None,
    *,
    ignore_values: Sequence[int] = (0,),
    min_labelled_fraction: float = 0.1,
    label_band: int = 1,
    band_names: Sequence[str] | None = None,
    check_files: bool = True,
) -> RecordSet:
    """Tile records of (image, label raster) pairs, both cut by the same windows.

    Args:
        pairs: (image source, label raster) pairs; an image source is a multi-band file, a folder of per-band files
            or a list of them.
        tile_size, stride: Tile side and step in pixels of the image's common grid.
        ignore_values: Label values meaning "unlabelled" (the label raster's nodata is one too).
        min_labelled_fraction: Least share of labelled pixels for a tile to be kept, in [0, 1].
        label_band: Band of the label rasters holding the class values (1-based).
        band_names: Names of the image's bands in file order, where the files do not declare them.

    Returns:
        A `RecordSet` of `scene_tiles` records with "label_path" and "label_band" added.

    Raises:
        ValueError: a pair whose grids differ (what differs is said), or a bad argument.
    """
    if not 0.0 <= min_labelled_fraction <= 1.0:
        raise ValueError(f"min_labelled_fraction must be in [0, 1], got {min_labelled_fraction}.")
    ignored = {int(value) for value in ignore_values}
    records: list[dict[str, Any]] = []
    for image, label_path in pairs:
        check_label_grid(image, label_path, band_names=band_names)
        tiles = scene_tiles([image], tile_size, stride, band_names=band_names, check_files=check_files)
        values = read_label_window(label_path, None, label_band)
        for record in tiles:
            window = record["window"]
            tile = values[
                window["row_off"] : window["row_off"] + window["height"],
                window["col_off"] : window["col_off"] + window["width"],
            ]
            labelled = ~np.isin(tile, list(ignored)) & (tile != np.iinfo(np.int64).min)
            if labelled.mean() < min_labelled_fraction or not labelled.any():
                continue
            records.append({**record, "label_path": str(label_path), "label_band": label_band})
    if not records:
        logger.warning("segmentation_tiles: no tile has %.0f %% labelled pixels.", 100 * min_labelled_fraction)
    return RecordSet(records=records)


def label_values_in(records: Sequence[Mapping[str, Any]], ignore_values: Sequence[int] = (0,)) -> list[int]:
    """The sorted label values found in the records' windows, ignored values and nodata left out."""
    found: set[int] = set()
    for record in records:
        values = read_label_window(record["label_path"], record.get("window"), record.get("label_band", 1))
        found.update(int(v) for v in np.unique(values))
    return sorted(found - {int(v) for v in ignore_values} - {int(np.iinfo(np.int64).min)})


def map_labels(
    values: np.ndarray,
    class_values: Sequence[int],
    ignore_values: Sequence[int] = (0,),
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Raster label values -> class ids: `class_values[k]` becomes k; ignored values and nodata become `ignore_index`.

    Raises:
        ValueError: a value that is neither a class value nor ignored (more classes than the model has).
    """
    lookup = {int(value): index for index, value in enumerate(class_values)}
    ignored = {int(v) for v in ignore_values} | {int(np.iinfo(np.int64).min)}
    out = np.full(values.shape, ignore_index, dtype=np.int64)
    unknown = []
    for value in np.unique(values):
        value = int(value)
        if value in lookup:
            out[values == value] = lookup[value]
        elif value not in ignored:
            unknown.append(value)
    if unknown:
        raise ValueError(
            f"Label values {unknown[:10]} are neither classes {list(class_values)} nor ignored {sorted(set(ignore_values))}: "
            "the model has fewer labels than the data; list every class value or ignore these."
        )
    return out


class DenseTransform:
    """A tile record -> {"pixel_values" (C, S, S), "pixel_mask" (S, S), "labels" (S, S) long}.

    Labels are `map_labels` of the label window; pixels where the image has no valid data get `ignore_index` too.
    With `augment`, random horizontal and vertical flips of image, mask and labels together. The tile must already
    have the processor's size (no resampling of labels).

    Args:
        processor: An `S2MAEImageProcessor` whose `size` is the tile size.
        class_values: Label raster values of the classes, in class-id order.
        ignore_values: Label values meaning "unlabelled".
        ignore_index: Label of unlabelled pixels in the output.
        augment: Random flips.
        read_labels: Reads the (H, W) label values of a record (default: its `label_path` window).
    """

    def __init__(
        self,
        processor: Any,
        class_values: Sequence[int],
        *,
        ignore_values: Sequence[int] = (0,),
        ignore_index: int = IGNORE_INDEX,
        augment: bool = False,
        read_labels: Callable[[Mapping[str, Any]], np.ndarray] | None = None,
    ) -> None:
        self.processor = processor
        self.class_values = list(class_values)
        self.ignore_values = list(ignore_values)
        self.ignore_index = ignore_index
        self.augment = augment
        self.read_labels = read_labels or (
            lambda record: read_label_window(record["label_path"], record.get("window"), record.get("label_band", 1))
        )

    def image_inputs(self, record: Mapping[str, Any], paths_key: str = "paths") -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel_values (C, S, S), pixel_mask (S, S)) of the record's image (`paths_key` names its files)."""
        raster = load_record({**record, "paths": record[paths_key]})
        if (raster.height, raster.width) != (self.processor.size, self.processor.size):
            raise ValueError(
                f"Record {record.get('id')!r} is {raster.height} x {raster.width} px but the processor's size is "
                f"{self.processor.size}: use tiles of the model's size (labels are never resampled)."
            )
        nodata = raster.nodata if raster.nodata is not None else self.processor.nodata
        if not valid_pixel_mask(raster.array, nodata).any():
            raise ValueError(f"Record {record.get('id')!r} has no valid pixel.")
        features = self.processor(
            np.ascontiguousarray(raster.array),
            input_band_names=raster.band_names,
            input_data_format="channels_first",
            nodata=nodata,
            return_tensors="pt",
        )
        return features["pixel_values"][0], features["pixel_mask"][0]

    def flips(self) -> tuple[bool, bool]:
        """(flip left-right, flip up-down) drawn from torch's generator (seeded by Trainer / the workers)."""
        if not self.augment:
            return False, False
        rng = random.Random(int(torch.randint(0, 2**62, (1,)).item()))
        return rng.random() < 0.5, rng.random() < 0.5

    @staticmethod
    def flip(tensor: torch.Tensor, flips: tuple[bool, bool]) -> torch.Tensor:
        if flips[0]:
            tensor = tensor.flip(-1)
        if flips[1]:
            tensor = tensor.flip(-2)
        return tensor

    def labels(self, record: Mapping[str, Any], pixel_mask: torch.Tensor) -> torch.Tensor:
        values = self.read_labels(record)
        labels = torch.from_numpy(map_labels(values, self.class_values, self.ignore_values, self.ignore_index))
        return labels.masked_fill(pixel_mask == 0, self.ignore_index)

    def __call__(self, record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        pixel_values, pixel_mask = self.image_inputs(record)
        labels = self.labels(record, pixel_mask)
        flips = self.flips()
        return {
            "pixel_values": self.flip(pixel_values, flips),
            "pixel_mask": self.flip(pixel_mask, flips),
            "labels": self.flip(labels, flips),
        }


class DenseRecordDataset(torch.utils.data.Dataset):
    """Records read and transformed on access (map-style, for `Trainer`)."""

    def __init__(self, records: Sequence[Mapping[str, Any]], transform: Callable[[Mapping[str, Any]], dict]) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.transform(self.records[index])


def collate_dense(batch: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack the per-record tensors of a batch (every key of the first item)."""
    return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}


__all__ = [
    "IGNORE_INDEX",
    "DenseRecordDataset",
    "DenseTransform",
    "check_label_grid",
    "collate_dense",
    "label_values_in",
    "map_labels",
    "pair_by_name",
    "pair_from_csv",
    "read_label_window",
    "segmentation_tiles",
]
