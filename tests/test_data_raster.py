"""Tests of modeling_s2mae.data.raster on the repository's real sample imagery (and broken copies in tmp dirs)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from modeling_s2mae.data import (
    EUROSAT_MS_BANDS,
    SENTINEL2_13_BANDS,
    RasterNotFoundError,
    RasterReadError,
    band_name_from_filename,
    check_raster,
    iter_tiles,
    normalize_band_name,
    raster_info,
    read_raster,
    read_window,
    resolve_band_names,
    tile_windows,
)
from modeling_s2mae.sensors import SENTINEL2_BANDS


@pytest.fixture(scope="module")
def scene_dir(sample_data: Path) -> Path:
    """T33UUU crop, one GeoTIFF per band: 384 x 384 px at 10 m, 192 x 192 at 20 m, 64 x 64 at 60 m."""
    return sample_data / "sentinel2_scene"


@pytest.fixture(scope="module")
def scene_full(scene_dir: Path):
    return read_raster(scene_dir)


@pytest.fixture(scope="module")
def eurosat_tile(sample_data: Path) -> Path:
    """A 13-band EuroSAT-MS tile (B8A last, no band descriptions)."""
    return sorted((sample_data / "eurosat_ms").glob("*/*.tif"))[0]


@pytest.fixture(scope="module")
def s2_tile(sample_data: Path) -> Path:
    """A 13-band Sentinel-2 GeoTIFF with band descriptions and nodata = 0."""
    return sorted((sample_data / "sentinel2_tile").glob("*.tif"))[0]


def band_file(scene_dir: Path, band: str) -> Path:
    (path,) = scene_dir.glob(f"*_{band}.tif")
    return path


def raw(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def write_like(source: Path, target: Path, **changes) -> Path:
    """Copy a raster with some profile fields changed (crs, transform, nodata...)."""
    with rasterio.open(source) as dataset:
        profile = {**dataset.profile, **changes}
        data = dataset.read()
    with rasterio.open(target, "w", **profile) as out:
        out.write(data)
    return target


# --- band names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("T33UUU_20170216T102101_B04.jp2", "B04"),
        ("S2A_MSIL2A_20170613T101031_87_48_B8A.tif", "B8A"),
        ("T31TCJ_20200101T105441_B11_20m.jp2", "B11"),
        ("patch-b8a.tif", "B8A"),
        ("scene_B1.tif", "B01"),
        ("Forest_1.tif", None),
        ("BIGB04X.tif", None),
    ],
)
def test_band_name_from_filename(name: str, expected: str | None) -> None:
    assert band_name_from_filename(name) == expected


def test_normalize_band_name() -> None:
    assert [normalize_band_name(n) for n in ("B4", "b04", "b8a", "B12", "NIR")] == ["B04", "B04", "B8A", "B12", "NIR"]


def test_band_names_from_descriptions_and_nodata(s2_tile: Path) -> None:
    sample = read_raster(s2_tile)
    assert sample.band_names == list(SENTINEL2_13_BANDS)
    assert sample.nodata == 0.0
    assert sample.array.shape == (13, 128, 128) and sample.array.dtype == np.uint16
    assert read_raster(s2_tile, nodata=-1).nodata == -1


def test_band_names_that_contradict_the_file_raise_naming_both_orders(s2_tile: Path) -> None:
    names = [f"band{i}" for i in range(12)] + ["b4"]
    with pytest.raises(RasterReadError, match="declares its band order") as info:
        resolve_band_names(s2_tile, names)
    assert "band0" in str(info.value) and "B8A" in str(info.value)
    spelled_otherwise = [name.replace("B0", "B") for name in SENTINEL2_13_BANDS]  # "B4" is the same band as "B04"
    assert resolve_band_names(s2_tile, spelled_otherwise) == spelled_otherwise  # kept as given


def test_a_files_declared_order_wins_over_a_builder_default(eurosat_tile: Path, tmp_path: Path) -> None:
    tile = Path(shutil.copy(eurosat_tile, tmp_path / "tile.tif"))
    assert resolve_band_names(tile, default=EUROSAT_MS_BANDS) == list(EUROSAT_MS_BANDS)
    (tmp_path / "tile.tif.bands.json").write_text(json.dumps({"band_names": list(SENTINEL2_13_BANDS)}))
    assert resolve_band_names(tile, default=EUROSAT_MS_BANDS) == list(SENTINEL2_13_BANDS)


def test_other_sensors_band_names_pass_through_unchanged(tmp_path: Path) -> None:
    landsat = ["B1", "B2", "B3", "B4", "B5", "B7"]
    path = tmp_path / "landsat.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 6, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8) % 200)
        dataset.descriptions = tuple(landsat)
    sample = read_raster(path)
    assert sample.band_names == landsat
    assert read_raster(path, bands=["B4", "B3"]).band_names == ["B4", "B3"]
    assert sample.select(["B7"]).band_names == ["B7"]


def test_band_names_from_sidecar(eurosat_tile: Path, tmp_path: Path) -> None:
    tile = Path(shutil.copy(eurosat_tile, tmp_path / "tile.tif"))
    (tmp_path / "tile.tif.bands.json").write_text(json.dumps({"band_names": list(EUROSAT_MS_BANDS)}))
    assert resolve_band_names(tile) == list(EUROSAT_MS_BANDS)
    assert read_raster(tile).band_names[-1] == "B8A"


def test_band_names_from_file_names(scene_dir: Path, scene_full) -> None:
    assert scene_full.band_names == list(SENTINEL2_13_BANDS)  # folder: Sentinel-2 order, B8A after B08
    files = [band_file(scene_dir, band) for band in ("B8A", "B02", "B11")]
    sample = read_raster(files)  # a list keeps its order
    assert sample.band_names == ["B8A", "B02", "B11"]
    assert sample.source == [str(path) for path in files]


def test_unnamed_bands_raise_with_instructions(eurosat_tile: Path) -> None:
    with pytest.raises(RasterReadError, match="band_names=") as info:
        read_raster(eurosat_tile)
    assert "EUROSAT_MS_BANDS" in str(info.value) and "SENTINEL2_13_BANDS" in str(info.value)


def test_band_names_count_mismatch(eurosat_tile: Path, tmp_path: Path) -> None:
    with pytest.raises(RasterReadError, match="band_names has 12 names but the source holds 13 bands"):
        read_raster(eurosat_tile, SENTINEL2_BANDS)
    tile = Path(shutil.copy(eurosat_tile, tmp_path / "tile.tif"))
    (tmp_path / "tile.tif.bands.json").write_text(json.dumps({"band_names": ["B01", "B02"]}))
    with pytest.raises(RasterReadError, match="tile.tif.bands.json gives 2 names"):
        read_raster(tile)
    with pytest.raises(RasterReadError, match="repeats"):
        read_raster(eurosat_tile, ["B01"] * 13)


def test_eurosat_b8a_trap_read_by_name(eurosat_tile: Path) -> None:
    values = raw(eurosat_tile)
    sample = read_raster(eurosat_tile, EUROSAT_MS_BANDS, bands=SENTINEL2_BANDS)
    assert sample.band_names == list(SENTINEL2_BANDS)
    np.testing.assert_array_equal(sample.array[8], values[12])  # B8A is the file's last band
    np.testing.assert_array_equal(sample.array[9], values[8])  # B09 is the file's 9th band
    full = read_raster(eurosat_tile, EUROSAT_MS_BANDS)
    np.testing.assert_array_equal(full.select(SENTINEL2_BANDS).array, sample.array)
    with pytest.raises(ValueError, match="not among the available bands"):
        full.select(["B13"])


# --- several resolutions --------------------------------------------------------------------------------------------


def test_multi_resolution_onto_finest_grid(scene_dir: Path, scene_full) -> None:
    assert scene_full.array.shape == (13, 384, 384) and scene_full.array.dtype == np.uint16
    with rasterio.open(band_file(scene_dir, "B02")) as b02:
        assert scene_full.transform == b02.transform and scene_full.crs == b02.crs
    np.testing.assert_array_equal(scene_full.select(["B04"]).array[0], raw(band_file(scene_dir, "B04"))[0])
    for band in ("B05", "B8A", "B01"):  # 20 m, 20 m, 60 m bands keep their mean after bilinear upsampling
        native = raw(band_file(scene_dir, band))[0].astype(np.float64)
        resampled = scene_full.select([band]).array[0].astype(np.float64)
        assert resampled.mean() == pytest.approx(native.mean(), rel=2e-3)
        assert resampled.min() >= native.min() and resampled.max() <= native.max()


def test_target_resolution_and_out_shape(scene_dir: Path) -> None:
    coarse = read_raster(scene_dir, target_resolution=20)
    assert coarse.array.shape == (13, 192, 192) and coarse.resolution == (20.0, 20.0)
    np.testing.assert_array_equal(coarse.select(["B05"]).array[0], raw(band_file(scene_dir, "B05"))[0])
    nearest = read_raster(scene_dir, bands=["B05"], target_resolution=10, resampling="nearest")
    np.testing.assert_array_equal(nearest.array[0, ::2, ::2], raw(band_file(scene_dir, "B05"))[0])
    shaped = read_raster(scene_dir, bands=["B8A", "B02"], out_shape=(100, 100))
    assert shaped.array.shape == (2, 100, 100) and shaped.bounds == pytest.approx(coarse.bounds)
    assert read_raster(scene_dir, bands=["B05", "B01"]).array.shape == (2, 192, 192)  # finest of the files read
    with pytest.raises(ValueError, match="whole pixels"):
        read_raster(scene_dir, target_resolution=7)
    with pytest.raises(ValueError, match="not both"):
        read_raster(scene_dir, target_resolution=20, out_shape=(10, 10))
    with pytest.raises(ValueError, match="Unknown resampling"):
        read_raster(scene_dir, resampling="fancy")


def test_jpeg2000_band_files(scene_dir: Path, tmp_path: Path) -> None:
    files = []
    for band in ("B04", "B05"):
        source = band_file(scene_dir, band)
        target = tmp_path / source.name.replace(".tif", ".jp2")
        with rasterio.open(source) as dataset:
            profile = {**dataset.profile, "driver": "JP2OpenJPEG", "reversible": "YES", "quality": 100}
            for key in ("compress", "predictor", "interleave", "tiled", "blockxsize", "blockysize"):
                profile.pop(key, None)
            with rasterio.open(target, "w", **profile) as out:
                out.write(dataset.read())
        files.append(target)
    sample = read_raster(tmp_path)
    assert sample.band_names == ["B04", "B05"] and sample.array.shape == (2, 384, 384)
    np.testing.assert_array_equal(sample.array[0], raw(band_file(scene_dir, "B04"))[0])


# --- windows and tiles ----------------------------------------------------------------------------------------------


def test_read_window_equals_slice_of_full_read(eurosat_tile: Path, scene_dir: Path, scene_full) -> None:
    full = read_raster(eurosat_tile, EUROSAT_MS_BANDS)
    part = read_window(eurosat_tile, Window(col_off=10, row_off=20, width=30, height=16), EUROSAT_MS_BANDS)
    np.testing.assert_array_equal(part.array, full.array[:, 20:36, 10:40])
    window = Window.from_slices((50, 178), (101, 229))
    part = read_window(scene_dir, window)  # 20 m and 60 m bands resampled inside the window only
    np.testing.assert_array_equal(part.array, scene_full.array[:, 50:178, 101:229])
    x0, y0 = scene_full.transform.c, scene_full.transform.f
    assert part.transform.c == x0 + 101 * 10 and part.transform.f == y0 - 50 * 10
    assert part.window == window


def test_read_window_out_of_bounds(scene_dir: Path) -> None:
    with pytest.raises(ValueError, match="does not lie inside"):
        read_window(scene_dir, Window(300, 0, 128, 128))
    with pytest.raises(ValueError, match="whole-pixel"):
        read_window(scene_dir, Window(0.5, 0, 10, 10))


def test_read_window_does_not_read_whole_scene(tmp_path: Path) -> None:
    path = tmp_path / "big_B04.tif"  # 40000 x 40000 uint16 = 3.2 GB if read whole; a sparse file on disk
    profile = {
        "driver": "GTiff", "dtype": "uint16", "count": 1, "width": 40_000, "height": 40_000, "crs": "EPSG:32633",
        "transform": rasterio.Affine(10, 0, 300_000, 0, -10, 5_900_000), "tiled": True,
        "blockxsize": 256, "blockysize": 256, "sparse_ok": True,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.full((1, 256, 256), 7, np.uint16), window=Window(20_480, 30_720, 256, 256))
    assert os.path.getsize(path) < 5_000_000
    tile = read_window(path, Window(20_480 + 64, 30_720 + 32, 64, 64))
    assert tile.array.shape == (1, 64, 64) and (tile.array == 7).all()
    assert tile.transform.c == 300_000 + (20_480 + 64) * 10


def test_tile_windows() -> None:
    assert len(tile_windows(384, 384, 128)) == 9
    assert len(tile_windows(384, 384, 128, stride=64)) == 25
    assert len(tile_windows(384, 384, 100)) == 9
    edge = tile_windows(384, 384, 100, drop_incomplete=False)
    assert len(edge) == 16 and (edge[-1].height, edge[-1].width) == (84, 84)
    assert tile_windows(64, 64, 128) == []
    assert [(w.row_off, w.col_off) for w in tile_windows(10, 20, (10, 8))] == [(0, 0), (0, 8)]


def test_iter_tiles_count_transform_and_values(scene_dir: Path, scene_full) -> None:
    tiles = list(iter_tiles(scene_dir, 128))
    assert len(tiles) == 9
    x0, y0 = scene_full.transform.c, scene_full.transform.f
    for tile in tiles:
        row, col = int(tile.window.row_off), int(tile.window.col_off)
        assert tile.array.shape == (13, 128, 128)
        assert (tile.transform.c, tile.transform.f) == (x0 + col * 10.0, y0 - row * 10.0)
        assert tile.transform.a == 10.0 and tile.transform.e == -10.0
        np.testing.assert_array_equal(tile.array, scene_full.array[:, row : row + 128, col : col + 128])
    assert len(list(iter_tiles(scene_dir, 100, stride=50, bands=["B02"]))) == 36
    assert len(list(iter_tiles(scene_dir, 100, drop_incomplete=False, bands=["B02"]))) == 16
    coarse = list(iter_tiles(scene_dir, 96, target_resolution=20, bands=["B05", "B02"]))
    assert len(coarse) == 4 and coarse[-1].transform.c == x0 + 96 * 20


# --- bad inputs -----------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RasterNotFoundError, match="no such file"):
        read_raster(tmp_path / "nothing_B04.tif")
    with pytest.raises(FileNotFoundError):
        read_raster([tmp_path / "nothing_B04.tif"])


def test_not_a_raster(tmp_path: Path) -> None:
    path = tmp_path / "notes_B04.tif"
    path.write_text("this is not an image")
    with pytest.raises(RasterReadError, match="could not be opened as a raster") as info:
        read_raster(path)
    assert str(path) in str(info.value)


def test_truncated_geotiff(sample_data: Path, tmp_path: Path) -> None:
    source = next((sample_data / "bigearthnet").glob("*/*_B02.tif"))
    path = Path(shutil.copy(source, tmp_path / source.name))
    os.truncate(path, path.stat().st_size // 2)
    assert raster_info(path).band_names == ["B02"]  # the header is intact ...
    with pytest.raises(RasterReadError, match="truncated or corrupt") as info:
        read_raster(path)  # ... the pixels are not
    assert str(path) in str(info.value)
    with pytest.raises(RasterReadError, match="truncated or corrupt"):
        check_raster(path)
    os.truncate(path, 100)  # header gone too
    with pytest.raises(RasterReadError, match="could not be opened"):
        read_raster(path)


def test_band_files_that_cannot_be_aligned(scene_dir: Path, tmp_path: Path) -> None:
    b04, b05 = band_file(scene_dir, "B04"), band_file(scene_dir, "B05")
    with rasterio.open(b05) as dataset:
        transform = dataset.transform
    other_crs = write_like(b05, tmp_path / "crs_B05.tif", crs="EPSG:32632")
    with pytest.raises(RasterReadError, match="different coordinate reference systems"):
        read_raster([b04, other_crs])
    shifted = write_like(
        b05,
        tmp_path / "shift_B05.tif",
        transform=rasterio.Affine(transform.a, 0, transform.c + 60, 0, transform.e, transform.f),
    )
    with pytest.raises(RasterReadError, match="do not cover the same extent") as info:
        read_raster([b04, shifted])
    assert "shift_B05.tif" in str(info.value)
    with pytest.raises(RasterReadError, match="repeat bands"):
        read_raster([b04, b04])


def test_empty_folder_and_unknown_band(scene_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no rasters here")
    with pytest.raises(RasterReadError, match="holds no raster file"):
        read_raster(tmp_path)
    with pytest.raises(RasterReadError, match="Empty list"):
        read_raster([])
    with pytest.raises(RasterReadError, match=r"\['B13'\] are not among"):
        read_raster(scene_dir, bands=["B02", "B13"])
