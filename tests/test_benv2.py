"""Tests of modeling_s2mae.data.benv2, the BigEarthNet v2.0 (reBEN) LMDB reader.

Data used:
- Pixels: an LMDB built in `tmp_path` in exactly the v2 format (the layout rico-hdl writes, checked against the real
  values shipped by `configilm==0.7.1`: key = patch id in UTF-8, value = `safetensors.numpy.save` of one 2-D uint16
  array per band, keyed B01 .. B12 / B8A, at the native 120 / 60 / 20 px) from the two real BigEarthNet v1 patches
  in `sample_data/bigearthnet/` (per-band GeoTIFFs; rico-hdl copies their values unchanged). Real v2 LMDB values
  (160 KB per patch) are not shipped.
- Metadata: the real v2 metadata subsets in `sample_data/bigearthnet_v2/` (from configilm), and a metadata.parquet
  of the same schema written for the two v1 patches.
- Optionally a real v2 release (or configilm's subset): set `S2MAE_BENV2_DIR` to a folder holding
  `BigEarthNet-V2-LMDB/` and `metadata.parquet` to run `test_real_release`.
"""

import os
import pickle
from pathlib import Path

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from affine import Affine
from safetensors.numpy import save as save_safetensors

from modeling_s2mae.data import BIGEARTHNET_19_CLASSES, bigearthnet_folder, load_record
from modeling_s2mae.data.benv2 import (
    BIGEARTHNET_V2_BAND_SHAPES,
    BIGEARTHNET_V2_BANDS,
    BigEarthNetV2,
    BigEarthNetV2Error,
    bigearthnet_v2_multi_hot,
)
from modeling_s2mae.sensors import SENTINEL2_RESOLUTIONS_M

SPLIT_OF = {"S2A_MSIL2A_20171221T112501_56_35": "train", "S2B_MSIL2A_20170924T93020_69_24": "test"}
"""The split given to each v1 patch in the metadata written for them."""

