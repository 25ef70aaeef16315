"""A new user's pass over real-looking data: silent wrong answers and unclear errors in the readers, the image
processor, the feature-extraction pipeline and `examples/predict_scene.py`.

Every raster is a small synthetic file written to tmp_path; each test failed before its fix.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window
from transformers import pipeline

from modeling_s2mae import S2MAEConfig, S2MAEImageProcessor, S2MAEModel
from modeling_s2mae.data.raster import (
    RasterReadError,
    band_name_from_filename,
    expand_source,
    raster_info,
    read_raster,
    read_window,
)
from modeling_s2mae.data.transforms import valid_pixel_mask
from modeling_s2mae.pipelines import PIPELINE_TASK

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from predict_scene import ScenePredictor, predict_scene  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "image_size": 32, "patch_size": 8, "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
    "intermediate_size": 32, "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32,
}  # fmt: skip


def write_tif(
    path: Path, array: np.ndarray, names: list[str] | None, res: float = 10.0, mask: np.ndarray | None = None, **kw
) -> Path:
    """Write (C, H, W) `array` as a GeoTIFF with band descriptions `names` and optionally an internal GDAL mask."""
    profile = {
        "driver": kw.pop("driver", "GTiff"), "height": array.shape[1], "width": array.shape[2], "count": array.shape[0],
        "dtype": array.dtype, "crs": "EPSG:32633", "transform": from_origin(500000, 5000080, res, res),
    }  # fmt: skip
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile, **kw) as dst:
        dst.write(array)
        if names is not None:
            dst.descriptions = tuple(names)
        if mask is not None:
            dst.write_mask(mask)
    return path


# --- the image processor ------------------------------------------------------------------------------------------


def test_masked_arrays_keep_their_masked_pixels_out() -> None:
    """`src.read(masked=True)` gives a numpy masked array: its mask used to be dropped, the fill values taken as data."""
    rng = np.random.default_rng(0)
    tile = rng.integers(100, 5000, size=(12, 16, 16)).astype(np.uint16)
    tile[:, :4] = 0
    processor = S2MAEImageProcessor(size=16)
    masked = processor(np.ma.masked_equal(tile, 0), return_tensors="pt")
    expected = processor(tile, nodata=0, return_tensors="pt")
    assert int(masked["pixel_mask"].sum()) == 12 * 16
    torch.testing.assert_close(masked["pixel_values"], expected["pixel_values"])
    torch.testing.assert_close(masked["pixel_mask"], expected["pixel_mask"])


def test_a_float32_nodata_that_float64_cannot_spell_is_masked(tmp_path: Path) -> None:
    """A float32 file that declares no nodata, read with nodata=-0.1 (`--nodata -0.1` in the scripts) holds
    float32(-0.1) in its pixels: the processor, which works in float64, used to take every nodata pixel for data."""
    image = np.random.default_rng(1).random((12, 16, 16), dtype=np.float32)
    image[:, :, :5] = np.float32(-0.1)
    path = write_tif(tmp_path / "float32.tif", image, list(S2MAEImageProcessor().band_names))
    sample = read_raster(path, nodata=-0.1)
    assert sample.nodata == -0.1 and sample.array.dtype == np.float32
    out = S2MAEImageProcessor(size=16)(sample.array, nodata=sample.nodata, return_tensors="pt")
    assert int(out["pixel_mask"].sum()) == 16 * 11
    # the same pixels once widened to float64 by the user: the transforms' mask agrees with the processor's
    assert valid_pixel_mask(sample.array.astype(np.float64), sample.nodata).sum() == 16 * 11


# --- the readers --------------------------------------------------------------------------------------------------


def test_a_nan_nodata_file_and_an_integer_file_on_one_grid(tmp_path: Path) -> None:
    """A float32 band with NaN nodata read with a uint16 band (nodata 0): rewriting the uint16 file's nodata as NaN
    used to fail with numpy's 'cannot convert float NaN to integer'."""
    float_band = np.full((1, 8, 8), 0.25, np.float32)
    float_band[0, 0] = np.nan
    int_band = np.full((1, 8, 8), 7, np.uint16)
    int_band[0, 1, :3] = 0
    paths = [
        write_tif(tmp_path / "x_B02.tif", float_band, ["B02"], nodata=float("nan")),
        write_tif(tmp_path / "x_B03.tif", int_band, ["B03"], nodata=0),
    ]
    sample = read_raster(paths)
    assert sample.array.dtype == np.float32 and np.isnan(sample.nodata)
    assert np.isnan(sample.array[1, 1, :3]).all() and (sample.array[1, 1, 3:] == 7).all()
    assert np.isnan(sample.array[0, 0]).all()


