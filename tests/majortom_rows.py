"""Write Major-TOM Core rows from real Sentinel-2 band files, for tests and smoke runs (no Hub access needed).

The rows follow the Core-S2L2A / Core-S2L1C schema described in `modeling_s2mae.data.majortom`: `product_id`,
`grid_cell`, `product_datetime`, `thumbnail` (PNG, a `datasets` Image), one single-band GeoTIFF per band column at
the band's native resolution, and a `cloud_mask` GeoTIFF. `write_majortom_repo` lays them out like the Hub repo:
`README.md` (YAML `dataset_info` + `configs`), `images/part_0000i.parquet` (one row per row group, as in the real
files) and `metadata.parquet`.

The pixels are the real T33UUU bands of `sample_data/sentinel2_scene/` (384 x 384 at 10 m, 192 x 192 at 20 m,
64 x 64 at 60 m, one 3.84 km cell instead of Major-TOM's 10.68 km), optionally with a region set to nodata (0) and
with a cloud mask made by the caller. The pixels are Level-1C digital numbers whichever schema (L2A or L1C) the
rows are written in: the layout is what is tested, not the radiometry.

Quick use (e.g. a pretraining smoke test)::

    from majortom_rows import write_sample_majortom_repo
    root = write_sample_majortom_repo(tmp_path / "Core-S2L2A", SAMPLE_DATA / "sentinel2_scene")
    rows = load_majortom(root)  # 3 rows: clear, cloudy top-left, left half nodata
"""

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from affine import Affine
from datasets import Features, Image, Value
from PIL import Image as PILImage
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window, bounds

from modeling_s2mae.data.majortom import (
    CLOUD_MASK_COLUMN,
    CORE_S2L1C_BANDS,
    CORE_S2L2A_BANDS,
    GRID_CELL_COLUMN,
    MAJORTOM_NODATA,
    PRODUCT_DATETIME_COLUMN,
    PRODUCT_ID_COLUMN,
    THUMBNAIL_COLUMN,
)

SCENE_STEM = "T33UUU_20170216T102101"
"""File name stem of the band files in `sample_data/sentinel2_scene/` (`<stem>_<band>.tif`)."""

PRODUCT_ID = "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204"
PRODUCT_DATETIME = "20170216T102101"


def band_path(scene_dir: Path, band: str) -> Path:
    """The file of one band of the sample scene."""
    return Path(scene_dir) / f"{SCENE_STEM}_{band}.tif"


def encode_band(
    array: np.ndarray, transform: Affine, crs: CRS | None, nodata: float | None = MAJORTOM_NODATA
) -> bytes:
    """One (H, W) band as single-band GeoTIFF bytes (DEFLATE, tiled), the way a Major-TOM cell stores it."""
    height, width = array.shape
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 16 * max(1, min(width, 256) // 16),
        "blockysize": 16 * max(1, min(height, 256) // 16),
    }
    with MemoryFile() as memory_file:
        with memory_file.open(**profile) as dataset:
            dataset.write(array, 1)
        return memory_file.read()


def cloud_mask(shape: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], value: int = 1) -> np.ndarray:
    """A uint8 (H, W) mask, 0 (clear) except `value` inside each box (row0, row1, col0, col1), ends exclusive."""
    mask = np.zeros(shape, dtype=np.uint8)
    for row0, row1, col0, col1 in boxes:
        mask[row0:row1, col0:col1] = value
    return mask


