"""Other sensors end to end: band wavelengths through transforms, collators and streamed rows into the model, and
pretraining on another sensor / a ~200-band ENVI cube from the command line (`--sensor`, `--spectral_bins`)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data.hub_format import load_spectral_dataset, to_model_inputs, write_hub_dataset
from modeling_s2mae.data.pipeline import SpectralDataArguments, make_transforms, spectral_bands
from modeling_s2mae.data.raster import RasterSample
from modeling_s2mae.data.samples import Sample
from modeling_s2mae.data.training import PixelCollator, collate_pixels
from modeling_s2mae.data.transforms import SampleTransform, SpectralBinning
from modeling_s2mae.hyperspectral import bin_bands_by_wavelength
from modeling_s2mae.sensors import SENTINEL2_BANDS, get_sensor

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "examples"))
import run_pretrain  # noqa: E402

LANDSAT = ["B1", "B2", "B3", "B4", "B5", "B7"]
ETM = get_sensor("landsat7_etm")
TINY = (
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64"
)


def raster(bands: list[str], wavelengths: list[float] | None = None, seed: int = 0, size: int = 16) -> RasterSample:
    array = np.random.default_rng(seed).integers(1, 255, (len(bands), size, size)).astype("uint8")
    return RasterSample(array, list(bands), None, Affine.identity(), None, ["mem"], band_wavelengths=wavelengths)


def landsat_transform(**kwargs) -> SampleTransform:
    processor = S2MAEImageProcessor(band_names=LANDSAT, size=16, scaling="minmax")
    return SampleTransform(processor, min_valid_fraction=0.0, **kwargs)


# --- Transform and collator -------------------------------------------------------------------------------------------


def test_transform_carries_each_samples_wavelengths_else_the_fallback():
    transform = landsat_transform(
        with_wavelengths=True,
        fallback_wavelengths=ETM.wavelengths(LANDSAT),
        fallback_bandwidths=ETM.bandwidths(LANDSAT),
    )
    plain = transform(Sample("plain", raster(LANDSAT)))
    assert plain["band_wavelengths"].dtype == torch.float32 and plain["band_wavelengths"].shape == (6,)
    assert plain["band_wavelengths"].tolist() == pytest.approx(ETM.wavelengths(LANDSAT))
    assert plain["band_bandwidths"].tolist() == pytest.approx(ETM.bandwidths(LANDSAT))
    # a file in another band order with its own wavelengths: selected into the processor's order
    own = [480.0, 565.0, 655.0, 840.0, 1610.0, 2200.0]
    order = [5, 0, 3, 1, 4, 2]
    shuffled = raster([LANDSAT[i] for i in order], [own[i] for i in order], seed=1)
    item = transform(Sample("own", shuffled))
    assert item["band_wavelengths"].tolist() == pytest.approx(own)
    assert item["band_bandwidths"].shape == (6,) and (item["band_bandwidths"] > 0).all()  # estimated from spacing
    batch = PixelCollator()([plain, item])
    assert set(batch) == {"pixel_values", "pixel_mask", "band_wavelengths", "band_bandwidths"}
    assert batch["band_wavelengths"].shape == (2, 6) and batch["band_bandwidths"].shape == (2, 6)
    assert batch["band_wavelengths"][1].tolist() == pytest.approx(own)


def test_default_transform_keeps_batches_as_before_and_mixed_batches_are_refused():
    plain = landsat_transform()(Sample("a", raster(LANDSAT, ETM.wavelengths(LANDSAT))))
    assert set(plain) == {"pixel_values", "pixel_mask"}
    with_wavelengths = landsat_transform(with_wavelengths=True)(Sample("b", raster(LANDSAT, ETM.wavelengths(LANDSAT))))
    with pytest.raises(ValueError, match="different inputs.*band_wavelengths"):
        collate_pixels([plain, with_wavelengths])


def test_unknown_wavelengths_without_a_fallback_is_an_error():
    with pytest.raises(ValueError, match="wavelengths are unknown.*fallback_wavelengths"):
        landsat_transform(with_wavelengths=True)(Sample("x", raster(LANDSAT)))
    with pytest.raises(ValueError, match="fallback_wavelengths has 2 values but the processor has 6 bands"):
        landsat_transform(with_wavelengths=True, fallback_wavelengths=[500.0, 600.0])


def test_make_transforms_follows_the_model_and_the_batch_places_bands_by_wavelength():
    args = SpectralDataArguments(train_dir=["unused"], min_valid_fraction=0.0, augment=False)
    s2_config = S2MAEConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                            decoder_num_attention_heads=2, decoder_intermediate_size=64)  # fmt: skip
    s2_processor = S2MAEImageProcessor(band_names=list(SENTINEL2_BANDS), size=16, scaling="minmax")
    train, _ = make_transforms(s2_processor, args, with_labels=False, config=s2_config)
    assert set(train(Sample("s2", raster(list(SENTINEL2_BANDS))))) == {"pixel_values", "pixel_mask"}  # unchanged

    config = S2MAEConfig(**{**s2_config.to_dict(), "position_embedding_type": "wavelength", "band_names": LANDSAT,
                            "sensor": "landsat7_etm", "band_wavelengths": None, "band_bandwidths": None,
                            "num_channels": None, "spectral_patch_size": 3, "mask_ratio": 0.5})  # fmt: skip
    train, evaluation = make_transforms(landsat_transform().processor, args, with_labels=False, config=config)
    shifted = [w + 15.0 for w in ETM.wavelengths(LANDSAT)]
    batch = collate_pixels(
        [evaluation(Sample("a", raster(LANDSAT))), evaluation(Sample("b", raster(LANDSAT, shifted)))]
    )
    assert batch["band_wavelengths"][0].tolist() == pytest.approx(config.band_wavelengths)
    model = S2MAEForPreTraining(config).eval()
    noise = torch.rand(2, 2 * 4)
    with torch.no_grad():
        by_batch = model(**batch, noise=noise).logits
        by_config = model(batch["pixel_values"], pixel_mask=batch["pixel_mask"], noise=noise).logits
    assert torch.allclose(by_batch[0], by_config[0], atol=1e-6)  # sample 0: the config's own wavelengths
    assert not torch.allclose(by_batch[1], by_config[1], atol=1e-4)  # sample 1: placed at its own wavelengths


def test_streamed_rows_carry_wavelengths(tmp_path):
    wavelengths = [480.0, 565.0, 655.0, 840.0, 1610.0, 2200.0]
    samples = [raster(LANDSAT, wavelengths, seed=i) for i in range(2)]
    write_hub_dataset(samples, tmp_path / "landsat", rows_per_shard=1)
    dataset = load_spectral_dataset(tmp_path / "landsat")
    processor = S2MAEImageProcessor(band_names=LANDSAT, size=16, scaling="minmax")
    assert to_model_inputs(dataset, processor, with_labels=False).column_names == ["pixel_values", "pixel_mask"]
    inputs = to_model_inputs(dataset, processor, with_labels=False, with_wavelengths=True)
    assert set(inputs.column_names) == {"pixel_values", "pixel_mask", "band_wavelengths", "band_bandwidths"}
    batch = collate_pixels(list(inputs))
    assert batch["band_wavelengths"].shape == (2, 6) and batch["band_wavelengths"][1].tolist() == wavelengths


# --- Spectral binning and the command line ----------------------------------------------------------------------------


def test_spectral_binning_is_the_librarys_and_keeps_nodata_out():
    wavelengths = list(np.linspace(400.0, 2500.0, 40))
    names = [f"{w:.2f} Nanometers" for w in wavelengths]
    binning = SpectralBinning.from_wavelengths(names, wavelengths, 7)
    sample = raster(names, wavelengths, size=8)
    sample.array[:, 0, 0] = 0
    sample.nodata = 0
    binned = binning.apply(sample)
    expected, centres, _ = bin_bands_by_wavelength(torch.from_numpy(sample.array.astype(np.float64)), wavelengths, 7)
    assert binned.band_names == list(binning.bin_names) and binned.band_wavelengths == pytest.approx(centres)
    assert np.isnan(binned.array[:, 0, 0]).all()
    assert np.allclose(binned.array[:, 1:, 1:], expected.numpy()[:, 1:, 1:], rtol=1e-6)
    assert sum(len(group) for group in binning.members) == 40
    with pytest.raises(ValueError, match="lacks"):
        binning.apply(raster(LANDSAT))
    with pytest.raises(ValueError, match=r"spectral bins must be in \[1, 40\]"):
        SpectralBinning.from_wavelengths(names, wavelengths, 41)


def test_sensor_arguments():
    with pytest.raises(ValueError, match="Unknown sensor 'landsat12'"):
        SpectralDataArguments(train_dir=["x"], sensor="landsat12")
    bands = spectral_bands(SpectralDataArguments(train_dir=["x"], sensor="landsat7"))
    assert bands.band_names == LANDSAT and bands.band_wavelengths == ETM.wavelengths(LANDSAT)
    assert bands.config_fields()["sensor"] == "landsat7_etm" and bands.binning is None
    with pytest.raises(ValueError, match="--spectral_bins needs the wavelengths"):
        spectral_bands(SpectralDataArguments(train_dir=["x"], spectral_bins=4), band_names=["a", "b", "c", "d"])


def write_envi_cube(folder: Path, bands: int = 198, size: int = 16) -> tuple[Path, list[float]]:
    """A reflectance-like int16 BSQ cube with the header syntax ENVI writes (multi-line `wavelength = {...}`)."""
    folder.mkdir(parents=True, exist_ok=True)
    wavelengths = [round(float(v), 2) for v in np.linspace(400.0, 2500.0, bands)]
    rng = np.random.default_rng(0)
    spectra = np.stack([np.interp(wavelengths, [400, 700, 800, 1500, 2500], end) for end in
                        ([500, 800, 4000, 2500, 1500], [1500, 2000, 2200, 2600, 2400], [300, 250, 150, 80, 50])])  # fmt: skip
    cube = np.einsum("hwk,kc->chw", rng.dirichlet([1, 1, 1], size=(size, size)), spectra)
    (cube + rng.normal(0, 30, cube.shape)).astype("<i2").tofile(folder / "cube.img")
    values = [f"{w:.2f}" for w in wavelengths]
    lines = [" " + ", ".join(values[i : i + 8]) for i in range(0, bands, 8)]
    header = (
        f"ENVI\ndescription = {{\n  test cube}}\nsamples = {size}\nlines   = {size}\nbands   = {bands}\n"
        "header offset = 0\nfile type = ENVI Standard\ndata type = 2\ninterleave = bsq\nbyte order = 0\n"
        "wavelength units = Nanometers\nwavelength = {\n" + ",\n".join(lines) + "}\n"
    )
    (folder / "cube.hdr").write_text(header)
    return folder / "cube.img", wavelengths


def cube_command(cube: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--scene_paths", str(cube), "--sensor", "data", "--position_embedding_type", "wavelength",
        "--tile_size", "8", "--image_size", "8", "--patch_size", "4", "--config_overrides", TINY,
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
        "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none", "--dataloader_num_workers", "0",
        "--output_dir", str(output), *extra,
    ]  # fmt: skip


def test_pretraining_on_a_198_band_envi_cube_from_the_command_line(tmp_path):
    cube, wavelengths = write_envi_cube(tmp_path / "cube")
    output = tmp_path / "run"
    metrics = run_pretrain.main(cube_command(cube, output, "--spectral_bins", "24", "--spectral_padding", "repeat",
                                             "--spectral_patch_size", "5"))  # fmt: skip
    assert metrics["train_steps"] == 2 and np.isfinite(metrics["train_loss"])
    config = json.loads((output / "config.json").read_text())
    assert config["position_embedding_type"] == "wavelength" and config["spectral_padding"] == "repeat"
    assert len(config["band_wavelengths"]) == len(config["band_names"]) == 24  # 24 bins of ~88 nm
    assert wavelengths[0] <= config["band_wavelengths"][0] < config["band_wavelengths"][-1] <= wavelengths[-1]
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["band_names"] == config["band_names"]
    model = S2MAEForPreTraining.from_pretrained(output)
    assert model.config.band_wavelengths == pytest.approx(config["band_wavelengths"])


def test_the_token_budget_is_checked_before_training(tmp_path):
    cube, _ = write_envi_cube(tmp_path / "cube")
    with pytest.raises(ValueError, match=r"198 bands at 8 px: 66 spectral groups, 264 tokens.*--spectral_bins N"):
        run_pretrain.main(cube_command(cube, tmp_path / "run", "--spectral_patch_size", "3", "--max_tokens", "200"))
    assert not (tmp_path / "run" / "config.json").exists()


def test_water_absorption_bands_stored_as_nodata_do_not_void_their_bins(tmp_path):
    cube, wavelengths = write_envi_cube(tmp_path / "cube", bands=60)
    values = np.fromfile(cube, dtype="<i2").reshape(60, 16, 16)
    water = [index for index, w in enumerate(wavelengths) if 1340 < w < 1450 or 1800 < w < 1960]
    values[water] = -9999  # bad bands, as many hyperspectral products store them
    values.tofile(cube)
    output = tmp_path / "run"
    metrics = run_pretrain.main(cube_command(cube, output, "--spectral_bins", "12", "--nodata", "-9999"))
    assert metrics["train_steps"] == 2 and np.isfinite(metrics["train_loss"]) and metrics["skipped_samples"] == 0
    # the library rule: a bin averages its members' valid values; a pixel with no valid member is NaN (invalid)
    binning = SpectralBinning.from_wavelengths([f"b{i}" for i in range(4)], [500.0, 510.0, 900.0, 910.0], 2)
    raster = RasterSample(
        np.array([[[1.0, 2.0]], [[np.nan, 4.0]], [[np.nan, 6.0]], [[np.nan, -1.0]]], dtype=np.float32),
        [f"b{i}" for i in range(4)], -1.0, None, None, [],
    )  # fmt: skip
    binned = binning.apply(raster).array  # (2, 1, 2)
    np.testing.assert_allclose(binned[0, 0], [1.0, 3.0])
    assert np.isnan(binned[1, 0, 0]) and binned[1, 0, 1] == 6.0
