"""A Hugging Face Hub dataset format for multispectral imagery: sharded parquet files of GeoTIFF bytes.

Any band count works (Sentinel-2, Landsat, hyperspectral): every row carries its own GeoTIFF and band names.

Layout of a dataset folder or Hub dataset repository::

    <root>/README.md                                  dataset card: YAML `configs` + `dataset_info`, format notes
    <root>/data/<split>-00000-of-0000N.parquet        N shards per split (`train`, `validation`, `test`, ...)

One row per sample:

| column       | type                       | content                                                            |
| ------------ | -------------------------- | ------------------------------------------------------------------ |
| `id`         | string                     | unique within the dataset (e.g. "Forest/Forest_1")                 |
| `image`      | binary                     | a whole GeoTIFF: all bands, source dtype, lossless DEFLATE         |
| `band_names` | list of string             | names of the C bands in file order (also the band descriptions)    |
| `nodata`     | float64 or null            | the nodata value (also in the GeoTIFF), null when none             |
| `crs`        | string or null             | "EPSG:32633" or WKT (also in the GeoTIFF), null when none          |
| `transform`  | list of 6 float64          | affine (a, b, c, d, e, f) of the pixels (also in the GeoTIFF)      |
| `band_wavelengths` | list of float64 or null | centre wavelength (nm) of each band (also GeoTIFF band metadata), null when unknown |
| `band_bandwidths`  | list of float64 or null | bandwidth (FWHM, nm) of each band, null when unknown              |
| `label`      | ClassLabel (int64)         | single-label datasets only; -1 for an unlabeled row                |
| `labels`     | list of ClassLabel (int64) | multi-label datasets only; sorted indices of the present classes   |

Unlabeled datasets (e.g. scene tiles for pretraining) have neither `label` nor `labels`. Class names live in the
features (`dataset.features["label"].names`, `dataset.features["labels"].feature.names`), which are stored both in
the card's `dataset_info` and in each parquet file's schema metadata. `crs`, `transform` and `nodata` repeat what
the GeoTIFF holds so rows can be browsed and filtered without decoding; the GeoTIFF is authoritative.

The GeoTIFF keeps the pixels exactly as read (dtype and values unchanged, horizontal-differencing predictor), so
`decode_row(row).array` is byte-identical to what `load_record` returned when the dataset was written.

Shards are what streaming and distributed training split on: a streaming dataset has `n_shards` = the number of
parquet files of the split, and each DDP rank and dataloader worker reads whole files. Choose `rows_per_shard` so
that every split has at least (number of GPUs x dataloader workers) shards.
"""

import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile

from .builders import load_record
from .raster import PathLike, RasterReadError, RasterSample, read_wavelengths
from .samples import Sample

if TYPE_CHECKING:  # `datasets` is imported where it is used: importing it costs a second or two
    from datasets import Dataset, Features, IterableDataset

    from ..image_processing_s2mae import S2MAEImageProcessor
    from .transforms import SampleTransform

logger = logging.getLogger(__name__)

FORMAT_NAME = "s2mae-geotiff-parquet"
"""Name of this format, written in the dataset card (tag and text)."""

FORMAT_VERSION = 1
"""Version of this format, written in the dataset card."""

DATA_DIR = "data"
"""Sub-folder of the dataset root holding the parquet shards."""

CARD_FILE = "README.md"
"""The dataset card at the dataset root."""

DEFAULT_ROWS_PER_SHARD = 1000
"""Default rows per parquet file (about 60 MB of EuroSAT-MS tiles, 230 MB of BigEarthNet-S2 patches)."""

MAX_ROWS_PER_ROW_GROUP = 100
"""At most this many rows per parquet row group: streaming reads one row group at a time."""

MAX_BYTES_PER_ROW_GROUP = 64 * 2**20
"""A row group is also closed once its GeoTIFF bytes reach this size (hyperspectral cubes are large)."""

MAX_DECODED_BYTES = 512 * 2**20
"""A row whose GeoTIFF decodes to more than this is refused (a small compressed row can claim gigabytes)."""

BASE_COLUMNS: tuple[str, ...] = ("id", "image", "band_names", "nodata", "crs", "transform")
"""Columns every dataset of this format has."""

WAVELENGTH_COLUMNS: tuple[str, ...] = ("band_wavelengths", "band_bandwidths")
"""Wavelength columns (nm), written by this version; datasets written before them load without them (the GeoTIFF's
band metadata is then read)."""

LABEL_COLUMNS: tuple[str, ...] = ("label", "labels")
"""`label` (single-label) or `labels` (multi-label); a dataset has at most one of them."""

SINGLE_LABEL = "single_label_classification"
"""`LabelInfo.problem_type` of a dataset with a `label` column (a transformers `problem_type`)."""

MULTI_LABEL = "multi_label_classification"
"""`LabelInfo.problem_type` of a dataset with a `labels` column (a transformers `problem_type`)."""


_TASK_IDS = {SINGLE_LABEL: "multi-class-image-classification", MULTI_LABEL: "multi-label-image-classification"}


