"""Reading multispectral imagery for S2MAE: rasters with named bands, per-band files on one grid, tiles, datasets.

- `raster`: `read_raster`, `read_window`, `iter_tiles` and friends return `RasterSample`s, arrays of shape (C, H, W)
  whose bands are named (EuroSAT stores B8A last, most sources after B08: always select bands by name).
- `builders`: `eurosat_folder`, `bigearthnet_folder`, `scene_tiles` list a dataset as records; `load_record` reads one.
"""

from .builders import (
    BIGEARTHNET_19_CLASSES,
    BIGEARTHNET_43_CLASSES,
    BIGEARTHNET_43_TO_19,
    RecordSet,
    SkippedFile,
    bigearthnet_folder,
    bigearthnet_multi_hot,
    eurosat_folder,
    load_record,
    scene_tiles,
)
from .raster import (
    EUROSAT_MS_BANDS,
    RASTER_SUFFIXES,
    SENTINEL2_13_BANDS,
    SENTINEL2_RESOLUTIONS_M,
    SIDECAR_SUFFIX,
    RasterInfo,
    RasterNotFoundError,
    RasterReadError,
    RasterSample,
    RasterSource,
    band_name_from_filename,
    check_raster,
    expand_source,
    iter_tiles,
    normalize_band_name,
    raster_info,
    read_raster,
    read_window,
    resolve_band_names,
    tile_windows,
)

__all__ = [
    "BIGEARTHNET_19_CLASSES",
    "BIGEARTHNET_43_CLASSES",
    "BIGEARTHNET_43_TO_19",
    "EUROSAT_MS_BANDS",
    "RASTER_SUFFIXES",
    "SENTINEL2_13_BANDS",
    "SENTINEL2_RESOLUTIONS_M",
    "SIDECAR_SUFFIX",
    "RasterInfo",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterSample",
    "RasterSource",
    "RecordSet",
    "SkippedFile",
    "band_name_from_filename",
    "bigearthnet_folder",
    "bigearthnet_multi_hot",
    "check_raster",
    "eurosat_folder",
    "expand_source",
    "iter_tiles",
    "load_record",
    "normalize_band_name",
    "raster_info",
    "read_raster",
    "read_window",
    "resolve_band_names",
    "scene_tiles",
    "tile_windows",
]
