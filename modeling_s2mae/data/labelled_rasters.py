"""Labelled tiles of a scene: a label raster on the scene's grid gives each tile its majority class.

`labelled_raster_tiles` cuts a scene (one multi-band file, per-band files or a folder of them) and a label raster on
the same grid into tile records (`RasterRecord`s with `scene`, `window`, `label`, `class_name`), keeping only the
tiles with enough labelled pixels. `spatial_split` splits such records by spatial blocks and leaves out the training
tiles that touch a test tile, so that probe scores are not inflated by neighbouring, near-identical tiles.
"""

import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .builders import RecordSet, scene_tiles
from .raster import PathLike, RasterNotFoundError, RasterReadError, RasterSource, raster_info

logger = logging.getLogger(__name__)


def load_class_names(path: PathLike) -> dict[int, str]:
    """Class names of a label raster from a JSON file: `{"1": "forest", ...}` or `{"1": {"name": "forest", ...}}`.

    Raises:
        ValueError: the file is not such a mapping.
    """
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        names = {int(key): value["name"] if isinstance(value, Mapping) else value for key, value in content.items()}
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f'{path}: expected a JSON object mapping class ids to names, {{"1": "forest"}} or '
            f'{{"1": {{"name": "forest"}}}} ({error}).'
        ) from error
    if not all(isinstance(name, str) for name in names.values()):
        raise ValueError(f"{path}: every class name must be a string, got {names}.")
    return names


def grids_differ(reference: Any, other: Any, reference_name: str = "the scene's") -> list[str]:
    """What differs between two grids (objects with height, width, crs, transform: a `RasterInfo`, a rasterio
    dataset), each difference phrased against `reference_name`; empty when they agree."""
    problems = []
    if (other.height, other.width) != (reference.height, reference.width):
        problems.append(
            f"size {other.height} x {other.width} px vs {reference_name} {reference.height} x {reference.width}"
        )
    if reference.crs != other.crs:
        problems.append(f"CRS {other.crs} vs {reference_name} {reference.crs}")
    tolerance = 1e-6 * max(abs(reference.transform.a), abs(reference.transform.e))
    if not other.transform.almost_equals(reference.transform, precision=tolerance):
        problems.append(f"transform {tuple(other.transform)[:6]} vs {reference_name} {tuple(reference.transform)[:6]}")
    return problems


def _window_hint(scene: Any, labels: rasterio.io.DatasetReader) -> str:
    """When the scene's grid is a window of the label raster's grid, say which one."""
    scene_t, label_t = scene.transform, labels.transform
    if scene.crs != labels.crs or not np.allclose(
        (scene_t.a, scene_t.b, scene_t.d, scene_t.e), (label_t.a, label_t.b, label_t.d, label_t.e)
    ):
        return ""
    col, row = ~label_t @ (scene_t.c, scene_t.f)
    if not (math.isclose(col, round(col), abs_tol=1e-6) and math.isclose(row, round(row), abs_tol=1e-6)):
        return ""
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + scene.width > labels.width or row + scene.height > labels.height:
        return ""
    return (
        f" The scene is the window col_off={col}, row_off={row}, width={scene.width}, height={scene.height} of the "
        "label raster: crop the label raster to it (rasterio windowed read, writing the window's transform)."
    )


