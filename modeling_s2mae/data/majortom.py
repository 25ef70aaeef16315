"""Reading Major-TOM Core Sentinel-2 (`Major-TOM/Core-S2L2A`, `Major-TOM/Core-S2L1C`) for pretraining.

Major-TOM Core is a global, mono-temporal collection of Sentinel-2 grid cells (about 2.2 million in Core-S2L2A),
each 1,068 x 1,068 pixels at 10 m, stored on the Hugging Face Hub as parquet files whose cells hold one GeoTIFF per
band. `load_majortom` streams the raw rows, `decode_majortom_row` turns one row into a `RasterSample` with every band
on the 10 m grid, and `majortom_samples` cuts rows into georeferenced tiles, dropping cloudy and empty ones.

Schema relied on (column: dtype in the `datasets` features; content):

| column             | dtype          | content                                                                       |
| ------------------ | -------------- | ----------------------------------------------------------------------------- |
| `product_id`       | string         | the Sentinel-2 product the cell was cut from                                  |
| `grid_cell`        | string         | the Major-TOM grid cell name, e.g. "451U_946L" (row, column)                  |
| `product_datetime` | string         | acquisition time of the product                                               |
| `thumbnail`        | image          | RGB composite [B04, B03, B02] as PNG (struct {bytes, path} in the parquet)    |
| `B01` .. `B12`     | binary         | one single-band GeoTIFF per band, at its native resolution: 10 m (B02, B03,    |
| `B8A`              |                | B04, B08), 20 m (B05, B06, B07, B8A, B11, B12), 60 m (B01, B09, B10);          |
|                    |                | `B10` (cirrus) only in Core-S2L1C                                             |
| `cloud_mask`       | binary         | a single-band GeoTIFF, "Cloud Mask produced by SEnSeI", 10 m                  |

Where this was checked (read, not copied):

- The dataset cards' YAML `dataset_info` features and `configs` (`default`: `images/*.parquet`, `metadata`:
  `metadata.parquet`): huggingface.co/datasets/Major-TOM/Core-S2L2A/blob/2004698a74987b8d8a169edaf2aca404dd8005d1/
  README.md; the `B10` row of Core-S2L1C's card (commit 0a0b682); the `cloud_mask` row ("Cloud Mask produced by
  SEnSeI", 10m) added to Core-S2L2A's card in commit 025e21a; band resolutions and the 1,068 x 1,068 (10 m) patch
  size from the cards' Content table.
- The dataset's own reader code, github.com/ESA-PhiLab/Major-TOM: `MajorTOM/sample_helpers.py` (`read_tif_bytes`:
  a band cell is a GeoTIFF opened from memory with `driver='GTiff'`, one band) and `MajorTOM/metadata_helpers.py`
  (`filter_download`: the GeoTIFF columns are the columns starting with "B" plus `cloud_mask`; each parquet row group
  holds one row; the separate `metadata.parquet` has `timestamp`, `cloud_cover` (percent), `nodata` (fraction),
  `centre_lat`, `centre_lon`, `crs`, `parquet_url`, `parquet_row`).

Not stated by those sources, so handled defensively here:

- The nodata value: read from each band's GeoTIFF; when the files declare none, `MAJORTOM_NODATA` (0, the NODATA
  value of Sentinel-2 L1C / L2A products) is used. Pixels equal to it are left out of bilinear resampling.
- The bands' dtype (Sentinel-2 digital numbers are uint16): arrays keep whatever dtype the GeoTIFFs hold.
- Whether Core-S2L2A removed the +1000 offset of L2A products of processing baseline 04.00 and later: the baseline
  is in `product_id` (`_N0400_`, ...); choose the processor's `reflectance_offset` accordingly.
- The `cloud_mask` values. SEnSeI-v2's 4-class output is 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow, and
  its binary outputs use 1 for cloud / invalid (CREODIAS "SenSeIv2 Cloud Mask" service page); by default every
  non-zero value counts as cloudy (`cloud_classes` chooses others). The mask is read on its own grid and resampled
  with nearest neighbour.

Security: the GeoTIFF bytes come from the Hub and are untrusted. They are opened with the GTiff driver only (and
must start with a TIFF signature), so that no other GDAL driver ever parses them: a VRT disguised as a band would
otherwise read local files. A band larger than `max_pixels` is refused before its pixels are decoded.
"""

