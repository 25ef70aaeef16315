"""Change-detection data: two co-registered dates of one place and a change raster, as tile records.

- `oscd_records`: the Onera Satellite Change Detection (OSCD) layout. Images: `<images_dir>/<city>/imgs_1/*.tif` and
  `imgs_2/*.tif` (13 per-band GeoTIFFs per date, at 10 / 20 / 60 m, resampled onto the 10 m grid), `dates.txt`;
  city lists `<images_dir>/train.txt` / `test.txt` (one comma-separated line). Labels:
  `<labels_dir>/<city>/cm/cm.png` (0 no change, > 0 change) or `<city>/cm/<city>-cm.tif` (1 no change, 2 change).
- `change_triples`: a generic list of (date-1 raster, date-2 raster, change raster) triples (e.g. from
  `pair_from_csv(path, ("before", "after", "change"))`), all three on one grid.

Records are `scene_tiles` records of date 1 with "paths_2" (date 2's files), "label_path" and "change_values" (the
change raster's values meaning change) added; `ChangeDetectionTransform` reads both dates of a window.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from .builders import RecordSet, scene_tiles
from .labelled_rasters import grids_differ
from .raster import PathLike, RasterSource, expand_source, raster_info
from .segmentation import IGNORE_INDEX, DenseTransform, check_label_grid

logger = logging.getLogger(__name__)

OSCD_IMAGES_DIR = "Onera Satellite Change Detection dataset - Images"
OSCD_LABEL_DIRS = {
    "train": "Onera Satellite Change Detection dataset - Train Labels",
    "test": "Onera Satellite Change Detection dataset - Test Labels",
}


def check_same_dates_grid(before: RasterSource, after: RasterSource) -> None:
    """Raise a `ValueError` when the two dates differ in band set, CRS, transform or size of their common grid."""
    first, second = raster_info(before), raster_info(after)
    if sorted(first.band_names) != sorted(second.band_names):
        raise ValueError(
            f"The two dates hold different bands: {first.band_names} ({first.source[0]}) vs {second.band_names} "
            f"({second.source[0]}); change detection needs the same bands on both dates."
        )
    problems = grids_differ(first, second, "the first date's")
    if problems:
        raise ValueError(
            f"The two dates {first.source[0]} and {second.source[0]} are not on one grid ({'; '.join(problems)}): "
            "co-register and resample them first."
        )


def _tiles(
    scene_id: str,
    before: RasterSource,
    after: RasterSource,
    label_path: PathLike,
    change_values: Sequence[int],
    tile_size: int | None,
    stride: int | None,
) -> list[dict[str, Any]]:
    check_same_dates_grid(before, after)
    info = raster_info(before)
    size = tile_size or (info.height, info.width)
    tiles = scene_tiles([before], size, stride)
    paths_2 = [str(path) for path in expand_source(after)]
    order = raster_info(after).band_names
    records = []
    for record in tiles:
        record = {**record, "id": record["id"].replace(record["scene"], scene_id, 1), "scene": scene_id}
        records.append(
            {
                **record,
                "paths_2": paths_2,
                "band_names_2": order,
                "label_path": str(label_path),
                "change_values": [int(v) for v in change_values],
            }
        )
    return records


def change_triples(
    triples: Sequence[tuple[RasterSource, RasterSource, PathLike]],
    tile_size: int | None = None,
    stride: int | None = None,
    *,
    change_values: Sequence[int] = (1,),
) -> RecordSet:
    """Tile records of (date-1, date-2, change raster) triples on one grid.

    Args:
        triples: Each date is a multi-band file, a folder of per-band files or a list of them; the change raster has
            the dates' grid (CRS, transform, size).
        tile_size, stride: Tile side and step (default: one record per triple).
        change_values: Change-raster values meaning "change"; 0 means "no change", anything else is unlabelled.

    Raises:
        ValueError: dates with different bands or grids, or a change raster on another grid.
    """
    records = []
    for index, (before, after, change) in enumerate(triples):
        check_label_grid(before, change)
        records += _tiles(
            f"pair{index:04d}-{Path(change).stem}", before, after, change, change_values, tile_size, stride
        )
    return RecordSet(records=records)


def oscd_cities(images_dir: PathLike, split: str) -> list[str]:
    """The cities of `<images_dir>/<split>.txt` (one comma-separated line)."""
    path = Path(images_dir) / f"{split}.txt"
    if not path.is_file():
        raise ValueError(f"{path} not found: an OSCD images folder has train.txt and test.txt.")
    return [name.strip() for name in path.read_text(encoding="utf-8").replace("\n", ",").split(",") if name.strip()]


def _oscd_label(labels_dir: Path, city: str) -> tuple[Path, list[int]]:
    png, tif = labels_dir / city / "cm" / "cm.png", labels_dir / city / "cm" / f"{city}-cm.tif"
    if png.is_file():
        return png, list(range(1, 256))
    if tif.is_file():
        return tif, [2]
    raise ValueError(f"No change map for {city}: expected {png} or {tif}.")


def oscd_records(
    root: PathLike,
    split: str = "train",
    tile_size: int | None = None,
    stride: int | None = None,
    *,
    images_dir: str = OSCD_IMAGES_DIR,
    labels_dir: str | None = None,
) -> RecordSet:
    """Tile records of the OSCD cities of one split (see the module docstring for the layout).

    The change map (cm.png, no georeference) must have the size of the 10 m grid of the city's bands; each
    record carries the city's two acquisition dates from `dates.txt` under "dates" when the file exists.

    Raises:
        ValueError: a missing folder or file, dates with different bands or grids, or a change map of another size.
    """
    if split not in OSCD_LABEL_DIRS:
        raise ValueError(f"split must be one of {sorted(OSCD_LABEL_DIRS)}, got {split!r}.")
    root = Path(root)
    images, labels = root / images_dir, root / (labels_dir or OSCD_LABEL_DIRS[split])
    for folder in (images, labels):
        if not folder.is_dir():
            raise ValueError(f"{folder} not found: not an OSCD folder (images and labels folders side by side).")
    records: list[dict[str, Any]] = []
    for city in oscd_cities(images, split):
        before, after = images / city / "imgs_1", images / city / "imgs_2"
        label_path, change_values = _oscd_label(labels, city)
        grid = raster_info(before)
        with rasterio.open(label_path) as change:
            if (change.height, change.width) != (grid.height, grid.width):
                raise ValueError(
                    f"{label_path} is {change.height} x {change.width} px but the 10 m grid of {before} is "
                    f"{grid.height} x {grid.width}."
                )
        city_records = _tiles(city, before, after, label_path, change_values, tile_size, stride)
        dates_file = images / city / "dates.txt"
        if dates_file.is_file():
            dates = [line.split(":")[-1].strip() for line in dates_file.read_text().splitlines() if line.strip()]
            city_records = [{**record, "dates": dates} for record in city_records]
        records += city_records
    return RecordSet(records=records)


def read_change_window(record: Mapping[str, Any]) -> np.ndarray:
    """(H, W) of the record's window: 1 change, 0 no change, -1 unlabelled (other values of the change raster)."""
    window = record.get("window")
    with rasterio.open(record["label_path"]) as change:
        rio_window = (
            Window(window["col_off"], window["row_off"], window["width"], window["height"]) if window else None
        )
        values = change.read(1, window=rio_window).astype(np.int64)
        nodata = change.nodata
    result = np.full(values.shape, -1, dtype=np.int64)
    no_change = {0} if 0 not in record["change_values"] else set()
    if record["change_values"] == [2]:
        no_change = {1}  # OSCD's -cm.tif: 1 no change, 2 change
    result[np.isin(values, list(no_change))] = 0
    result[np.isin(values, record["change_values"])] = 1
    if nodata is not None:
        result[values == int(nodata)] = -1
    return result