def test_pixels_hidden_by_a_gdal_mask_are_nodata(tmp_path: Path) -> None:
    """A GeoTIFF whose missing pixels are marked by an internal mask (no nodata value) used to have those pixels
    read as data (zeros)."""
    mask = np.full((8, 8), 255, np.uint8)
    mask[:, :3] = 0
    ints = write_tif(tmp_path / "m_B02.tif", np.full((1, 8, 8), 500, np.uint16), ["B02"], mask=mask)
    assert raster_info(ints).nodata is None  # headers only: the builders list such files before nodata is known
    with pytest.raises(RasterReadError, match="nodata=") as error:
        read_raster(ints)
    assert "mask" in str(error.value) and "m_B02.tif" in str(error.value)
    sample = read_raster(ints, nodata=0)
    assert sample.nodata == 0 and (sample.array[0, :, :3] == 0).all() and (sample.array[0, :, 3:] == 500).all()
    floats = write_tif(tmp_path / "f_B02.tif", np.full((1, 8, 8), 0.5, np.float32), ["B02"], mask=mask)
    sample = read_raster(floats)
    assert np.isnan(sample.nodata) and np.isnan(sample.array[0, :, :3]).all() and (sample.array[0, :, 3:] == 0.5).all()
    # a masked band at 20 m, resampled onto the 10 m grid of another band
    coarse_mask = np.full((4, 4), 255, np.uint8)
    coarse_mask[:, 3] = 0
    coarse = write_tif(tmp_path / "m_B05.tif", np.full((1, 4, 4), 9, np.uint16), ["B05"], res=20.0, mask=coarse_mask)
    fine = write_tif(tmp_path / "n_B04.tif", np.full((1, 8, 8), 3, np.uint16), ["B04"])
    sample = read_raster([fine, coarse], nodata=0)
    assert (sample.array[1, :, 6:] == 0).all() and (sample.array[1, :, :6] == 9).all() and (sample.array[0] == 3).all()


