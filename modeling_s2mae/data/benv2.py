"""BigEarthNet v2.0 (reBEN): the LMDB release of Sentinel-2 patches with 19-class multi-labels, as `Sample`s.

The release (Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis", 2024) is
- an LMDB database written by rico-hdl: the key is the patch id (UTF-8, e.g.
  ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57``), the value a safetensors file holding one 2-D array per
  band, keyed by band name. Sentinel-2 patches hold the 12 L2A bands (no B10) in uint16 at their native size over
  the same 1.2 km x 1.2 km: B02 B03 B04 B08 120 x 120 (10 m), B05 B06 B07 B8A B11 B12 60 x 60 (20 m), B01 B09
  20 x 20 (60 m). The same database may also hold the Sentinel-1 patches (keys = `s1_name`, bands VV VH); they
  are not read here. No georeference is stored.
- ``metadata.parquet``: one row per patch, columns ``patch_id``, ``labels`` (a list of 19-class names),
  ``split`` (``train`` / ``validation`` / ``test``), ``country``, ``s1_name``, ``s2v1_name``,
  ``contains_seasonal_snow``, ``contains_cloud_or_shadow``. The release puts the patches with seasonal snow,
  cloud or shadow in a second file of the same schema, ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``
  (so both flags are False throughout ``metadata.parquet``); pass both files to read every patch.

The v2 label names are spelled exactly as `BIGEARTHNET_19_CLASSES` (checked on the released metadata), and the
multi-hot vectors follow that standard order (Sumbul et al., 2021), as `bigearthnet_folder` does for v1, so one
classifier head serves both versions. (configilm's reader orders the classes alphabetically by default.)

Values are decoded with `safetensors.numpy.load` only: nothing is unpickled.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from affine import Affine
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors

from ..sensors import SENTINEL2_BANDS, SENTINEL2_RESOLUTIONS_M
from .builders import BIGEARTHNET_19_CLASSES
from .raster import RasterSample, normalize_band_name
from .samples import Sample

PathLike = str | os.PathLike[str]

BIGEARTHNET_V2_BANDS: tuple[str, ...] = SENTINEL2_BANDS
"""The 12 Sentinel-2 bands of a BigEarthNet v2 patch (no B10), in the model's order."""

BIGEARTHNET_V2_PATCH_SIZE = 120
"""Side of a patch in pixels on the 10 m grid (1.2 km)."""

BIGEARTHNET_V2_BAND_SHAPES: dict[str, tuple[int, int]] = {
    name: (round(BIGEARTHNET_V2_PATCH_SIZE * 10 / SENTINEL2_RESOLUTIONS_M[name]),) * 2 for name in BIGEARTHNET_V2_BANDS
}
"""Stored (H, W) of each band: 120 x 120 at 10 m, 60 x 60 at 20 m, 20 x 20 at 60 m."""

BIGEARTHNET_V2_SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The values of the metadata's `split` column."""

_REQUIRED_COLUMNS = ("patch_id", "labels", "split")
_FLAG_COLUMNS = ("contains_seasonal_snow", "contains_cloud_or_shadow")


class BigEarthNetV2Error(ValueError):
    """A BigEarthNet v2 patch or metadata file could not be read; the message names the patch or file."""


def bigearthnet_v2_multi_hot(label_names: Sequence[str], patch_id: str | None = None) -> list[int]:
    """Map BigEarthNet v2 label names to a 19-long multi-hot vector over `BIGEARTHNET_19_CLASSES`.

    Args:
        label_names: Names from the metadata's `labels` column (19-class nomenclature).
        patch_id: Named in the error message, if given.

    Raises:
        BigEarthNetV2Error: for a name that is not one of the 19 classes.
    """
    vector = [0] * len(BIGEARTHNET_19_CLASSES)
    for name in label_names:
        if name not in BIGEARTHNET_19_CLASSES:
            where = f" (patch {patch_id!r})" if patch_id is not None else ""
            raise BigEarthNetV2Error(
                f"Unknown BigEarthNet v2 label {name!r}{where}; expected one of the 19 classes "
                f"{list(BIGEARTHNET_19_CLASSES)}."
            )
        vector[BIGEARTHNET_19_CLASSES.index(name)] = 1
    return vector