import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.warp import reproject

from ..sensors import SENTINEL2_13_BANDS, SENTINEL2_BANDS
from .raster import RasterReadError, RasterSample, normalize_band_name, tile_windows
from .samples import Sample

if TYPE_CHECKING:  # `datasets` is imported where it is used: importing it costs a second or two
    from datasets import Dataset, IterableDataset

logger = logging.getLogger(__name__)

CORE_S2L2A_BANDS: tuple[str, ...] = SENTINEL2_BANDS
"""Band columns of Core-S2L2A (12 bands, no B10), in the order `decode_majortom_row` returns them by default."""

CORE_S2L1C_BANDS: tuple[str, ...] = SENTINEL2_13_BANDS
"""Band columns of Core-S2L1C (all 13 bands, B10 included)."""

GRID_CELL_COLUMN = "grid_cell"
PRODUCT_ID_COLUMN = "product_id"
PRODUCT_DATETIME_COLUMN = "product_datetime"
THUMBNAIL_COLUMN = "thumbnail"
CLOUD_MASK_COLUMN = "cloud_mask"

MAJORTOM_NODATA = 0
"""Nodata value used when a band's GeoTIFF declares none (Sentinel-2 products mark missing pixels with 0)."""

MAX_BAND_PIXELS = 4096 * 4096
"""Default cap on the pixels of one decoded GeoTIFF (Major-TOM bands have at most 1,068 x 1,068)."""

DEFAULT_MIN_VALID_FRACTION = 0.9
"""Default least fraction of a tile's pixels that must be valid in every band for the tile to be kept."""

_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF, both byte orders


def load_majortom(
    repo_id_or_folder: str | os.PathLike[str],
    split: str = "train",
    streaming: bool = True,
    **kwargs: Any,
) -> "Dataset | IterableDataset":
    """Load the raw rows of Major-TOM Core (`datasets.load_dataset` on the repo's parquet files).

    A Hub repo id ("Major-TOM/Core-S2L2A", "Major-TOM/Core-S2L1C") and a local folder laid out like the repo
    (README.md with the `configs`, `images/*.parquet`) go through the same call. The `thumbnail` column is kept as
    undecoded PNG bytes ({"bytes", "path"}), so iterating does not decode a PNG per row.

    Args:
        repo_id_or_folder: Hub dataset repo id or local folder.
        split: The split ("train": Major-TOM Core has a single split).
        streaming: Return an `IterableDataset` that reads the parquet files lazily (the default: Core-S2L2A is
            about 25 TB) or a map-style `Dataset`.
        **kwargs: Passed to `datasets.load_dataset`: `revision`, `token`, `cache_dir`, `data_files` (e.g.
            "images/part_0000[1-4].parquet" for a subset), `columns` (read only these parquet columns, e.g. the
            bands you need, `grid_cell` and `cloud_mask`, skipping the rest of each row's bytes).

    Returns:
        A `datasets.IterableDataset` (streaming) or `datasets.Dataset` of raw rows; decode a row with
        `decode_majortom_row`, or tile rows with `majortom_samples`.

    Raises:
        ValueError: the dataset has no `grid_cell` column or no band column (not Major-TOM Core rows).
    """
    from datasets import Image, load_dataset

    dataset = load_dataset(str(repo_id_or_folder), split=split, streaming=streaming, **kwargs)
    columns = list(dataset.features or {})
    if dataset.features is not None:
        band_columns = [name for name in columns if name in CORE_S2L1C_BANDS]
        if GRID_CELL_COLUMN not in columns or not band_columns:
            raise ValueError(
                f"{repo_id_or_folder} split {split!r} does not hold Major-TOM Core rows: expected a "
                f"{GRID_CELL_COLUMN!r} column and band columns ({', '.join(CORE_S2L1C_BANDS)}), got {columns}. "
                "If you passed columns=[...], include 'grid_cell' and the bands."
            )
        if isinstance(dataset.features.get(THUMBNAIL_COLUMN), Image):
            dataset = dataset.cast_column(THUMBNAIL_COLUMN, Image(decode=False))
    return dataset


