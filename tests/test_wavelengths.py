"""Wavelength-aware spectral positions: any sensor, any band count, by physics rather than by group index."""

import json
import math
import warnings

import pytest
import torch

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEModel
from modeling_s2mae.hyperspectral import bin_bands_by_wavelength, check_token_budget, token_budget
from modeling_s2mae.position_embeddings import (
    group_wavelengths,
    interpolate_spectral_by_wavelength,
    pad_bands_by_repetition,
    wavelength_sincos,
)
from modeling_s2mae.sensors import (
    SENSORS,
    SENTINEL2,
    SENTINEL2_BANDS,
    estimate_bandwidths,
    get_sensor,
    hyperspectral_sensor,
    nearest_bands,
)
from tests.model_tester import pixel_batch, tiny_config

LANDSAT7 = get_sensor("landsat7_etm")


def s2_wavelength_config(**overrides) -> S2MAEConfig:
    """A tiny 12-band Sentinel-2 model with wavelength positions (G = 4, 4 x 4 grid)."""
    return tiny_config(band_names=list(SENTINEL2_BANDS), position_embedding_type="wavelength", **overrides)


# --- registry -------------------------------------------------------------------------------------------------


def test_registry_tables_are_the_published_values():
    landsat_tm, landsat_oli = get_sensor("landsat5_tm"), get_sensor("landsat8")
    # USGS band edges: midpoint and width
    assert LANDSAT7.wavelengths() == [485.0, 560.0, 660.0, 835.0, 1650.0, 2220.0]
    assert LANDSAT7.bandwidths() == [70.0, 80.0, 60.0, 130.0, 200.0, 260.0]
    assert landsat_tm.wavelengths(["B4", "B7"]) == [830.0, 2215.0]
    assert landsat_tm.resolutions(["B6"]) == [120]
    assert landsat_oli.wavelengths(["B1", "B5", "B10"]) == [440.0, 865.0, 10895.0]
    assert get_sensor("landsat9_oli").bands == landsat_oli.bands
    assert (
        get_sensor("Sentinel-2").bands is SENTINEL2 and get_sensor("sentinel2b").bands["B12"].wavelength_nm == 2185.7
    )
    assert set(SENSORS) >= {"sentinel2a", "sentinel2b", "sentinel2c", "landsat5_tm", "landsat7_etm", "landsat8_oli"}
    with pytest.raises(ValueError, match="Unknown sensor 'modis'.*hyperspectral_sensor"):
        get_sensor("modis")
    with pytest.raises(ValueError, match=r"\['B9'\] are not among"):
        LANDSAT7.wavelengths(["B9"])
    # across sensors, bands are matched by wavelength: Landsat B4 (NIR) is Sentinel-2 B08, not B04
    s2 = get_sensor("sentinel2")
    picks = nearest_bands(LANDSAT7.wavelengths(), s2.wavelengths(), max_gap_nm=60)
    assert [SENTINEL2_BANDS[i] for i in picks] == ["B02", "B03", "B04", "B08", "B11", "B12"]


def test_config_wavelength_table_equals_the_registry():
    config = S2MAEConfig()
    assert config.band_wavelengths == [SENTINEL2[name].wavelength_nm for name in SENTINEL2_BANDS]
    assert config.band_bandwidths == [SENTINEL2[name].bandwidth_nm for name in SENTINEL2_BANDS]
    names = ["B1", "B2", "B3", "B4", "B5", "B7"]
    landsat = tiny_config(band_names=names, sensor="landsat7_etm")
    assert landsat.band_wavelengths == LANDSAT7.wavelengths(names)
    assert landsat.band_bandwidths == LANDSAT7.bandwidths(names)
    assert tiny_config(band_names=["a", "b", "c"]).band_wavelengths is None  # unknown names: no guess
    with pytest.raises(ValueError, match="needs band_wavelengths.*sensor='landsat7_etm'"):
        tiny_config(band_names=["a", "b", "c"], position_embedding_type="wavelength")


def test_hyperspectral_sensor_and_estimated_bandwidths():
    sensor = hyperspectral_sensor([400.0, 410.0, 430.0])
    assert sensor.bandwidths() == [10.0, 10.0, 20.0]  # the nearest neighbour's distance
    assert estimate_bandwidths([430.0, 400.0, 410.0]) == [20.0, 10.0, 10.0]  # any order
    assert list(sensor.bands) == ["band_000", "band_001", "band_002"]
    with pytest.raises(ValueError, match="positive numbers"):
        hyperspectral_sensor([400.0, -1.0])


# --- wavelength positions ---------------------------------------------------------------------------------------