def _read_metadata(paths: Sequence[Path]) -> pa.Table:
    tables = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such metadata file (expected the release's metadata.parquet).")
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise BigEarthNetV2Error(f"{path} is not a readable parquet file ({error}).") from error
        missing = [name for name in _REQUIRED_COLUMNS if name not in schema.names]
        if missing:
            raise BigEarthNetV2Error(
                f"{path} lacks the columns {missing} of BigEarthNet v2 metadata; it has {schema.names}. "
                "Pass the release's metadata.parquet."
            )
        columns = [*_REQUIRED_COLUMNS, *(name for name in _FLAG_COLUMNS if name in schema.names)]
        tables.append(pq.read_table(path, columns=columns))
    shared = [name for name in tables[0].column_names if all(name in table.column_names for table in tables)]
    return pa.concat_tables([table.select(shared) for table in tables])


def _multi_hot_matrix(labels: pa.ChunkedArray, patch_ids: np.ndarray) -> np.ndarray:
    """(N, 19) uint8 multi-hot matrix of a list<string> column, validating every name."""
    labels = labels.combine_chunks()
    if labels.null_count:
        row = int(np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))[0])
        raise BigEarthNetV2Error(f"Patch {patch_ids[row].decode()!r} has no `labels` list in the metadata.")
    matrix = np.zeros((len(labels), len(BIGEARTHNET_19_CLASSES)), dtype=np.uint8)
    names = pc.dictionary_encode(labels.flatten())
    parents = pc.list_parent_indices(labels).to_numpy()
    class_of_name = np.empty(len(names.dictionary), dtype=np.int64)
    for k, name in enumerate(names.dictionary.to_pylist()):
        if name not in BIGEARTHNET_19_CLASSES:
            row = parents[int(np.flatnonzero(names.indices.to_numpy(zero_copy_only=False) == k)[0])]
            bigearthnet_v2_multi_hot([name], patch_ids[row].decode())
        class_of_name[k] = BIGEARTHNET_19_CLASSES.index(name)
    matrix[parents, class_of_name[names.indices.to_numpy(zero_copy_only=False)]] = 1
    return matrix


def _resample(bands: list[np.ndarray], size: int) -> np.ndarray:
    """Bilinear resampling of 2-D bands onto a (size, size) grid, pixel areas aligned: (C, size, size).

    Equal to rasterio's bilinear `WarpedVRT` (the v1 reader's path) for 20 m bands and within 1 DN for 60 m bands.
    Integer bands are rounded half up and stay in their dtype.
    """
    dtype = bands[0].dtype
    out = np.empty((len(bands), size, size), dtype=dtype)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, band in enumerate(bands):
        by_shape.setdefault(band.shape, []).append(index)
    for shape, indices in by_shape.items():
        stack = np.stack([bands[i] for i in indices])  # (c, h, w)
        if shape == (size, size):
            out[indices] = stack
            continue
        values = torch.from_numpy(stack.astype(np.float32))[None]  # (1, c, h, w)
        resampled = torch.nn.functional.interpolate(values, size=(size, size), mode="bilinear", align_corners=False)
        resampled = resampled[0].numpy()  # (c, size, size) float32
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            resampled = np.clip(np.floor(resampled + 0.5), info.min, info.max)
        out[indices] = resampled
    return out


_ENVIRONMENTS: dict[str, tuple[int, Any]] = {}
"""Open LMDB environments by resolved path, with the id of the process that opened each."""


def _open_environment(path: Path) -> Any:
    """The read-only LMDB environment of `path` for this process, opened on first use.

    py-lmdb allows one environment per database and process, so datasets on the same database (train and
    validation, or copies made by pickling) share it. An environment inherited through `fork` (DataLoader workers)
    must not be used: the child closes its copy, which leaves the parent's untouched, and opens its own.
    """
    import lmdb

    key = str(path.resolve())
    if key in _ENVIRONMENTS:
        pid, environment = _ENVIRONMENTS[key]
        if pid == os.getpid():
            return environment
        environment.close()
    environment = lmdb.open(key, subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)
    _ENVIRONMENTS[key] = (os.getpid(), environment)
    return environment