def row_label(row: Mapping[str, Any]) -> str:
    """A readable name of a row for messages: its grid cell and product id."""
    cell = row.get(GRID_CELL_COLUMN, "<no grid_cell>")
    product = row.get(PRODUCT_ID_COLUMN)
    return f"grid_cell {cell!r}" + (f" (product {product!r})" if product else "")


def band_columns(row: Mapping[str, Any]) -> list[str]:
    """The Sentinel-2 band columns of a row, in `CORE_S2L1C_BANDS` order (B8A after B08)."""
    return [name for name in CORE_S2L1C_BANDS if name in row]


class _Band(NamedTuple):
    """One decoded single-band GeoTIFF."""

    array: np.ndarray  # (H, W)
    transform: Affine
    crs: CRS | None
    nodata: float | None

    @property
    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e)

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a rectilinear grid."""
        height, width = self.array.shape
        t = self.transform
        xs, ys = (t.c, t.c + t.a * width), (t.f, t.f + t.e * height)
        return min(xs), min(ys), max(xs), max(ys)


def _decode_geotiff(data: Any, label: str, column: str, max_pixels: int) -> _Band:
    """Decode the single-band GeoTIFF of one cell, with the GTiff driver only, refusing anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise RasterReadError(
            f"Row {label}, column {column!r}: expected GeoTIFF bytes, got {type(data).__name__}"
            f"{' (empty)' if isinstance(data, (bytes, bytearray, memoryview)) else ''}."
        )
    data = bytes(data)
    if not data.startswith(_TIFF_SIGNATURES):
        raise RasterReadError(
            f"Row {label}, column {column!r}: the {len(data)} bytes are not a GeoTIFF (they start with "
            f"{data[:16]!r}); Major-TOM band and cloud-mask columns hold GeoTIFFs, and nothing else is opened."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as memory_file, memory_file.open(driver="GTiff") as dataset:
                if dataset.count != 1:
                    raise RasterReadError(
                        f"Row {label}, column {column!r}: the GeoTIFF has {dataset.count} bands; Major-TOM stores "
                        "one band per column."
                    )
                if dataset.width * dataset.height > max_pixels:
                    raise RasterReadError(
                        f"Row {label}, column {column!r}: the GeoTIFF is {dataset.width} x {dataset.height} pixels, "
                        f"more than max_pixels={max_pixels} (Major-TOM bands have at most 1068 x 1068); it was not "
                        "decoded. Pass a larger max_pixels if the data is trusted and really that large."
                    )
                return _Band(dataset.read(1), dataset.transform, dataset.crs, dataset.nodata)
    except RasterioError as error:
        raise RasterReadError(
            f"Row {label}, column {column!r}: the {len(data)} bytes could not be read as a GeoTIFF ({error}). "
            "Only the GTiff driver is allowed on these untrusted bytes; the cell is corrupt or holds another format."
        ) from error


def _check_aligned(bands: Mapping[str, _Band], reference: str, label: str) -> None:
    """All bands must share the reference band's CRS and extent (to half a reference pixel)."""
    ref = bands[reference]
    ref_bounds = ref.bounds()
    tolerance = 0.5 * min(abs(ref.transform.a), abs(ref.transform.e))
    for column, band in bands.items():
        if not band.transform.is_rectilinear:
            raise RasterReadError(f"Row {label}, column {column!r}: rotated geotransforms are not supported.")
        if band.crs != ref.crs:
            raise RasterReadError(
                f"Row {label}: column {column!r} is in {band.crs} but {reference!r} in {ref.crs}; the bands of a "
                "Major-TOM cell share one CRS."
            )
        if max(abs(a - b) for a, b in zip(band.bounds(), ref_bounds)) > tolerance:
            raise RasterReadError(
                f"Row {label}: column {column!r} covers {band.bounds()} but {reference!r} covers {ref_bounds}; the "
                "bands of a Major-TOM cell cover the same extent."
            )


def _same_grid(band: _Band, transform: Affine, shape: tuple[int, int]) -> bool:
    pixel = min(abs(transform.a), abs(transform.e))
    return band.array.shape == shape and all(
        abs(a - b) < 1e-6 * pixel for a, b in zip(tuple(band.transform)[:6], tuple(transform)[:6])
    )


def _warp(
    band: _Band,
    transform: Affine,
    shape: tuple[int, int],
    resampling: Resampling,
    nodata: float | None,
    label: str,
    column: str,
) -> np.ndarray:
    """`band` on the grid (`transform`, `shape`); `nodata` pixels are excluded from the resampling kernel."""
    if _same_grid(band, transform, shape):
        return band.array
    if band.crs is None:
        raise RasterReadError(
            f"Row {label}, column {column!r}: the GeoTIFF has no CRS, so it cannot be resampled onto the other "
            "bands' grid."
        )
    out = np.full(shape, nodata if nodata is not None else 0, dtype=band.array.dtype)
    reproject(
        band.array,
        out,
        src_transform=band.transform,
        src_crs=band.crs,
        dst_transform=transform,
        dst_crs=band.crs,
        src_nodata=nodata,
        dst_nodata=nodata,
        resampling=resampling,
    )
    return out


def decode_majortom_row(
    row: Mapping[str, Any],
    *,
    bands: Sequence[str] | None = None,
    resampling: str | Resampling = "bilinear",
    max_pixels: int = MAX_BAND_PIXELS,
) -> RasterSample:
    """Decode a Major-TOM row into one `RasterSample` with every band on the finest band's grid.

    Each band column's GeoTIFF is decoded (GTiff driver only) and the coarser bands (20 m, 60 m) are resampled onto
    the grid of the finest requested band (10 m for Major-TOM: 1068 x 1068), excluding nodata pixels from the
    kernel.

    Args:
        row: A raw row (a dict, e.g. from `load_majortom`).
        bands: Band names to return, in that order ("B4" is read as "B04"); default: every band column of the row
            in `CORE_S2L1C_BANDS` order (the 12 of `CORE_S2L2A_BANDS` for Core-S2L2A).
        resampling: How the coarser bands are brought onto the grid (a `Resampling` or its name); bilinear suits
            reflectances.
        max_pixels: Refuse any GeoTIFF with more pixels than this, before decoding it.

    Returns:
        A `RasterSample`: `array` (C, H, W) in the bands' dtype (uint16 for Sentinel-2), `band_names` the column
        names, `nodata` from the files (`MAJORTOM_NODATA` when they declare none), the grid's `transform` and
        `crs`, and `source` = [the row's grid cell / product id].

    Raises:
        RasterReadError (a ValueError): naming the row and the column, for a missing band column, bytes that are
            not a GeoTIFF (e.g. a VRT), an oversized or multi-band GeoTIFF, bands that do not align, or bands with
            different nodata values.
    """
    label = row_label(row)
    present = band_columns(row)
    wanted = list(present) if bands is None else [normalize_band_name(name) for name in bands]
    if not wanted:
        raise RasterReadError(
            f"Row {label} has no band column (expected some of {', '.join(CORE_S2L1C_BANDS)}); its columns are "
            f"{sorted(row)}."
        )
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"bands repeats names: {wanted}.")
    unknown = [name for name in wanted if name not in CORE_S2L1C_BANDS]
    if unknown:
        raise ValueError(f"bands {unknown} are not Sentinel-2 band columns; choose from {list(CORE_S2L1C_BANDS)}.")
    missing = [name for name in wanted if name not in row or row[name] is None]
    if missing:
        hint = " (Core-S2L2A has no B10; it is in Core-S2L1C)" if "B10" in missing else ""
        raise RasterReadError(
            f"Row {label}: band column(s) {missing} missing{hint}; the row has band columns {present}. Pass "
            "bands=[...] with bands the dataset has."
        )
    if isinstance(resampling, str):
        try:
            resampling = Resampling[resampling]
        except KeyError:
            raise ValueError(
                f"Unknown resampling {resampling!r}; use one of {[m.name for m in Resampling]}."
            ) from None

    decoded = {name: _decode_geotiff(row[name], label, name, max_pixels) for name in wanted}
    finest = min(wanted, key=lambda name: decoded[name].pixel_area)
    _check_aligned(decoded, finest, label)
    declared = {band.nodata for band in decoded.values()} - {None}
    if len(declared) > 1:
        detail = ", ".join(f"{name}: {band.nodata}" for name, band in decoded.items())
        raise RasterReadError(f"Row {label}: the bands declare different nodata values ({detail}).")
    nodata = declared.pop() if declared else MAJORTOM_NODATA
    reference = decoded[finest]
    shape = reference.array.shape
    dtype = np.result_type(*[band.array.dtype for band in decoded.values()])
    array = np.empty((len(wanted), *shape), dtype=dtype)
    for index, name in enumerate(wanted):
        array[index] = _warp(decoded[name], reference.transform, shape, resampling, nodata, label, name)
    return RasterSample(
        array=array,
        band_names=wanted,
        nodata=nodata,
        transform=reference.transform,
        crs=reference.crs,
        source=[f"{row.get(GRID_CELL_COLUMN)}/{row.get(PRODUCT_ID_COLUMN)}"],
    )