def test_group_centres_and_sincos():
    wavelengths = torch.tensor([[400.0, 500.0, 600.0, 700.0]])
    widths = torch.tensor([[10.0, 10.0, 20.0, 40.0]])
    centres, extents = group_wavelengths(wavelengths, widths, 3)  # 2 groups: the second padded by repetition
    assert centres.tolist() == [[500.0, 700.0]]  # the repeats of 700 do not move the centre
    assert extents.tolist() == [[215.0, 40.0]]  # 395 (400 - 10/2) to 610 (600 + 20/2)
    table = wavelength_sincos(centres, extents, 32)
    assert table.shape == (1, 2, 32)
    assert torch.allclose(table[0, 0, 0], torch.tensor(math.sin(500.0)))


def test_s2_model_runs_on_landsat_by_wavelength_and_matches_a_native_model():
    """Same weights, 12 S2 bands vs 6 Landsat bands: the S2 model given Landsat wavelengths equals a model built
    natively for those wavelengths (encoder and pretraining decoder)."""
    torch.manual_seed(0)
    s2_config = s2_wavelength_config(wavelength_projection=True)
    s2_model = S2MAEForPreTraining(s2_config).eval()
    with torch.no_grad():  # a non-trivial learnable map
        for module in s2_model.modules():
            if hasattr(module, "spectral_weight"):
                module.spectral_weight.normal_(std=0.05)
    names = ["B1", "B2", "B3", "B4", "B5", "B7"]
    native_config = tiny_config(band_names=names, sensor="landsat7_etm", position_embedding_type="wavelength",
                                wavelength_projection=True)  # fmt: skip
    native = S2MAEForPreTraining(native_config).eval()
    native.load_state_dict(s2_model.state_dict())  # no parameter depends on the band set
    pixels = pixel_batch(native_config)
    noise = torch.rand(2, native_config.num_tokens, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # Landsat's reflective bands lie inside Sentinel-2's range: no warning
        by_wavelength = s2_model(
            pixels, noise=noise, band_wavelengths=LANDSAT7.wavelengths(), band_bandwidths=LANDSAT7.bandwidths()
        )
        expected = native(pixels, noise=noise)
    torch.testing.assert_close(by_wavelength.logits, expected.logits)
    torch.testing.assert_close(by_wavelength.loss, expected.loss)
    # the encoder alone, and per-sample wavelengths (B, C) give the same
    encoder = S2MAEModel(s2_config).eval()
    encoder.load_state_dict(s2_model.s2mae.state_dict(), strict=False)
    batch_wavelengths = torch.tensor([LANDSAT7.wavelengths()] * 2)
    batch_widths = torch.tensor([LANDSAT7.bandwidths()] * 2)
    with torch.no_grad():
        per_sample = encoder(pixels, band_wavelengths=batch_wavelengths, band_bandwidths=batch_widths)
        native_encoder = S2MAEModel(native_config).eval()
        native_encoder.load_state_dict(encoder.state_dict())
        torch.testing.assert_close(per_sample.last_hidden_state, native_encoder(pixels).last_hidden_state)
    # a different wavelength list gives different features (positions follow the wavelengths)
    with torch.no_grad():
        shifted = encoder(pixels, band_wavelengths=[w + 40 for w in LANDSAT7.wavelengths()])
    assert not torch.allclose(shifted.last_hidden_state, per_sample.last_hidden_state)


def test_wavelength_model_round_trips_and_old_types_still_load(tmp_path):
    for kind in ("separable", "joint", "sincos", "wavelength"):
        config = tiny_config(position_embedding_type=kind, wavelength_projection=kind == "wavelength")
        model = S2MAEModel(config).eval()
        model.save_pretrained(tmp_path / kind)
        if kind != "wavelength":  # a checkpoint saved before this option existed: none of the new config fields
            path = tmp_path / kind / "config.json"
            values = json.loads(path.read_text())
            for key in ("band_bandwidths", "sensor", "wavelength_projection", "wavelength_check", "spectral_padding"):
                del values[key]
            path.write_text(json.dumps(values))
        loaded = S2MAEModel.from_pretrained(tmp_path / kind).eval()
        assert loaded.config.band_wavelengths == config.band_wavelengths
        pixels = pixel_batch(config)
        with torch.no_grad():
            torch.testing.assert_close(loaded(pixels).last_hidden_state, model(pixels).last_hidden_state)


def test_index_table_model_is_placed_by_wavelength():
    """A separable (index-table) S2 model run on Landsat with wavelengths takes its spectral rows at the Landsat
    groups' centre wavelengths, not at interpolated indices."""
    torch.manual_seed(0)
    config = tiny_config(band_names=list(SENTINEL2_BANDS))
    model = S2MAEModel(config).eval()
    pixels = pixel_batch(config, bands=6)
    table = model.embeddings.position_embeddings.spectral.detach()
    source, _ = group_wavelengths(torch.tensor([config.band_wavelengths]), torch.tensor([config.band_bandwidths]), 3)
    target, _ = group_wavelengths(torch.tensor([LANDSAT7.wavelengths()]), torch.tensor([LANDSAT7.bandwidths()]), 3)
    expected = interpolate_spectral_by_wavelength(table, source[0], target[0])
    got = model.embeddings.position_embeddings((2, 4, 4), band_wavelengths=torch.tensor([LANDSAT7.wavelengths()]),
                                               band_bandwidths=torch.tensor([LANDSAT7.bandwidths()]))  # fmt: skip
    spatial = model.embeddings.position_embeddings.spatial.detach()
    torch.testing.assert_close(got, (expected[:, :, None] + spatial[:, None]).flatten(1, 2))
    with torch.no_grad():
        model(pixels, band_wavelengths=LANDSAT7.wavelengths(), band_bandwidths=LANDSAT7.bandwidths())
    # resizing keeps the wavelengths (it used to drop them) and places the table by wavelength
    model.resize_position_embeddings(band_names=["B1", "B2", "B3", "B4", "B5", "B7"],
                                     band_wavelengths=LANDSAT7.wavelengths(), band_bandwidths=LANDSAT7.bandwidths())  # fmt: skip
    assert model.config.band_wavelengths == LANDSAT7.wavelengths()
    torch.testing.assert_close(model.embeddings.position_embeddings.spectral.detach(), expected)


def test_interpolation_by_wavelength_is_linear_and_clamped():
    table = torch.tensor([[[0.0], [10.0], [30.0]]])  # (1, 3, 1) at 500, 600, 800 nm
    source = torch.tensor([500.0, 600.0, 800.0])
    got = interpolate_spectral_by_wavelength(table, source, torch.tensor([400.0, 550.0, 700.0, 900.0]))
    assert got.flatten().tolist() == [0.0, 5.0, 20.0, 30.0]


# --- band counts not divisible by s -----------------------------------------------------------------------------


def test_band_count_not_divisible_is_an_error_unless_padding_is_chosen():
    with pytest.raises(ValueError, match="spectral_padding='repeat'"):
        tiny_config(band_names=["B02", "B03", "B04", "B08", "B11"])
    config = tiny_config(band_names=["B02", "B03", "B04", "B08", "B11"], spectral_padding="repeat")
    assert config.num_spectral_groups == 2 and config.num_tokens == 32
    model = S2MAEForPreTraining(config).eval()
    pixels = pixel_batch(config)
    assert pixels.shape[1] == 5
    noise = torch.rand(2, config.num_tokens, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pixels, noise=noise)
    assert out.logits.shape == (2, 32, 48)
    assert model.unpatchify(out.logits).shape == (2, 5, 16, 16)  # the repeat is dropped, no band cropped
    # the repeated band is left out of the loss: a prediction error on it alone changes nothing
    target = model.patchify(pad_bands_by_repetition(pixels, 3))
    band_of_value = torch.arange(3).repeat_interleave(16).expand(32, 48)  # band within cube of each cube value
    repeat = torch.zeros(32, 48, dtype=torch.bool)
    repeat[16:] = band_of_value[16:] == 2  # group 1 holds B08, B11, B11 (repeat): the padded slot is its 3rd band
    logits = target.clone()
    logits[:, repeat] += 5.0
    assert model.forward_loss(pad_bands_by_repetition(pixels, 3), logits, out.mask, None, torch.tensor(
        [True] * 5 + [False])).item() == 0.0  # fmt: skip
    # the encoder pads the same way: equal to padding by hand on a 6-band model with the same weights
    six = S2MAEModel(tiny_config(band_names=["B02", "B03", "B04", "B08", "B11", "B12"])).eval()
    five = S2MAEModel(config).eval()
    five.load_state_dict(six.state_dict())
    with torch.no_grad():
        by_hand = six(pad_bands_by_repetition(pixels, 3)).last_hidden_state
        torch.testing.assert_close(five(pixels).last_hidden_state, by_hand)
    assert pad_bands_by_repetition(pixels, 3)[:, 5].equal(pixels[:, 4])


def test_pixel_values_not_divisible_are_refused_without_padding():
    model = S2MAEModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="never cropped.*spectral_padding='repeat'"):
        model(pixel_batch(model.config, bands=7), interpolate_pos_encoding=True)


