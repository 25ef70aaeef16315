"""Reading multispectral imagery for S2MAE: rasters with named bands, per-band files on one grid, tiles, datasets.

- `raster`: `read_raster`, `read_window`, `iter_tiles` and friends return `RasterSample`s, arrays of shape (C, H, W)
  whose bands are named (EuroSAT stores B8A last, most sources after B08: always select bands by name).
- `builders`: `eurosat_folder`, `bigearthnet_folder`, `scene_tiles` list a dataset as records; `load_record` reads one.
- `hub_format`: sharded-parquet Hub datasets of GeoTIFF bytes (`write_hub_dataset`, `load_spectral_dataset`,
  `decode_row`, `to_model_inputs`).
- `samples`: the one data seam: the typed `RasterRecord` builders make and the `Sample` every source yields.
- `transforms`: `SampleTransform`, the one path from a `Sample` to model inputs (processor, augmentation,
  nodata-robust sampling), for local files and streamed rows alike.
- `majortom`: Major-TOM Core-S2L2A / Core-S2L1C rows (`load_majortom`, `decode_majortom_row`, `majortom_samples`).
- `benv2`: `BigEarthNetV2` reads the BigEarthNet v2 (reBEN) LMDB + metadata.parquet release as `Sample`s.
- `labelled_rasters`: scene tiles labelled by a label raster on the same grid, and a spatial train / test split.
- `segmentation`, `change_detection`: image + label raster pairs and tiles, OSCD and (before, after, change) triples.
- `statistics`: `compute_band_statistics` -> `BandStatistics`, dataset-level per-band ranges for the processor's
  "dataset_range" scaling.
- `sources`: folder-layout detection (`detect_layout`) and `collect_records` of folders and scenes.
- `training`: `SampleDataset` (map-style), `stream_model_inputs` (streamed), `split_records` and `PixelCollator`.
"""

from .benv2 import (
    BIGEARTHNET_V2_BAND_SHAPES,
    BIGEARTHNET_V2_BANDS,
    BIGEARTHNET_V2_PATCH_SIZE,
    BIGEARTHNET_V2_SPLITS,
    BigEarthNetV2,
    BigEarthNetV2Error,
    bigearthnet_v2_multi_hot,
)
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
from .change_detection import ChangeDetectionTransform, change_triples, oscd_records
from .hub_format import (
    DEFAULT_ROWS_PER_SHARD,
    FORMAT_NAME,
    MULTI_LABEL,
    SINGLE_LABEL,
    LabelInfo,
    WrittenSplit,
    check_parquet_shards,
    decode_row,
    label_info,
    load_spectral_dataset,
    push_hub_dataset,
    row_to_sample,
    to_model_inputs,
    write_hub_dataset,
)
from .labelled_rasters import labelled_raster_tiles, load_class_names, spatial_split
from .majortom import (
    CORE_S2L1C_BANDS,
    CORE_S2L2A_BANDS,
    MajorTOMSamples,
    MajorTOMStats,
    decode_majortom_row,
    load_majortom,
    majortom_cloud_mask,
    majortom_samples,
)
from .raster import (
    EUROSAT_MS_BANDS,
    MAX_READ_BYTES,
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
from .samples import RasterRecord, Sample, record_to_sample, sample_targets
from .segmentation import (
    DenseRecordDataset,
    DenseTransform,
    collate_dense,
    pair_by_name,
    pair_from_csv,
    segmentation_tiles,
)
from .sources import LAYOUTS, collect_records, detect_layout, folder_records, list_scenes
from .statistics import BandStatistics, compute_band_statistics
from .training import PixelCollator, SampleDataset, collate_pixels, split_records, stream_model_inputs
from .transforms import DEFAULT_MIN_VALID_FRACTION, SampleTransform, SkipCounter, SpectralBinning, valid_pixel_mask

__all__ = [
    "ChangeDetectionTransform",
    "DenseRecordDataset",
    "DenseTransform",
    "change_triples",
    "collate_dense",
    "oscd_records",
    "pair_by_name",
    "pair_from_csv",
    "segmentation_tiles",
    "BIGEARTHNET_V2_BAND_SHAPES",
    "BIGEARTHNET_V2_BANDS",
    "BIGEARTHNET_V2_PATCH_SIZE",
    "BIGEARTHNET_V2_SPLITS",
    "BigEarthNetV2",
    "BigEarthNetV2Error",
    "CORE_S2L1C_BANDS",
    "CORE_S2L2A_BANDS",
    "MajorTOMSamples",
    "MajorTOMStats",
    "bigearthnet_v2_multi_hot",
    "labelled_raster_tiles",
    "load_class_names",
    "spatial_split",
    "decode_majortom_row",
    "load_majortom",
    "majortom_cloud_mask",
    "majortom_samples",
    "DEFAULT_ROWS_PER_SHARD",
    "FORMAT_NAME",
    "LabelInfo",
    "MULTI_LABEL",
    "BandStatistics",
    "DEFAULT_MIN_VALID_FRACTION",
    "LAYOUTS",
    "collect_records",
    "compute_band_statistics",
    "detect_layout",
    "folder_records",
    "list_scenes",
    "PixelCollator",
    "RasterRecord",
    "Sample",
    "SampleDataset",
    "SampleTransform",
    "SkipCounter",
    "SpectralBinning",
    "record_to_sample",
    "check_parquet_shards",
    "row_to_sample",
    "sample_targets",
    "split_records",
    "stream_model_inputs",
    "valid_pixel_mask",
    "SINGLE_LABEL",
    "WrittenSplit",
    "collate_pixels",
    "decode_row",
    "label_info",
    "load_spectral_dataset",
    "push_hub_dataset",
    "to_model_inputs",
    "write_hub_dataset",
    "BIGEARTHNET_19_CLASSES",
    "BIGEARTHNET_43_CLASSES",
    "BIGEARTHNET_43_TO_19",
    "EUROSAT_MS_BANDS",
    "MAX_READ_BYTES",
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