def majortom_cloud_mask(
    row: Mapping[str, Any], like: RasterSample, *, max_pixels: int = MAX_BAND_PIXELS
) -> RasterSample:
    """The row's `cloud_mask`, read on its own grid and resampled (nearest) onto the grid of `like`.

    Args:
        row: A raw row with a `cloud_mask` column.
        like: The decoded row (`decode_majortom_row`), whose grid the mask is put on.
        max_pixels: Refuse a mask GeoTIFF with more pixels than this, before decoding it.

    Returns:
        A `RasterSample` of shape (1, H, W) named "cloud_mask", in the mask's dtype; pixels outside the mask's
        extent, or marked nodata in it, hold the mask's nodata value (`nodata`; 255 when it declares none).

    Raises:
        RasterReadError (a ValueError): naming the row, when the column is missing, not a GeoTIFF, too large, or in
            another CRS than the bands.
    """
    label = row_label(row)
    if row.get(CLOUD_MASK_COLUMN) is None:
        raise RasterReadError(
            f"Row {label} has no {CLOUD_MASK_COLUMN!r} column; cloud filtering needs it (did columns=[...] leave "
            "it out?). Pass max_cloud_fraction=None to keep tiles without looking at clouds."
        )
    mask = _decode_geotiff(row[CLOUD_MASK_COLUMN], label, CLOUD_MASK_COLUMN, max_pixels)
    if like.crs is not None and mask.crs != like.crs:
        raise RasterReadError(
            f"Row {label}: column {CLOUD_MASK_COLUMN!r} is in {mask.crs} but the bands are in {like.crs}."
        )
    nodata = mask.nodata if mask.nodata is not None else 255
    shape = (like.height, like.width)
    values = _warp(mask, like.transform, shape, Resampling.nearest, nodata, label, CLOUD_MASK_COLUMN)
    return RasterSample(
        array=values[None],
        band_names=[CLOUD_MASK_COLUMN],
        nodata=nodata,
        transform=like.transform,
        crs=like.crs,
        source=list(like.source),
    )