def labelled_raster_tiles(
    image_source: RasterSource,
    label_raster: PathLike,
    tile_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    *,
    ignore_values: Sequence[int] = (0,),
    min_labelled_fraction: float = 0.5,
    band_names: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    label_band: int = 1,
    class_names: Mapping[int, str] | None = None,
    check_files: bool = True,
) -> RecordSet:
    """Records of the tiles of a scene labelled with the majority class of a label raster on the same grid.

    The scene's common grid is the grid of its finest file (10 m for Sentinel-2 per-band files); the label raster must
    have exactly that grid (CRS, transform and size). A pixel is labelled unless its value is in `ignore_values` or is
    the label raster's nodata value. A tile whose labelled pixels cover less than `min_labelled_fraction` of it is
    left out; the others get the most frequent class among their labelled pixels (ties: the smallest class id).

    Args:
        image_source: The scene: a multi-band file, a folder of per-band files, or a list of per-band files.
        label_raster: A raster of integer class ids on the scene's grid.
        tile_size, stride: Tile side and step in pixels of the grid, see `tile_windows` (incomplete tiles at the
            right and bottom edges are dropped).
        ignore_values: Label values that mean "unlabelled".
        min_labelled_fraction: Least share (0 < f <= 1) of labelled pixels for a tile to be kept.
        band_names: Names of all bands of the scene in file order (default: found per file).
        bands: Bands the records return, in that order (default: all).
        label_band: The band of `label_raster` holding the class ids (1-based, as in rasterio).
        class_names: Name of each class id (e.g. from `load_class_names`); default: the id as a string.
        check_files: Decode the last block of every scene file now (`check_raster`).

    Returns:
        A `RecordSet` of `RasterRecord`s {"id", "scene", "paths", "band_names", "bands", "window",
        "target_resolution", "label" (the class id as stored in the label raster), "class_name"}, in row-major order
        of the tiles; `classes[i]` is the name of class id i (ids up to the largest one found).

    Raises:
        RasterNotFoundError, RasterReadError: a scene file or the label raster is missing or unreadable.
        ValueError: the grids differ (the message says how), the label band is not integer, or a bad argument.
    """
    if not 0.0 < min_labelled_fraction <= 1.0:
        raise ValueError(f"min_labelled_fraction must be in (0, 1], got {min_labelled_fraction}.")
    tiles = scene_tiles([image_source], tile_size, stride, band_names=band_names, bands=bands, check_files=check_files)
    scene = raster_info(image_source, band_names, bands=bands)
    if not Path(label_raster).is_file():
        raise RasterNotFoundError(f"{label_raster}: no such label raster file.")
    try:
        labels = rasterio.open(label_raster)
    except RasterioError as error:
        raise RasterReadError(f"{label_raster}: not a readable raster ({error}).") from error
    with labels:
        problems = grids_differ(scene, labels)
        if problems:
            raise ValueError(
                f"The label raster {label_raster} is not on the grid of the scene {scene.source[0]} "
                f"({'; '.join(problems)}). Labels must line up pixel for pixel with the scene's finest bands."
                + _window_hint(scene, labels)
            )
        if not 1 <= label_band <= labels.count:
            raise ValueError(f"label_band must be in [1, {labels.count}] for {label_raster}, got {label_band}.")
        if not np.issubdtype(np.dtype(labels.dtypes[label_band - 1]), np.integer):
            raise ValueError(
                f"{label_raster} band {label_band} holds {labels.dtypes[label_band - 1]} values; class ids must be "
                "integers (write the label raster as uint8 / int16 / ...)."
            )
        ignored = {int(value) for value in ignore_values}
        if labels.nodata is not None:
            ignored.add(int(labels.nodata))
        records: list[dict[str, Any]] = []
        for record in tiles:
            window = record["window"]
            try:
                values = labels.read(
                    label_band, window=Window(window["col_off"], window["row_off"], window["width"], window["height"])
                )
            except RasterioError as error:
                raise RasterReadError(f"{label_raster}: cannot read window {window} ({error}).") from error
            classes, counts = np.unique(values, return_counts=True)
            keep = ~np.isin(classes, list(ignored))
            classes, counts = classes[keep], counts[keep]
            if counts.sum() < min_labelled_fraction * values.size:
                continue
            label = int(classes[np.argmax(counts)])  # np.unique sorts: ties go to the smallest id
            name = class_names.get(label, str(label)) if class_names is not None else str(label)
            records.append({**record, "label": label, "class_name": name})
    if not records:
        logger.warning(
            "labelled_raster_tiles: none of the %d tiles of %s has %.0f %% labelled pixels.",
            len(tiles),
            scene.source[0],
            100 * min_labelled_fraction,
        )
    largest = max((record["label"] for record in records), default=-1)
    names = [
        (class_names or {}).get(index, "unlabelled" if index in ignored else str(index))
        for index in range(largest + 1)
    ]
    return RecordSet(records=records, classes=names)


