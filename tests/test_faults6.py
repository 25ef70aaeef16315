"""Faults on the any-sensor path: units of wavelengths, bandwidths, spectral binning of hyperspectral cubes with bad
bands, and the wavelengths the image processor hands to a model whose band names another product reuses."""

import warnings

import numpy as np
import pytest
import torch

from modeling_s2mae import S2MAEConfig, S2MAEImageProcessor, S2MAEModel
from modeling_s2mae.hyperspectral import bin_bands_by_wavelength
from modeling_s2mae.sensors import SENTINEL2_BANDS, check_wavelengths_nm, get_sensor, hyperspectral_sensor
from tests.model_tester import pixel_batch, tiny_config

LANDSAT7 = get_sensor("landsat7_etm")
MICROMETRES = [w / 1000 for w in LANDSAT7.wavelengths()]  # 0.485 ... 2.22: micrometres given for nanometres
AVIRIS_LIKE = [float(w) for w in np.linspace(400.0, 2500.0, 224)]


def test_micrometres_given_for_nanometres_are_refused_everywhere():
    """Before: the model only warned "outside the range" and ran with every band placed near 0 nm; the config,
    `hyperspectral_sensor` and the processor accepted 0.49 silently, and binning by `bin_width_nm=60` put all
    224 bands into one bin."""
    model = S2MAEModel(tiny_config(band_names=list(SENTINEL2_BANDS), position_embedding_type="wavelength")).eval()
    with pytest.raises(ValueError, match=r"band_wavelengths must be in nanometres.*micrometres\? multiply by 1000"):
        model(pixel_batch(model.config, bands=6), band_wavelengths=MICROMETRES)
    with pytest.raises(ValueError, match="band_wavelengths must be in nanometres"):
        S2MAEConfig(band_names=["a", "b", "c"], band_wavelengths=[0.49, 0.56, 0.66])
    with pytest.raises(ValueError, match="wavelengths_nm must be in nanometres"):
        hyperspectral_sensor([w / 1000 for w in AVIRIS_LIKE])
    with pytest.raises(ValueError, match="wavelengths must be in nanometres"):
        bin_bands_by_wavelength(torch.rand(224, 2, 2), [w / 1000 for w in AVIRIS_LIKE], bin_width_nm=60)
    processor = S2MAEImageProcessor(band_names=["B1", "B2", "B3", "B4", "B5", "B7"], size=8)
    image = np.random.default_rng(0).random((6, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="input_band_wavelengths must be in nanometres"):
        processor(image, input_band_wavelengths=MICROMETRES)
    # nanometres pass, thermal bands (11 450 nm) too
    assert check_wavelengths_nm([485, 11450.0]) == [485.0, 11450.0]
    assert model(pixel_batch(model.config, bands=6), band_wavelengths=LANDSAT7.wavelengths()) is not None


def test_bad_bandwidths_and_wavelengths_are_clear_errors():
    """Before: negative bandwidths were stored in the sensor and the processor's output, a NaN wavelength in
    binning was "cannot convert float NaN to integer", too few bandwidths an IndexError."""
    with pytest.raises(ValueError, match="bandwidths_nm must be finite non-negative"):
        hyperspectral_sensor([500.0, 550.0, 600.0], [-1.0, 10.0, 10.0])
    with pytest.raises(ValueError, match="bandwidths_nm has 2 values for 3 bands"):
        hyperspectral_sensor([500.0, 550.0, 600.0], [10.0, 10.0])
    cube = torch.rand(224, 2, 2)
    with pytest.raises(ValueError, match=r"wavelengths must be finite positive numbers in nanometres, got \[nan\]"):
        bin_bands_by_wavelength(cube, [float("nan"), *AVIRIS_LIKE[1:]], num_bins=24)
    with pytest.raises(ValueError, match="bandwidths has 3 values for 224 bands"):
        bin_bands_by_wavelength(cube, AVIRIS_LIKE, num_bins=24, bandwidths=[10.0] * 3)
    with pytest.raises(ValueError, match=r"num_bins must be an int >= 1, got 24.5"):
        bin_bands_by_wavelength(cube, AVIRIS_LIKE, num_bins=24.5)
    assert len(bin_bands_by_wavelength(cube, AVIRIS_LIKE, num_bins=np.int64(24))[1]) == 24
    processor = S2MAEImageProcessor(band_names=["B1", "B2", "B3", "B4", "B5", "B7"], size=8)
    image = np.random.default_rng(0).random((6, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="input_band_bandwidths must be finite non-negative"):
        processor(image, input_band_wavelengths=LANDSAT7.wavelengths(), input_band_bandwidths=[-5.0] * 6)
    with pytest.raises(ValueError, match="input_band_wavelengths must be finite positive"):
        processor(image, input_band_wavelengths=[float("nan")] * 6)


def test_binning_a_cube_with_bad_water_bands():
    """Before: one NaN water-absorption band made its whole bin NaN, and an integer cube was a RuntimeError."""
    generator = torch.Generator().manual_seed(0)
    cube = torch.rand(2, 224, 4, 4, generator=generator)
    water = [i for i, w in enumerate(AVIRIS_LIKE) if 1340 <= w <= 1450 or 1800 <= w <= 1960]
    cube[:, water] = float("nan")
    binned, centres, widths = bin_bands_by_wavelength(cube, AVIRIS_LIKE, num_bins=24)
    assert binned.shape == (2, 24, 4, 4)
    index = ((torch.tensor(AVIRIS_LIKE, dtype=torch.float64) - 400.0) / (2100.0 / 24)).floor().long().clamp(max=23)
    only_water = [all(i in water for i in (index == k).nonzero().flatten().tolist()) for k in range(24)]
    assert 0 < sum(only_water) < 24  # a bin wholly inside a water band stays NaN (invalid), the others do not
    assert binned.isnan().flatten(2).all(-1).all(0).tolist() == only_water
    assert not binned[:, [not flag for flag in only_water]].isnan().any()
    # each bin is the mean of its finite bands (bins 10 and 17 mix water and clear bands)
    clean = cube.clone()
    clean[:, water] = 0.0
    counts = torch.ones(224)
    counts[water] = 0
    for k in (0, 10, 17):
        assert 0 < int(counts[(index == k).nonzero().flatten()].sum()) and (k == 0 or not only_water[k])
        members = (index == k).nonzero().flatten()
        expected = clean[:, members].sum(1) / counts[members].sum()
        assert torch.allclose(binned[:, k], expected, atol=1e-6)
    # bad bands stored as zeros: left out by valid_bands; a bin of only bad bands is dropped
    zeros = torch.rand(224, 4, 4, generator=generator)
    zeros[water] = 0.0
    valid = [i not in water for i in range(224)]
    binned, centres, _ = bin_bands_by_wavelength(zeros, AVIRIS_LIKE, bin_width_nm=20, valid_bands=valid)
    assert all(not (1350 <= c <= 1440 or 1810 <= c <= 1950) for c in centres)
    assert bool((binned > 0).all())
    with pytest.raises(ValueError, match="valid_bands has 3 flags for 224 bands"):
        bin_bands_by_wavelength(zeros, AVIRIS_LIKE, num_bins=4, valid_bands=[True] * 3)
    # integer digital numbers are averaged in float
    digital = torch.randint(0, 10000, (224, 2, 2), generator=generator, dtype=torch.int16)
    assert bin_bands_by_wavelength(digital, AVIRIS_LIKE, num_bins=8)[0].dtype == torch.float32


def test_processor_returns_the_models_wavelengths_not_sentinel2s_for_reused_names():
    """HLS L30 names Landsat OLI bands "B02".."B07" (B05 = NIR, 865 nm). Before: the processor of such a model
    returned Sentinel-2's wavelengths for those names (B05 at 704 nm), so `model(**inputs)` placed NIR at red edge."""
    names = ["B02", "B03", "B04", "B05", "B06", "B07"]
    oli = get_sensor("landsat8")
    config = tiny_config(
        band_names=names,
        band_wavelengths=oli.wavelengths(names),
        band_bandwidths=oli.bandwidths(names),
        position_embedding_type="wavelength",
    )
    processor = S2MAEImageProcessor.from_model_config(config)
    out = processor(np.random.default_rng(0).random((6, 16, 16), dtype=np.float32), return_tensors="pt")
    assert out["band_wavelengths"][0].tolist() == pytest.approx(oli.wavelengths(names))
    assert out["band_bandwidths"][0].tolist() == pytest.approx(oli.bandwidths(names))
    # a Sentinel-2 model is unchanged: the config's wavelengths are the registry's
    s2 = S2MAEImageProcessor.from_model_config(tiny_config())
    out = s2(np.random.default_rng(0).random((6, 16, 16), dtype=np.float32), return_tensors="pt")
    assert out["band_wavelengths"][0].tolist() == pytest.approx(tiny_config().band_wavelengths)
    with pytest.raises(ValueError, match="band_wavelengths has 2 values for 6 bands"):
        S2MAEImageProcessor(band_names=names, band_wavelengths=[480.0, 560.0])


def test_processor_wavelengths_round_trip(tmp_path):
    names = ["B02", "B03", "B04", "B05", "B06", "B07"]
    oli = get_sensor("landsat8")
    processor = S2MAEImageProcessor(band_names=names, size=16, band_wavelengths=oli.wavelengths(names))
    processor.save_pretrained(tmp_path)
    loaded = S2MAEImageProcessor.from_pretrained(tmp_path)
    assert loaded.band_wavelengths == oli.wavelengths(names) and loaded.band_bandwidths is None
    assert loaded.to_dict() == processor.to_dict()


def test_resizing_an_index_table_to_another_sensor_without_wavelengths_warns():
    """Before: `resize_position_embeddings(band_names=Landsat)` on a Sentinel-2 separable model silently interpolated
    the spectral table over group index (and dropped the config's wavelengths)."""
    model = S2MAEModel(tiny_config(band_names=list(SENTINEL2_BANDS)))
    names = ["B1", "B2", "B3", "B4", "B5", "B7"]
    with pytest.warns(UserWarning, match="interpolated over group INDEX"):
        model.resize_position_embeddings(band_names=names)
    model = S2MAEModel(tiny_config(band_names=list(SENTINEL2_BANDS)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.resize_position_embeddings(band_names=names, band_wavelengths=LANDSAT7.wavelengths(names))
    assert model.config.band_wavelengths == LANDSAT7.wavelengths(names)