class BigEarthNetV2(torch.utils.data.Dataset):
    """BigEarthNet v2.0 (reBEN) Sentinel-2 patches as a map-style sequence of `Sample`s.

    Each item is a `Sample` with `id` = the patch id, `labels` = a 19-long multi-hot list over `classes`
    (`BIGEARTHNET_19_CLASSES`), `group` = the Sentinel-2 product the patch was cut from, and `raster` = a
    `RasterSample` of shape (C, 120, 120) in the stored dtype (uint16), bands in the order of `bands`, the 20 m and
    60 m bands resampled (bilinear) onto the 10 m grid. v2 stores no georeference: `transform` is the identity
    (pixel coordinates) and `crs` None; `nodata` is None.

    The metadata is held in numpy arrays (patch ids as bytes, labels as an (N, 19) uint8 matrix), not Python
    objects, so DataLoader workers share it without copying. The LMDB is opened read-only without locking on first
    access in each process (shared by the datasets of one process, reopened after a fork); the dataset holds no
    handle, so it pickles into DataLoader workers.

    Args:
        lmdb_path: The release's LMDB folder (holding `data.mdb`), e.g. `BigEarthNet-V2-LMDB`.
        metadata_parquet: The release's `metadata.parquet`, or several files of the same schema (e.g. also
            `metadata_for_patches_with_snow_cloud_or_shadow.parquet`), read as one table.
        split: "train", "validation" or "test"; None: every patch of the metadata.
        bands: Names of the bands to return, in that order (default: the 12 bands, `BIGEARTHNET_V2_BANDS`).
        drop_snow_cloud: Leave out the patches flagged `contains_seasonal_snow` or `contains_cloud_or_shadow`
            (needs those columns).

    Raises:
        FileNotFoundError: the LMDB folder or a metadata file does not exist.
        BigEarthNetV2Error: metadata without the v2 columns, an unknown label name, repeated patch ids, or no patch
            left after filtering.
        ValueError: an unknown split or band.

    Example:
        >>> dataset = BigEarthNetV2("BigEarthNet-V2-LMDB", "metadata.parquet", split="train")
        >>> sample = dataset[0]  # sample.raster.array: (12, 120, 120) uint16; sample.labels: 19 ints
    """

    def __init__(
        self,
        lmdb_path: PathLike,
        metadata_parquet: PathLike | Sequence[PathLike],
        split: str | None = "train",
        bands: Sequence[str] = BIGEARTHNET_V2_BANDS,
        drop_snow_cloud: bool = False,
    ):
        self.lmdb_path = Path(lmdb_path)
        if not self.lmdb_path.exists():
            raise FileNotFoundError(f"{self.lmdb_path}: no such LMDB folder (expected the release's LMDB folder).")
        if self.lmdb_path.is_dir() and not (self.lmdb_path / "data.mdb").is_file():
            raise FileNotFoundError(f"{self.lmdb_path} holds no data.mdb: it is not an LMDB database folder.")
        if split is not None and split not in BIGEARTHNET_V2_SPLITS:
            raise ValueError(f"split must be one of {BIGEARTHNET_V2_SPLITS} or None, got {split!r}.")
        self.split = split
        self.bands = self._check_bands(bands)

        if isinstance(metadata_parquet, (str, os.PathLike)):
            metadata_parquet = [metadata_parquet]
        self.metadata_paths = [Path(path) for path in metadata_parquet]
        if not self.metadata_paths:
            raise ValueError("metadata_parquet is empty: pass the release's metadata.parquet.")
        table = _read_metadata(self.metadata_paths)
        present = sorted(set(table.column("split").to_pylist()) - {None})
        if split is not None:
            table = table.filter(pc.equal(table.column("split"), split))
        if drop_snow_cloud:
            missing = [name for name in _FLAG_COLUMNS if name not in table.column_names]
            if missing:
                raise BigEarthNetV2Error(
                    f"drop_snow_cloud=True needs the metadata columns {missing}, which {self._metadata_names} lack."
                )
            flagged = pc.or_(pc.fill_null(table.column(_FLAG_COLUMNS[0]), False), table.column(_FLAG_COLUMNS[1]))
            table = table.filter(pc.invert(pc.fill_null(flagged, False)))
        if table.num_rows == 0:
            raise BigEarthNetV2Error(
                f"No patch left in {self._metadata_names} for split={split!r}, drop_snow_cloud={drop_snow_cloud} "
                f"(splits present: {present})."
            )
        if table.column("patch_id").null_count:
            raise BigEarthNetV2Error(f"{self._metadata_names}: some rows have no patch_id.")
        try:
            self._patch_ids = np.array(table.column("patch_id").to_pylist(), dtype=np.bytes_)  # (N,) ASCII bytes
        except UnicodeEncodeError as error:
            raise BigEarthNetV2Error(f"{self._metadata_names}: patch ids must be ASCII ({error}).") from error
        if pc.count_distinct(table.column("patch_id")).as_py() != table.num_rows:
            unique, counts = np.unique(self._patch_ids, return_counts=True)
            repeated = [name.decode() for name in unique[counts > 1][:3]]
            raise BigEarthNetV2Error(f"{self._metadata_names} list patches more than once, e.g. {repeated}.")
        self._labels = _multi_hot_matrix(table.column("labels"), self._patch_ids)  # (N, 19) uint8

    @staticmethod
    def _check_bands(bands: Sequence[str]) -> tuple[str, ...]:
        if isinstance(bands, str):
            raise ValueError(f"bands must be a sequence of band names, got the string {bands!r}.")
        names = tuple(normalize_band_name(name) for name in bands)
        unknown = [name for name in names if name not in BIGEARTHNET_V2_BANDS]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"bands must be distinct names among the BigEarthNet v2 bands {list(BIGEARTHNET_V2_BANDS)} "
                f"(no B10), got {list(bands)}."
            )
        return names

    @property
    def _metadata_names(self) -> str:
        return ", ".join(str(path) for path in self.metadata_paths)

    @property
    def classes(self) -> list[str]:
        """The 19 class names; `labels[i]` is 1 when the patch shows `classes[i]`."""
        return list(BIGEARTHNET_19_CLASSES)

    @property
    def patch_ids(self) -> list[str]:
        """The patch ids, in dataset order."""
        return [patch_id.decode() for patch_id in self._patch_ids]

    @property
    def label_matrix(self) -> np.ndarray:
        """Multi-hot labels of every patch, (N, 19) uint8, in dataset order (e.g. for class frequencies)."""
        return self._labels.copy()

    def __len__(self) -> int:
        return len(self._patch_ids)

    def _environment(self) -> Any:
        return _open_environment(self.lmdb_path)

    def read_bands(self, patch_id: str) -> dict[str, np.ndarray]:
        """The stored arrays of one patch, by band name, as the release holds them (no resampling).

        Raises:
            BigEarthNetV2Error: the patch is not in the LMDB, or its value is not a safetensors file.
        """
        with self._environment().begin(write=False) as transaction:
            value = transaction.get(patch_id.encode("ascii"))
        if value is None:
            raise BigEarthNetV2Error(
                f"Patch {patch_id!r} is in the metadata but not in the LMDB {self.lmdb_path}: use the metadata and "
                "the LMDB of the same release."
            )
        try:
            return load_safetensors(value)
        except SafetensorError as error:
            raise BigEarthNetV2Error(
                f"The LMDB value of patch {patch_id!r} in {self.lmdb_path} is not a safetensors file ({error}); "
                "the database may be corrupt or of another format."
            ) from error

    def __getitem__(self, index: int) -> Sample:
        """The patch at `index`: a `Sample` with a (C, 120, 120) raster and 19 multi-hot labels.

        Raises:
            IndexError: index out of range.
            BigEarthNetV2Error: missing patch, not safetensors, a missing band, or a band of the wrong shape.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} patches.")
        patch_id = self._patch_ids[index].decode()
        stored = self.read_bands(patch_id)
        missing = [name for name in self.bands if name not in stored]
        if missing:
            raise BigEarthNetV2Error(
                f"Patch {patch_id!r} in {self.lmdb_path} lacks the bands {missing}; it holds {sorted(stored)}."
            )
        arrays = [stored[name] for name in self.bands]
        for name, array in zip(self.bands, arrays):
            if array.shape != BIGEARTHNET_V2_BAND_SHAPES[name]:
                raise BigEarthNetV2Error(
                    f"Band {name} of patch {patch_id!r} has shape {array.shape}; BigEarthNet v2 stores it as "
                    f"{BIGEARTHNET_V2_BAND_SHAPES[name]}."
                )
        dtypes = {array.dtype for array in arrays}
        if len(dtypes) > 1:
            raise BigEarthNetV2Error(f"Patch {patch_id!r} mixes band dtypes {sorted(map(str, dtypes))}.")
        raster = RasterSample(
            array=_resample(arrays, BIGEARTHNET_V2_PATCH_SIZE),
            band_names=list(self.bands),
            nodata=None,
            transform=Affine.identity(),
            crs=None,
            source=[str(self.lmdb_path)],
        )
        return Sample(
            id=patch_id,
            raster=raster,
            labels=self._labels[index].tolist(),
            group=patch_id.rsplit("_", 2)[0],
        )

    def __repr__(self) -> str:
        return (
            f"BigEarthNetV2(lmdb_path={str(self.lmdb_path)!r}, split={self.split!r}, patches={len(self)}, "
            f"bands={list(self.bands)})"
        )


__all__ = [
    "BIGEARTHNET_V2_BANDS",
    "BIGEARTHNET_V2_BAND_SHAPES",
    "BIGEARTHNET_V2_PATCH_SIZE",
    "BIGEARTHNET_V2_SPLITS",
    "BigEarthNetV2",
    "BigEarthNetV2Error",
    "bigearthnet_v2_multi_hot",
]
