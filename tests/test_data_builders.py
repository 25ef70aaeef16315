"""Tests of modeling_s2mae.data.builders on the repository's sample EuroSAT, BigEarthNet and Sentinel-2 data."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from modeling_s2mae.data import (
    BIGEARTHNET_19_CLASSES,
    BIGEARTHNET_43_CLASSES,
    BIGEARTHNET_43_TO_19,
    EUROSAT_MS_BANDS,
    RasterNotFoundError,
    RasterReadError,
    bigearthnet_folder,
    bigearthnet_multi_hot,
    eurosat_folder,
    iter_tiles,
    load_record,
    read_raster,
    scene_tiles,
)
from modeling_s2mae.sensors import SENTINEL2_BANDS

KNOWN_PATCH = "S2B_MSIL2A_20170924T93020_69_24"
"""Its CORINE labels: Coniferous forest, Mixed forest, Transitional woodland/shrub, Peatbogs, Water bodies."""


def truncate_copy(path: Path, fraction: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * fraction))


# --- EuroSAT ----------------------------------------------------------------------------------------------------------


def test_eurosat_folder(sample_data: Path) -> None:
    found = eurosat_folder(sample_data / "eurosat_ms")
    assert found.classes == ["AnnualCrop", "Forest"]
    assert len(found) == 6 and found.num_skipped == 0
    assert [r["label"] for r in found] == [0, 0, 0, 1, 1, 1]
    record = found[3]
    assert record["id"] == "Forest/Forest_1" and record["class_name"] == "Forest"
    assert record["band_names"] == list(EUROSAT_MS_BANDS)
    json.dumps(found.records)  # plain, serialisable records
    sample = load_record(record)
    assert sample.array.shape == (13, 64, 64) and sample.band_names[-1] == "B8A"
    with rasterio.open(record["paths"][0]) as dataset:
        np.testing.assert_array_equal(sample.select(["B8A"]).array[0], dataset.read(13))


def test_eurosat_folder_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match="no tile found"):
        eurosat_folder(tmp_path)
    (tmp_path / "Forest").mkdir()
    with pytest.raises(RasterReadError, match="no tile found"):
        eurosat_folder(tmp_path)
    with pytest.raises(RasterNotFoundError):
        eurosat_folder(tmp_path / "missing")


def test_eurosat_skip_bad_files(sample_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = Path(shutil.copytree(sample_data / "eurosat_ms", tmp_path / "eurosat"))
    (root / "Forest" / "Forest_9.tif").write_text("not a GeoTIFF")
    truncate_copy(root / "AnnualCrop" / "AnnualCrop_2.tif")
    with pytest.raises(RasterReadError, match="AnnualCrop_2.tif"):
        eurosat_folder(root)
    with caplog.at_level(logging.WARNING, logger="modeling_s2mae.data.builders"):
        found = eurosat_folder(root, skip_bad_files=True)
    assert len(found) == 5 and found.num_skipped == 2
    assert sorted(Path(s.path).name for s in found.skipped) == ["AnnualCrop_2.tif", "Forest_9.tif"]
    assert "skipped 2 bad sample(s)" in caplog.text
    unchecked = eurosat_folder(root, check_files=False)  # fast listing: the bad file only fails when read
    assert len(unchecked) == 7
    with pytest.raises(RasterReadError, match="AnnualCrop_2.tif"):
        load_record(unchecked[1])


# --- BigEarthNet ------------------------------------------------------------------------------------------------------


def test_bigearthnet_mapping_table() -> None:
    assert len(BIGEARTHNET_43_CLASSES) == 43 and set(BIGEARTHNET_43_TO_19) == set(BIGEARTHNET_43_CLASSES)
    targets = {value for value in BIGEARTHNET_43_TO_19.values() if value is not None}
    assert targets == set(BIGEARTHNET_19_CLASSES) and len(BIGEARTHNET_19_CLASSES) == 19
    assert sum(value is None for value in BIGEARTHNET_43_TO_19.values()) == 11
    assert bigearthnet_multi_hot(["Burnt areas", "Intertidal flats", "Bare rock", "Airports"]) == [0] * 19
    urban = bigearthnet_multi_hot(["Continuous urban fabric", "Discontinuous urban fabric"])
    assert urban == [1] + [0] * 18
    marine = bigearthnet_multi_hot(["Sea and ocean", "Estuaries", "Coastal lagoons", "Salines"])
    assert [BIGEARTHNET_19_CLASSES[i] for i, hot in enumerate(marine) if hot] == ["Coastal wetlands", "Marine waters"]
    with pytest.raises(ValueError, match="Unknown BigEarthNet label"):
        bigearthnet_multi_hot(["Glaciers and perpetual snow"])


def test_bigearthnet_folder(sample_data: Path) -> None:
    found = bigearthnet_folder(sample_data / "bigearthnet")
    assert found.classes == list(BIGEARTHNET_19_CLASSES) and len(found) == 2 and found.num_skipped == 0
    record = {r["id"]: r for r in found}[KNOWN_PATCH]
    assert record["label_names"] == [
        "Coniferous forest", "Mixed forest", "Transitional woodland, shrub", "Inland wetlands", "Inland waters",
    ]  # fmt: skip
    assert [i for i, hot in enumerate(record["labels"]) if hot] == [9, 10, 13, 15, 17]
    assert record["band_names"] == list(SENTINEL2_BANDS)
    assert [Path(p).stem.rsplit("_", 1)[1] for p in record["paths"]] == list(SENTINEL2_BANDS)

    sample = load_record(record)
    assert sample.array.shape == (12, 120, 120) and sample.band_names == list(SENTINEL2_BANDS)
    assert sample.resolution == (10.0, 10.0)
    with rasterio.open(record["paths"][8]) as b8a:  # 60 x 60 at 20 m
        native = b8a.read(1).astype(np.float64)
    assert sample.array[8].astype(np.float64).mean() == pytest.approx(native.mean(), rel=2e-3)
    subset = bigearthnet_folder(sample_data / "bigearthnet", bands=["B04", "B03", "B02"])
    assert load_record(subset[0]).array.shape == (3, 120, 120)


def test_bigearthnet_bad_patches(sample_data: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(sample_data / "bigearthnet", tmp_path / "ben"))
    bad = root / KNOWN_PATCH
    truncate_copy(bad / f"{KNOWN_PATCH}_B03.tif")
    with pytest.raises(RasterReadError, match=f"{KNOWN_PATCH}_B03.tif"):
        bigearthnet_folder(root)
    found = bigearthnet_folder(root, skip_bad_files=True)
    assert len(found) == 1 and found.num_skipped == 1 and found.skipped[0].path == str(bad)
    assert "truncated or corrupt" in found.skipped[0].reason

    shutil.rmtree(bad)
    shutil.copytree(sample_data / "bigearthnet" / KNOWN_PATCH, bad)
    (bad / f"{KNOWN_PATCH}_B11.tif").unlink()
    with pytest.raises(RasterReadError, match=r"no GeoTIFF for band\(s\) \['B11'\]"):
        bigearthnet_folder(root)
    assert bigearthnet_folder(root, bands=["B02", "B03"]).num_skipped == 0  # B11 not asked for

    (bad / f"{KNOWN_PATCH}_labels_metadata.json").write_text("{not json")
    with pytest.raises(RasterReadError, match="not a valid BigEarthNet label file"):
        bigearthnet_folder(root, bands=["B02"])

    (bad / f"{KNOWN_PATCH}_labels_metadata.json").write_text(json.dumps({"labels": ["Burnt areas"]}))
    assert len(bigearthnet_folder(root, bands=["B02"])) == 1  # no BigEarthNet-19 label: dropped, not bad
    kept = bigearthnet_folder(root, bands=["B02"], drop_unlabelled=False)
    assert len(kept) == 2 and kept.num_skipped == 0


def test_bigearthnet_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match="no BigEarthNet patch folder"):
        bigearthnet_folder(tmp_path)


# --- scene tiles ------------------------------------------------------------------------------------------------------


def test_scene_tiles(sample_data: Path) -> None:
    scene = sample_data / "sentinel2_scene"
    found = scene_tiles([scene], tile_size=128)
    assert len(found) == 9 and found.classes == []
    record = found[5]
    assert record["id"] == "sentinel2_scene/r128_c256"
    assert record["window"] == {"row_off": 128, "col_off": 256, "height": 128, "width": 128}
    tile = load_record(record)
    full = read_raster(scene)
    np.testing.assert_array_equal(tile.array, full.array[:, 128:256, 256:384])
    assert (tile.transform.c, tile.transform.f) == (full.transform.c + 256 * 10, full.transform.f - 128 * 10)
    assert [t.window for t in iter_tiles(scene, 128)] == [load_record(r).window for r in found]

    files = sorted(scene.glob("*.tif"))
    coarse = scene_tiles([files], tile_size=96, bands=["B05", "B02"], target_resolution=20)
    assert len(coarse) == 4 and coarse[0]["id"] == "T33UUU_20170216T102101/r0_c0"
    assert load_record(coarse[3]).array.shape == (2, 96, 96)


def test_scene_tiles_skip_bad_scene(sample_data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sample_data / "sentinel2_scene", broken)
    truncate_copy(next(broken.glob("*_B02.tif")))
    scenes = [sample_data / "sentinel2_scene", broken, tmp_path / "missing"]
    with pytest.raises(RasterReadError, match="_B02.tif"):
        scene_tiles(scenes, tile_size=192)
    found = scene_tiles(scenes, tile_size=192, skip_bad_files=True)
    assert len(found) == 4 and found.num_skipped == 2
    assert [Path(s.path).name for s in found.skipped] == ["broken", "missing"]


def test_scene_tiles_from_the_cache_equal_windowed_reads(sample_data: Path) -> None:
    from rasterio.windows import Window

    from modeling_s2mae.data import builders

    records = scene_tiles([sample_data / "sentinel2_scene"], 96, 64)
    builders._scene_cache.clear()
    for record in records.records[:4] + records.records[-2:]:
        cached = load_record(record)
        window = record["window"]
        direct = read_raster(
            record["paths"], window=Window(window["col_off"], window["row_off"], window["width"], window["height"])
        )
        assert cached.band_names == direct.band_names and cached.transform == direct.transform
        np.testing.assert_array_equal(cached.array, direct.array)
    assert len(builders._scene_cache) == 1  # the scene was read once