def _window_bounds(record: Mapping[str, Any]) -> tuple[int, int, int, int]:
    window = record.get("window")
    if not window:
        raise ValueError(
            f"Record {record.get('id')!r} has no 'window': spatial_split needs scene tiles (labelled_raster_tiles or "
            "scene_tiles); split whole-image datasets with modeling_s2mae.data.training.split_records."
        )
    row, col = int(window["row_off"]), int(window["col_off"])
    return row, col, row + int(window["height"]), col + int(window["width"])


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Pixels between two windows (row0, col0, row1, col1): 0 when they share an edge or corner, < 0 when they overlap."""
    row_gap = max(b[0] - a[2], a[0] - b[2])
    col_gap = max(b[1] - a[3], a[1] - b[3])
    return max(row_gap, col_gap)


def spatial_split(
    records: Sequence[Mapping[str, Any]],
    test_fraction: float,
    seed: int,
    *,
    block_size: int | None = None,
    buffer: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split scene tiles into train and test by spatial blocks, so that no training tile touches a test tile.

    The grid of each scene is cut into square blocks of `block_size` pixels; a tile belongs to the block holding
    its top-left corner. Blocks are visited in a seeded random order and put in the test set whenever that brings it
    closer to `test_fraction` of the tiles; every other tile is a training tile unless it overlaps, touches (shares an edge
    or a corner) or lies within `buffer` pixels of a test tile of the same scene, in which case it is left out
    (logged). Tiles of different `scene`s are taken as far apart: scenes of the same place at different dates must
    share a `scene` id to be split together.

    Args:
        records: Tile records with `window` (and `scene`), e.g. from `labelled_raster_tiles`.
        test_fraction: Share of the tiles to put in the test set, in (0, 1).
        seed: Seed of the block draw.
        block_size: Block side in pixels; default: 4 tiles (4 x the largest tile side).
        buffer: Extra pixels that must separate training tiles from test tiles (0: they must not touch).

    Returns:
        (train records, test records), each in the input order.

    Raises:
        ValueError: a record has no window, a bad argument, or a split that leaves the train or test set empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    if buffer < 0:
        raise ValueError(f"buffer must be >= 0 pixels, got {buffer}.")
    bounds = [_window_bounds(record) for record in records]
    if len(bounds) < 2:
        raise ValueError(f"spatial_split needs at least 2 tiles, got {len(bounds)}.")
    if block_size is None:
        block_size = 4 * max(max(b[2] - b[0], b[3] - b[1]) for b in bounds)
    if block_size < 1:
        raise ValueError(f"block_size must be a positive number of pixels, got {block_size}.")
    scenes = [str(record.get("scene", "")) for record in records]
    blocks: dict[tuple[str, int, int], list[int]] = {}
    for index, (scene, (row, col, _, _)) in enumerate(zip(scenes, bounds)):
        blocks.setdefault((scene, row // block_size, col // block_size), []).append(index)
    order = sorted(blocks)
    random.Random(seed).shuffle(order)
    target, test = test_fraction * len(records), set()
    for key in order:  # take a block when it brings the test set closer to its target size
        if not test or abs(len(test) + len(blocks[key]) - target) < abs(len(test) - target):
            test.update(blocks[key])
    train, dropped = [], 0
    for index in range(len(records)):
        if index in test:
            continue
        if any(scenes[other] == scenes[index] and _gap(bounds[index], bounds[other]) <= buffer for other in test):
            dropped += 1
            continue
        train.append(index)
    if not train or not test:
        raise ValueError(
            f"spatial_split of {len(records)} tiles into blocks of {block_size} px ({len(blocks)} blocks) left "
            f"{len(train)} training and {len(test)} test tiles: use a smaller block_size, a smaller buffer, or more tiles."
        )
    if dropped:
        logger.info("spatial_split left out %d training tile(s) touching a test tile.", dropped)
    return [dict(records[i]) for i in train], [dict(records[i]) for i in sorted(test)]


def probe_records(
    *,
    train_dir: PathLike | None = None,
    scene_paths: Sequence[RasterSource] | None = None,
    label_rasters: Sequence[PathLike] | None = None,
    tile_size: int = 32,
    test_fraction: float = 0.25,
    seed: int = 0,
    band_names: Sequence[str] | None = None,
    class_names: Mapping[int, str] | None = None,
    min_labelled_fraction: float = 0.5,
    block_size: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train / test records of a labelled set for probes: EuroSAT-style class folders (split per class at random) or
    scenes with one label raster each (tiles labelled by majority class, split by spatial blocks).

    Raises:
        ValueError: neither or both kinds of source, or not one label raster per scene.
    """
    from .builders import eurosat_folder
    from .training import split_records

    if bool(train_dir) == bool(scene_paths):
        raise ValueError("Give class folders (train_dir) or scenes with label rasters (scene_paths), not both.")
    if train_dir:
        found = eurosat_folder(train_dir, band_names=band_names)
        return split_records(found.records, test_fraction, seed, by="label")
    if len(label_rasters or []) != len(scene_paths):
        raise ValueError(f"Give one label raster per scene: {len(scene_paths)} scenes, label rasters {label_rasters}.")
    records: list[dict[str, Any]] = []
    for scene, labels in zip(scene_paths, label_rasters):
        found = labelled_raster_tiles(
            scene, labels, tile_size, min_labelled_fraction=min_labelled_fraction, class_names=class_names,
            band_names=band_names,
        )  # fmt: skip
        logger.info("%s: %d labelled tiles of %d px.", scene, len(found), tile_size)
        records += found.records
    return spatial_split(records, test_fraction, seed, block_size=block_size)


__all__ = ["grids_differ", "labelled_raster_tiles", "load_class_names", "probe_records", "spatial_split"]
