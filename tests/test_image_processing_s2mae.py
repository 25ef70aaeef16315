"""Tests of S2MAEImageProcessor on the repository's real sample tiles (EuroSAT-MS and a Sentinel-2 L1C crop)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from modeling_s2mae.configuration_s2mae import SENTINEL2_BANDS, S2MAEConfig
from modeling_s2mae.data import RasterSample
from modeling_s2mae.data.statistics import BandStatistics, compute_band_statistics
from modeling_s2mae.image_processing_s2mae import (
    EUROSAT_BAND_MEAN,
    EUROSAT_BAND_STD,
    EUROSAT_MS_BANDS,
    FMOW_SENTINEL_BAND_MEAN,
    FMOW_SENTINEL_BAND_STD,
    RESAMPLE_MODES,
    SCALING_METHODS,
    SENTINEL2_13_BANDS,
    S2MAEImageProcessor,
)

EUROSAT_FILES = (
    "AnnualCrop/AnnualCrop_1.tif", "AnnualCrop/AnnualCrop_2.tif", "AnnualCrop/AnnualCrop_3.tif",
    "Forest/Forest_1.tif", "Forest/Forest_2.tif", "Forest/Forest_3.tif",
)  # fmt: skip


def read_tif(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


@pytest.fixture(scope="module")
def eurosat_tiles(sample_data: Path) -> list[np.ndarray]:
    """The six EuroSAT-MS tiles, each (13, 64, 64) uint16 in the file order (B8A last)."""
    return [read_tif(sample_data / "eurosat_ms" / name) for name in EUROSAT_FILES]


@pytest.fixture(scope="module")
def eurosat_tile(eurosat_tiles: list[np.ndarray]) -> np.ndarray:
    return eurosat_tiles[0]


@pytest.fixture
def processor() -> S2MAEImageProcessor:
    return S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS)


def minmax(band: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    band = band.astype(np.float64)
    return (band - band.min()) / (band.max() - band.min() + eps)


def file_band(tile: np.ndarray, name: str, order: tuple[str, ...] = EUROSAT_MS_BANDS) -> np.ndarray:
    return tile[order.index(name)]


# ----------------------------------------------------------------------------------------------------------------
# Band constants and statistics


def test_band_order_constants():
    assert EUROSAT_MS_BANDS[12] == "B8A" and EUROSAT_MS_BANDS[8] == "B09"
    assert EUROSAT_MS_BANDS[9] == "B10"
    assert SENTINEL2_13_BANDS[8] == "B8A" and SENTINEL2_13_BANDS[10] == "B10"
    assert sorted(EUROSAT_MS_BANDS) == sorted(SENTINEL2_13_BANDS)
    assert S2MAEImageProcessor().band_names == list(SENTINEL2_BANDS)


def test_band_statistics_follow_the_documented_order():
    assert set(FMOW_SENTINEL_BAND_MEAN) == set(FMOW_SENTINEL_BAND_STD) == set(SENTINEL2_13_BANDS)
    assert set(EUROSAT_BAND_MEAN) == set(EUROSAT_BAND_STD) == set(SENTINEL2_BANDS)  # no B10
    # The method doc lists 13 values with B8A after B08 and B10 at index 10.
    assert FMOW_SENTINEL_BAND_MEAN["B8A"] == 1972.62 and FMOW_SENTINEL_BAND_MEAN["B09"] == 582.73
    assert FMOW_SENTINEL_BAND_MEAN["B10"] == 14.77 and FMOW_SENTINEL_BAND_STD["B10"] == 14.31
    assert FMOW_SENTINEL_BAND_STD["B12"] == 1087.60
    assert EUROSAT_BAND_MEAN["B8A"] == 2581.65 and EUROSAT_BAND_MEAN["B11"] == 2368.51
    assert EUROSAT_BAND_STD["B09"] == 1582.28 and EUROSAT_BAND_STD["B12"] == 1343.48


# ----------------------------------------------------------------------------------------------------------------
# Real tiles: bands are mapped by name


def test_eurosat_bands_mapped_by_name(processor, eurosat_tile):
    """Reflectance scaling at the native size keeps values, so every output band can be traced to its file band."""
    out = processor(eurosat_tile, scaling="reflectance", size=64, return_tensors="np")
    values = out["pixel_values"][0]
    assert values.shape == (12, 64, 64)
    for index, name in enumerate(processor.band_names):
        np.testing.assert_allclose(values[index] * 10000, file_band(eurosat_tile, name), rtol=1e-6)
    # The B8A-last trap: model band 8 (B8A) is file band 12, model band 9 (B09) is file band 8.
    np.testing.assert_allclose(values[8] * 10000, eurosat_tile[12], rtol=1e-6)
    np.testing.assert_allclose(values[9] * 10000, eurosat_tile[8], rtol=1e-6)
    assert not np.allclose(values[8] * 10000, eurosat_tile[8])
    np.testing.assert_array_equal(out["pixel_mask"], 1)


def test_eurosat_minmax_resized_to_128(processor, eurosat_tile):
    out = processor(eurosat_tile, return_tensors="pt")
    values = out["pixel_values"]
    assert values.shape == (1, 12, 128, 128) and values.dtype == torch.float32
    assert out["pixel_mask"].shape == (1, 128, 128) and out["pixel_mask"].dtype == torch.int64
    for model_index, file_index in ((8, 12), (9, 8), (0, 0), (11, 11)):
        scaled = torch.from_numpy(minmax(eurosat_tile[file_index])).float()[None, None]
        expected = F.interpolate(scaled, size=(128, 128), mode="bilinear", align_corners=False)[0, 0]
        torch.testing.assert_close(values[0, model_index], expected, atol=1e-6, rtol=0)
    assert values.min() >= 0 and values.max() <= 1


def test_t60hwb_crop_with_band_descriptions(sample_data):
    with rasterio.open(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif") as dataset:
        tile = dataset.read()
        names = dataset.descriptions
        assert dataset.nodata == 0 and dataset.crs is not None and dataset.count == 13
        assert (dataset.width, dataset.height) == (128, 128)
    assert names == SENTINEL2_13_BANDS
    processor = S2MAEImageProcessor(input_band_names=names, nodata=0, scaling="reflectance")
    out = processor(tile, return_tensors="np")
    assert out["pixel_values"].shape == (1, 12, 128, 128)
    for index, name in enumerate(processor.band_names):
        np.testing.assert_allclose(out["pixel_values"][0, index] * 10000, file_band(tile, name, names), rtol=1e-6)
    np.testing.assert_array_equal(out["pixel_mask"], 1)  # the crop holds no nodata pixel
    # The same tile with EuroSAT's order declared gives different bands: the names decide, not the positions.
    wrong = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, scaling="reflectance")(tile, size=128)
    assert not np.allclose(wrong["pixel_values"][0][8], out["pixel_values"][0, 8])


# ----------------------------------------------------------------------------------------------------------------
# Input forms


def test_channels_last_equals_channels_first(processor, eurosat_tile):
    expected = processor(eurosat_tile, return_tensors="pt")["pixel_values"]
    channels_last = np.ascontiguousarray(eurosat_tile.transpose(1, 2, 0))  # (64, 64, 13)
    torch.testing.assert_close(processor(channels_last, return_tensors="pt")["pixel_values"], expected)
    explicit = processor(channels_last, input_data_format="channels_last", return_tensors="pt")
    torch.testing.assert_close(explicit["pixel_values"], expected)
    as_tensor = processor(torch.from_numpy(channels_last.astype(np.int32)), return_tensors="pt")
    torch.testing.assert_close(as_tensor["pixel_values"], expected)


def test_list_and_batch_give_the_same_output(processor, eurosat_tiles):
    batch = np.stack(eurosat_tiles)  # (6, 13, 64, 64)
    from_batch = processor(batch, return_tensors="pt")
    from_list = processor(list(eurosat_tiles), return_tensors="pt")
    from_tensor = processor(torch.from_numpy(batch.astype(np.float32)), return_tensors="pt")
    assert from_batch["pixel_values"].shape == (6, 12, 128, 128)
    for key in ("pixel_values", "pixel_mask"):
        torch.testing.assert_close(from_list[key], from_batch[key])
        torch.testing.assert_close(from_tensor[key], from_batch[key])
    channels_last = processor(batch.transpose(0, 2, 3, 1), return_tensors="pt")
    torch.testing.assert_close(channels_last["pixel_values"], from_batch["pixel_values"])
    single = processor(eurosat_tiles[3], return_tensors="pt")
    torch.testing.assert_close(single["pixel_values"][0], from_batch["pixel_values"][3])


def test_list_of_different_sizes(processor, eurosat_tile):
    crop = eurosat_tile[:, :40, :48]
    out = processor([eurosat_tile, crop, eurosat_tile], size=32, return_tensors="pt")
    assert out["pixel_values"].shape == (3, 12, 32, 32)
    torch.testing.assert_close(out["pixel_values"][0], out["pixel_values"][2])
    torch.testing.assert_close(
        out["pixel_values"][1], processor(crop, size=32, return_tensors="pt")["pixel_values"][0]
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_supported_dtypes(dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, size=(12, 16, 16)).astype(dtype)
    processor = S2MAEImageProcessor(size=16)
    expected = np.stack([minmax(band) for band in image.astype(np.float64)])
    for given in (image, torch.from_numpy(image)):
        out = processor(given, return_tensors="np")
        assert out["pixel_values"].dtype == np.float32
        np.testing.assert_allclose(out["pixel_values"][0], expected, atol=1e-6)


def test_return_tensors_variants(processor, eurosat_tiles):
    as_pt = processor(eurosat_tiles[:2], return_tensors="pt")
    as_np = processor(eurosat_tiles[:2], return_tensors="np")
    as_list = processor(eurosat_tiles[:2])
    assert isinstance(as_pt["pixel_values"], torch.Tensor) and isinstance(as_np["pixel_values"], np.ndarray)
    assert isinstance(as_list["pixel_values"], list) and len(as_list["pixel_values"]) == 2
    assert as_list["pixel_values"][0].shape == (12, 128, 128) and as_list["pixel_mask"][0].shape == (128, 128)
    np.testing.assert_array_equal(as_np["pixel_values"], as_pt["pixel_values"].numpy())
    np.testing.assert_array_equal(np.stack(as_list["pixel_values"]), as_np["pixel_values"])
    assert as_np["pixel_mask"].dtype == np.int64
    assert processor.model_input_names == ["pixel_values", "pixel_mask"]
    with pytest.raises(ValueError, match="return_tensors"):
        processor(eurosat_tiles[0], return_tensors="tf")


# ----------------------------------------------------------------------------------------------------------------
# Scaling


def test_minmax_per_image_per_band(processor, eurosat_tiles):
    out = processor(np.stack(eurosat_tiles), size=64, return_tensors="np")["pixel_values"]
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out.min(axis=(2, 3)), 0, atol=1e-7)
    np.testing.assert_allclose(out.max(axis=(2, 3)), 1, atol=1e-5)
    for image_index, tile in enumerate(eurosat_tiles):
        np.testing.assert_allclose(out[image_index, 8], minmax(tile[12]), atol=1e-6)


def test_reflectance_is_clipped(processor, eurosat_tile):
    bright = eurosat_tile.astype(np.float32) * 4  # some values above 10000
    out = processor(bright, scaling="reflectance", size=64, return_tensors="np")["pixel_values"][0]
    assert out.min() >= 0 and out.max() == 1
    above = file_band(bright, "B8A") >= 10000
    assert above.any()
    np.testing.assert_array_equal(out[8][above], 1)
    offset = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, scaling="reflectance", reflectance_offset=-1000)
    shifted = offset(eurosat_tile, size=64, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(shifted[8], np.clip((eurosat_tile[12] - 1000.0) / 10000, 0, 1), rtol=1e-6)


def test_standardize_uses_stored_statistics(eurosat_tile):
    processor = S2MAEImageProcessor(
        input_band_names=EUROSAT_MS_BANDS,
        scaling="standardize",
        band_mean=EUROSAT_BAND_MEAN,
        band_std=EUROSAT_BAND_STD,
    )
    out = processor(eurosat_tile, size=64, return_tensors="np")["pixel_values"][0]
    for index, name in enumerate(processor.band_names):
        expected = (file_band(eurosat_tile, name) - EUROSAT_BAND_MEAN[name]) / EUROSAT_BAND_STD[name]
        np.testing.assert_allclose(out[index], expected, rtol=1e-5, atol=1e-6)
    assert out.min() < 0  # z-scores: not in [0, 1]


def test_sigma_scaling_in_unit_range(eurosat_tile):
    processor = S2MAEImageProcessor(
        input_band_names=EUROSAT_MS_BANDS,
        scaling="sigma",
        band_mean=FMOW_SENTINEL_BAND_MEAN,
        band_std=FMOW_SENTINEL_BAND_STD,
    )
    out = processor(eurosat_tile, size=64, return_tensors="np")["pixel_values"][0]
    assert out.min() >= 0 and out.max() <= 1
    name = "B8A"
    low = FMOW_SENTINEL_BAND_MEAN[name] - 2 * FMOW_SENTINEL_BAND_STD[name]
    expected = np.clip((eurosat_tile[12] - low) / (4 * FMOW_SENTINEL_BAND_STD[name]), 0, 1)
    np.testing.assert_allclose(out[8], expected, rtol=1e-5, atol=1e-6)
    # A value equal to the band's mean lands in the middle.
    at_mean = np.stack([np.full((4, 4), FMOW_SENTINEL_BAND_MEAN[n]) for n in EUROSAT_MS_BANDS])
    np.testing.assert_allclose(processor(at_mean, size=4, return_tensors="np")["pixel_values"], 0.5, atol=1e-6)


def test_statistics_are_looked_up_by_name_not_position(eurosat_tile):
    reversed_mean = dict(reversed(list(EUROSAT_BAND_MEAN.items())))
    kwargs = {"input_band_names": EUROSAT_MS_BANDS, "scaling": "standardize", "band_std": EUROSAT_BAND_STD}
    first = S2MAEImageProcessor(band_mean=EUROSAT_BAND_MEAN, **kwargs)(eurosat_tile, return_tensors="np")
    second = S2MAEImageProcessor(band_mean=reversed_mean, **kwargs)(eurosat_tile, return_tensors="np")
    np.testing.assert_array_equal(first["pixel_values"], second["pixel_values"])


@pytest.mark.parametrize("scaling", ["standardize", "sigma"])
def test_missing_statistics_raise_at_construction(scaling):
    with pytest.raises(ValueError, match="band_mean"):
        S2MAEImageProcessor(scaling=scaling)
    without_b8a = {name: value for name, value in EUROSAT_BAND_MEAN.items() if name != "B8A"}
    with pytest.raises(ValueError, match="B8A"):
        S2MAEImageProcessor(scaling=scaling, band_mean=without_b8a, band_std=EUROSAT_BAND_STD)
    with pytest.raises(ValueError, match="band_std must be > 0"):
        S2MAEImageProcessor(scaling=scaling, band_mean=EUROSAT_BAND_MEAN, band_std={**EUROSAT_BAND_STD, "B01": 0.0})
    with pytest.raises(ValueError, match="keyed by band name"):
        S2MAEImageProcessor(scaling=scaling, band_mean=list(EUROSAT_BAND_MEAN.values()), band_std=EUROSAT_BAND_STD)
    with pytest.raises(ValueError, match="band_mean"):
        S2MAEImageProcessor()(np.ones((12, 4, 4)), scaling=scaling)  # per-call scaling is checked too


@pytest.mark.parametrize("resample", RESAMPLE_MODES)
@pytest.mark.parametrize("scaling", ["minmax", "reflectance"])
def test_resample_modes_stay_in_unit_range(resample, scaling):
    checkerboard = (np.indices((16, 16)).sum(axis=0) % 2 * 10000).astype(np.uint16)  # values 0 and 10000
    image = np.repeat(checkerboard[None], 12, axis=0)
    processor = S2MAEImageProcessor(resample=resample, scaling=scaling)
    for size in (8, 40):  # down and up: bicubic overshoots when upsampling a checkerboard
        out = processor(image, size=size, return_tensors="pt")["pixel_values"]
        assert out.shape == (1, 12, size, size)
        assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_antialias_when_downsampling():
    image = torch.rand(12, 64, 64, generator=torch.Generator().manual_seed(0))
    processor = S2MAEImageProcessor(scaling="reflectance", reflectance_scale=1.0)
    for mode in ("bilinear", "bicubic"):
        out = processor(image, size=20, resample=mode, return_tensors="pt")["pixel_values"]
        smooth = F.interpolate(image[None], size=(20, 20), mode=mode, align_corners=False, antialias=True)
        aliased = F.interpolate(image[None], size=(20, 20), mode=mode, align_corners=False, antialias=False)
        torch.testing.assert_close(out, smooth.clamp(0, 1))
        assert not torch.allclose(out, aliased.clamp(0, 1), atol=1e-2)
        assert out.std() < aliased.std()  # averaging noise lowers its spread


# ----------------------------------------------------------------------------------------------------------------
# Invalid pixels


def test_nodata_and_nan_are_filled_and_masked(eurosat_tile):
    image = eurosat_tile.astype(np.float32)
    image[EUROSAT_MS_BANDS.index("B03"), 5, 7] = 0  # nodata in one band only
    image[EUROSAT_MS_BANDS.index("B8A"), 10, 20] = np.nan
    image[EUROSAT_MS_BANDS.index("B12"), 30, 31] = np.inf
    image[EUROSAT_MS_BANDS.index("B10"), 40, 40] = np.nan  # a dropped band: does not invalidate the pixel
    invalid = np.zeros((64, 64), dtype=bool)
    invalid[5, 7] = invalid[10, 20] = invalid[30, 31] = True
    processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, nodata=0)
    for scaling in ("minmax", "reflectance"):
        out = processor(image, scaling=scaling, size=64, return_tensors="np")
        values, mask = out["pixel_values"][0], out["pixel_mask"][0]
        assert np.isfinite(values).all()
        np.testing.assert_array_equal(mask, (~invalid).astype(np.int64))
        np.testing.assert_array_equal(values[:, invalid], 0)
    # Min-max statistics come from valid pixels only.
    b8a = image[12].astype(np.float64)
    valid_b8a = b8a[~invalid]
    expected = (b8a - valid_b8a.min()) / (valid_b8a.max() - valid_b8a.min() + 1e-6)
    out = processor(image, size=64, return_tensors="np")["pixel_values"][0, 8]
    np.testing.assert_allclose(out[~invalid], expected[~invalid], atol=1e-6)
    # Resized: no NaN, the mask is upsampled with nearest neighbour (each pixel becomes a 2 x 2 block).
    resized = processor(image, return_tensors="pt")
    assert torch.isfinite(resized["pixel_values"]).all()
    expected_mask = torch.from_numpy(~invalid).repeat_interleave(2, 0).repeat_interleave(2, 1).long()
    torch.testing.assert_close(resized["pixel_mask"][0], expected_mask)
    assert (resized["pixel_values"][0][:, expected_mask == 0] == 0).all()


def test_nodata_outliers_do_not_stretch_minmax(eurosat_tile):
    image = eurosat_tile.copy()
    image[:, :4, :4] = 65535
    clean = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, size=64)
    with_nodata = clean(image, nodata=65535, return_tensors="np")  # per-call nodata
    assert with_nodata["pixel_mask"][0, :4, :4].sum() == 0
    assert with_nodata["pixel_values"][0, :, 4:, 4:].max() > 0.99
    without = clean(image, return_tensors="np")  # 65535 taken as data squeezes the real values
    assert without["pixel_values"][0, :, 4:, 4:].max() < 0.5


def test_fully_invalid_image_raises(eurosat_tile):
    processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, nodata=0)
    with pytest.raises(ValueError, match=r"Images \[1\].*no valid pixel"):
        processor([eurosat_tile, np.zeros_like(eurosat_tile)])
    with pytest.raises(ValueError, match="no valid pixel"):
        processor(np.full((13, 8, 8), np.nan, dtype=np.float32))
    one_band_nan = eurosat_tile.astype(np.float64)
    one_band_nan[0] = np.nan  # every pixel invalid in B01, so invalid
    with pytest.raises(ValueError, match="no valid pixel"):
        processor(one_band_nan)


# ----------------------------------------------------------------------------------------------------------------
# Errors


def test_missing_band_is_named(eurosat_tile):
    names = [name if name != "B8A" else "B10b" for name in EUROSAT_MS_BANDS]
    processor = S2MAEImageProcessor(input_band_names=names)
    with pytest.raises(ValueError, match=r"\['B8A'\].*missing"):
        processor(eurosat_tile)
    with pytest.raises(ValueError, match=r"\['B8A', 'B09'\].*missing"):
        S2MAEImageProcessor()(eurosat_tile[:11], input_band_names=EUROSAT_MS_BANDS[:8] + ("B10", "B11", "B12"))


def test_wrong_band_count_raises(processor, eurosat_tile):
    twelve = eurosat_tile[:12]
    with pytest.raises(ValueError, match="Expected 13 bands"):
        processor(twelve)
    with pytest.raises(ValueError, match="puts 12 bands on axis 0"):
        processor(twelve, input_data_format="channels_first")
    with pytest.raises(ValueError, match="Expected 12 bands"):
        S2MAEImageProcessor()(eurosat_tile)  # no input_band_names: exactly the model's 12 bands
    S2MAEImageProcessor()(twelve)  # 12 bands, taken as already in the model's order


def test_ambiguous_channel_axis_needs_data_format():
    image = np.random.default_rng(0).random((12, 20, 12))
    processor = S2MAEImageProcessor(size=8)
    with pytest.raises(ValueError, match="input_data_format"):
        processor(image)
    first = processor(image, input_data_format="channels_first", return_tensors="np")["pixel_values"]
    last = processor(image, input_data_format="channels_last", return_tensors="np")["pixel_values"]
    assert first.shape == last.shape == (1, 12, 8, 8) and not np.allclose(first, last)
    with pytest.raises(ValueError, match="input_data_format must be"):
        processor(image, input_data_format="channels_middle")


@pytest.mark.parametrize("shape", [(12, 16), (2, 2, 12, 16, 16), (12,)])
def test_wrong_ndim_raises(shape):
    with pytest.raises(ValueError, match="3 dimensions"):
        S2MAEImageProcessor()(np.ones(shape, dtype=np.float32))


def test_list_of_batches_raises():
    with pytest.raises(ValueError, match=r"Each image of a list must have 3 dimensions.*image 1"):
        S2MAEImageProcessor()([np.ones((12, 4, 4)), np.ones((2, 12, 4, 4))])


@pytest.mark.parametrize(
    "image",
    [
        np.ones((12, 4, 4), dtype=bool),
        np.ones((12, 4, 4), dtype=np.complex64),
        np.ones((12, 4, 4), dtype=object),
        torch.ones((12, 4, 4), dtype=torch.bool),
        torch.ones((12, 4, 4), dtype=torch.complex64),
    ],
    ids=["np-bool", "np-complex", "np-object", "pt-bool", "pt-complex"],
)
def test_unsupported_dtype_raises(image):
    with pytest.raises(ValueError, match="real integer or floating dtype"):
        S2MAEImageProcessor()(image)


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="non-empty"):
        S2MAEImageProcessor()(np.ones((12, 0, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        S2MAEImageProcessor()(np.ones((0, 12, 4, 4)))
    with pytest.raises(ValueError, match="at least one image"):
        S2MAEImageProcessor()([])
    with pytest.raises(TypeError, match="numpy arrays or torch tensors"):
        S2MAEImageProcessor()("tile.tif")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size must be a positive int"),
        ({"size": (128, 128)}, "size must be a positive int"),
        ({"resample": "lanczos"}, "resample must be one of"),
        ({"scaling": "percentile"}, "scaling must be one of"),
        ({"band_names": ["B01", "B01"]}, "must be unique"),
        ({"input_band_names": "B01"}, "list of band names"),
        ({"reflectance_scale": 0}, "reflectance_scale must be > 0"),
        ({"nodata": "zero"}, "nodata must be a real number"),
    ],
)
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S2MAEImageProcessor(**kwargs)


def test_unknown_argument_raises():
    with pytest.raises(TypeError, match="scalling"):
        S2MAEImageProcessor(scalling="reflectance")


# ----------------------------------------------------------------------------------------------------------------
# Serialisation and model config


def test_save_and_load_round_trip(tmp_path, eurosat_tile):
    processor = S2MAEImageProcessor(
        band_names=["B02", "B03", "B04", "B8A", "B11", "B12"],
        input_band_names=EUROSAT_MS_BANDS,
        size=32,
        resample="bicubic",
        scaling="sigma",
        band_mean=EUROSAT_BAND_MEAN,
        band_std=EUROSAT_BAND_STD,
        reflectance_scale=5000.0,
        nodata=0,
    )
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "S2MAEImageProcessor"
    assert saved["band_mean"]["B8A"] == EUROSAT_BAND_MEAN["B8A"] and saved["nodata"] == 0
    assert saved["input_band_names"] == list(EUROSAT_MS_BANDS)

    loaded = S2MAEImageProcessor.from_pretrained(tmp_path)
    for name in (
        "band_names", "input_band_names", "size", "resample", "scaling", "band_mean", "band_std",
        "reflectance_scale", "reflectance_offset", "nodata", "minmax_eps",
    ):  # fmt: skip
        assert getattr(loaded, name) == getattr(processor, name), name
    assert loaded.to_dict() == processor.to_dict()
    expected = processor(eurosat_tile, return_tensors="pt")
    torch.testing.assert_close(loaded(eurosat_tile, return_tensors="pt")["pixel_values"], expected["pixel_values"])
    assert expected["pixel_values"].shape == (1, 6, 32, 32)

    overridden = S2MAEImageProcessor.from_pretrained(tmp_path, size=16, nodata=None)
    assert overridden.size == 16 and overridden.nodata is None and overridden.scaling == "sigma"


def test_round_trip_keeps_none_values(tmp_path):
    processor = S2MAEImageProcessor()
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["nodata"] is None and saved["input_band_names"] is None and saved["band_mean"] is None
    loaded = S2MAEImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()


def test_from_model_config(eurosat_tile):
    config = S2MAEConfig(band_names=["B04", "B03", "B02"], image_size=64, spectral_patch_size=3)
    processor = S2MAEImageProcessor.from_model_config(config, input_band_names=EUROSAT_MS_BANDS, nodata=0)
    assert processor.band_names == ["B04", "B03", "B02"] and processor.size == 64 and processor.nodata == 0
    out = processor(eurosat_tile, scaling="reflectance", return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(out[0] * 10000, eurosat_tile[3], rtol=1e-6)  # B04 first
    default = S2MAEImageProcessor.from_model_config(S2MAEConfig())
    assert default.band_names == list(SENTINEL2_BANDS) and default.size == 128
    with pytest.raises(ValueError, match="from the config"):
        S2MAEImageProcessor.from_model_config(config, size=32)


def test_scaling_methods_listed():
    assert SCALING_METHODS == ("minmax", "reflectance", "standardize", "sigma", "dataset_range")
    assert math.isclose(S2MAEImageProcessor().minmax_eps, 1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Dataset-level range scaling


@pytest.fixture(scope="module")
def eurosat_statistics(eurosat_tiles) -> BandStatistics:
    """Statistics of the six EuroSAT-MS tiles (exact percentiles: 24576 values per band)."""
    rasters = [RasterSample(tile, list(EUROSAT_MS_BANDS), None, None, None, []) for tile in eurosat_tiles]
    return compute_band_statistics(rasters)


def test_dataset_range_maps_low_to_0_and_high_to_1_and_clips():
    band_low = {name: 100.0 * (index + 1) for index, name in enumerate(SENTINEL2_BANDS)}
    band_high = {name: low + 1000.0 for name, low in band_low.items()}
    processor = S2MAEImageProcessor(scaling="dataset_range", band_low=band_low, band_high=band_high, size=5)
    offsets = np.array([0.0, 1000.0, -50.0, 5000.0, 250.0])  # low, high, below, above, a quarter of the way
    lows = np.array([band_low[name] for name in SENTINEL2_BANDS])
    image = np.broadcast_to(lows[:, None, None] + offsets[None, None, :], (12, 5, 5))
    out = processor(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(out, np.broadcast_to([0.0, 1.0, 0.0, 1.0, 0.25], (12, 5, 5)), atol=1e-7)


def test_dataset_range_on_a_real_tile(eurosat_statistics, eurosat_tile):
    processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, **eurosat_statistics.processor_kwargs())
    out = processor(eurosat_tile, size=64, return_tensors="np")["pixel_values"][0]
    for index, name in enumerate(processor.band_names):
        low, high = eurosat_statistics.percentiles[name][1.0], eurosat_statistics.percentiles[name][99.0]
        expected = np.clip((file_band(eurosat_tile, name) - low) / (high - low), 0, 1)
        np.testing.assert_allclose(out[index], expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert out.min() == 0 and out.max() <= 1
    # Bounds are looked up by name: B8A (model band 8) uses B8A's range, not B09's.
    assert processor.band_low["B8A"] > 2 * processor.band_low["B09"]
    resized = processor(eurosat_tile, return_tensors="pt")["pixel_values"]
    assert resized.shape == (1, 12, 128, 128) and resized.min() >= 0 and resized.max() <= 1


def test_dataset_range_keeps_radiometry_that_minmax_erases(eurosat_statistics, eurosat_tiles):
    """The same texture, dark and bright: minmax makes them identical, dataset_range keeps the difference."""
    dark = eurosat_tiles[3].astype(np.float64)  # Forest_1
    bright = dark + 400.0  # same texture, 400 digital numbers brighter in every band
    minmax_processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, size=64)
    minmax_out = minmax_processor([dark, bright], return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(minmax_out[0], minmax_out[1], atol=1e-6)

    kwargs = eurosat_statistics.processor_kwargs()
    processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, size=64, **kwargs)
    out = processor([dark, bright], return_tensors="np")["pixel_values"]
    for index, name in enumerate(processor.band_names):
        unclipped = (out[0, index] > 0) & (out[1, index] < 1)
        assert unclipped.sum() > 100, name
        shift = 400.0 / (kwargs["band_high"][name] - kwargs["band_low"][name])
        np.testing.assert_allclose((out[1, index] - out[0, index])[unclipped], shift, rtol=1e-4, err_msg=name)
    assert (out[1] >= out[0]).all() and out[1].mean() > out[0].mean() + 0.1
    # Real classes too: a forest is darker than a crop field in the red band (B04) after scaling, not after minmax.
    crop, forest = eurosat_tiles[0], eurosat_tiles[3]
    b04 = processor.band_names.index("B04")
    scaled = processor([crop, forest], return_tensors="np")["pixel_values"][:, b04].mean(axis=(1, 2))
    per_image = minmax_processor([crop, forest], return_tensors="np")["pixel_values"][:, b04].mean(axis=(1, 2))
    assert scaled[1] < scaled[0] - 0.1 and abs(per_image[1] - per_image[0]) < abs(scaled[1] - scaled[0])


def test_dataset_range_masks_nodata(eurosat_statistics, eurosat_tile):
    image = eurosat_tile.astype(np.float32)
    image[EUROSAT_MS_BANDS.index("B05"), 3, 4] = 0
    image[EUROSAT_MS_BANDS.index("B11"), 9, 9] = np.nan
    processor = S2MAEImageProcessor(
        input_band_names=EUROSAT_MS_BANDS, nodata=0, **eurosat_statistics.processor_kwargs()
    )
    out = processor(image, size=64, return_tensors="np")
    assert out["pixel_mask"][0, 3, 4] == 0 and out["pixel_mask"][0, 9, 9] == 0 and out["pixel_mask"].sum() == 4094
    assert np.isfinite(out["pixel_values"]).all() and (out["pixel_values"][0, :, 3, 4] == 0).all()


def test_dataset_range_missing_or_invalid_bounds_raise(eurosat_statistics):
    with pytest.raises(ValueError, match="needs band_low.*compute_band_statistics"):
        S2MAEImageProcessor(scaling="dataset_range")
    kwargs = eurosat_statistics.processor_kwargs()
    without_b8a = {name: value for name, value in kwargs["band_high"].items() if name != "B8A"}
    with pytest.raises(ValueError, match=r"band_high.*lacks \['B8A'\]"):
        S2MAEImageProcessor(**{**kwargs, "band_high": without_b8a})
    inverted = {**kwargs["band_high"], "B03": kwargs["band_low"]["B03"]}
    with pytest.raises(ValueError, match=r"band_high must be > band_low.*\['B03'\]"):
        S2MAEImageProcessor(**{**kwargs, "band_high": inverted})
    with pytest.raises(ValueError, match="band_low.*keyed by band name"):
        S2MAEImageProcessor(**{**kwargs, "band_low": list(kwargs["band_low"].values())})
    with pytest.raises(ValueError, match="band_low"):
        S2MAEImageProcessor()(np.ones((12, 4, 4)), scaling="dataset_range")  # per-call scaling is checked too
    with pytest.raises(ValueError, match="band_statistics must be the dict"):
        S2MAEImageProcessor(band_statistics=[1, 2])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        S2MAEImageProcessor(band_statistics={"mean": np.arange(3)})
    # Bounds for only the model's bands are enough; extra bands (B10) are ignored.
    model_only = eurosat_statistics.processor_kwargs(band_names=["B04", "B03", "B02"])
    assert S2MAEImageProcessor(band_names=["B02", "B03", "B04"], **model_only).band_low["B02"] > 0


def test_dataset_range_statistics_survive_save_and_load(tmp_path, eurosat_statistics, eurosat_tile):
    processor = S2MAEImageProcessor(
        input_band_names=EUROSAT_MS_BANDS, nodata=0, size=32, **eurosat_statistics.processor_kwargs()
    )
    assert processor.band_statistics == eurosat_statistics.to_dict()
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["scaling"] == "dataset_range"
    assert saved["band_low"]["B8A"] == eurosat_statistics.percentiles["B8A"][1.0]
    assert saved["band_statistics"]["bands"]["B8A"]["count"] == 6 * 64 * 64
    loaded = S2MAEImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict()
    assert BandStatistics.from_dict(loaded.band_statistics) == eurosat_statistics
    for name in ("band_low", "band_high", "band_mean", "band_std"):
        assert getattr(loaded, name) == getattr(processor, name), name
    torch.testing.assert_close(
        loaded(eurosat_tile, return_tensors="pt")["pixel_values"],
        processor(eurosat_tile, return_tensors="pt")["pixel_values"],
    )
    # The statistics also allow switching to the other dataset-level scalings.
    sigma = S2MAEImageProcessor.from_pretrained(tmp_path, scaling="sigma")
    assert sigma(eurosat_tile, return_tensors="np")["pixel_values"].max() <= 1


def test_settings_from_constructor_kwargs(eurosat_statistics):
    """Every scaling setting is a constructor argument (what the example scripts expose as flags)."""
    kwargs = {
        "scaling": "reflectance",
        "reflectance_scale": 5000.0,
        "reflectance_offset": -1000.0,
        "nodata": 0,
        "band_mean": EUROSAT_BAND_MEAN,
        "band_std": EUROSAT_BAND_STD,
        "band_low": eurosat_statistics.percentile(2),
        "band_high": eurosat_statistics.percentile(98),
        "band_statistics": eurosat_statistics,  # a BandStatistics is stored as its dict
    }
    processor = S2MAEImageProcessor(**kwargs)
    for name, value in kwargs.items():
        expected = value.to_dict() if isinstance(value, BandStatistics) else value
        assert getattr(processor, name) == expected, name
    image = np.full((12, 2, 2), 3000.0)
    np.testing.assert_allclose(processor(image, return_tensors="np")["pixel_values"], 0.4, rtol=1e-6)
