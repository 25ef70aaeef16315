"""Tests of modeling_s2mae.data.majortom on rows written in the Major-TOM Core schema from the real T33UUU bands."""

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import rasterio
from affine import Affine
from majortom_rows import (
    band_path,
    cloud_mask,
    encode_band,
    make_row,
    sample_rows,
    scene_extent,
    write_majortom_repo,
    write_sample_majortom_repo,
)
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from modeling_s2mae import S2MAEImageProcessor
from modeling_s2mae.data import RasterReadError, read_raster
from modeling_s2mae.data import majortom as majortom_module
from modeling_s2mae.data.majortom import (
    CORE_S2L1C_BANDS,
    CORE_S2L2A_BANDS,
    MajorTOMStats,
    decode_majortom_row,
    load_majortom,
    majortom_cloud_mask,
    majortom_samples,
)


@pytest.fixture(scope="module")
def scene_dir(sample_data: Path) -> Path:
    return sample_data / "sentinel2_scene"


@pytest.fixture(scope="module")
def rows(scene_dir: Path) -> list[dict[str, Any]]:
    """Clear, cloudy (top-left 128 x 128), left half nodata: see `majortom_rows.sample_rows`."""
    return sample_rows(scene_dir)


@pytest.fixture(scope="module")
def repo(scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_majortom_repo(tmp_path_factory.mktemp("hub") / "Core-S2L2A", scene_dir)


def _reference_grid(scene_dir: Path) -> tuple[Affine, int, int, Any]:
    with rasterio.open(band_path(scene_dir, "B02")) as src:
        return src.transform, src.width, src.height, src.crs


def test_load_majortom_streams_the_hub_layout(repo: Path, rows: list[dict[str, Any]]) -> None:
    assert sorted(path.name for path in (repo / "images").iterdir()) == ["part_00001.parquet", "part_00002.parquet"]
    dataset = load_majortom(repo)
    assert isinstance(dataset, datasets.IterableDataset)
    assert dataset.n_shards == 2  # streaming shards = parquet files
    loaded = list(dataset)
    assert [row["grid_cell"] for row in loaded] == [row["grid_cell"] for row in rows]
    for name in (*CORE_S2L2A_BANDS, "cloud_mask"):
        assert loaded[2][name] == rows[2][name]  # the GeoTIFF bytes come back unchanged
    assert loaded[0]["thumbnail"]["bytes"].startswith(b"\x89PNG")  # left undecoded
    assert "B10" not in loaded[0]
    metadata = datasets.load_dataset(str(repo), "metadata", split="train")
    assert metadata["parquet_url"] == ["images/part_00001.parquet"] * 2 + ["images/part_00002.parquet"]
    assert metadata["parquet_row"] == [0, 1, 0] and metadata["cloud_cover"][1] == pytest.approx(100 / 9)


def test_load_majortom_map_style_and_columns(repo: Path) -> None:
    dataset = load_majortom(repo, streaming=False, columns=["grid_cell", "B04", "B05"])
    assert isinstance(dataset, datasets.Dataset) and dataset.column_names == ["grid_cell", "B04", "B05"]
    sample = decode_majortom_row(dataset[0])
    assert sample.band_names == ["B04", "B05"] and sample.array.shape == (2, 384, 384)


def test_load_majortom_rejects_other_datasets(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict({"id": ["a"], "image": [b"x"]}).to_parquet(tmp_path / "data" / "train.parquet")
    with pytest.raises(ValueError, match="grid_cell"):
        load_majortom(tmp_path)


def test_decoded_bands_equal_a_direct_read_and_resample(scene_dir: Path, rows: list[dict[str, Any]]) -> None:
    sample = decode_majortom_row(rows[0])
    transform, width, height, crs = _reference_grid(scene_dir)
    assert sample.band_names == list(CORE_S2L2A_BANDS)
    assert sample.array.shape == (12, 384, 384) and sample.array.dtype == np.uint16
    assert sample.transform == transform and sample.crs == crs and sample.nodata == 0
    assert sample.source == ["583U_154R/" + rows[0]["product_id"]]
    for index, band in enumerate(CORE_S2L2A_BANDS):
        with rasterio.open(band_path(scene_dir, band)) as src:
            if src.res == (10.0, 10.0):
                expected = src.read(1)
            else:
                with WarpedVRT(
                    src,
                    crs=src.crs,
                    transform=transform,
                    width=width,
                    height=height,
                    resampling=Resampling.bilinear,
                    src_nodata=0,
                    nodata=0,
                ) as vrt:
                    expected = vrt.read(1)
        np.testing.assert_array_equal(sample.array[index], expected, err_msg=band)
    files = [band_path(scene_dir, band) for band in CORE_S2L2A_BANDS]
    np.testing.assert_array_equal(sample.array, read_raster(files, nodata=0).array)


def test_decode_selects_and_orders_bands_by_name(rows: list[dict[str, Any]]) -> None:
    full = decode_majortom_row(rows[0])
    picked = decode_majortom_row(rows[0], bands=["b8a", "B4", "B01"])
    assert picked.band_names == ["B8A", "B04", "B01"]
    np.testing.assert_array_equal(picked.array, full.select(["B8A", "B04", "B01"]).array)
    coarse = decode_majortom_row(rows[0], bands=["B05", "B01"])  # the finest *requested* band sets the grid
    assert coarse.array.shape == (2, 192, 192) and coarse.resolution == (20.0, 20.0)


def test_decode_l1c_rows_with_b10(scene_dir: Path) -> None:
    row = make_row(scene_dir, grid_cell="583U_154R", bands=CORE_S2L1C_BANDS)
    sample = decode_majortom_row(row)
    assert sample.band_names == list(CORE_S2L1C_BANDS) and sample.array.shape == (13, 384, 384)
    with rasterio.open(band_path(scene_dir, "B10")) as src:
        assert sample.select(["B10"]).array.mean() == pytest.approx(src.read(1).mean(), rel=0.01)


def test_files_without_a_nodata_tag_use_zero(scene_dir: Path) -> None:
    row = make_row(scene_dir, grid_cell="c", bands=["B02", "B05"], nodata=None)
    assert decode_majortom_row(row).nodata == 0


def test_missing_band_is_a_clear_error(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(RasterReadError, match=r"583U_154R.*\['B10'\].*Core-S2L1C"):
        decode_majortom_row(rows[0], bands=["B04", "B10"])
    row = {key: value for key, value in rows[0].items() if key != "B05"}
    with pytest.raises(RasterReadError, match=r"grid_cell '583U_154R'.*\['B05'\] missing"):
        decode_majortom_row(row, bands=CORE_S2L2A_BANDS)
    assert "B05" not in decode_majortom_row(row).band_names  # by default: the bands the row has
    with pytest.raises(RasterReadError, match=r"\['B05'\] missing"):
        list(majortom_samples([row], tile_size=128, bands=CORE_S2L2A_BANDS))


def _vrt_payload(scene_dir: Path) -> bytes:
    """A VRT that would read a local file through GDAL if any driver but GTiff were allowed."""
    local_file = band_path(scene_dir, "B04")
    return (
        '<VRTDataset rasterXSize="384" rasterYSize="384"><VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{local_file}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    ).encode()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_vrt_payload_in_a_band_column_is_refused(
    scene_dir: Path, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _vrt_payload(scene_dir)
    with rasterio.MemoryFile(payload) as memory_file, memory_file.open() as dataset:
        assert dataset.driver == "VRT" and dataset.read(1).any()  # what an unrestricted open would do
    hostile = {**rows[0], "B04": payload}
    with pytest.raises(RasterReadError, match=r"grid_cell '583U_154R'.*column 'B04'.*not a GeoTIFF"):
        decode_majortom_row(hostile)
    with pytest.raises(RasterReadError, match=r"column 'cloud_mask'.*not a GeoTIFF"):
        majortom_cloud_mask({**rows[0], "cloud_mask": payload}, decode_majortom_row(rows[0]))
    # Second layer: with the signature check out of the way, the GTiff-only driver list still refuses it.
    monkeypatch.setattr(majortom_module, "_TIFF_SIGNATURES", (*majortom_module._TIFF_SIGNATURES, b"<VRTDataset"))
    with pytest.raises(RasterReadError, match=r"column 'B04'.*Only the GTiff driver is allowed"):
        decode_majortom_row(hostile)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_oversized_or_multiband_geotiffs_are_refused(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(RasterReadError, match=r"column 'B02'.*384 x 384 pixels, more than max_pixels=10000"):
        decode_majortom_row(rows[0], bands=["B02"], max_pixels=10_000)
    with rasterio.MemoryFile() as memory_file:
        profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 2, "dtype": "uint16"}
        with memory_file.open(**profile) as dataset:
            dataset.write(np.ones((2, 8, 8), np.uint16))
        two_bands = memory_file.read()
    with pytest.raises(RasterReadError, match=r"column 'B02'.*2 bands"):
        decode_majortom_row({**rows[0], "B02": two_bands}, bands=["B02"])
    with pytest.raises(RasterReadError, match=r"column 'B03'.*got NoneType"):
        majortom_module._decode_geotiff(None, "x", "B03", 100)


def test_misaligned_bands_are_refused(scene_dir: Path, rows: list[dict[str, Any]]) -> None:
    with rasterio.open(band_path(scene_dir, "B05")) as src:
        shifted = encode_band(src.read(1), src.transform @ Affine.translation(3, 0), src.crs)
    with pytest.raises(RasterReadError, match=r"column 'B05' covers .* same extent"):
        decode_majortom_row({**rows[0], "B05": shifted})


def test_tiles_count_shape_ids_and_transforms(rows: list[dict[str, Any]]) -> None:
    full = decode_majortom_row(rows[0])
    samples = majortom_samples(rows[:1], tile_size=128)
    tiles = list(samples)
    assert [tile.id for tile in tiles] == [f"583U_154R/r{r}_c{c}" for r in (0, 128, 256) for c in (0, 128, 256)]
    assert samples.stats == MajorTOMStats(rows=1, tiles=9, tiles_kept=9)
    for tile in tiles:
        row_off, col_off = int(tile.raster.window.row_off), int(tile.raster.window.col_off)
        assert tile.group == "583U_154R" and tile.raster.band_names == list(CORE_S2L2A_BANDS)
        assert tile.raster.array.shape == (12, 128, 128) and tile.raster.array.dtype == np.uint16
        assert tile.raster.transform == full.transform @ Affine.translation(col_off, row_off)
        assert tile.raster.transform.c == 335760.0 + 10 * col_off and tile.raster.crs == full.crs
        np.testing.assert_array_equal(
            tile.raster.array, full.array[:, row_off : row_off + 128, col_off : col_off + 128]
        )
    overlapping = majortom_samples(rows[:1], tile_size=(128, 96), stride=64, bands=["B04"])
    assert sum(1 for _ in overlapping) == 5 * 5  # row origins 0..256, column origins 0..256 step 64
    assert list(majortom_samples(rows[:1], tile_size=512)) == []


def test_cloudy_tiles_are_dropped_and_counted(rows: list[dict[str, Any]]) -> None:
    cloudy_row = rows[1]  # thick cloud (1) over the top-left 128 x 128 pixels
    samples = majortom_samples([cloudy_row], tile_size=128, max_cloud_fraction=0.5)
    assert "583U_155R/r0_c0" not in [tile.id for tile in samples]
    assert samples.stats.as_dict() == {
        "rows": 1,
        "rows_skipped": 0,
        "tiles": 9,
        "tiles_kept": 8,
        "tiles_nodata": 0,
        "tiles_cloudy": 1,
    }
    # Tiles straddling the cloud: 64 x 64 tiles at stride 32 around the cloud edge hold 50 % or 25 % cloud.
    kept = {tile.id for tile in majortom_samples([cloudy_row], tile_size=64, stride=32, max_cloud_fraction=0.3)}
    assert "583U_155R/r96_c64" not in kept and "583U_155R/r64_c96" not in kept  # 50 % cloud
    assert "583U_155R/r96_c96" in kept and "583U_155R/r96_c128" in kept  # 25 % and no cloud
    assert len(list(majortom_samples([cloudy_row], tile_size=128))) == 9  # no filtering asked: mask not read
    only_shadow = list(majortom_samples([cloudy_row], tile_size=128, max_cloud_fraction=0.0, cloud_classes=[3]))
    assert len(only_shadow) == 9


def test_cloud_mask_on_its_own_grid_is_resampled_nearest(scene_dir: Path) -> None:
    coarse = cloud_mask((64, 64), [(0, 10, 0, 10)], value=2)  # 60 m mask: thin cloud over 600 m x 600 m
    coarse[30, 40] = 1
    row = make_row(scene_dir, grid_cell="c", bands=["B02", "B05"], mask=coarse)
    sample = decode_majortom_row(row)
    mask = majortom_cloud_mask(row, sample)
    assert mask.band_names == ["cloud_mask"] and mask.array.shape == (1, 384, 384)
    np.testing.assert_array_equal(mask.array[0], np.kron(coarse, np.ones((6, 6), np.uint8)))
    tiles = majortom_samples([row], tile_size=60, max_cloud_fraction=0.0)
    dropped = {f"c/r{r}_c{c}" for r in range(0, 384 - 59, 60) for c in range(0, 384 - 59, 60)} - {t.id for t in tiles}
    assert dropped == {"c/r0_c0", "c/r180_c240"}  # the cloud block and the one 60 m cloudy pixel
    with pytest.raises(RasterReadError, match="no 'cloud_mask' column"):
        majortom_cloud_mask({k: v for k, v in row.items() if k != "cloud_mask"}, sample)


def test_nodata_tiles_are_skipped_and_counted(rows: list[dict[str, Any]], scene_dir: Path) -> None:
    half_empty = rows[2]  # x < left + 1920 m (columns 0..191 at 10 m) nodata in every band
    valid = np.all(decode_majortom_row(half_empty).array != 0, axis=0)
    valid_clear = np.all(decode_majortom_row(rows[0]).array != 0, axis=0)  # B8A has one real 0 (nodata) pixel
    assert (~valid_clear).sum() == 4
    np.testing.assert_array_equal(valid, valid_clear & (np.arange(384) >= 192)[None, :])
    samples = majortom_samples([half_empty], tile_size=128)
    assert [tile.id for tile in samples] == [f"584U_154R/r{r}_c256" for r in (0, 128, 256)]
    assert samples.stats == MajorTOMStats(rows=1, tiles=9, tiles_kept=3, tiles_nodata=6)
    half_kept = majortom_samples([half_empty], tile_size=128, min_valid_fraction=0.5)  # column 128 tiles: 50 %
    assert len(list(half_kept)) == 6 and half_kept.stats.tiles_nodata == 3
    everything = majortom_samples([half_empty], tile_size=128, min_valid_fraction=0.0)
    assert len(list(everything)) == 9


def test_bad_rows_raise_or_are_skipped(scene_dir: Path, rows: list[dict[str, Any]]) -> None:
    hostile = {**rows[1], "B08": _vrt_payload(scene_dir)}
    with pytest.raises(RasterReadError, match=r"583U_155R.*'B08'"):
        list(majortom_samples([rows[0], hostile], tile_size=128))
    samples = majortom_samples([rows[0], hostile, rows[2]], tile_size=128, skip_bad_rows=True)
    assert len(list(samples)) == 9 + 3
    assert samples.stats.rows == 2 and samples.stats.rows_skipped == 1
    assert "1 skipped" in str(samples.stats)


def test_invalid_arguments(rows: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="max_cloud_fraction"):
        majortom_samples(rows, tile_size=128, max_cloud_fraction=1.5)
    with pytest.raises(ValueError, match="min_valid_fraction"):
        majortom_samples(rows, tile_size=128, min_valid_fraction=-0.1)
    with pytest.raises(ValueError, match="tile_size"):
        majortom_samples(rows, tile_size=0)
    with pytest.raises(ValueError, match="Unknown resampling"):
        decode_majortom_row(rows[0], resampling="sharpest")
    with pytest.raises(ValueError, match=r"\['cloud_mask'\] are not Sentinel-2 band columns"):
        decode_majortom_row(rows[0], bands=["B04", "cloud_mask"])
    with pytest.raises(ValueError, match="repeats"):
        decode_majortom_row(rows[0], bands=["B04", "B4"])
    with pytest.raises(RasterReadError, match="has no band column"):
        decode_majortom_row({"grid_cell": "x", "product_id": "p"})


def test_streamed_tiles_feed_the_image_processor(repo: Path) -> None:
    samples = majortom_samples(load_majortom(repo), tile_size=128, max_cloud_fraction=0.5)
    processor = S2MAEImageProcessor(size=128)
    batch = [next(samples) for _ in range(2)]
    inputs = processor(
        [tile.raster.array for tile in batch],
        input_band_names=batch[0].raster.band_names,
        nodata=batch[0].raster.nodata,
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (2, 12, 128, 128) and bool(inputs["pixel_mask"].all())
    rest = list(samples)
    assert len(batch) + len(rest) == 9 + 8 + 3 and samples.stats.tiles_cloudy == 1
    assert samples.stats.tiles_nodata == 6 and samples.stats.rows == 3


def test_window_of_tiles_matches_read_raster_window(scene_dir: Path, rows: list[dict[str, Any]]) -> None:
    tile = next(majortom_samples(rows[:1], tile_size=128, stride=128))
    files = [band_path(scene_dir, band) for band in CORE_S2L2A_BANDS]
    direct = read_raster(files, nodata=0, window=Window(0, 0, 128, 128))
    np.testing.assert_array_equal(tile.raster.array, direct.array)
    assert tile.raster.transform == direct.transform and tuple(scene_extent(scene_dir))[0] == direct.transform.c


def test_write_majortom_repo_with_l1c_rows(scene_dir: Path, tmp_path: Path) -> None:
    root = write_majortom_repo(
        tmp_path / "Core-S2L1C", [make_row(scene_dir, grid_cell="1U_1R", bands=CORE_S2L1C_BANDS)], rows_per_file=1
    )
    row = next(iter(load_majortom(root)))
    assert "B10" in row and decode_majortom_row(row).band_names == list(CORE_S2L1C_BANDS)