class LabelInfo(NamedTuple):
    """The labels of a dataset of this format.

    Attributes:
        problem_type: `"single_label_classification"`, `"multi_label_classification"` (the values of a
            transformers config's `problem_type`), or None for an unlabeled dataset.
        names: Class names; label i is `names[i]`. Empty for an unlabeled dataset.
    """

    problem_type: str | None
    names: list[str]


@dataclass
class WrittenSplit:
    """One split written by `write_hub_dataset`.

    Attributes:
        name: The split name.
        num_rows: Rows written.
        shards: Paths of its parquet files, in order.
    """

    name: str
    num_rows: int
    shards: list[Path] = field(default_factory=list)


def hub_features(problem_type: str | None = None, label_names: Sequence[str] | None = None) -> "Features":
    """The `datasets.Features` of this format.

    Args:
        problem_type: None (no label column), `SINGLE_LABEL` (`label`: ClassLabel) or `MULTI_LABEL` (`labels`: list
            of ClassLabel).
        label_names: The class names; required for a labeled dataset.

    Returns:
        A `datasets.Features` with the columns of `BASE_COLUMNS` and the label column, if any.
    """
    from datasets import ClassLabel, Features, List, Value

    columns: dict[str, Any] = {
        "id": Value("string"),
        "image": Value("binary"),
        "band_names": List(Value("string")),
        "nodata": Value("float64"),
        "crs": Value("string"),
        "transform": List(Value("float64"), length=6),
        "band_wavelengths": List(Value("float64")),
        "band_bandwidths": List(Value("float64")),
    }
    if problem_type is not None:
        if not label_names:
            raise ValueError(f"A {problem_type} dataset needs its class names (label_names), got {label_names!r}.")
        class_label = ClassLabel(names=list(label_names))
        if problem_type == SINGLE_LABEL:
            columns["label"] = class_label
        elif problem_type == MULTI_LABEL:
            columns["labels"] = List(class_label)
        else:
            raise ValueError(f"problem_type must be None, {SINGLE_LABEL!r} or {MULTI_LABEL!r}, got {problem_type!r}.")
    return Features(columns)