class ChangeDetectionTransform(DenseTransform):
    """A change record -> {"pixel_values", "pixel_mask", "pixel_values_2", "pixel_mask_2", "labels" (S, S)}.

    Labels: 1 change, 0 no change, `ignore_index` where unlabelled or where either date has no valid data. The same
    random flips (with `augment`) for both dates and the labels.
    """

    def __init__(self, processor: Any, *, ignore_index: int = IGNORE_INDEX, augment: bool = False) -> None:
        super().__init__(
            processor, [0, 1], ignore_values=[-1], ignore_index=ignore_index, augment=augment,
            read_labels=read_change_window,
        )  # fmt: skip

    def __call__(self, record: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        pixel_values, pixel_mask = self.image_inputs(record)
        second = {**record, "band_names": record.get("band_names_2")}
        pixel_values_2, pixel_mask_2 = self.image_inputs(second, paths_key="paths_2")
        labels = self.labels(record, pixel_mask * pixel_mask_2)
        flips = self.flips()
        items = {
            "pixel_values": pixel_values,
            "pixel_mask": pixel_mask,
            "pixel_values_2": pixel_values_2,
            "pixel_mask_2": pixel_mask_2,
            "labels": labels,
        }
        return {key: self.flip(value, flips) for key, value in items.items()}


__all__ = [
    "OSCD_IMAGES_DIR",
    "OSCD_LABEL_DIRS",
    "ChangeDetectionTransform",
    "change_triples",
    "check_same_dates_grid",
    "oscd_cities",
    "oscd_records",
    "read_change_window",
]
