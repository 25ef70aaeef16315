"""Reconstruction figures: composites chosen by wavelength for any sensor, every masking strategy drawable."""

from pathlib import Path

import torch

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining
from modeling_s2mae.visualization import composite_bands, plot_reconstructions, usable_mask_ratios

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
        "decoder_intermediate_size": 64, "image_size": 16}  # fmt: skip


def test_composites_by_wavelength_for_landsat_and_by_name_for_sentinel2() -> None:
    landsat = ["B1", "B2", "B3", "B4", "B5", "B7"]
    wavelengths = [485.0, 560.0, 660.0, 835.0, 1650.0, 2220.0]
    assert composite_bands(landsat, wavelengths) == [
        ("true colour", ("B3", "B2", "B1")),
        ("false colour", ("B4", "B3", "B2")),
    ]
    assert composite_bands(["B02", "B03", "B04", "B08"])[0] == ("true colour", ("B04", "B03", "B02"))
    swir_only = composite_bands(["a", "b", "c"], [1600.0, 2200.0, 2300.0])
    assert swir_only == [("bands a, b, c", ("a", "b", "c"))]  # nothing visible: the first three bands


def test_spectral_masking_figure_skips_ratios_that_keep_no_group(tmp_path: Path) -> None:
    config = S2MAEConfig(**TINY, masking_strategy="spectral", mask_ratio=0.5)
    assert usable_mask_ratios(config) == [0.5, 0.75]  # 4 groups: 90 % and 95 % would keep none
    model = S2MAEForPreTraining(config).eval()
    path = plot_reconstructions(model, torch.rand(12, 16, 16), tmp_path / "figure.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_of_a_model_whose_last_spectral_group_is_padded(tmp_path: Path) -> None:
    config = S2MAEConfig(**{**TINY, "band_names": [f"b{i}" for i in range(5)], "spectral_padding": "repeat",
                            "patch_size": 4, "mask_ratio": 0.5},
                         band_wavelengths=[490.0, 560.0, 665.0, 842.0, 1610.0])  # fmt: skip
    model = S2MAEForPreTraining(config).eval()
    path = plot_reconstructions(model, torch.rand(5, 16, 16), tmp_path / "padded.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