# --- safety -----------------------------------------------------------------------------------------------------


def test_wavelength_model_without_wavelengths_on_another_band_count_says_what_to_pass():
    model = S2MAEModel(s2_wavelength_config()).eval()
    with pytest.raises(ValueError, match=r"6 bands but the model was built for 12.*pass band_wavelengths=\[\.\.\.\]"):
        model(pixel_batch(model.config, bands=6), interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match=r"band_wavelengths must have shape \(6,\)"):
        model(pixel_batch(model.config, bands=6), band_wavelengths=[500.0] * 5)
    with pytest.raises(ValueError, match="finite positive"):
        model(pixel_batch(model.config, bands=6), band_wavelengths=[500.0] * 5 + [float("nan")])


def test_out_of_range_wavelengths_warn_or_raise():
    thermal = LANDSAT7.wavelengths(["B1", "B2", "B3", "B4", "B5", "B6"])  # B6 is thermal, 11450 nm
    pixels = pixel_batch(tiny_config(), bands=6)
    model = S2MAEModel(s2_wavelength_config()).eval()
    with pytest.warns(UserWarning, match=r"\[11450.0\] nm lie outside.*\(432.2-2289.9 nm"):
        model(pixels, band_wavelengths=thermal)
    strict = S2MAEModel(s2_wavelength_config(wavelength_check="error")).eval()
    with pytest.raises(ValueError, match="outside the spectral range.*wavelength_check='warn'"):
        strict(pixels, band_wavelengths=thermal)
    quiet = S2MAEModel(s2_wavelength_config(wavelength_check="ignore")).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet(pixels, band_wavelengths=thermal)
    # an index-table model interpolating over group index without wavelengths: a warning, or an error on request
    index_model = S2MAEModel(tiny_config(band_names=list(SENTINEL2_BANDS))).eval()
    with pytest.warns(UserWarning, match="interpolated over group INDEX.*pass band_wavelengths"):
        index_model(pixels, interpolate_pos_encoding=True)
    index_model.config.wavelength_check = "error"
    with pytest.raises(ValueError, match="interpolated over group INDEX"):
        index_model(pixels, interpolate_pos_encoding=True)


