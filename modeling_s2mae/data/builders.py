"""Dataset builders: list the samples of a dataset on disk as plain records, and read one record.

A record is a dict that says how to read one sample, without reading its pixels:
- `id`: a unique, readable identifier;
- `paths`: the raster files (one multi-band file, or one file per band);
- `band_names`: the names of all bands of those files in file order (None: found when reading, see
  `resolve_band_names`); optionally `bands`: the names to return, in that order;
- `label` (single-label, int) and `class_name`, or `labels` (multi-hot list of ints) and `label_names`;
- for scene tiles, `window` ({"row_off", "col_off", "height", "width"}, in pixels of the scene's common grid) and
  `target_resolution` (None: the grid of the finest file).

Records are JSON-friendly, so they go straight into `datasets.Dataset.from_list`. `load_record` reads one.

Every builder takes `skip_bad_files`: when False (the default) the first bad file raises an error naming it; when
True the sample is left out, logged, and listed in `RecordSet.skipped`. Files are checked at build time
(`check_files=True`, see `check_raster`: headers, band names, alignment, last block decoded).
"""

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..sensors import SENTINEL2_BANDS
from .raster import (
    _BAND_TOKEN,
    EUROSAT_MS_BANDS,
    PathLike,
    RasterNotFoundError,
    RasterReadError,
    RasterSample,
    RasterSource,
    band_name_from_filename,
    check_raster,
    expand_source,
    raster_info,
    read_raster,
    resolve_band_names,
    tile_windows,
)

logger = logging.getLogger(__name__)

BIGEARTHNET_43_CLASSES: tuple[str, ...] = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)
"""The 43 CORINE Land Cover level-3 names used in BigEarthNet v1 `*_labels_metadata.json` files."""

BIGEARTHNET_19_CLASSES: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
"""The BigEarthNet-19 nomenclature (Sumbul et al., 2021), in its standard order: index i is output i."""

BIGEARTHNET_43_TO_19: dict[str, str | None] = {
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Industrial or commercial units": "Industrial or commercial units",
    "Road and rail networks and associated land": None,
    "Port areas": None,
    "Airports": None,
    "Mineral extraction sites": None,
    "Dump sites": None,
    "Construction sites": None,
    "Green urban areas": None,
    "Sport and leisure facilities": None,
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Pastures": "Pastures",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Complex cultivation patterns": "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        "Land principally occupied by agriculture, with significant areas of natural vegetation"
    ),
    "Agro-forestry areas": "Agro-forestry areas",
    "Broad-leaved forest": "Broad-leaved forest",
    "Coniferous forest": "Coniferous forest",
    "Mixed forest": "Mixed forest",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Beaches, dunes, sands": "Beaches, dunes, sands",
    "Bare rock": None,
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Burnt areas": None,
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Intertidal flats": None,
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}
"""CORINE name (43 classes) -> BigEarthNet-19 name, or None for the 11 classes the 19-class nomenclature drops."""

BIGEARTHNET_LABELS_SUFFIX = "_labels_metadata.json"
"""Suffix of the per-patch label file of BigEarthNet-S2 v1."""


class SkippedFile(NamedTuple):
    """A sample left out by a builder run with `skip_bad_files=True`."""

    path: str
    reason: str


