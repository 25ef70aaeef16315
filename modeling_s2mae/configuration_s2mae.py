"""Configuration of S2MAE, the spatial-spectral masked autoencoder.

Every choice the method description leaves open is a field here, so that a checkpoint carries all that is
needed to rebuild the model and to prepare its input (band names and order included).
"""

import copy
import difflib
import math
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

from .masking import MaskingStrategy, num_kept_tokens
from .sensors import (
    EUROSAT_MS_BANDS,
    SENTINEL2_13_BANDS,
    SENTINEL2_BANDS,
    SENTINEL2_WAVELENGTHS_NM,
    check_wavelengths_nm,
    get_sensor,
    known_band_wavelengths,
)

logger = logging.get_logger(__name__)

S2MAE_PRESETS: dict[str, dict[str, int]] = {
    "vit-s": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "vit-l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
    "vit-h": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120},
}
"""Encoder sizes by name. The decoder (512 wide, 4 blocks, 16 heads) is the same for all of them."""


PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification", "regression")
"""Accepted values of `problem_type` (None: inferred from the first labels, see
`S2MAEForImageClassification.compute_loss`)."""


@strict(accept_kwargs=True)
class S2MAEConfig(PreTrainedConfig):
    r"""Configuration of an S2MAE model. The defaults build the paper's ViT-B on 12 Sentinel-2 bands at 128 px.

    Notation: C = `num_channels` bands, H = W = `image_size`, p = `patch_size`, s = `spectral_patch_size`,
    G = C / s spectral groups, h = w = H / p, L = G * h * w tokens.

    Args:
        image_size: Side of the square input in pixels; must be divisible by `patch_size`.
        patch_size: Spatial side p of a cube (pixels).
        spectral_patch_size: Bands s per cube; `num_channels` must be divisible by it unless `spectral_padding` is
            "repeat".
        num_channels: Number of bands C. Defaults to `len(band_names)`.
        band_names: Names of the bands, in the order `pixel_values` carries them (default: 12 Sentinel-2 bands,
            B10 dropped). The image processor maps a file's bands onto this order by name.
        band_wavelengths: Centre wavelengths in nanometres, one per band. Filled from the sensor registry
            (`modeling_s2mae.sensors`) when every band is a Sentinel-2 band, or from `sensor`.
        band_bandwidths: Bandwidths (FWHM) in nanometres, one per band; filled like `band_wavelengths`. Without
            them the band spacing stands in (`sensors.estimate_bandwidths`).
        sensor: Optional registry name of the sensor of `band_names` (e.g. "landsat7_etm", see `sensors.SENSORS`),
            used to fill `band_wavelengths` / `band_bandwidths`.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: Encoder width, depth, heads and
            MLP width.
        hidden_act: MLP activation (exact GELU by default).
        hidden_dropout_prob, attention_probs_dropout_prob: Dropout probabilities.
        drop_path_rate: Stochastic depth rate, increased linearly over the encoder blocks.
        layer_norm_eps: LayerNorm epsilon.
        qkv_bias: Whether the query / key / value projections have a bias.
        initializer_range: Std of the truncated normal for position tables and the mask token.
        decoder_hidden_size, decoder_num_hidden_layers, decoder_num_attention_heads, decoder_intermediate_size:
            Decoder width, depth, heads and MLP width (pretraining only).
        mask_ratio: Fraction of cubes hidden during pretraining, in [0, 1).
        masking_strategy: "random" (uniform over all L cubes, the paper's default), "tube" (the same spatial
            locations hidden in every spectral group) or "spectral" (whole spectral groups hidden).
        position_embedding_type: "separable" (learnable spatial (h*w, D) + spectral (G, D) tables, the default),
            "joint" (one learnable (L, D) table, the layout of fine-tuned original classifiers), "sincos"
            (fixed separable sin-cos tables) or "wavelength" (learnable spatial table + spectral positions computed
            from each group's centre wavelength and extent: runs on any band set by wavelength; needs
            `band_wavelengths`).
        wavelength_projection: With "wavelength" positions, follow the fixed sin-cos of wavelength by a learnable
            map x + x W + b (W, b start at zero).
        wavelength_check: What to do when an input's band wavelengths fall outside the range the model was built
            for, or when another band count comes without wavelengths to an index-table model: "warn" (default),
            "error" or "ignore".
        spectral_padding: A band count not divisible by `spectral_patch_size`: "error" (default) or "repeat"
            (complete the last spectral group by repeating the last band; the repeats are left out of the
            reconstruction loss and of the group's centre wavelength). Bands are never cropped.
        norm_pix_loss: Normalise each target cube by its own mean and std before the MSE.
        pooling: "mean" over all tokens, or "mean_skip_first" (tokens 1..L-1, for parity with original
            fine-tuned classifiers).
        use_final_layernorm: Apply a LayerNorm to every token after the last encoder block (MAE encoders). Original
            fine-tuned classifiers have none: they pool the raw block outputs and normalise only the pooled vector.
        classifier_dropout: Dropout before the classification head.
    """

    model_type = "s2mae"

    image_size: int = 128
    patch_size: int = 8
    spectral_patch_size: int = 3
    num_channels: int | None = None
    band_names: list[str] | tuple[str, ...] | None = None
    band_wavelengths: list[float | int] | tuple[float | int, ...] | None = None
    band_bandwidths: list[float | int] | tuple[float | int, ...] | None = None
    sensor: str | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    initializer_range: float = 0.02
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float | int = 0.9
    masking_strategy: MaskingStrategy = "random"
    position_embedding_type: Literal["separable", "joint", "sincos", "wavelength"] = "separable"
    wavelength_projection: bool = False
    wavelength_check: Literal["warn", "error", "ignore"] = "warn"
    spectral_padding: Literal["error", "repeat"] = "error"
    norm_pix_loss: bool = False
    pooling: Literal["mean", "mean_skip_first"] = "mean"
    use_final_layernorm: bool = True
    classifier_dropout: float | int = 0.0

    def __post_init__(self, **kwargs: Any) -> None:
        if self.band_names is None:
            if self.num_channels is None or self.num_channels == len(SENTINEL2_BANDS):
                self.band_names = list(SENTINEL2_BANDS)
                if self.band_wavelengths is None and self.num_channels is None:
                    self.band_wavelengths = list(SENTINEL2_WAVELENGTHS_NM)
            else:
                self.band_names = [f"band_{index:02d}" for index in range(self.num_channels)]
        self.band_names = list(self.band_names)
        self._fill_wavelengths()
        if self.num_channels is None:
            self.num_channels = len(self.band_names)
        self._check_consistency()
        super().__post_init__(**kwargs)

    def _fill_wavelengths(self) -> None:
        """Wavelengths and bandwidths from the sensor registry (never a copy of its tables) when not given."""
        if self.band_wavelengths is None:
            if self.sensor is not None:
                sensor = get_sensor(self.sensor)
                self.band_wavelengths = sensor.wavelengths(self.band_names)
                if self.band_bandwidths is None:
                    self.band_bandwidths = sensor.bandwidths(self.band_names)
            elif (known := known_band_wavelengths(self.band_names)) is not None:
                self.band_wavelengths = known[0]
                if self.band_bandwidths is None:
                    self.band_bandwidths = known[1]
        elif self.band_bandwidths is None and (known := known_band_wavelengths(self.band_names)) is not None:
            if [float(v) for v in self.band_wavelengths] == known[0]:
                self.band_bandwidths = known[1]
        if self.band_wavelengths is not None:
            self.band_wavelengths = [float(value) for value in self.band_wavelengths]
        if self.band_bandwidths is not None:
            self.band_bandwidths = [float(value) for value in self.band_bandwidths]

    def _check_consistency(self) -> None:
        """Raise a `ValueError` naming the field for every combination the model cannot be built with.

        Values outside a `Literal` field's choices (`masking_strategy`, `position_embedding_type`, `pooling`) and
        values of the wrong type are rejected by the strict dataclass validation before this runs.
        """
        if self.num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {self.num_channels}.")
        if len(self.band_names) != self.num_channels:
            raise ValueError(
                f"band_names has {len(self.band_names)} names but num_channels is {self.num_channels}: "
                "give one name per band."
            )
        if len(set(self.band_names)) != len(self.band_names):
            raise ValueError(f"band_names must be unique, got {self.band_names}.")
        if self.band_wavelengths is not None and len(self.band_wavelengths) != self.num_channels:
            raise ValueError(
                f"band_wavelengths has {len(self.band_wavelengths)} values but there are {self.num_channels} bands."
            )
        if self.band_bandwidths is not None:
            if self.band_wavelengths is None:
                raise ValueError("band_bandwidths is set but band_wavelengths is not: give both (nm, one per band).")
            if len(self.band_bandwidths) != self.num_channels:
                raise ValueError(
                    f"band_bandwidths has {len(self.band_bandwidths)} values but there are {self.num_channels} bands."
                )
        for what in ("band_wavelengths", "band_bandwidths"):
            values = getattr(self, what)
            if values is not None and not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"{what} must be finite non-negative numbers in nanometres, got {values}.")
        if self.band_wavelengths is not None:
            check_wavelengths_nm(self.band_wavelengths, "band_wavelengths")  # positive nm, micrometres refused
        if self.position_embedding_type == "wavelength":
            if self.band_wavelengths is None:
                raise ValueError(
                    "position_embedding_type='wavelength' needs band_wavelengths (centre wavelengths in nm, one per "
                    f"band of {self.band_names}): pass band_wavelengths=[...] or sensor='landsat7_etm' (see "
                    "modeling_s2mae.sensors.SENSORS), or use Sentinel-2 band names."
                )
            for width in (self.hidden_size, self.decoder_hidden_size):
                if width % 2 != 0:
                    raise ValueError(f"wavelength position embeddings need even widths, got {width}.")
        positive = (
            "image_size", "patch_size", "spectral_patch_size", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "decoder_hidden_size", "decoder_num_hidden_layers",
            "decoder_num_attention_heads", "decoder_intermediate_size",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ValueError(f"layer_norm_eps must be a positive number, got {self.layer_norm_eps}.")
        if self.num_channels % self.spectral_patch_size != 0 and self.spectral_padding != "repeat":
            raise ValueError(
                f"num_channels ({self.num_channels}) is not divisible by spectral_patch_size "
                f"({self.spectral_patch_size}). S2MAE never crops bands silently: set spectral_padding='repeat' "
                "(the last group is completed by repeating the last band, masked out of the loss), choose a "
                "spectral_patch_size that divides the band count, or select bands in the image processor."
            )

        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size ({self.image_size}) is not divisible by patch_size ({self.patch_size}); "
                "resize the input in the image processor to a multiple of the patch size."
            )
        for prefix in ("", "decoder_"):
            width = getattr(self, f"{prefix}hidden_size")
            heads = getattr(self, f"{prefix}num_attention_heads")
            if width % heads != 0:
                raise ValueError(
                    f"{prefix}hidden_size ({width}) is not divisible by {prefix}num_attention_heads ({heads})."
                )
        if self.position_embedding_type == "sincos" and self.hidden_size % 4 != 0:
            raise ValueError(f"sincos position embeddings need hidden_size divisible by 4, got {self.hidden_size}.")
        if self.pooling == "mean_skip_first" and self.num_tokens < 2:
            raise ValueError("pooling='mean_skip_first' needs at least 2 tokens.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate", "classifier_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}.")
        self.num_kept_tokens()  # raises for a mask_ratio outside [0, 1) or one that keeps no token
        if getattr(self, "problem_type", None) not in PROBLEM_TYPES:
            raise ValueError(
                f"problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}: an unknown value would be "
                "trained as regression."
            )

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "S2MAEConfig":
        """`PreTrainedConfig.from_dict`, refusing the config of another model type (Transformers only warns, then
        builds an S2MAE from the other model's fields and the loading fails later on missing weights, or not at
        all)."""
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"This config is for model_type {model_type!r}, not {cls.model_type!r}: it describes another model, "
                "which S2MAE classes cannot load. Load it with its own classes (AutoModel.from_pretrained picks "
                "them), or convert an original S2MAE checkpoint with conversion/convert_original_to_hf.py."
            )
        if config_dict.get("band_names") is None:
            logger.warning(
                "This config.json names no band_names: the model's bands are assumed to be "
                f"{'the 12 Sentinel-2 bands' if config_dict.get('num_channels') in (None, 12) else 'band_00, band_01, ...'}"
                ", which may not be the bands it was trained on. Add band_names (in pixel_values order) to config.json."
            )
        fields = set(cls.__dataclass_fields__)
        for key in sorted(set(config_dict) - fields):
            if close := difflib.get_close_matches(key, fields, n=1, cutoff=0.85):
                logger.warning(f"config.json sets {key!r}, which S2MAE does not use: did you mean {close[0]!r}?")
        return super().from_dict(config_dict, **kwargs)

    @property
    def num_spectral_groups(self) -> int:
        """G = ceil(C / s), the number of spectral groups (C / s unless `spectral_padding="repeat"` pads)."""
        return -(-self.num_channels // self.spectral_patch_size)

    @property
    def grid_size(self) -> int:
        """h = w = H / p, the side of the spatial grid of cubes."""
        return self.image_size // self.patch_size

    @property
    def num_spatial_patches(self) -> int:
        """h * w."""
        return self.grid_size**2

    @property
    def num_tokens(self) -> int:
        """L = G * h * w, the number of cube tokens."""
        return self.num_spectral_groups * self.num_spatial_patches

    @property
    def cube_dim(self) -> int:
        """s * p * p, the number of values in one cube (the reconstruction target of one token)."""
        return self.spectral_patch_size * self.patch_size**2

    def num_kept_tokens(self, mask_ratio: float | None = None) -> int:
        """How many of the L tokens stay visible under this config's masking strategy (see `masking.num_kept_tokens`).

        Args:
            mask_ratio: Override of `self.mask_ratio`.

        Raises:
            ValueError: when the ratio is outside [0, 1) or keeps no token.
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        return num_kept_tokens(self.masking_strategy, ratio, self.num_spectral_groups, self.num_spatial_patches)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "S2MAEConfig":
        """Build a config from a named encoder size ("vit-s", "vit-b", "vit-l", "vit-h") plus overrides.

        Example: `S2MAEConfig.from_preset("vit-l", image_size=96)`.
        """
        if name not in S2MAE_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(S2MAE_PRESETS)}.")
        return cls(**{**copy.deepcopy(S2MAE_PRESETS[name]), **overrides})


__all__ = [
    "EUROSAT_MS_BANDS",
    "PROBLEM_TYPES",
    "S2MAEConfig",
    "S2MAE_PRESETS",
    "SENTINEL2_13_BANDS",
    "SENTINEL2_BANDS",
    "SENTINEL2_WAVELENGTHS_NM",
]