@dataclass
class MajorTOMStats:
    """What `majortom_samples` read, kept and dropped (updated while iterating; log it at the end).

    Attributes:
        rows: Rows decoded.
        rows_skipped: Rows that could not be decoded and were skipped (`skip_bad_rows=True`).
        tiles: Tiles cut from the decoded rows.
        tiles_kept: Tiles yielded.
        tiles_nodata: Tiles dropped for too few valid pixels (`min_valid_fraction`).
        tiles_cloudy: Tiles dropped for too many cloudy pixels (`max_cloud_fraction`).
    """

    rows: int = 0
    rows_skipped: int = 0
    tiles: int = 0
    tiles_kept: int = 0
    tiles_nodata: int = 0
    tiles_cloudy: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict (e.g. for `trainer.log` or JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"Major-TOM: {self.rows} rows decoded, {self.rows_skipped} skipped; {self.tiles} tiles: "
            f"{self.tiles_kept} kept, {self.tiles_nodata} with too little valid data, {self.tiles_cloudy} too cloudy"
        )


class MajorTOMSamples(Iterator[Sample]):
    """The iterator `majortom_samples` returns: `Sample`s, plus `stats` (a `MajorTOMStats`) of what was dropped."""

    def __init__(self, samples: Iterator[Sample], stats: MajorTOMStats) -> None:
        self._samples = samples
        self.stats = stats

    def __iter__(self) -> "MajorTOMSamples":
        return self

    def __next__(self) -> Sample:
        return next(self._samples)