# --- hyperspectral ----------------------------------------------------------------------------------------------


def test_198_band_forward_backward_at_a_small_size():
    """An AVIRIS-like 198-band cube (400-2500 nm) through a 12-band S2 wavelength model, pretraining loss and
    gradients, and a model built natively for it."""
    wavelengths = torch.linspace(400.0, 2365.0, 198).tolist()
    sensor = hyperspectral_sensor(wavelengths)
    config = s2_wavelength_config(spectral_patch_size=6, image_size=16)
    model = S2MAEForPreTraining(config)
    pixels = torch.rand(2, 198, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"Bands at \[400.0, .*2365.0\] nm lie outside"):  # 400-430, 2295-2365 nm
        out = model(pixels, band_wavelengths=sensor.wavelengths(), band_bandwidths=sensor.bandwidths())
    out.loss.backward()
    assert out.logits.shape == (2, 33 * 16, 6 * 16)
    assert torch.isfinite(out.loss) and model.s2mae.embeddings.position_embeddings.spatial.grad.abs().sum() > 0
    native = S2MAEForPreTraining(
        tiny_config(
            band_names=list(sensor.bands),
            band_wavelengths=wavelengths,
            spectral_patch_size=6,
            position_embedding_type="wavelength",
        )  # fmt: skip
    )
    native(pixels).loss.backward()


def test_token_budget_and_clear_error_before_out_of_memory():
    config = S2MAEConfig()  # ViT-B, 128 px, p = 8, s = 3
    budget = token_budget(config, num_bands=198)
    assert (budget.num_groups, budget.num_tokens) == (66, 16_896)  # the count
    assert budget.attention_bytes == 12 * 16_896**2 * 4
    assert token_budget(config, num_bands=198, masked=True).num_visible_tokens == 1689
    assert token_budget(config).num_tokens == 1024
    with pytest.raises(ValueError, match=r"16896 tokens.*spectral_patch_size=7 gives 29 groups.*to 96 bands"):
        check_token_budget(config, num_bands=198, max_tokens=8192)
    with pytest.raises(ValueError, match="over the limit of 1.0 GiB"):
        check_token_budget(config, num_bands=12, batch_size=64, memory_bytes=2**30)
    assert check_token_budget(config, num_bands=12).num_tokens == 1024


def test_binning_by_wavelength():
    wavelengths = [400.0, 410.0, 420.0, 1000.0, 1010.0, 2400.0]  # a gap: empty bins are dropped
    pixels = torch.arange(6.0).reshape(1, 6, 1, 1).expand(2, 6, 2, 2)
    binned, centres, widths = bin_bands_by_wavelength(pixels, wavelengths, bin_width_nm=100.0)
    assert binned.shape == (2, 3, 2, 2)
    assert binned[0, :, 0, 0].tolist() == [1.0, 3.5, 5.0]
    assert centres == [410.0, 1005.0, 2400.0] and widths[0] == pytest.approx(30.0)
    assert bin_bands_by_wavelength(pixels[0], wavelengths, num_bins=2)[0].shape == (2, 2, 2)
    with pytest.raises(ValueError, match="exactly one"):
        bin_bands_by_wavelength(pixels, wavelengths)