SCHEMA = pa.schema(
    [
        ("patch_id", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("split", pa.string()),
        ("country", pa.string()),
        ("s1_name", pa.string()),
        ("s2v1_name", pa.string()),
        ("contains_seasonal_snow", pa.bool_()),
        ("contains_cloud_or_shadow", pa.bool_()),
    ]
)


def read_v1_bands(record: dict) -> dict[str, np.ndarray]:
    """The stored arrays of a v1 patch by band name, read with rasterio: (H, W) uint16 each."""
    bands = {}
    for path in record["paths"]:
        name = Path(path).stem.rsplit("_", 1)[1]
        with rasterio.open(path) as dataset:
            bands[name] = dataset.read(1)
    return bands


def write_lmdb(path: Path, values: dict[str, bytes]) -> Path:
    """An LMDB database at `path` holding `values` (key: patch id)."""
    with lmdb.open(str(path), map_size=64 * 2**20) as environment, environment.begin(write=True) as transaction:
        for key, value in values.items():
            transaction.put(key.encode(), value)
    return path


def write_metadata(path: Path, rows: list[dict]) -> Path:
    defaults = {"country": "", "s1_name": "", "s2v1_name": "", "contains_seasonal_snow": False}
    rows = [{**defaults, "contains_cloud_or_shadow": False, **row} for row in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


@pytest.fixture(scope="module")
def v1_records(sample_data: Path) -> list[dict]:
    return list(bigearthnet_folder(sample_data / "bigearthnet"))


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, v1_records: list[dict]) -> tuple[Path, Path]:
    """(LMDB folder, metadata.parquet) in the v2 format, holding the two v1 sample patches."""
    root = tmp_path_factory.mktemp("benv2")
    lmdb_path = write_lmdb(
        root / "BigEarthNet-V2-LMDB",
        {record["id"]: save_safetensors(read_v1_bands(record)) for record in v1_records},
    )
    rows = [
        {
            "patch_id": record["id"],
            "labels": record["label_names"],
            "split": SPLIT_OF[record["id"]],
            "s2v1_name": record["id"],
        }
        for record in v1_records
    ]
    return lmdb_path, write_metadata(root / "metadata.parquet", rows)


@pytest.fixture(scope="module")
def v2_metadata(sample_data: Path) -> tuple[Path, Path]:
    """The real v2 metadata files: (metadata.parquet, metadata_for_patches_with_snow_cloud_or_shadow.parquet)."""
    folder = sample_data / "bigearthnet_v2"
    return folder / "metadata.parquet", folder / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"


# --- layout and labels ------------------------------------------------------------------------------------------------


def test_band_shapes_follow_resolution():
    assert len(BIGEARTHNET_V2_BANDS) == 12 and "B10" not in BIGEARTHNET_V2_BANDS
    sides = {10: 120, 20: 60, 60: 20}
    assert BIGEARTHNET_V2_BAND_SHAPES == {
        name: (sides[SENTINEL2_RESOLUTIONS_M[name]],) * 2 for name in BIGEARTHNET_V2_BANDS
    }


def test_real_metadata_names_are_the_19_classes(v2_metadata):
    names = {
        name for path in v2_metadata for labels in pq.read_table(path).column("labels").to_pylist() for name in labels
    }
    assert len(names) == 12 and names <= set(BIGEARTHNET_19_CLASSES)
    # the first train patch, checked by hand: Pastures, Broad-leaved / Coniferous / Mixed forest, Inland waters
    first = ["Broad-leaved forest", "Coniferous forest", "Inland waters", "Mixed forest", "Pastures"]
    assert np.flatnonzero(bigearthnet_v2_multi_hot(first)).tolist() == [4, 8, 9, 10, 17]


def test_unknown_label_name_raises():
    with pytest.raises(BigEarthNetV2Error, match="'Transitional woodland/shrub'.*patch 'P1'"):
        bigearthnet_v2_multi_hot(["Mixed forest", "Transitional woodland/shrub"], patch_id="P1")  # a v1 CORINE name


# --- metadata: splits, flags, labels ----------------------------------------------------------------------------------


def test_real_metadata_splits_and_labels(release, v2_metadata):
    lmdb_path, _ = release
    table = pq.read_table(v2_metadata[0]).to_pylist()
    for split in ("train", "validation", "test"):
        dataset = BigEarthNetV2(lmdb_path, v2_metadata[0], split=split)
        rows = [row for row in table if row["split"] == split]
        assert len(dataset) == 6 and dataset.patch_ids == [row["patch_id"] for row in rows]
        expected = [bigearthnet_v2_multi_hot(row["labels"]) for row in rows]
        assert dataset.label_matrix.tolist() == expected
    assert len(BigEarthNetV2(lmdb_path, v2_metadata[0], split=None)) == 18


def test_drop_snow_cloud_on_real_metadata(release, v2_metadata):
    lmdb_path, _ = release
    everything = BigEarthNetV2(lmdb_path, list(v2_metadata), split=None)
    clear = BigEarthNetV2(lmdb_path, list(v2_metadata), split=None, drop_snow_cloud=True)
    flagged = pq.read_table(v2_metadata[1]).column("patch_id").to_pylist()
    assert len(everything) == 24 and len(clear) == 18
    assert set(everything.patch_ids) - set(clear.patch_ids) == set(flagged)
    assert len(BigEarthNetV2(lmdb_path, list(v2_metadata), split="test", drop_snow_cloud=True)) == 6
    assert len(BigEarthNetV2(lmdb_path, v2_metadata[0], split=None, drop_snow_cloud=True)) == 18


def test_split_filtering(release):
    lmdb_path, metadata = release
    assert BigEarthNetV2(lmdb_path, metadata, split="train").patch_ids == ["S2A_MSIL2A_20171221T112501_56_35"]
    assert BigEarthNetV2(lmdb_path, metadata, split="test").patch_ids == ["S2B_MSIL2A_20170924T93020_69_24"]
    assert len(BigEarthNetV2(lmdb_path, metadata, split=None)) == 2
    with pytest.raises(BigEarthNetV2Error, match=r"No patch left.*splits present: \['test', 'train'\]"):
        BigEarthNetV2(lmdb_path, metadata, split="validation")
    with pytest.raises(ValueError, match="split must be one of"):
        BigEarthNetV2(lmdb_path, metadata, split="val")


def test_bad_metadata_raises(release, tmp_path):
    lmdb_path, _ = release
    unknown = write_metadata(
        tmp_path / "unknown.parquet", [{"patch_id": "P7", "labels": ["Peatbogs"], "split": "train"}]
    )
    with pytest.raises(BigEarthNetV2Error, match="Unknown BigEarthNet v2 label 'Peatbogs' \\(patch 'P7'\\)"):
        BigEarthNetV2(lmdb_path, unknown)
    repeated = write_metadata(tmp_path / "repeated.parquet", [{"patch_id": "P1", "labels": [], "split": "train"}] * 2)
    with pytest.raises(BigEarthNetV2Error, match="more than once.*'P1'"):
        BigEarthNetV2(lmdb_path, repeated)
    nameless = write_metadata(tmp_path / "nameless.parquet", [{"patch_id": None, "labels": [], "split": "train"}])
    with pytest.raises(BigEarthNetV2Error, match="no patch_id"):
        BigEarthNetV2(lmdb_path, nameless)
    not_parquet = tmp_path / "metadata.csv"
    not_parquet.write_text("patch_id,labels,split\n")
    with pytest.raises(BigEarthNetV2Error, match="not a readable parquet file"):
        BigEarthNetV2(lmdb_path, not_parquet)
    v1_like = tmp_path / "v1.parquet"
    pq.write_table(pa.table({"name": ["P1"], "labels": [["Pastures"]]}), v1_like)
    with pytest.raises(BigEarthNetV2Error, match=r"lacks the columns \['patch_id', 'split'\]"):
        BigEarthNetV2(lmdb_path, v1_like)
    with pytest.raises(FileNotFoundError, match="no such LMDB folder"):
        BigEarthNetV2(tmp_path / "nowhere", unknown)
    with pytest.raises(FileNotFoundError, match="not an LMDB database folder"):
        BigEarthNetV2(tmp_path, unknown)
    with pytest.raises(ValueError, match="no B10"):
        BigEarthNetV2(lmdb_path, unknown, bands=["B02", "B10"])


# --- pixels -----------------------------------------------------------------------------------------------------------


def test_decoded_bands_equal_the_source(release, v1_records):
    lmdb_path, metadata = release
    dataset = BigEarthNetV2(lmdb_path, metadata, split=None)
    assert dataset.classes == list(BIGEARTHNET_19_CLASSES)
    for record in v1_records:
        index = dataset.patch_ids.index(record["id"])
        source = read_v1_bands(record)
        stored = dataset.read_bands(record["id"])
        assert sorted(stored) == sorted(source)
        for name, array in source.items():
            assert stored[name].dtype == np.uint16 and np.array_equal(stored[name], array)

        sample = dataset[index]
        raster = sample.raster
        assert sample.id == record["id"] and sample.group == record["id"].rsplit("_", 2)[0]
        assert sample.labels == record["labels"]  # the v1 reader's 19-class multi-hot
        assert raster.array.shape == (12, 120, 120) and raster.array.dtype == np.uint16
        assert raster.band_names == list(BIGEARTHNET_V2_BANDS)
        assert raster.transform == Affine.identity() and raster.crs is None and raster.nodata is None
        v1 = load_record(record).select(BIGEARTHNET_V2_BANDS).array  # rasterio bilinear onto the 10 m grid
        for k, name in enumerate(BIGEARTHNET_V2_BANDS):
            difference = np.abs(raster.array[k].astype(int) - v1[k].astype(int)).max()
            if SENTINEL2_RESOLUTIONS_M[name] == 10:
                assert np.array_equal(raster.array[k], source[name])
            assert difference <= (1 if SENTINEL2_RESOLUTIONS_M[name] == 60 else 0), name


def test_band_selection_by_name(release):
    lmdb_path, metadata = release
    full = BigEarthNetV2(lmdb_path, metadata)[0].raster
    picked = BigEarthNetV2(lmdb_path, metadata, bands=["b8a", "B4", "B01"])[0].raster
    assert picked.band_names == ["B8A", "B04", "B01"]
    assert np.array_equal(picked.array, full.select(["B8A", "B04", "B01"]).array)


@pytest.fixture()
def broken(tmp_path: Path, v1_records: list[dict]) -> BigEarthNetV2:
    """A dataset over an LMDB with one bad value per kind of damage (and one patch missing)."""
    good = read_v1_bands(v1_records[0])
    values = {
        "not_safetensors": b"\x80\x04\x95 a pickle, not safetensors",
        "truncated": save_safetensors(good)[:5000],
        "missing_band": save_safetensors({k: v for k, v in good.items() if k != "B8A"}),
        "wrong_shape": save_safetensors({**good, "B01": np.zeros((30, 30), np.uint16)}),
    }
    lmdb_path = write_lmdb(tmp_path / "lmdb", values)
    rows = [{"patch_id": key, "labels": ["Pastures"], "split": "train"} for key in [*values, "absent"]]
    return BigEarthNetV2(lmdb_path, write_metadata(tmp_path / "metadata.parquet", rows))


@pytest.mark.parametrize(
    "index, message",
    [
        (0, "value of patch 'not_safetensors' .* is not a safetensors file"),
        (1, "value of patch 'truncated' .* is not a safetensors file"),
        (2, r"Patch 'missing_band' .* lacks the bands \['B8A'\]"),
        (3, r"Band B01 of patch 'wrong_shape' has shape \(30, 30\); .* stores it as \(20, 20\)"),
        (4, "Patch 'absent' is in the metadata but not in the LMDB"),
    ],
)
def test_bad_values_raise_naming_the_patch(broken, index, message):
    with pytest.raises(BigEarthNetV2Error, match=message):
        broken[index]


def test_index_out_of_range(release):
    dataset = BigEarthNetV2(*release, split=None)
    assert dataset[-1].id == dataset.patch_ids[-1]
    with pytest.raises(IndexError):
        dataset[2]


# --- processes --------------------------------------------------------------------------------------------------------


def test_pickles_and_shares_the_environment(release):
    train = BigEarthNetV2(*release, split="train")
    test = BigEarthNetV2(*release, split="test")
    first = train[0]
    assert test[0].id != first.id  # two datasets on one LMDB in one process
    copy = pickle.loads(pickle.dumps(train))
    assert np.array_equal(copy[0].raster.array, first.raster.array)


def _dataloader_ids(dataset: BigEarthNetV2, context: str | None) -> list[str]:
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=2, collate_fn=list, multiprocessing_context=context
    )
    return [sample.id for batch in loader for sample in batch]