def _check_fraction(value: float | None, name: str) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a fraction in [0, 1] (or None), got {value!r}.")


def _valid_pixels(sample: RasterSample) -> np.ndarray:
    """(H, W) bool: valid (not nodata, finite) in every band."""
    array = sample.array
    valid = np.ones(array.shape[1:], dtype=bool)
    if sample.nodata is not None:
        valid &= np.all(array != sample.nodata, axis=0)
    if np.issubdtype(array.dtype, np.floating):
        valid &= np.all(np.isfinite(array), axis=0)
    return valid


def _cloudy_pixels(mask: RasterSample, cloud_classes: Sequence[int] | None) -> np.ndarray:
    """(H, W) bool: pixels the mask marks cloudy (its nodata pixels are not cloudy)."""
    values = mask.array[0]
    if cloud_classes is None:
        return (values != 0) & (values != mask.nodata)
    return np.isin(values, list(cloud_classes))


def majortom_samples(
    rows: Iterable[Mapping[str, Any]],
    *,
    tile_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    bands: Sequence[str] | None = None,
    max_cloud_fraction: float | None = None,
    min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
    cloud_classes: Sequence[int] | None = None,
    resampling: str | Resampling = "bilinear",
    max_pixels: int = MAX_BAND_PIXELS,
    skip_bad_rows: bool = False,
) -> MajorTOMSamples:
    """Cut Major-TOM rows into georeferenced tiles, dropping (and counting) empty and cloudy ones.

    Each row is decoded with `decode_majortom_row` (all bands on the 10 m grid), then cut into `tile_size` tiles
    that lie wholly inside the cell (with 1068 x 1068 cells and `tile_size=128`: 8 x 8 tiles, the last 44 rows and
    columns unused unless a `stride` reaches them). Rows are decoded lazily, one at a time.

    Args:
        rows: Raw rows: a `datasets.IterableDataset` / `Dataset` from `load_majortom`, or any iterable of dicts.
        tile_size: Tile side in pixels of the 10 m grid, or (height, width).
        stride: Step between tiles (default: `tile_size`, no overlap).
        bands: Bands to return, in that order (default: every band column of each row; see `decode_majortom_row`).
        max_cloud_fraction: Drop tiles where more than this fraction of pixels is cloudy in `cloud_mask`
            (resampled with nearest neighbour onto the tile). None: do not read the cloud mask.
        min_valid_fraction: Drop tiles where fewer than this fraction of pixels is valid (not nodata) in every band.
        cloud_classes: The `cloud_mask` values that count as cloudy; default: every non-zero value other than the
            mask's nodata (thick cloud, thin cloud and shadow in SEnSeI's 4-class output; 1 in a binary mask).
        resampling: Resampling of the coarser bands onto the 10 m grid.
        max_pixels: Refuse any GeoTIFF with more pixels than this, before decoding it.
        skip_bad_rows: Log and count (`stats.rows_skipped`) rows that cannot be decoded instead of raising.

    Returns:
        A `MajorTOMSamples` iterator of `Sample`s, each with `raster` (C, tile height, tile width) in the bands'
        dtype with the tile's own `transform` and `window` (offsets in the cell's 10 m grid), `id`
        "<grid_cell>/r<row>_c<col>" (pixel offsets), and `group` = the grid cell (for spatial splits). Its `stats`
        counts decoded and skipped rows, kept tiles and tiles dropped for nodata or clouds.

    Raises:
        ValueError: invalid arguments.
        RasterReadError (a ValueError): an undecodable row (unless `skip_bad_rows`), e.g. a missing band column or a
            cell that is not a GeoTIFF, naming the row and column.
    """
    _check_fraction(max_cloud_fraction, "max_cloud_fraction")
    _check_fraction(min_valid_fraction, "min_valid_fraction")
    tile_windows(1, 1, tile_size, stride)  # validates tile_size and stride now, not at the first row
    stats = MajorTOMStats()

    def generate() -> Iterator[Sample]:
        for row in rows:
            try:
                sample = decode_majortom_row(row, bands=bands, resampling=resampling, max_pixels=max_pixels)
                cloudy = None
                if max_cloud_fraction is not None:
                    mask = majortom_cloud_mask(row, sample, max_pixels=max_pixels)
                    cloudy = _cloudy_pixels(mask, cloud_classes)
            except RasterReadError as error:
                if not skip_bad_rows:
                    raise
                stats.rows_skipped += 1
                logger.warning("Skipping a Major-TOM row: %s", error)
                continue
            stats.rows += 1
            cell = str(row.get(GRID_CELL_COLUMN))
            valid = _valid_pixels(sample)
            cell_windows = tile_windows(sample.height, sample.width, tile_size, stride)
            if not cell_windows:
                logger.warning(
                    "Row %s: its %d x %d grid holds no %s tile.", cell, sample.height, sample.width, tile_size
                )
            for window in cell_windows:
                stats.tiles += 1
                rows_slice, cols_slice = window.toslices()
                pixels = window.height * window.width
                if valid[rows_slice, cols_slice].sum() / pixels < min_valid_fraction:
                    stats.tiles_nodata += 1
                    continue
                if cloudy is not None and cloudy[rows_slice, cols_slice].sum() / pixels > max_cloud_fraction:
                    stats.tiles_cloudy += 1
                    continue
                stats.tiles_kept += 1
                row_off, col_off = int(window.row_off), int(window.col_off)
                yield Sample(
                    id=f"{cell}/r{row_off}_c{col_off}",
                    raster=RasterSample(
                        array=sample.array[:, rows_slice, cols_slice].copy(),  # a copy: the cell's array is freed
                        band_names=list(sample.band_names),
                        nodata=sample.nodata,
                        transform=sample.transform @ Affine.translation(col_off, row_off),
                        crs=sample.crs,
                        source=list(sample.source),
                        window=window,
                    ),
                    group=cell,
                )

    return MajorTOMSamples(generate(), stats)


__all__ = [
    "CLOUD_MASK_COLUMN",
    "CORE_S2L1C_BANDS",
    "CORE_S2L2A_BANDS",
    "DEFAULT_MIN_VALID_FRACTION",
    "GRID_CELL_COLUMN",
    "MAJORTOM_NODATA",
    "MAX_BAND_PIXELS",
    "PRODUCT_DATETIME_COLUMN",
    "PRODUCT_ID_COLUMN",
    "THUMBNAIL_COLUMN",
    "MajorTOMSamples",
    "MajorTOMStats",
    "band_columns",
    "decode_majortom_row",
    "load_majortom",
    "majortom_cloud_mask",
    "majortom_samples",
    "row_label",
]
