"""Tests of modeling_s2mae.data.statistics on the repository's real tiles, against numpy over the valid pixels."""

import dataclasses
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from modeling_s2mae.data import EUROSAT_MS_BANDS, RasterSample, read_raster
from modeling_s2mae.data.samples import Sample
from modeling_s2mae.data.statistics import (
    DEFAULT_PERCENTILES,
    BandStatistics,
    _BandAccumulator,
    compute_band_statistics,
    warn_mixed_units,
)
from modeling_s2mae.image_processing_s2mae import S2MAEImageProcessor
from modeling_s2mae.sensors import SENTINEL2_BANDS

EUROSAT_FILES = (
    "AnnualCrop/AnnualCrop_1.tif", "AnnualCrop/AnnualCrop_2.tif", "AnnualCrop/AnnualCrop_3.tif",
    "Forest/Forest_1.tif", "Forest/Forest_2.tif", "Forest/Forest_3.tif",
)  # fmt: skip


@pytest.fixture(scope="module")
def eurosat(sample_data: Path) -> list[RasterSample]:
    """Six EuroSAT-MS tiles, (13, 64, 64) uint16, B8A last; no nodata."""
    return [read_raster(sample_data / "eurosat_ms" / name, EUROSAT_MS_BANDS) for name in EUROSAT_FILES]


@pytest.fixture(scope="module")
def t60hwb(sample_data: Path) -> RasterSample:
    """The T60HWB L1C crop, (13, 128, 128) uint16, B8A after B08, nodata = 0."""
    return read_raster(sample_data / "sentinel2_tile" / "T60HWB_20201002_crop128.tif")


@pytest.fixture(scope="module")
def scene(sample_data: Path) -> RasterSample:
    """The T33UUU scene crop from 13 per-band files, (13, 384, 384) uint16 on the 10 m grid; no nodata."""
    return read_raster(sample_data / "sentinel2_scene")


def valid_values(rasters: list[RasterSample], mask_bands: list[str] | None = None) -> dict[str, np.ndarray]:
    """Reference: every band's valid values (float64), a pixel being invalid when a band of `mask_bands` present in
    its sample (all bands when None) is nodata or not finite."""
    values = defaultdict(list)
    for raster in rasters:
        array = raster.array.astype(np.float64)
        rows = [i for i, name in enumerate(raster.band_names) if mask_bands is None or name in mask_bands]
        valid = np.isfinite(array[rows]).all(axis=0)
        if raster.nodata is not None:
            valid &= (array[rows] != raster.nodata).all(axis=0)
        for i in rows:
            values[raster.band_names[i]].append(array[i][valid])
    return {name: np.concatenate(parts) for name, parts in values.items()}