def _thumbnail(rgb: np.ndarray) -> bytes:
    """PNG of a (3, H, W) reflectance composite (digital numbers / 2000, as Major-TOM's plots scale them)."""
    image = np.clip(rgb.astype(np.float32) / 2000.0 * 255.0, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def make_row(
    scene_dir: Path,
    *,
    grid_cell: str,
    bands: Sequence[str] = CORE_S2L2A_BANDS,
    mask: np.ndarray | None = None,
    nodata_bounds: tuple[float, float, float, float] | None = None,
    nodata: float | None = MAJORTOM_NODATA,
    product_id: str = PRODUCT_ID,
    product_datetime: str = PRODUCT_DATETIME,
) -> dict[str, Any]:
    """One Major-TOM row from the sample scene's band files.

    Args:
        scene_dir: `sample_data/sentinel2_scene`.
        grid_cell: The row's `grid_cell`.
        bands: Band columns to write (`CORE_S2L2A_BANDS`, or `CORE_S2L1C_BANDS` for an L1C row).
        mask: The cloud mask (H, W) uint8 on any grid covering the scene's extent (e.g. 384 x 384 for 10 m,
            64 x 64 for 60 m); None: all clear at 10 m.
        nodata_bounds: (left, bottom, right, top) in the scene's CRS: pixels whose centre lies inside are set to 0
            in every band, at every resolution (e.g. the edge of a swath).
        nodata: The nodata tag written in each band's GeoTIFF (None: no tag, as in files that declare none).

    Returns:
        The row as a dict of Python values (bytes for GeoTIFFs, {"bytes", "path"} for the thumbnail).
    """
    row: dict[str, Any] = {
        PRODUCT_ID_COLUMN: product_id,
        GRID_CELL_COLUMN: grid_cell,
        PRODUCT_DATETIME_COLUMN: product_datetime,
    }
    rgb: dict[str, np.ndarray] = {}
    grid = None
    for band in bands:
        with rasterio.open(band_path(scene_dir, band)) as src:
            array, transform, crs = src.read(1), src.transform, src.crs
        if nodata_bounds is not None:
            left, bottom, right, top = nodata_bounds
            cols, rows = np.meshgrid(np.arange(array.shape[1]) + 0.5, np.arange(array.shape[0]) + 0.5)
            xs, ys = transform @ (cols, rows)
            array = np.where((xs > left) & (xs < right) & (ys > bottom) & (ys < top), 0, array).astype(array.dtype)
        row[band] = encode_band(array, transform, crs, nodata)
        if band in ("B04", "B03", "B02"):
            rgb[band] = array
        if grid is None or abs(transform.a) < abs(grid[0].a):
            grid = (transform, crs, array.shape)
    transform, crs, shape = grid
    if mask is None:
        mask = np.zeros(shape, dtype=np.uint8)
    extent = bounds(Window(0, 0, shape[1], shape[0]), transform)
    mask_transform = Affine(
        (extent[2] - extent[0]) / mask.shape[1],
        0.0,
        extent[0],
        0.0,
        -(extent[3] - extent[1]) / mask.shape[0],
        extent[3],
    )
    row[CLOUD_MASK_COLUMN] = encode_band(mask, mask_transform, crs, None)
    if len(rgb) == 3:
        row[THUMBNAIL_COLUMN] = {"bytes": _thumbnail(np.stack([rgb["B04"], rgb["B03"], rgb["B02"]])), "path": None}
    else:
        row[THUMBNAIL_COLUMN] = None
    return row


def majortom_features(bands: Sequence[str] = CORE_S2L2A_BANDS) -> Features:
    """The `datasets` features of the Major-TOM Core image rows (as in the dataset cards' `dataset_info`)."""
    columns: dict[str, Any] = {
        PRODUCT_ID_COLUMN: Value("string"),
        GRID_CELL_COLUMN: Value("string"),
        PRODUCT_DATETIME_COLUMN: Value("string"),
        THUMBNAIL_COLUMN: Image(),
    }
    columns.update({band: Value("binary") for band in bands})
    columns[CLOUD_MASK_COLUMN] = Value("binary")
    return Features(columns)


def _card(features: Features) -> str:
    lines = ["---", "license: cc-by-sa-4.0", "dataset_info:", "- config_name: default", "  features:"]
    for name, feature in features.items():
        dtype = "image" if isinstance(feature, Image) else feature.dtype
        lines += [f"  - name: {name}", f"    dtype: {dtype}"]
    lines += [
        "configs:",
        "- config_name: default",
        "  data_files: images/*.parquet",
        "- config_name: metadata",
        "  data_files: metadata.parquet",
        "---",
        "",
        "# Test rows in the Major-TOM Core layout",
        "",
        "Written by tests/majortom_rows.py from sample_data/sentinel2_scene (Contains modified Copernicus Sentinel "
        "data 2017).",
        "",
    ]
    return "\n".join(lines)


def _metadata(row: Mapping[str, Any], parquet_url: str, parquet_row: int) -> dict[str, Any]:
    """The `metadata.parquet` entry of a row (the columns Major-TOM's own filtering code reads)."""
    data_bands = [name for name in CORE_S2L1C_BANDS if name in row]
    with MemoryFile(row[data_bands[0]]) as memory_file, memory_file.open(driver="GTiff") as dataset:
        array, crs = dataset.read(1), dataset.crs
        left, bottom, right, top = dataset.bounds
    with MemoryFile(row[CLOUD_MASK_COLUMN]) as memory_file, memory_file.open(driver="GTiff") as dataset:
        mask = dataset.read(1)
    (lon,), (lat,) = warp_transform(crs, "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
    return {
        PRODUCT_ID_COLUMN: row[PRODUCT_ID_COLUMN],
        GRID_CELL_COLUMN: row[GRID_CELL_COLUMN],
        "timestamp": row[PRODUCT_DATETIME_COLUMN],
        "cloud_cover": float(100.0 * np.mean(mask != 0)),
        "nodata": float(np.mean(array == MAJORTOM_NODATA)),
        "centre_lat": float(lat),
        "centre_lon": float(lon),
        "crs": crs.to_string(),
        "parquet_url": parquet_url,
        "parquet_row": parquet_row,
    }


def write_majortom_repo(
    root: Path, rows: Sequence[Mapping[str, Any]], *, rows_per_file: int = 2, bands: Sequence[str] | None = None
) -> Path:
    """Write rows as a folder laid out like the Major-TOM Core Hub repo; returns `root`.

    Layout: `README.md` (YAML `dataset_info` features and `configs` default -> `images/*.parquet`, metadata ->
    `metadata.parquet`), `images/part_00001.parquet`, ... (`rows_per_file` rows each, one row per row group),
    `metadata.parquet` (one entry per row, with `parquet_url` and `parquet_row`).

    Args:
        root: Folder to write (created).
        rows: Rows from `make_row`.
        rows_per_file: Rows per parquet file.
        bands: Band columns of the schema (default: those of the first row).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    bands = list(bands) if bands is not None else [name for name in CORE_S2L1C_BANDS if name in rows[0]]
    features = majortom_features(bands)
    schema = features.arrow_schema
    metadata = []
    for file_index, start in enumerate(range(0, len(rows), rows_per_file), start=1):
        name = f"images/part_{file_index:05d}.parquet"
        with pq.ParquetWriter(root / name, schema) as writer:
            for row_group, row in enumerate(rows[start : start + rows_per_file]):
                writer.write_table(pa.Table.from_pylist([{key: row.get(key) for key in features}], schema=schema))
                metadata.append(_metadata(row, name, row_group))
    pq.write_table(pa.Table.from_pylist(metadata), root / "metadata.parquet")
    (root / "README.md").write_text(_card(features), encoding="utf-8")
    return root


def scene_extent(scene_dir: Path) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the sample scene, from its B02 file."""
    with rasterio.open(band_path(scene_dir, "B02")) as src:
        return tuple(src.bounds)


def sample_rows(scene_dir: Path, bands: Sequence[str] = CORE_S2L2A_BANDS) -> list[dict[str, Any]]:
    """Three rows of the sample scene (384 x 384 at 10 m): all clear; thick cloud (1) over the top-left 128 x 128
    pixels; the left half (x < left + 1920 m) nodata in every band."""
    left, bottom, right, top = scene_extent(scene_dir)
    return [
        make_row(scene_dir, grid_cell="583U_154R", bands=bands),
        make_row(scene_dir, grid_cell="583U_155R", bands=bands, mask=cloud_mask((384, 384), [(0, 128, 0, 128)])),
        make_row(
            scene_dir, grid_cell="584U_154R", bands=bands, nodata_bounds=(left - 1, bottom - 1, left + 1920, top + 1)
        ),
    ]


def write_sample_majortom_repo(root: Path, scene_dir: Path, bands: Sequence[str] = CORE_S2L2A_BANDS) -> Path:
    """`write_majortom_repo` of `sample_rows` (3 rows in 2 parquet files); returns `root`."""
    return write_majortom_repo(root, sample_rows(scene_dir, bands), rows_per_file=2)