def test_a_huge_declared_grid_is_refused_before_allocating(tmp_path: Path) -> None:
    """A 400 KiB sparse GeoTIFF declaring 2 x 60000 x 60000 uint16 (13.4 GiB): a whole-file read used to allocate it
    all (exhausting memory); windows of it still read."""
    path = tmp_path / "huge.tif"
    profile = {
        "driver": "GTiff", "height": 60000, "width": 60000, "count": 2, "dtype": "uint16", "crs": "EPSG:32633",
        "transform": from_origin(0, 0, 10, 10), "tiled": True, "compress": "deflate", "sparse_ok": True,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = ("B01", "B02")
    assert raster_info(path).height == 60000  # headers only
    with pytest.raises(RasterReadError, match="GiB limit.*read_window"):
        read_raster(path)
    assert read_window(path, Window(100, 200, 32, 32)).array.shape == (2, 32, 32)


def test_landsat_band_files_keep_landsat_band_names(tmp_path: Path) -> None:
    """Landsat-7 per-band files `<scene id>_b3.tif` used to be named Sentinel-2 "B03" (green, 560 nm) although
    Landsat-7 b3 is red; they keep the Landsat names and get no Sentinel-2 wavelength."""
    scene = tmp_path / "LE70350322011222EDC00"
    scene.mkdir()
    for band in ("b3", "b4", "b5"):
        write_tif(scene / f"LE70350322011222EDC00_{band}.tif", np.ones((1, 4, 4), np.int16), None, nodata=-9999)
    info = raster_info(scene)
    assert info.band_names == ["B3", "B4", "B5"] and info.band_wavelengths is None
    assert band_name_from_filename("LC08_L2SP_044034_20200101_20200823_02_T1_SR_B4.TIF") == "B4"
    assert band_name_from_filename("T33UUU_20170216T102101_B04.jp2") == "B04"  # Sentinel-2 names unchanged
    for name in ("LC08_X_B2.TIF", "LC08_X_B10.TIF", "LC08_X_B1.TIF"):  # Landsat 8: B2 before B10
        write_tif(tmp_path / name, np.ones((1, 4, 4), np.uint16), None)
    files = [p.name for p in expand_source(tmp_path) if p.name.startswith("LC08")]
    assert files == ["LC08_X_B1.TIF", "LC08_X_B2.TIF", "LC08_X_B10.TIF"]


# --- pipeline and scene prediction --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> S2MAEModel:
    torch.manual_seed(0)
    return S2MAEModel(S2MAEConfig(**TINY)).eval()


def test_the_pipeline_takes_a_raster_sample_and_a_data_format(encoder: S2MAEModel, tmp_path: Path) -> None:
    """A `RasterSample` (what the readers return) used to be refused; an ambiguous shape asked for
    `input_data_format`, which the pipeline refused as an unknown argument."""
    processor = S2MAEImageProcessor(size=32, scaling="reflectance")
    extractor = pipeline(PIPELINE_TASK, model=encoder, image_processor=processor)
    rng = np.random.default_rng(2)
    names = list(reversed(processor.band_names))
    array = rng.integers(1, 10000, size=(12, 40, 24)).astype(np.uint16)
    array[:, :6] = 0
    sample = read_raster(write_tif(tmp_path / "scene.tif", array, names, nodata=0))
    from_sample = extractor(sample, return_tensors=True)
    from_array = extractor(sample.array, input_band_names=names, nodata=0, return_tensors=True)
    torch.testing.assert_close(from_sample, from_array)
    square = rng.integers(1, 10000, size=(12, 20, 12)).astype(np.uint16)  # first and last axes both 12
    features = extractor(square, input_data_format="channels_last", return_tensors=True)
    expected = extractor(np.ascontiguousarray(square.transpose(2, 0, 1)), return_tensors=True)
    torch.testing.assert_close(features, expected)


def test_scene_embeddings_stay_on_the_patch_grid_of_a_non_square_scene(encoder: S2MAEModel, tmp_path: Path) -> None:
    """A 45 x 70 scene (45 - 32 = 13 not a multiple of the 8 px patch): the last window used to start at row 13, so
    its patches were written one output pixel up but 5 px off, against the output's georeference."""
    processor = S2MAEImageProcessor(size=32, scaling="reflectance")
    array = np.random.default_rng(3).integers(100, 5000, size=(12, 45, 70)).astype(np.uint16)
    scene = write_tif(tmp_path / "scene.tif", array, list(processor.band_names), nodata=0)
    predictor = ScenePredictor(encoder, processor, [scene])
    with rasterio.open(predict_scene(predictor, tmp_path / "emb.tif", overlap=0)) as out:
        embeddings, transform = out.read(), out.transform
    assert embeddings.shape == (16, 5, 8) and transform.a == 80.0 and not np.isnan(embeddings).any()
    aligned, _ = predictor(Window(0, 8, 32, 32))  # pixels 8..40: output rows 1..4
    np.testing.assert_allclose(embeddings[:, 4, :4], aligned.numpy()[:, 3, :4], rtol=1e-5, atol=1e-5)


def test_a_truncated_jpeg2000_is_an_error_not_zeros(tmp_path: Path) -> None:
    """GDAL decodes the blocks of a multi-block JPEG2000 read on worker threads whose errors are lost: a truncated
    .jp2 used to read as zeros, silently, whole or by window, and also resampled onto another band's grid."""
    rng = np.random.default_rng(4)
    band = rng.integers(1, 10000, size=(1, 256, 256)).astype(np.uint16)
    whole = write_tif(tmp_path / "whole_B05.jp2", band, ["B05"], res=20.0, driver="JP2OpenJPEG",
                      blockxsize=64, blockysize=64, quality=100, reversible=True)  # fmt: skip
    data = whole.read_bytes()
    truncated = tmp_path / "cut_B05.jp2"
    truncated.write_bytes(data[: len(data) // 2])
    assert read_raster(whole).array.shape == (1, 256, 256)
    with pytest.raises(RasterReadError, match="cut_B05.jp2.*truncated or corrupt"):
        read_raster(truncated)
    with pytest.raises(RasterReadError, match="truncated or corrupt"):
        read_window(truncated, Window(0, 192, 128, 64))
    fine = write_tif(tmp_path / "fine_B04.tif", np.ones((1, 512, 512), np.uint16), ["B04"])
    with pytest.raises(RasterReadError, match="cut_B05.jp2"):
        read_raster([fine, truncated])


def test_partly_missing_band_descriptions_are_named(tmp_path: Path) -> None:
    """A file describing only some of its bands used to be reported as having "no band descriptions"."""
    path = write_tif(tmp_path / "partial.tif", np.ones((3, 4, 4), np.uint16), None)
    with rasterio.open(path, "r+") as dst:
        dst.set_band_description(1, "B02")
        dst.set_band_description(3, "B04")
    with pytest.raises(RasterReadError, match=r"missing for band\(s\) \[2\]"):
        read_raster(path)


def test_a_scene_smaller_than_the_tile_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 20 x 1 px scene cut into 32 px tiles used to fail with a bare "No sample found"."""
    from modeling_s2mae.data.sources import collect_records

    scene = write_tif(tmp_path / "thin.tif", np.ones((12, 20, 1), np.uint16), list(S2MAEImageProcessor().band_names))
    with pytest.raises(RasterReadError, match="smaller than the 32 px tile.*--tile_size"):
        collect_records(scenes=[scene], tile_size=32)
    assert "thin (20 x 1 px) is smaller than the 32 px tile" in caplog.text


def test_a_declared_scale_and_offset_are_named_once_not_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    array = np.full((2, 8, 8), 2000, dtype=np.uint16)
    path = write_tif(tmp_path / "scaled.tif", array, ["B04", "B08"])
    with rasterio.open(path, "r+") as dst:
        dst.scales, dst.offsets = (1e-4, 1e-4), (-0.1, -0.1)
    plain = write_tif(tmp_path / "plain.tif", array, ["B04", "B08"])
    with caplog.at_level("WARNING", logger="modeling_s2mae.data.raster"):
        sample = read_raster(path)
        read_window(path, Window(0, 0, 4, 4))
        read_raster(plain)
    assert sample.array.dtype == np.uint16 and int(sample.array[0, 0, 0]) == 2000  # as stored
    warnings = [record.getMessage() for record in caplog.records if "not applied" in record.getMessage()]
    assert len(warnings) == 1 and "scaled.tif" in warnings[0]
    assert "reflectance_scale=10000, reflectance_offset=-1000" in warnings[0]
