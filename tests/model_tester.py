"""A small model tester of our own (Transformers' ModelTesterMixin does not ship in the wheel).

`tiny_config` is the one tiny model configuration of the test suite: tests build their models from it, with
overrides for what they exercise, rather than spelling out sizes of their own.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine

from modeling_s2mae.configuration_s2mae import S2MAEConfig
from modeling_s2mae.data import EUROSAT_MS_BANDS, RasterSample
from modeling_s2mae.data.samples import Sample
from modeling_s2mae.image_processing_s2mae import S2MAEImageProcessor
from modeling_s2mae.modeling_s2mae import S2MAEForPreTraining


def tiny_config(**overrides: Any) -> S2MAEConfig:
    """A tiny S2MAE: 6 bands, 16 px, cubes 3 x 4 x 4 -> G = 2, h = w = 4, L = 32 tokens; 2 encoder and 2 decoder
    blocks of width 32 and 24, mask ratio 0.75. Any `S2MAEConfig` field can be overridden."""
    values = {
        "image_size": 16,
        "patch_size": 4,
        "spectral_patch_size": 3,
        "band_names": ["B02", "B03", "B04", "B08", "B11", "B12"],
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "decoder_hidden_size": 24,
        "decoder_num_hidden_layers": 2,
        "decoder_num_attention_heads": 4,
        "decoder_intermediate_size": 48,
        "mask_ratio": 0.75,
    }
    values.update(overrides)
    return S2MAEConfig(**values)


def pixel_batch(
    config: S2MAEConfig, batch_size: int = 2, seed: int = 0, size: int | None = None, bands: int | None = None
) -> torch.Tensor:
    """Random pixel values in [0, 1] of shape (B, C, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    side = size or config.image_size
    return torch.rand(batch_size, bands or config.num_channels, side, side, generator=generator)


def masking_noise(config: S2MAEConfig, batch_size: int = 2, seed: int = 1) -> torch.Tensor:
    """Fixed random-masking noise of shape (B, L)."""
    return torch.rand(batch_size, config.num_tokens, generator=torch.Generator().manual_seed(seed))


TINY_ENCODER: dict[str, int] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
"""The tiny encoder of the script-level tests (any band set, any image size)."""

TINY_DECODER: dict[str, int] = {
    "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 64,
}
"""The tiny decoder that goes with `TINY_ENCODER` for pretraining."""


def tiny_overrides(decoder: bool = True) -> str:
    """`TINY_ENCODER` (and `TINY_DECODER`) as a `--config_overrides` value for the example scripts."""
    values = {**TINY_ENCODER, **(TINY_DECODER if decoder else {})}
    return ",".join(f"{key}={value}" for key, value in values.items())


def save_tiny_pretraining_checkpoint(path: Path) -> Path:
    """Save a tiny pretraining checkpoint (`TINY_ENCODER` + `TINY_DECODER`, the 12 Sentinel-2 bands, 32 px, weights
    from seed 0) with its image processor into `path`, as run_pretrain.py saves one; returns `path`."""
    config = S2MAEConfig(**TINY_ENCODER, **TINY_DECODER, image_size=32)
    torch.manual_seed(0)
    S2MAEForPreTraining(config).save_pretrained(path)
    S2MAEImageProcessor.from_model_config(config).save_pretrained(path)
    return path


def half_nodata_samples(count: int, distinct: bool = False) -> list[Sample]:
    """`count` 13-band 8 x 8 EuroSAT-MS samples with nodata 0: even-numbered ones valid (value 100, or 100 + i when
    `distinct`), odd-numbered ones all nodata (rejected by the transform)."""
    return [
        Sample(
            id=f"s{i}",
            raster=RasterSample(
                array=np.full((13, 8, 8), (100 + i if distinct else 100) if i % 2 == 0 else 0, np.uint16),
                band_names=list(EUROSAT_MS_BANDS),
                nodata=0,
                transform=Affine.identity(),
                crs=None,
                source=[f"s{i}"],
            ),
        )
        for i in range(count)
    ]