def assert_matches(stats: BandStatistics, reference: dict[str, np.ndarray], exact_percentiles: bool = True) -> None:
    assert sorted(stats.band_names) == sorted(reference)
    for name, values in reference.items():
        assert stats.count[name] == values.size, name
        np.testing.assert_allclose(stats.mean[name], values.mean(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(stats.std[name], values.std(), rtol=1e-10, err_msg=name)
        assert stats.min[name] == values.min() and stats.max[name] == values.max(), name
        if exact_percentiles:
            assert stats.exact_percentiles[name]
            expected = np.percentile(values, stats.percentile_levels)
            assert list(stats.percentiles[name].values()) == expected.tolist(), name


# ----------------------------------------------------------------------------------------------------------------
# Real tiles against numpy


def test_real_tiles_match_numpy(eurosat, t60hwb, scene):
    """EuroSAT (B8A last), T60HWB (B8A after B08, nodata 0) and the per-band scene, mixed Sample / RasterSample."""
    rasters = [*eurosat, t60hwb, scene]
    samples = [Sample(id=f"s{i}", raster=r) if i % 2 else r for i, r in enumerate(rasters)]
    stats = compute_band_statistics(samples)
    assert stats.num_samples == 8 and stats.percentile_levels == DEFAULT_PERCENTILES
    assert stats.band_names == list(EUROSAT_MS_BANDS)  # order of first appearance
    assert stats.count["B8A"] == 6 * 64 * 64 + 128 * 128 + 384 * 384  # these tiles hold no invalid pixel
    assert_matches(stats, valid_values(rasters))
    # Spot check that bands were matched by name: B8A's mean is not B09's.
    assert stats.mean["B8A"] > 2 * stats.mean["B09"]


def test_band_order_and_band_subsets(eurosat, t60hwb, scene):
    """Permuted bands give the same numbers; a band is counted only in the samples that hold it."""
    reordered = [r.select(list(reversed(r.band_names))) for r in (*eurosat, t60hwb)]
    rgb = scene.select(["B04", "B03", "B02"])
    expected = compute_band_statistics([*eurosat, t60hwb, scene.select(["B02", "B03", "B04"])])
    stats = compute_band_statistics([*reordered, rgb])
    assert stats.band_names == list(reversed(EUROSAT_MS_BANDS))
    for name in EUROSAT_MS_BANDS:
        assert stats.count[name] == expected.count[name]
        assert stats.min[name] == expected.min[name] and stats.max[name] == expected.max[name]
        assert stats.percentiles[name] == expected.percentiles[name]
        np.testing.assert_allclose(stats.mean[name], expected.mean[name], rtol=1e-12)
        np.testing.assert_allclose(stats.std[name], expected.std[name], rtol=1e-10)
    assert stats.count["B02"] == 6 * 64 * 64 + 128 * 128 + 384 * 384
    assert stats.count["B01"] == 6 * 64 * 64 + 128 * 128
    assert_matches(stats, valid_values([*reordered, rgb]))


def test_band_names_selects_bands_and_drives_validity(t60hwb):
    """Only `band_names` are computed, and only they mark pixels invalid (the processor's pixel_mask rule)."""
    array = t60hwb.array.astype(np.float32)
    index = t60hwb.band_names.index
    array[index("B10"), :10, :] = np.nan  # a band the model drops
    array[index("B03"), 20, 30] = 0  # nodata in one band
    array[index("B8A"), 40, 50] = np.inf
    tile = dataclasses.replace(t60hwb, array=array)
    all_bands = compute_band_statistics([tile])
    model_bands = compute_band_statistics([tile], band_names=SENTINEL2_BANDS)
    assert model_bands.band_names == list(SENTINEL2_BANDS) and "B10" not in model_bands.count
    assert model_bands.count["B02"] == 128 * 128 - 2
    assert all_bands.count["B02"] == 128 * 128 - 10 * 128 - 2
    assert_matches(model_bands, valid_values([tile], list(SENTINEL2_BANDS)))
    assert_matches(all_bands, valid_values([tile]))
    # The same pixels the image processor marks valid for a model with these bands.
    processor = S2MAEImageProcessor(input_band_names=tile.band_names, nodata=tile.nodata, size=128)
    assert processor(tile.array, return_tensors="np")["pixel_mask"].sum() == model_bands.count["B02"]


def test_nodata_and_nan_are_excluded(eurosat, t60hwb):
    """Hand-placed nodata / NaN pixels are left out of every band of their sample; nodata can be overridden."""
    float_tile = eurosat[3].array.astype(np.float64)
    float_tile[EUROSAT_MS_BANDS.index("B04"), 0, :] = np.nan  # one whole row
    float_tile[EUROSAT_MS_BANDS.index("B11"), 5, 5] = -np.inf
    nodata_tile = t60hwb.array.copy()
    nodata_tile[2, 100:110, 100:120] = 0  # the file's nodata value, 200 pixels in B03
    rasters = [dataclasses.replace(eurosat[3], array=float_tile), dataclasses.replace(t60hwb, array=nodata_tile)]
    stats = compute_band_statistics(rasters)

    valid_eurosat = np.ones((64, 64), dtype=bool)
    valid_eurosat[0, :] = valid_eurosat[5, 5] = False
    valid_t60 = np.ones((128, 128), dtype=bool)
    valid_t60[100:110, 100:120] = False
    for name in EUROSAT_MS_BANDS:
        values = np.concatenate(
            [
                float_tile[EUROSAT_MS_BANDS.index(name)][valid_eurosat],
                nodata_tile[t60hwb.band_names.index(name)][valid_t60].astype(np.float64),
            ]
        )
        assert stats.count[name] == 64 * 64 - 65 + 128 * 128 - 200
        np.testing.assert_allclose(stats.mean[name], values.mean(), rtol=1e-12)
        np.testing.assert_allclose(stats.std[name], values.std(), rtol=1e-10)
        assert stats.min[name] == values.min() > 0
        assert list(stats.percentiles[name].values()) == np.percentile(values, DEFAULT_PERCENTILES).tolist()
    # Without its nodata the zeros count; an override marks a value of another sample as missing too.
    as_data = compute_band_statistics([dataclasses.replace(rasters[1], nodata=None)])
    assert as_data.count["B03"] == 128 * 128 and as_data.min["B03"] == 0
    value = int(eurosat[0].array[0, 0, 0])
    overridden = compute_band_statistics([eurosat[0]], nodata=value)
    assert overridden.count["B01"] == 64 * 64 - int((eurosat[0].array == value).any(axis=0).sum()) < 64 * 64


# ----------------------------------------------------------------------------------------------------------------
# Subsampled percentiles


def test_reservoir_percentiles_are_close_to_exact(scene):
    """Over the cap: counts, mean, std, min and max stay exact, percentiles come from a 5000-value subsample."""
    stats = compute_band_statistics([scene], max_pixels_per_band=5000, percentiles=(1, 50, 99))
    reference = valid_values([scene])
    assert_matches(stats, reference, exact_percentiles=False)
    for name, values in reference.items():
        assert not stats.exact_percentiles[name]
        for level, estimate in stats.percentiles[name].items():
            # The estimate's rank among all values is within 5 sigma of the level: a uniform subsample of n values
            # puts it off by sqrt(p (100 - p) / n) percentile points on average (0.7 at the median, 0.14 at 1 %).
            # Keeping the first 5000 pixels instead is 4 to 280 sigma off on this scene.
            low, high = np.mean(values < estimate) * 100, np.mean(values <= estimate) * 100
            tolerance = 5 * np.sqrt(level * (100 - level) / 5000)
            assert low - tolerance <= level <= high + tolerance, (name, level, low, high)
    again = compute_band_statistics([scene], max_pixels_per_band=5000, percentiles=(1, 50, 99))
    assert again == stats  # seeded
    other_seed = compute_band_statistics([scene], max_pixels_per_band=5000, percentiles=(1, 50, 99), seed=1)
    assert other_seed.percentiles != stats.percentiles and other_seed.mean == stats.mean


def test_reservoir_does_not_depend_on_how_the_stream_is_split(scene):
    """Row strips of the scene flatten to the same pixel stream as the scene: the same subsample comes out."""
    strips = [dataclasses.replace(scene, array=scene.array[:, row : row + 48]) for row in range(0, 384, 48)]
    whole = compute_band_statistics([scene], max_pixels_per_band=3000)
    split = compute_band_statistics(strips, max_pixels_per_band=3000)
    assert split.percentiles == whole.percentiles and split.count == whole.count
    for name in whole.band_names:
        np.testing.assert_allclose(split.mean[name], whole.mean[name], rtol=1e-12)
        np.testing.assert_allclose(split.std[name], whole.std[name], rtol=1e-10)


def test_reservoir_is_uniform():
    """Every position of a 600-value stream fed in uneven batches lands in a 12-slot reservoir equally often."""
    rng = np.random.default_rng(0)
    hits = np.zeros(600)
    trials = 1500
    for _ in range(trials):
        accumulator = _BandAccumulator(capacity=12, rng=rng)
        for batch in np.split(np.arange(600.0), [5, 17, 100, 101, 350]):
            accumulator.update(batch)
        assert accumulator.filled == 12 and len(set(accumulator.reservoir.tolist())) == 12
        hits[accumulator.reservoir.astype(int)] += 1
    expected = trials * 12 / 600  # 30 per position
    chi2 = ((hits - expected) ** 2 / expected).sum()  # ~ chi-square with 599 degrees of freedom: mean 599, sd 35
    assert 450 < chi2 < 760, chi2
    first, last = hits[:300].sum(), hits[300:].sum()  # no bias towards early or late values
    assert abs(first - last) < 0.1 * (first + last)


# ----------------------------------------------------------------------------------------------------------------
# Serialisation and processor settings


def test_max_samples_and_json_round_trip(eurosat):
    stats = compute_band_statistics(iter(eurosat), max_samples=2, percentiles=(0.5, 99.5, 50))
    assert stats.num_samples == 2 and stats.count["B01"] == 2 * 64 * 64
    assert stats.percentile_levels == (0.5, 50.0, 99.5)
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["format"] == "s2mae-band-statistics" and data["version"] == 1
    assert set(data["bands"]["B8A"]["percentiles"]) == {"0.5", "50", "99.5"}
    assert BandStatistics.from_dict(data) == stats
    assert BandStatistics.from_dict(json.loads(stats.to_json())) == stats
    assert stats.percentile(99.5) == {name: stats.percentiles[name][99.5] for name in stats.band_names}
    with pytest.raises(ValueError, match="Percentile 99.0 was not computed"):
        stats.percentile(99)


def test_processor_kwargs(eurosat):
    stats = compute_band_statistics(eurosat)
    kwargs = stats.processor_kwargs(band_names=["B04", "B8A"])
    assert kwargs["scaling"] == "dataset_range"
    assert kwargs["band_low"] == {"B04": stats.percentiles["B04"][1.0], "B8A": stats.percentiles["B8A"][1.0]}
    assert kwargs["band_high"] == {"B04": stats.percentiles["B04"][99.0], "B8A": stats.percentiles["B8A"][99.0]}
    assert kwargs["band_mean"] == {"B04": stats.mean["B04"], "B8A": stats.mean["B8A"]}
    assert kwargs["band_statistics"] == stats.to_dict()
    low, high = stats.value_range(None, None)
    assert low == stats.min and high == stats.max
    processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, **stats.processor_kwargs())
    assert processor.scaling == "dataset_range" and processor.band_low["B8A"] == stats.percentiles["B8A"][1.0]
    with pytest.raises(ValueError, match=r"\['B99'\] are not in these statistics"):
        stats.processor_kwargs(band_names=["B04", "B99"])


def test_degenerate_bands(caplog):
    """Equal percentiles fall back to min / max with a warning; a constant band has no range."""
    array = np.full((2, 20, 20), 7, dtype=np.uint16)
    array[0, 0, 0] = 9  # band A: 399 sevens and one nine, so its 1st and 99th percentiles are both 7
    raster = RasterSample(array, ["BA", "BB"], None, None, None, [])
    stats = compute_band_statistics([raster])
    with caplog.at_level(logging.WARNING, logger="modeling_s2mae.data.statistics"):
        low, high = stats.value_range(band_names=["BA"])
    assert low == {"BA": 7.0} and high == {"BA": 9.0} and "using its min" in caplog.text
    with pytest.raises(ValueError, match=r"Bands \['BB'\] hold a single value"):
        stats.processor_kwargs()


def test_bad_inputs_raise(eurosat, t60hwb):
    with pytest.raises(ValueError, match="no sample"):
        compute_band_statistics([])
    with pytest.raises(ValueError, match="Expected Sample or RasterSample.*position 1"):
        compute_band_statistics([eurosat[0], eurosat[1].array])
    with pytest.raises(ValueError, match=r"percentiles must be in \[0, 100\]"):
        compute_band_statistics(eurosat, percentiles=(1, 150))
    with pytest.raises(ValueError, match="unique"):
        compute_band_statistics(eurosat, percentiles=(1, 1))
    with pytest.raises(ValueError, match="max_pixels_per_band"):
        compute_band_statistics(eurosat, max_pixels_per_band=0)
    with pytest.raises(ValueError, match="max_samples"):
        compute_band_statistics(eurosat, max_samples=0)
    with pytest.raises(ValueError, match=r"Bands \['B99'\] have no valid pixel"):
        compute_band_statistics(eurosat, band_names=["B02", "B99"])
    repeated = RasterSample(eurosat[0].array[:2], ["B02", "B02"], None, None, None, ["x.tif"])
    with pytest.raises(ValueError, match="repeats band names"):
        compute_band_statistics([repeated])
    all_nodata = dataclasses.replace(t60hwb, array=np.zeros_like(t60hwb.array))
    with pytest.raises(ValueError, match="have no valid pixel.*nodata"):
        compute_band_statistics([all_nodata])
    with pytest.raises(ValueError, match="format"):
        BandStatistics.from_dict({"bands": {}})
    broken = compute_band_statistics(eurosat[:1]).to_dict()
    del broken["bands"]["B01"]["std"]
    with pytest.raises(ValueError, match="Malformed"):
        BandStatistics.from_dict(broken)


def test_a_dataset_mixing_reflectance_and_digital_numbers_is_named(eurosat, caplog):
    digital_numbers = eurosat[0]  # uint16 EuroSAT-MS, means in the thousands
    reflectance = dataclasses.replace(
        digital_numbers, array=digital_numbers.array.astype(np.float32) / 10000.0, source=["reflectance.tif"]
    )
    with caplog.at_level(logging.WARNING, logger="modeling_s2mae.data.statistics"):
        compute_band_statistics(eurosat)  # one unit, real tiles: no warning
        assert not [r for r in caplog.records if "mixes units" in r.getMessage()]
        compute_band_statistics([*eurosat, reflectance])
    messages = [r.getMessage() for r in caplog.records if "mixes units" in r.getMessage()]
    assert len(messages) == 1 and "reflectance.tif" in messages[0]
    assert warn_mixed_units([(0.02, "water"), (0.9, "cloud")]) is False  # dark water to bright cloud, one unit
    assert warn_mixed_units([(0.2, "a"), (1500.0, "b")]) is True