def encode_geotiff(sample: RasterSample) -> bytes:
    """Encode a sample as an in-memory GeoTIFF: all bands, same dtype and values, lossless DEFLATE.

    The CRS, transform and nodata are kept, the band names are written as the band descriptions, and known
    wavelengths / bandwidths as each band's `wavelength`, `fwhm` and `wavelength_units` ("Nanometers") metadata.

    Raises:
        ValueError: for a dtype GeoTIFF cannot store (e.g. bool) or another GDAL failure.
    """
    array = np.ascontiguousarray(sample.array)
    predictor = 3 if np.issubdtype(array.dtype, np.floating) else 2
    profile = {
        "driver": "GTiff",
        "width": sample.width,
        "height": sample.height,
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": sample.crs,
        "transform": sample.transform,
        "nodata": sample.nodata,
        "compress": "deflate",
        "predictor": predictor,
        "interleave": "band",
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile() as memory_file:
                with memory_file.open(**profile) as dataset:
                    dataset.write(array)
                    for index, name in enumerate(sample.band_names, start=1):
                        dataset.set_band_description(index, name)
                        if sample.band_wavelengths is not None:
                            tags = {"wavelength": repr(sample.band_wavelengths[index - 1])}
                            if sample.band_bandwidths is not None:
                                tags["fwhm"] = repr(sample.band_bandwidths[index - 1])
                            dataset.update_tags(index, wavelength_units="Nanometers", **tags)
                return memory_file.read()
    except (RasterioError, TypeError, ValueError) as error:
        raise ValueError(
            f"Cannot encode a {array.dtype} array of shape {array.shape} as GeoTIFF ({error}); GeoTIFF stores "
            "(u)int8/16/32/64 and float32/64 bands."
        ) from error


def sample_to_row(
    sample: RasterSample,
    row_id: str,
    label: int | None = None,
    labels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One row of this format for a sample (see the module docstring for the columns).

    Args:
        sample: The pixels and georeference.
        row_id: The row's `id`.
        label: Class index of a single-label dataset (-1: unlabeled); leave None otherwise.
        labels: Class indices of a multi-label dataset; leave None otherwise.
    """
    row: dict[str, Any] = {
        "id": row_id,
        "image": encode_geotiff(sample),
        "band_names": list(sample.band_names),
        "nodata": None if sample.nodata is None else float(sample.nodata),
        "crs": None if sample.crs is None else sample.crs.to_string(),
        "transform": [float(value) for value in tuple(sample.transform)[:6]],
        "band_wavelengths": None if sample.band_wavelengths is None else [float(v) for v in sample.band_wavelengths],
        "band_bandwidths": None if sample.band_bandwidths is None else [float(v) for v in sample.band_bandwidths],
    }
    if label is not None:
        row["label"] = int(label)
    if labels is not None:
        row["labels"] = [int(index) for index in labels]
    return row


def decode_row(row: Mapping[str, Any]) -> RasterSample:
    """Decode the GeoTIFF of a row into a `RasterSample` of shape (C, H, W) in the stored dtype.

    Band names are the row's `band_names`, checked against the GeoTIFF's band descriptions; nodata, CRS and
    transform come from the GeoTIFF; wavelengths from the row's `band_wavelengths` / `band_bandwidths`, else the
    GeoTIFF's band metadata (`read_wavelengths`). `source` is `[row id]`.

    Raises:
        RasterReadError (a ValueError): naming the row id, when `image` is missing or not a readable GeoTIFF, or its
            band count or band names disagree with `band_names`.
    """
    row_id = row.get("id", "<no id>")
    data = row.get("image")
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise RasterReadError(f"Row {row_id!r}: 'image' must hold GeoTIFF bytes, got {type(data).__name__}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(bytes(data)) as memory_file, memory_file.open(driver="GTiff") as dataset:
                decoded = dataset.count * dataset.height * dataset.width * np.dtype(dataset.dtypes[0]).itemsize
                if decoded > MAX_DECODED_BYTES:
                    raise RasterReadError(
                        f"Row {row_id!r}: its GeoTIFF ({len(data)} bytes) would decode to {decoded / 2**20:.0f} MiB "
                        f"({dataset.count} x {dataset.height} x {dataset.width}), over the {MAX_DECODED_BYTES >> 20} MiB "
                        "limit for one row; the row is hostile or corrupt."
                    )
                array = dataset.read()
                descriptions = list(dataset.descriptions)
                nodata, transform, crs = dataset.nodata, dataset.transform, dataset.crs
                file_wavelengths, file_widths = read_wavelengths(dataset)
    except RasterioError as error:
        raise RasterReadError(
            f"Row {row_id!r}: the 'image' bytes ({len(data)} bytes) are not a readable GeoTIFF ({error}); the row is "
            "corrupt or was not written by write_hub_dataset."
        ) from error
    band_names = row.get("band_names") or descriptions
    if len(band_names) != array.shape[0] or not all(band_names):
        raise RasterReadError(
            f"Row {row_id!r}: band_names {band_names} do not name the {array.shape[0]} bands of its GeoTIFF."
        )
    if all(descriptions) and list(descriptions) != list(band_names):
        raise RasterReadError(
            f"Row {row_id!r}: band_names {list(band_names)} differ from the GeoTIFF's band descriptions {descriptions}."
        )
    wavelengths = row.get("band_wavelengths") or file_wavelengths
    widths = row.get("band_bandwidths") or (file_widths if not row.get("band_wavelengths") else None)
    try:
        return RasterSample(
            array=array,
            band_names=list(band_names),
            nodata=nodata,
            transform=Affine(*transform[:6]),
            crs=CRS.from_user_input(crs) if crs is not None else None,
            source=[str(row_id)],
            band_wavelengths=None if wavelengths is None else [float(v) for v in wavelengths],
            band_bandwidths=None if widths is None else [float(v) for v in widths],
        )
    except ValueError as error:
        raise RasterReadError(f"Row {row_id!r}: {error}") from error


def _item_parts(item: Any, index: int, split: str) -> tuple[str, Callable[[], RasterSample], dict[str, Any]]:
    """(id, sample loader, label fields) of one input item: a builder record, a RasterSample or {"sample": ...}."""
    if isinstance(item, RasterSample):
        return f"{split}-{index:08d}", lambda: item, {}
    if not isinstance(item, Mapping):
        raise TypeError(
            f"Item {index} of split {split!r} is a {type(item).__name__}; expected a builder record (a dict with "
            "'paths'), a RasterSample, or a dict {'sample': RasterSample, 'id': ..., 'label' / 'labels': ...}."
        )
    labels = {key: item[key] for key in LABEL_COLUMNS if key in item and item[key] is not None}
    row_id = str(item.get("id", f"{split}-{index:08d}"))
    if isinstance(item.get("sample"), RasterSample):
        sample = item["sample"]
        return row_id, lambda: sample, labels
    if "paths" in item:
        return row_id, lambda: load_record(dict(item)), labels
    raise TypeError(
        f"Item {index} of split {split!r} (id {row_id!r}) has neither 'paths' (a builder record) nor 'sample' "
        "(a RasterSample)."
    )


def _problem_type_of(label_fields: Mapping[str, Any]) -> str | None:
    if "label" in label_fields and "labels" in label_fields:
        raise ValueError("An item has both 'label' (single-label) and 'labels' (multi-label); give one of them.")
    if "label" in label_fields:
        return SINGLE_LABEL
    if "labels" in label_fields:
        return MULTI_LABEL
    return None


class _LabelEncoder:
    """Checks each item's label against the dataset's kind and class count and returns the stored value."""

    def __init__(self, problem_type: str | None, num_classes: int | None) -> None:
        self.problem_type = problem_type
        self.num_classes = num_classes

    def __call__(self, label_fields: Mapping[str, Any], row_id: str) -> dict[str, Any]:
        kind = _problem_type_of(label_fields)
        if kind is not None and kind != self.problem_type:
            raise ValueError(
                f"Row {row_id!r} has a {kind} label but the dataset is {self.problem_type or 'unlabeled'} (its kind "
                "is set by the first item): give every item the same kind of label."
            )
        if self.problem_type == SINGLE_LABEL:
            label = label_fields.get("label", -1)
            if (
                isinstance(label, bool)
                or not isinstance(label, (int, np.integer))
                or not -1 <= label < self.num_classes
            ):
                raise ValueError(
                    f"Row {row_id!r}: label {label!r} is not a class index in [0, {self.num_classes}) or -1 (unlabeled)."
                )
            return {"label": int(label)}
        if self.problem_type == MULTI_LABEL:
            if "labels" not in label_fields:
                raise ValueError(f"Row {row_id!r} has no 'labels' in a multi-label dataset; give a multi-hot vector.")
            multi_hot = list(label_fields["labels"])
            if len(multi_hot) != self.num_classes or any(value not in (0, 1) for value in multi_hot):
                raise ValueError(
                    f"Row {row_id!r}: 'labels' must be a multi-hot vector of {self.num_classes} zeros and ones, got "
                    f"{multi_hot}."
                )
            return {"labels": [index for index, value in enumerate(multi_hot) if value]}
        return {}


def _label_schema(
    label_fields: Mapping[str, Any], label_names: Sequence[str] | None, explicit_names: bool, row_id: str
) -> tuple[_LabelEncoder, list[str] | None]:
    """The label encoder and class names of a dataset, from its first item's labels and the given names."""
    problem_type = _problem_type_of(label_fields)
    if problem_type is None:
        if explicit_names:
            raise ValueError(
                f"label_names were given but the first item ({row_id!r}) has no label; give every item a 'label' or "
                "'labels', or leave label_names out for an unlabeled dataset."
            )
        return _LabelEncoder(None, None), None
    if label_names is None:
        if problem_type == SINGLE_LABEL:
            raise ValueError(
                "A single-label dataset needs label_names (the class names) unless the items come in a RecordSet "
                "with classes."
            )
        label_names = [str(index) for index in range(len(label_fields["labels"]))]
    label_names = [str(name) for name in label_names]
    if problem_type == MULTI_LABEL and len(label_fields["labels"]) != len(label_names):
        raise ValueError(
            f"Row {row_id!r} has a multi-hot vector of {len(label_fields['labels'])} classes but label_names has "
            f"{len(label_names)} names."
        )
    return _LabelEncoder(problem_type, len(label_names)), label_names


def _prepare_output_dir(output_dir: Path, overwrite: bool) -> Path:
    """Check `output_dir` and return an empty staging folder beside it, where the dataset is written first.

    A non-empty `output_dir` is refused unless `overwrite`; nothing in it is touched until the new dataset is complete
    (see `_swap_in`).
    """
    if output_dir.is_symlink():
        raise FileExistsError(f"{output_dir} is a symbolic link; give the real folder to write into.")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a folder.")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{output_dir} is not empty; refusing to write a dataset into it. Choose an empty or new folder, or "
            "pass overwrite=True (--overwrite) to replace the dataset there (its data/ folder and README.md)."
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.with_name(f".{output_dir.name}.writing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / DATA_DIR).mkdir(parents=True)
    return staging


def _swap_in(staging: Path, output_dir: Path) -> None:
    """Replace `output_dir`'s data/ and README.md by the staged ones, by renames (links are replaced, never followed)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (DATA_DIR, CARD_FILE):
        old = output_dir / name
        if old.is_symlink() or old.exists():
            old.rename(staging / f"{name}.old")
        (staging / name).rename(old)
    kept = sorted(path.name for path in output_dir.iterdir() if path.name not in (DATA_DIR, CARD_FILE))
    if kept:
        logger.warning("Replaced the dataset in %s; kept the other entries there: %s", output_dir, kept)
    shutil.rmtree(staging, ignore_errors=True)


@dataclass
class _SplitStats:
    """What the card reports about a split."""

    num_rows: int = 0
    num_bytes: int = 0
    band_names: dict[tuple[str, ...], int] = field(default_factory=dict)
    dtypes: set[str] = field(default_factory=set)
    shapes: set[tuple[int, int]] = field(default_factory=set)

    def add(self, sample: RasterSample, row_bytes: int) -> None:
        self.num_rows += 1
        self.num_bytes += row_bytes
        key = tuple(sample.band_names)
        self.band_names[key] = self.band_names.get(key, 0) + 1
        self.dtypes.add(sample.array.dtype.name)
        self.shapes.add((sample.height, sample.width))


class _ShardWriter:
    """Writes rows into parquet files of at most `rows_per_shard` rows under temporary names."""

    def __init__(self, data_dir: Path, split: str, rows_per_shard: int, schema: pa.Schema) -> None:
        self.data_dir, self.split, self.rows_per_shard, self.schema = data_dir, split, rows_per_shard, schema
        self.temporary: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0

    def add(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            path = self.data_dir / f".{self.split}-{len(self.temporary):05d}.parquet.tmp"
            self.temporary.append(path)
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._buffer.append(row)
        self._buffer_bytes += len(row["image"])
        self._rows_in_shard += 1
        if len(self._buffer) >= MAX_ROWS_PER_ROW_GROUP or self._buffer_bytes >= MAX_BYTES_PER_ROW_GROUP:
            self._flush()
        if self._rows_in_shard >= self.rows_per_shard:
            self._close_shard()

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._buffer, self._buffer_bytes = [], 0

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
        self._writer, self._rows_in_shard = None, 0

    def finish(self) -> list[Path]:
        """Close the last shard and rename all to `<split>-0000i-of-0000N.parquet`."""
        self._close_shard()
        total = len(self.temporary)
        final = [self.data_dir / f"{self.split}-{index:05d}-of-{total:05d}.parquet" for index in range(total)]
        for temporary, path in zip(self.temporary, final):
            temporary.rename(path)
        return final

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for path in self.temporary:
            path.unlink(missing_ok=True)


def _check_split_name(split: str) -> str:
    if not isinstance(split, str) or not split or not split.replace("_", "").isalnum():
        raise ValueError(f"Split names must be non-empty and made of letters, digits and '_', got {split!r}.")
    return split


def write_hub_dataset(
    records_or_samples: Iterable[Any] | Mapping[str, Iterable[Any]],
    output_dir: PathLike,
    split: str = "train",
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    label_names: Sequence[str] | None = None,
    overwrite: bool = False,
    description: str | None = None,
) -> dict[str, WrittenSplit]:
    """Write samples as a dataset folder laid out like a Hub dataset repo (see the module docstring for the format).

    Items are read and encoded one at a time, so any iterable works, however large. Each item is one of:
    - a builder record (`eurosat_folder`, `bigearthnet_folder`, `scene_tiles`): read with `load_record`; its `id`,
      `label` (single-label) or `labels` (multi-hot, e.g. BigEarthNet-19) are kept;
    - a `RasterSample` (unlabeled; id `<split>-<index>`);
    - a dict `{"sample": RasterSample, "id": str, "label": int}` or with `"labels": [multi-hot]`.

    The first item sets the kind of dataset (unlabeled, single- or multi-label); single-label items without a label
    are stored as -1. Multi-hot vectors are stored as the indices of the present classes.

    Args:
        records_or_samples: The items of `split`, or a mapping {split name: items} to write several splits at once.
        output_dir: Folder to write (created if needed); push it with `push_hub_dataset`.
        split: Split name when `records_or_samples` is not a mapping.
        rows_per_shard: Rows per parquet file; a split of n rows gets ceil(n / rows_per_shard) files.
        label_names: Class names (label i is `label_names[i]`). Defaults to the `classes` of a `RecordSet`; for a
            labeled dataset without names, names "0", "1", ... are used.
        overwrite: Replace the dataset of a non-empty `output_dir` (its `data/` and `README.md`; other files stay).
            On any error, `data/` is removed again: no partial dataset is left behind.
        description: A paragraph about the data for the dataset card (source, licence, attribution).

    Returns:
        {split name: `WrittenSplit`}.

    Raises:
        FileExistsError: `output_dir` is not empty and `overwrite` is False.
        ValueError: an empty split, a repeated id, inconsistent or out-of-range labels, an unreadable item.
    """
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be a positive int, got {rows_per_shard!r}.")
    splits = dict(records_or_samples) if isinstance(records_or_samples, Mapping) else {split: records_or_samples}
    if not splits:
        raise ValueError("No split to write: give the items of at least one split.")
    for name in splits:
        _check_split_name(name)
    explicit_names = label_names is not None
    if label_names is None:
        label_names = next((list(items.classes) for items in splits.values() if getattr(items, "classes", None)), None)

    output_dir = Path(output_dir)
    staging = _prepare_output_dir(output_dir, overwrite)
    data_dir = staging / DATA_DIR
    features = None
    encode_label: _LabelEncoder | None = None
    written: dict[str, WrittenSplit] = {}
    stats: dict[str, _SplitStats] = {}
    seen_ids: set[str] = set()
    writer: _ShardWriter | None = None
    try:
        for split_name, items in splits.items():
            writer = None
            split_stats = _SplitStats()
            for index, item in enumerate(items):
                row_id, load, label_fields = _item_parts(item, index, split_name)
                if row_id in seen_ids:
                    raise ValueError(f"Row id {row_id!r} appears twice; ids must be unique across all splits.")
                seen_ids.add(row_id)
                if encode_label is None:
                    encode_label, label_names = _label_schema(label_fields, label_names, explicit_names, row_id)
                    features = hub_features(encode_label.problem_type, label_names)
                if writer is None:
                    writer = _ShardWriter(data_dir, split_name, rows_per_shard, features.arrow_schema)
                try:
                    sample = load()
                except RasterReadError as error:
                    raise type(error)(f"Row {row_id!r} of split {split_name!r}: {error}") from error
                row = sample_to_row(sample, row_id, **encode_label(label_fields, row_id))
                writer.add(row)
                split_stats.add(sample, len(row["image"]))
            if writer is None:
                raise ValueError(f"Split {split_name!r} has no item; leave it out instead.")
            shards = [output_dir / DATA_DIR / path.name for path in writer.finish()]
            writer = None
            written[split_name] = WrittenSplit(split_name, split_stats.num_rows, shards)
            stats[split_name] = split_stats
            logger.info("Wrote split %r: %d rows in %d shard(s).", split_name, split_stats.num_rows, len(shards))
        _write_card(staging, features, stats, encode_label.problem_type, label_names, description)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)  # the old dataset, if any, is untouched
        raise
    _swap_in(staging, output_dir)
    return written


def _card_body(
    stats: Mapping[str, _SplitStats],
    problem_type: str | None,
    label_names: Sequence[str] | None,
    description: str | None,
) -> str:
    """The markdown of the dataset card below its YAML header."""
    lines = ["# Multispectral imagery in the S2MAE GeoTIFF-in-parquet format", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [
        "| split | rows | distinct band layouts | dtypes | image sizes (H x W) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, split in stats.items():
        shapes = ", ".join(f"{h} x {w}" for h, w in sorted(split.shapes)[:5]) + (
            " ..." if len(split.shapes) > 5 else ""
        )
        lines.append(
            f"| `{name}` | {split.num_rows} | {len(split.band_names)} | {', '.join(sorted(split.dtypes))} | {shapes} |"
        )
    layouts: dict[tuple[str, ...], int] = {}
    for split in stats.values():
        for names, count in split.band_names.items():
            layouts[names] = layouts.get(names, 0) + count
    lines += ["", "Band layouts (names in file order, as stored in each row's `band_names`):", ""]
    lines += [f"- {count} rows: {', '.join(names)}" for names, count in sorted(layouts.items(), key=lambda kv: -kv[1])]
    if problem_type is not None:
        kind = "single-label (`label`)" if problem_type == SINGLE_LABEL else "multi-label (`labels`)"
        lines += ["", f"Labels: {kind}, {len(label_names or [])} classes:", ""]
        lines += [f"{index}. {name}" for index, name in enumerate(label_names or [])]
    else:
        lines += ["", "Labels: none (unlabeled, e.g. for pretraining)."]
    lines += [
        "",
        "## Format",
        "",
        f"`{FORMAT_NAME}`, version {FORMAT_VERSION}. Parquet shards `data/<split>-0000i-of-0000N.parquet`; one row "
        "per sample:",
        "",
        "- `id` (string): unique sample id.",
        "- `image` (binary): the sample as a whole GeoTIFF (all bands, original dtype and values, lossless DEFLATE), "
        "with its CRS, transform, nodata and the band names as band descriptions.",
        "- `band_names` (list of string): the names of the bands, in file order. Select bands by name, never by "
        "position: sources disagree on band order (EuroSAT-MS stores B8A last).",
        "- `nodata` (float or null), `crs` (string or null), `transform` (6 floats, affine a, b, c, d, e, f): copies "
        "of the GeoTIFF's georeference for browsing without decoding.",
        "- `label` (ClassLabel, -1 when unlabeled) for a single-label dataset, or `labels` (list of ClassLabel: the "
        "indices of the present classes) for a multi-label dataset; absent for an unlabeled dataset.",
        "",
        "## Loading",
        "",
        "```python",
        "from modeling_s2mae import S2MAEImageProcessor",
        "from modeling_s2mae.data import decode_row, load_spectral_dataset, to_model_inputs",
        "",
        'dataset = load_spectral_dataset("<repo id or folder>", split="train", streaming=True)',
        "sample = decode_row(next(iter(dataset)))  # RasterSample: array (C, H, W), band_names, nodata, crs, ...",
        "inputs = to_model_inputs(dataset, S2MAEImageProcessor())  # pixel_values, pixel_mask, labels",
        "```",
        "",
        'Without s2mae: `datasets.load_dataset(...)` and `rasterio.io.MemoryFile(row["image"]).open().read()`.',
        "",
    ]
    return "\n".join(lines)


def _write_card(
    output_dir: Path,
    features: "Features",
    stats: Mapping[str, _SplitStats],
    problem_type: str | None,
    label_names: Sequence[str] | None,
    description: str | None,
) -> None:
    """Write README.md: YAML `configs` (data files per split), `dataset_info` (features, splits), tags; the format."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    splits = SplitDict()
    for name, split in stats.items():
        splits.add(SplitInfo(name=name, num_bytes=split.num_bytes, num_examples=split.num_rows))
    card_data = DatasetCardData(
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"{DATA_DIR}/{name}-*"} for name in stats],
            }
        ],
        tags=["s2mae", FORMAT_NAME, "multispectral", "remote-sensing", "geotiff"],
        task_categories=["image-classification"] if problem_type is not None else None,
        task_ids=[_TASK_IDS[problem_type]] if problem_type is not None else None,
    )
    DatasetInfosDict({"default": DatasetInfo(features=features, splits=splits)}).to_dataset_card_data(card_data)
    body = _card_body(stats, problem_type, label_names, description)
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(output_dir / CARD_FILE)