@dataclass
class RecordSet:
    """What a builder found: the records, the class names (label i is `classes[i]`) and the skipped samples.

    Iterating, indexing and `len` go over `records`.
    """

    records: list[dict[str, Any]]
    classes: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        """How many samples were left out because of a bad file."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]


def _skip_or_raise(error: Exception, path: Path, skip_bad_files: bool, skipped: list[SkippedFile]) -> None:
    """Record a bad sample when skipping, re-raise the error otherwise."""
    if not skip_bad_files:
        raise error
    logger.warning("Skipping a bad sample (%s): %s", path.name, error)
    skipped.append(SkippedFile(str(path), str(error)))


def _log_skipped(builder: str, skipped: list[SkippedFile]) -> None:
    if skipped:
        logger.warning("%s skipped %d bad sample(s).", builder, len(skipped))


def _existing_folder(root: PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise RasterNotFoundError(f"{root}: no such folder.")
    if not root.is_dir():
        raise RasterReadError(f"{root} is not a folder.")
    return root


def _visible(path: Path) -> bool:
    """False for hidden entries (`.DS_Store`, macOS `._<name>.tif` resource forks, `.git`): never samples."""
    return not path.name.startswith(".")


def _tiles_below(folder: Path, suffixes: set[str]) -> list[Path]:
    """Files with one of `suffixes` in `folder` and its visible sub-folders, sorted; hidden entries are left out.

    Symbolic links are kept even when broken (so that the builder reports them instead of dropping the sample);
    linked folders are not followed (no loops).
    """
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if not _visible(path):
            continue
        if path.is_dir() and not path.is_symlink():
            found += _tiles_below(path, suffixes)
        elif path.suffix.lower() in suffixes and (path.is_file() or path.is_symlink()):
            found.append(path)
    return found


def eurosat_folder(
    root: PathLike,
    *,
    band_names: Sequence[str] | None = None,
    default_band_names: Sequence[str] | None = EUROSAT_MS_BANDS,
    nodata: float | None = None,
    suffixes: Sequence[str] = (".tif", ".tiff"),
    skip_bad_files: bool = False,
    check_files: bool = True,
) -> RecordSet:
    """Records of a folder of class sub-folders of multi-band GeoTIFFs (the EuroSAT-MS layout).

    `root/<class name>/<tile>.tif`: class names are the sub-folder names, sorted; label i is `classes[i]`. Tiles in
    sub-folders of a class folder belong to that class (id `<class>/<sub-folder>/<stem>`); hidden files and folders
    (`.DS_Store`, `._<tile>.tif`) are ignored; a broken symbolic link is a bad file (raised, or skipped and listed).
    An empty class folder is logged and keeps its class index.

    Args:
        root: The dataset folder.
        band_names: Band names of every file, in file order. None: each file's own (sidecar or band descriptions,
            see `resolve_band_names`), else `default_band_names`. Names given here that contradict a file's declared
            order raise an error naming both.
        default_band_names: The order of files that do not declare theirs: EuroSAT-MS (B8A last) by default.
        nodata: Nodata value of files that define none (recorded in each record).
        suffixes: File suffixes taken as tiles.
        skip_bad_files: Leave out unreadable tiles (listed in `.skipped`) instead of raising.
        check_files: Validate every tile now with `check_raster` (about a millisecond per 64 x 64 tile). When False
            only headers are read (for the band names) and a bad file only raises in `load_record`.

    Returns:
        A `RecordSet` of records {"id": "<class>/<stem>", "paths": [path], "band_names", "label", "class_name", "nodata"},
        with `classes` the sorted class names.

    Raises:
        RasterNotFoundError: `root` does not exist.
        RasterReadError: `root` holds no tile, or (when not skipping) a tile is bad.
    """
    root = _existing_folder(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = {suffix.lower() for suffix in suffixes}
    records: list[dict[str, Any]] = []
    skipped: list[SkippedFile] = []
    for label, class_name in enumerate(classes):
        files = _tiles_below(root / class_name, wanted)
        if not files:
            logger.warning("Class folder %s holds no %s file.", root / class_name, "/".join(sorted(wanted)))
        for path in files:
            try:
                if not path.exists():
                    raise RasterNotFoundError(
                        f"{path} is a symbolic link to {os.readlink(path)}, which does not exist."
                    )
                names = resolve_band_names(path, band_names, default=default_band_names)
                if check_files:
                    check_raster(path, names)
            except RasterReadError as error:
                if check_files:
                    _skip_or_raise(error, path, skip_bad_files, skipped)
                    continue
                names = None  # unreadable header: `load_record` raises, naming the file
            records.append(
                {
                    "id": f"{class_name}/{path.relative_to(root / class_name).with_suffix('').as_posix()}",
                    "paths": [str(path)],
                    "band_names": names,
                    "label": label,
                    "class_name": class_name,
                    "nodata": nodata,
                }
            )
    if not records and not skipped:
        raise RasterReadError(
            f"{root}: no tile found; expected class sub-folders of GeoTIFFs, root/<class>/<tile>.tif "
            f"(suffixes {sorted(wanted)})."
        )
    _log_skipped("eurosat_folder", skipped)
    return RecordSet(records=records, classes=classes, skipped=skipped)


def bigearthnet_multi_hot(corine_labels: Sequence[str]) -> list[int]:
    """Map BigEarthNet CORINE names (43-class) to a 19-long multi-hot vector over `BIGEARTHNET_19_CLASSES`.

    The 11 classes the 19-class nomenclature drops (e.g. "Burnt areas", "Bare rock") contribute nothing.

    Raises:
        ValueError: for a name that is not one of `BIGEARTHNET_43_CLASSES`.
    """
    vector = [0] * len(BIGEARTHNET_19_CLASSES)
    for name in corine_labels:
        if name not in BIGEARTHNET_43_TO_19:
            raise ValueError(f"Unknown BigEarthNet label {name!r}; expected one of the 43 CORINE names.")
        target = BIGEARTHNET_43_TO_19[name]
        if target is not None:
            vector[BIGEARTHNET_19_CLASSES.index(target)] = 1
    return vector


def _bigearthnet_record(patch: Path, bands: Sequence[str], check_files: bool) -> dict[str, Any]:
    """The record of one BigEarthNet patch folder; raises `RasterReadError` naming the bad file."""
    label_files = sorted(p for p in patch.glob(f"*{BIGEARTHNET_LABELS_SUFFIX}") if _visible(p))
    if len(label_files) != 1:
        raise RasterReadError(f"{patch}: expected one *{BIGEARTHNET_LABELS_SUFFIX} file, found {len(label_files)}.")
    label_file = label_files[0]
    try:
        corine_labels = json.loads(label_file.read_text(encoding="utf-8"))["labels"]
        multi_hot = bigearthnet_multi_hot(corine_labels)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError, ValueError) as error:
        raise RasterReadError(f"{label_file}: not a valid BigEarthNet label file ({error}).") from error

    by_band: dict[str, Path] = {}
    for path in sorted(p for p in patch.glob("*.tif") if _visible(p)):
        token = band_name_from_filename(path)
        if token is not None:
            if token in by_band:
                raise RasterReadError(f"{patch}: two files for band {token}: {by_band[token].name}, {path.name}.")
            by_band[token] = path
    missing = [band for band in bands if band not in by_band]
    if missing:
        raise RasterReadError(f"{patch}: no GeoTIFF for band(s) {missing} (expected {patch.name}_<band>.tif).")
    paths = [by_band[band] for band in bands]
    if check_files:
        check_raster(paths, list(bands))
    return {
        "id": patch.name,
        "paths": [str(path) for path in paths],
        "band_names": list(bands),
        "labels": multi_hot,
        "label_names": [name for name, hot in zip(BIGEARTHNET_19_CLASSES, multi_hot) if hot],
        "corine_labels": list(corine_labels),
    }


def bigearthnet_folder(
    root: PathLike,
    *,
    bands: Sequence[str] = SENTINEL2_BANDS,
    drop_unlabelled: bool = True,
    skip_bad_files: bool = False,
    check_files: bool = True,
) -> RecordSet:
    """Records of BigEarthNet-S2 v1 patches with their BigEarthNet-19 multi-hot labels.

    Layout: `root/<patch>/<patch>_<band>.tif` (one GeoTIFF per band: 120 x 120 px at 10 m, 60 x 60 at 20 m,
    20 x 20 at 60 m) and `root/<patch>/<patch>_labels_metadata.json` whose "labels" holds CORINE names (43-class).

    Args:
        root: The folder of patch folders.
        bands: Bands to read, in that order (default: the 12 bands of `SENTINEL2_BANDS`, B8A after B08, no B10).
            `load_record` resamples them onto the 10 m grid (120 x 120).
        drop_unlabelled: Leave out patches with no BigEarthNet-19 label (only dropped classes), as BigEarthNet-19
            does. They are logged, not counted as bad.
        skip_bad_files: Leave out patches with a bad, missing or misaligned file (listed in `.skipped`).
        check_files: Validate every band file now with `check_raster`.

    Returns:
        A `RecordSet` of records {"id", "paths", "band_names", "labels" (19 ints), "label_names",
        "corine_labels"}, with `classes` = `BIGEARTHNET_19_CLASSES`.

    Raises:
        RasterNotFoundError: `root` does not exist.
        RasterReadError: `root` holds no patch folder, or (when not skipping) a patch is bad.
    """
    root = _existing_folder(root)
    patches = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not patches:
        raise RasterReadError(
            f"{root}: no BigEarthNet patch folder found; expected root/<patch>/<patch>_<band>.tif and "
            f"<patch>{BIGEARTHNET_LABELS_SUFFIX}."
        )
    records: list[dict[str, Any]] = []
    skipped: list[SkippedFile] = []
    unlabelled = 0
    for patch in patches:
        try:
            record = _bigearthnet_record(patch, bands, check_files)
        except RasterReadError as error:
            _skip_or_raise(error, patch, skip_bad_files, skipped)
            continue
        if drop_unlabelled and not any(record["labels"]):
            unlabelled += 1
            continue
        records.append(record)
    if unlabelled:
        logger.info("bigearthnet_folder left out %d patch(es) with no BigEarthNet-19 label.", unlabelled)
    _log_skipped("bigearthnet_folder", skipped)
    return RecordSet(records=records, classes=list(BIGEARTHNET_19_CLASSES), skipped=skipped)


def _scene_path(scene: RasterSource) -> Path:
    """The path that stands for a scene: itself, or the first of its per-band files."""
    if isinstance(scene, (str, os.PathLike)):
        return Path(scene)
    return Path(next(iter(scene), ""))


def _scene_id(scene: RasterSource, paths: list[Path]) -> str:
    """A readable scene name: the file stem or folder name; for a list of band files, the stem without band token."""
    if isinstance(scene, (str, os.PathLike)):
        path = Path(scene)
        return path.name if path.is_dir() else path.stem
    stem = _BAND_TOKEN.sub("", paths[0].stem).strip("_-.")
    return stem or paths[0].parent.name


def scene_tiles(
    scenes: Sequence[RasterSource],
    tile_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    *,
    band_names: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    target_resolution: float | tuple[float, float] | None = None,
    nodata: float | None = None,
    drop_incomplete: bool = True,
    skip_bad_files: bool = False,
    check_files: bool = True,
) -> RecordSet:
    """Records of the tiles of large scenes; pixels are read lazily, one window per record, by `load_record`.

    Args:
        scenes: Each scene is a multi-band file, a folder of per-band files, or a list of per-band files.
        tile_size, stride, drop_incomplete: See `tile_windows` (pixels of the scene's common grid).
        band_names: Names of all bands of every scene in file order (default: found per file).
        bands: Bands to return, in that order (default: all).
        target_resolution: Pixel size of the common grid (default: the finest file's grid).
        nodata: Nodata value of files that define none (each file's own value is used where it has one).
        skip_bad_files: Leave out unreadable scenes (listed in `.skipped`) instead of raising.
        check_files: Decode the last block of every file now (`check_raster`); only headers are read otherwise.

    Returns:
        A `RecordSet` of records {"id": "<scene>/r<row>_c<col>", "scene", "paths", "band_names", "bands",
        "window": {"row_off", "col_off", "height", "width"}, "target_resolution"}.
    """
    records: list[dict[str, Any]] = []
    skipped: list[SkippedFile] = []
    seen_ids: set[str] = set()
    for scene in scenes:
        try:
            paths = expand_source(scene)
            all_names = (check_raster if check_files else raster_info)(paths, band_names).band_names
            info = raster_info(paths, band_names, bands=bands, target_resolution=target_resolution)
        except RasterReadError as error:
            _skip_or_raise(error, _scene_path(scene), skip_bad_files, skipped)
            continue
        scene_id = _scene_id(scene, paths)
        if scene_id in seen_ids:
            scene_id = f"{scene_id}-{len(seen_ids)}"
        seen_ids.add(scene_id)
        windows = tile_windows(info.height, info.width, tile_size, stride, drop_incomplete)
        if not windows:
            logger.warning(
                "scene_tiles: %s (%d x %d px) is smaller than the %s px tile and gives no tile.",
                scene_id, info.height, info.width, tile_size,
            )  # fmt: skip
        for window in windows:
            row, col = int(window.row_off), int(window.col_off)
            records.append(
                {
                    "id": f"{scene_id}/r{row}_c{col}",
                    "scene": scene_id,
                    "paths": [str(path) for path in paths],
                    "band_names": all_names,
                    "bands": list(bands) if bands is not None else None,
                    "window": {
                        "row_off": row,
                        "col_off": col,
                        "height": int(window.height),
                        "width": int(window.width),
                    },
                    "target_resolution": target_resolution,
                    "nodata": nodata,
                }
            )
    _log_skipped("scene_tiles", skipped)
    return RecordSet(records=records, skipped=skipped)


SCENE_CACHE_BYTES = int(os.environ.get("S2MAE_SCENE_CACHE_BYTES", 1 << 30))
"""Decoded scenes kept per process for tile records (env `S2MAE_SCENE_CACHE_BYTES`; 0 turns the cache off).

Compressed scenes (JPEG2000 above all) decode far more than a tile's window for every windowed read: training on
many tiles of one scene reads the scene once, on its common grid, and slices the tiles from memory. A scene larger
than a quarter of the cache is read window by window instead."""

_scene_cache: OrderedDict[tuple, RasterSample] = OrderedDict()


def _scene_key(record: Mapping[str, Any], resampling: str | Resampling) -> tuple:
    def frozen(value: Any) -> Any:
        return tuple(value) if isinstance(value, (list, tuple)) else value

    names = ("paths", "band_names", "bands", "target_resolution", "nodata")
    return (*(frozen(record.get(name)) for name in names), str(resampling))


def _cached_scene(record: Mapping[str, Any], resampling: str | Resampling) -> RasterSample | None:
    """The whole scene of a tile record from the per-process cache (read now if it fits), or None."""
    if SCENE_CACHE_BYTES <= 0:
        return None
    key = _scene_key(record, resampling)
    if key in _scene_cache:
        _scene_cache.move_to_end(key)
        return _scene_cache[key]
    info = raster_info(
        record["paths"], record.get("band_names"), bands=record.get("bands"),
        target_resolution=record.get("target_resolution"),
    )  # fmt: skip
    if len(info.band_names) * info.height * info.width * info.dtype.itemsize > SCENE_CACHE_BYTES // 4:
        return None
    scene = read_raster(
        record["paths"], record.get("band_names"), bands=record.get("bands"),
        target_resolution=record.get("target_resolution"), resampling=resampling, nodata=record.get("nodata"),
    )  # fmt: skip
    _scene_cache[key] = scene
    while sum(item.array.nbytes for item in _scene_cache.values()) > SCENE_CACHE_BYTES:
        _scene_cache.popitem(last=False)
    return scene


def load_record(record: Mapping[str, Any], *, resampling: str | Resampling = "bilinear") -> RasterSample:
    """Read the pixels of one record made by a builder (per-band files onto one grid, the window of a tile).

    Tiles of a scene that fits the per-process cache (`SCENE_CACHE_BYTES`) are sliced from the scene read once.

    Returns:
        A `RasterSample` of shape (C, H, W): C = len(record["bands"]) or all bands; H, W the record's window or the
        common grid (the finest file's, unless the record has a `target_resolution`).
    """
    window = record.get("window")
    if window:
        scene = _cached_scene(record, resampling)
        if scene is not None:
            row, col, height, width = window["row_off"], window["col_off"], window["height"], window["width"]
            if row < 0 or col < 0 or row + height > scene.height or col + width > scene.width:
                raise ValueError(
                    f"Window {dict(window)} of record {record.get('id')!r} does not lie inside the "
                    f"{scene.height} x {scene.width} grid of {record['paths']}."
                )
            return replace(
                scene,
                array=scene.array[:, row : row + height, col : col + width].copy(),
                transform=scene.transform * Affine.translation(col, row),
                window=Window(col, row, width, height),
            )
    return read_raster(
        record["paths"],
        record.get("band_names"),
        bands=record.get("bands"),
        window=Window(window["col_off"], window["row_off"], window["width"], window["height"]) if window else None,
        target_resolution=record.get("target_resolution"),
        resampling=resampling,
        nodata=record.get("nodata"),
    )


__all__ = [
    "BIGEARTHNET_19_CLASSES",
    "BIGEARTHNET_43_CLASSES",
    "BIGEARTHNET_43_TO_19",
    "RecordSet",
    "SkippedFile",
    "bigearthnet_folder",
    "bigearthnet_multi_hot",
    "eurosat_folder",
    "load_record",
    "scene_tiles",
]