def test_dataloader_with_two_workers(release):
    dataset = BigEarthNetV2(*release, split=None)
    dataset[0]  # the parent opens the LMDB before forking
    assert _dataloader_ids(dataset, None) == dataset.patch_ids


@pytest.mark.slow
def test_dataloader_with_two_spawned_workers(release):
    dataset = BigEarthNetV2(*release, split=None)
    assert _dataloader_ids(dataset, "spawn") == dataset.patch_ids


def test_real_release(sample_data):
    """Two real BigEarthNet v2 patches (values copied byte for byte from configilm's test subset of the release) or,
    with S2MAE_BENV2_DIR set, the first 200 patches of a full release folder."""
    if "S2MAE_BENV2_DIR" in os.environ:
        root = Path(os.environ["S2MAE_BENV2_DIR"])
        metadata = root / "metadata.parquet"
    else:
        root = sample_data / "bigearthnet_v2"
        metadata = root / "release_subset_metadata.parquet"
    table = pq.read_table(metadata).to_pylist()
    dataset = BigEarthNetV2(root / "BigEarthNet-V2-LMDB", metadata, split=None)
    assert len(dataset) == len(table)
    for index, row in enumerate(table[:200]):
        sample = dataset[index]
        stored = dataset.read_bands(row["patch_id"])
        assert sample.id == row["patch_id"] and sample.labels == bigearthnet_v2_multi_hot(row["labels"])
        assert sample.raster.array.shape == (12, 120, 120) and sample.raster.array.dtype == np.uint16
        for k, name in enumerate(BIGEARTHNET_V2_BANDS):
            assert stored[name].shape == BIGEARTHNET_V2_BAND_SHAPES[name]
            if SENTINEL2_RESOLUTIONS_M[name] == 10:
                assert np.array_equal(sample.raster.array[k], stored[name])