def push_hub_dataset(
    output_dir: PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload dataset (s2mae GeoTIFF-in-parquet format)",
) -> str:
    """Upload a folder written by `write_hub_dataset` to a Hub dataset repository (created if needed).

    Files under `data/` in the repo that the folder does not hold (shards of an earlier, larger upload) are deleted
    in the same commit, so the split patterns `data/<split>-*` match only the new shards.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    if not (output_dir / CARD_FILE).is_file() or not (output_dir / DATA_DIR).is_dir():
        raise FileNotFoundError(f"{output_dir} holds no dataset written by write_hub_dataset (README.md and data/).")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=output_dir,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=commit_message,
        delete_patterns=[f"{DATA_DIR}/*"],  # shards of an earlier upload that this one does not replace
    )
    logger.info("Pushed %s to https://huggingface.co/datasets/%s", output_dir, repo_id)
    return commit.commit_url


def check_parquet_shards(root: PathLike, split: str | None = None) -> list[Path]:
    """Check that every parquet shard of a local dataset folder (of `split`, or all) has a readable footer.

    Truncation removes the end of a file, where parquet keeps its footer (schema and row-group index), so reading
    the footers finds zero-byte and truncated shards (an interrupted copy or download) before training starts,
    without reading the rows.

    Args:
        root: A folder laid out as written by `write_hub_dataset` (`<root>/data/<split>-0000i-of-0000N.parquet`).
        split: Check this split's shards; all shards under `<root>/data` when None or when none match.

    Returns:
        The shards checked, sorted.

    Raises:
        ValueError: naming the first shard that is empty or has no valid footer, and what to do.
    """
    data_dir = Path(root) / DATA_DIR
    shards = sorted(data_dir.glob(f"{split}-*.parquet")) if split is not None else []
    shards = shards or sorted(data_dir.glob("*.parquet"))
    for shard in shards:
        size = shard.stat().st_size
        try:
            pq.read_metadata(shard)
        except (pa.ArrowException, OSError) as error:
            what = "is empty (0 bytes)" if size == 0 else f"is truncated or damaged ({size} bytes: {error})"
            raise ValueError(
                f"Parquet shard {shard} {what}. Copy or download it again, or rewrite the dataset with "
                "write_hub_dataset / examples/prepare_dataset.py."
            ) from error
    return shards


def load_spectral_dataset(
    path_or_repo_id: str | os.PathLike[str],
    split: str = "train",
    streaming: bool = True,
    **kwargs: Any,
) -> "Dataset | IterableDataset":
    """Load a split of a dataset of this format: `datasets.load_dataset(path_or_repo_id, split, streaming)`.

    A Hub repo id and a local folder laid out as a Hub dataset repo go through the same `load_dataset` call.

    Args:
        path_or_repo_id: "user/name" on the Hub or a local folder with README.md and data/.
        split: The split to load.
        streaming: Return an `IterableDataset` that reads shards lazily (the default) or a map-style `Dataset`.
        **kwargs: Passed to `datasets.load_dataset` (`revision`, `token`, `cache_dir`, ...).

    Returns:
        A `datasets.IterableDataset` (streaming) or `datasets.Dataset` of raw rows; decode a row with `decode_row`
        or map the whole dataset with `to_model_inputs`.

    Raises:
        ValueError: the dataset lacks the columns of this format, or a parquet shard of a local folder is empty or
            truncated (naming the shard).
    """
    from datasets import load_dataset

    if Path(path_or_repo_id).is_dir():
        check_parquet_shards(path_or_repo_id, split)
    dataset = load_dataset(str(path_or_repo_id), split=split, streaming=streaming, **kwargs)
    columns = list(dataset.features or {})
    missing = [name for name in BASE_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{path_or_repo_id} split {split!r} is not in the {FORMAT_NAME} format: it lacks columns {missing} "
            f"(it has {columns}). Write it with write_hub_dataset or examples/prepare_dataset.py."
        )
    return dataset


def label_info(dataset: "Dataset | IterableDataset") -> LabelInfo:
    """The problem type and class names of a dataset of this format, read from its features."""
    features = dataset.features or {}
    if "label" in features:
        return LabelInfo(SINGLE_LABEL, list(features["label"].names))
    if "labels" in features:
        return LabelInfo(MULTI_LABEL, list(features["labels"].feature.names))
    return LabelInfo(None, [])


def row_to_sample(row: Mapping[str, Any], problem_type: str | None = None, num_classes: int = 0) -> Sample:
    """Decode one row of this format into a `Sample` (labels as the row holds them; none when `problem_type` is None).

    Args:
        row: A raw row.
        problem_type: `SINGLE_LABEL`, `MULTI_LABEL` or None (no labels).
        num_classes: The dataset's class count; a label must be a class index in [0, num_classes) (when > 0).

    Raises:
        ValueError: naming the row, for a single-label row stored as unlabeled (-1) or without a label while labels
            are asked for, or a class index that is not an int in [0, num_classes) (a parquet written by another
            tool: `datasets` does not check ClassLabel values when it reads them).
    """
    sample = Sample(id=str(row.get("id", "<no id>")), raster=decode_row(row))
    if problem_type == SINGLE_LABEL:
        label = row.get("label")
        if label is None or (_is_index(label) and label < 0):
            raise ValueError(
                f"Row {sample.id!r} is unlabeled (label {label!r}); filter such rows out first "
                "(dataset.filter(lambda row: row['label'] is not None and row['label'] >= 0)) or pass "
                "with_labels=False."
            )
        sample.label = _class_index(label, num_classes, sample.id, "label")
    elif problem_type == MULTI_LABEL:
        indices = row.get("labels")
        if indices is None or isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
            raise ValueError(
                f"Row {sample.id!r}: 'labels' must be a list of class indices, got {indices!r}; filter such rows out "
                "or pass with_labels=False."
            )
        multi_hot = [0] * num_classes
        for index in indices:
            multi_hot[_class_index(index, num_classes, sample.id, "labels")] = 1
        sample.labels = multi_hot
    return sample


def _is_index(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _class_index(value: Any, num_classes: int, row_id: str, column: str) -> int:
    """`value` as a class index in [0, num_classes), or a ValueError naming the row."""
    if not _is_index(value) or value < 0 or (num_classes > 0 and value >= num_classes):
        raise ValueError(
            f"Row {row_id!r}: {column} value {value!r} is not a class index in [0, {num_classes}) of the dataset's "
            f"{num_classes} classes; the parquet was not written by write_hub_dataset or its features (class names) "
            "do not match its rows. Rewrite it, or fix the class names in the dataset card."
        )
    return int(value)


def to_model_inputs(
    dataset: "Dataset | IterableDataset",
    processor: "S2MAEImageProcessor | SampleTransform",
    with_labels: bool = True,
    with_ids: bool = False,
    with_wavelengths: bool | None = None,
) -> "Dataset | IterableDataset":
    """Map raw rows to model inputs through the one `SampleTransform`, removing the raw columns.

    Each row is decoded (`decode_row`) and transformed with the row's band names and nodata. Works lazily on a
    streaming `IterableDataset`; on a map-style `Dataset`, `map` computes and caches every row (float32 at the
    processor's size), so prefer streaming for large datasets. Rows with fewer valid pixels than the transform's
    `min_valid_fraction` produce no output (counted in `transform.skipped`).

    Args:
        dataset: A `datasets.IterableDataset` or `datasets.Dataset` of this format (e.g. `load_spectral_dataset`).
        processor: A `SampleTransform` (augmentation, nodata-robust sampling), or an `S2MAEImageProcessor` (wrapped
            in a `SampleTransform` without augmentation that keeps every sample with at least one valid pixel).
        with_labels: Add `labels`: the class index (int64) for single-label data, a multi-hot float32 vector of
            length num_classes for multi-label data. Raises for an unlabeled dataset or an unlabeled row (-1).
        with_ids: Keep the row id as `sample_id` (a string), e.g. for `PixelCollator(record_ids_to=...)`.
        with_wavelengths: Add `band_wavelengths` / `band_bandwidths` (C,) float32 in nm (the row's
            `band_wavelengths` column, the GeoTIFF's band metadata, else the transform's fallback); None: the given
            transform's `with_wavelengths` (False for a processor).

    Returns:
        The dataset in torch format with columns `pixel_values` (C, size, size) float32, `pixel_mask`
        (size, size) int64 and, with labels, `labels`; with wavelengths, `band_wavelengths` and `band_bandwidths`.

    Raises:
        ValueError: the dataset lacks the columns of this format or, with `with_labels`, its labels.
    """
    from datasets import Array2D, Array3D, Features, List, Value

    from .training import stream_model_inputs
    from .transforms import SampleTransform

    if dataset.features is None:
        raise ValueError(
            "The dataset's features are unknown; load it with load_spectral_dataset (or datasets.load_dataset on a "
            "folder or repo written by write_hub_dataset) so that its columns and labels are known."
        )
    columns = list(dataset.features)
    missing = [name for name in BASE_COLUMNS if name not in columns]
    if missing:
        raise ValueError(f"The dataset is not in the {FORMAT_NAME} format: it lacks {missing} (it has {columns}).")
    problem_type, names = label_info(dataset)
    if with_labels and problem_type is None:
        raise ValueError(
            f"The dataset has no label column ({' or '.join(LABEL_COLUMNS)}); pass with_labels=False for unlabeled "
            "data (e.g. pretraining)."
        )
    if isinstance(processor, SampleTransform):
        transform = processor
        transform.with_labels, transform.with_ids = with_labels, with_ids
        if with_wavelengths is not None:
            transform.with_wavelengths = with_wavelengths
    else:
        transform = SampleTransform(
            processor,
            min_valid_fraction=0.0,
            with_labels=with_labels,
            with_ids=with_ids,
            with_wavelengths=bool(with_wavelengths),
        )
    num_bands, size = len(transform.processor.band_names), transform.processor.size
    output_features = {
        "pixel_values": Array3D(shape=(num_bands, size, size), dtype="float32"),
        "pixel_mask": Array2D(shape=(size, size), dtype="int64"),
    }
    if with_labels:
        output_features["labels"] = Value("int64") if problem_type == SINGLE_LABEL else List(Value("float32"))
    if with_ids:
        output_features["sample_id"] = Value("string")
    if transform.with_wavelengths:
        output_features["band_wavelengths"] = List(Value("float32"), length=num_bands)
        output_features["band_bandwidths"] = List(Value("float32"), length=num_bands)
    label_type = problem_type if with_labels else None

    def to_samples(row: dict[str, Any]) -> list[Sample]:
        return [row_to_sample(row, label_type, len(names))]

    return stream_model_inputs(dataset, transform, to_samples, Features(output_features))


__all__ = [
    "BASE_COLUMNS",
    "WAVELENGTH_COLUMNS",
    "DEFAULT_ROWS_PER_SHARD",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LABEL_COLUMNS",
    "LabelInfo",
    "MULTI_LABEL",
    "SINGLE_LABEL",
    "WrittenSplit",
    "decode_row",
    "encode_geotiff",
    "hub_features",
    "label_info",
    "check_parquet_shards",
    "load_spectral_dataset",
    "push_hub_dataset",
    "row_to_sample",
    "sample_to_row",
    "to_model_inputs",
    "write_hub_dataset",
]
