"""Per-pixel S2MAE models: a backbone of 2D feature maps, semantic segmentation and change detection.

The encoder's token sequence of one layer, (B, G * h * w, D) spectral-group major, becomes a feature map (B, D, h, w):
the G spectral groups at each spatial position are merged (their mean by default; or concatenated and projected back
to D). `S2MAEBackbone` follows Transformers' backbone conventions (`out_indices` / `out_features` over the stages
"stem" (the embeddings) and "stage1" .. "stageN" (the output of encoder block i), `channels`, `BackboneOutput`), so it
plugs into Transformers' `UperNetForSemanticSegmentation`. `S2MAEForSemanticSegmentation` is the same UPerNet head
(Transformers' `UperNetHead`) in one S2MAE class, with nodata handling and class weights;
`S2MAEForChangeDetection` runs one shared (Siamese) backbone on two dates and fuses the two feature maps per level.

The dense settings live in the (S2MAE) config as extra fields with the defaults of `DENSE_DEFAULTS`:
`out_indices`, `spectral_merge`, `add_fpn`, `decode_channels`, `pool_scales`, `semantic_loss_ignore_index`,
`class_weights`, `change_fusion`. A checkpoint saved by one of these models carries them.

Shapes: B batch, C bands, H x W pixels, p patch, G spectral groups, h = H / p, w = W / p, D width, K labels.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.backbone_utils import BackboneConfigMixin, BackboneMixin
from transformers.modeling_outputs import BackboneOutput, SemanticSegmenterOutput
from transformers.models.upernet.configuration_upernet import UperNetConfig
from transformers.models.upernet.modeling_upernet import UperNetHead
from transformers.utils import ModelOutput

from .configuration_s2mae import S2MAEConfig
from .modeling_s2mae import S2MAEModel, S2MAEPreTrainedModel, check_pixel_mask, is_tracing
from .position_embeddings import WavelengthsLike

DENSE_DEFAULTS: dict[str, Any] = {
    "out_indices": None,  # None: four stages evenly spaced over the depth, see `default_out_indices`
    "spectral_merge": "mean",  # "mean" | "concat" (concatenate the G groups, project G * D -> D per level)
    "add_fpn": False,  # BEiT-style pyramid from 4 levels: x4 and x2 up-sampled, as is, x2 down-sampled
    "decode_channels": 256,  # width of the UPerNet decoder
    "pool_scales": [1, 2, 3, 6],  # pyramid pooling of the UPerNet decoder
    "semantic_loss_ignore_index": 255,  # label value of unlabelled / nodata pixels, left out of loss and metrics
    "class_weights": None,  # per-class loss weights (K values), e.g. for rare classes
    "change_fusion": "difference",  # "difference" (|f1 - f2|) | "concat" ([f1, f2]) | "both" ([|f1 - f2|, f1, f2])
}
"""Per-pixel settings read from the config (`getattr(config, name, default)`)."""

SPECTRAL_MERGES = ("mean", "concat")
CHANGE_FUSIONS = ("difference", "concat", "both")


def dense_setting(config: S2MAEConfig, name: str) -> Any:
    """The config's value of a per-pixel setting, or its default from `DENSE_DEFAULTS`."""
    value = getattr(config, name, None)
    return DENSE_DEFAULTS[name] if value is None else value


def stage_names(config: S2MAEConfig) -> list[str]:
    """["stem", "stage1", ..., "stageN"]: the embeddings' output and the output of each of the N encoder blocks."""
    return ["stem"] + [f"stage{index}" for index in range(1, config.num_hidden_layers + 1)]


def default_out_indices(num_hidden_layers: int) -> list[int]:
    """Four stages evenly spaced over the depth, the last block included: [3, 6, 9, 12] for 12 blocks."""
    return sorted({max(1, round(num_hidden_layers * k / 4)) for k in range(1, 5)})


class _StageSelection(BackboneConfigMixin):
    """Transformers' own validation and alignment of `out_features` / `out_indices` against the stage names."""

    def __init__(self, names: list[str]):
        self.stage_names = names


def select_stages(
    config: S2MAEConfig, out_features: list[str] | None = None, out_indices: list[int] | None = None
) -> tuple[list[str], list[int]]:
    """Align and check the stages a backbone returns (the rules of Transformers' `BackboneConfigMixin`).

    The arguments win over the config's `out_features` / `out_indices`; with neither, `default_out_indices`.
    Negative indices count from the last stage.

    Returns:
        (out_features, out_indices), in stage order, indices non-negative.

    Raises:
        ValueError: unknown stage names, indices out of range, duplicates, wrong order, or names and indices that do
            not name the same stages.
    """
    if out_features is None and out_indices is None:
        out_features, out_indices = getattr(config, "out_features", None), getattr(config, "out_indices", None)
    if out_features is None and out_indices is None:
        out_indices = default_out_indices(config.num_hidden_layers)
    names = stage_names(config)
    selection = _StageSelection(names)
    selection.set_output_features_output_indices(
        list(out_features) if out_features is not None else None,
        list(out_indices) if out_indices is not None else None,
    )
    indices = [index % len(names) for index in selection.out_indices]
    return [names[index] for index in indices], indices


def apply_dense_settings(config: S2MAEConfig, settings: dict[str, Any]) -> None:
    """Set per-pixel settings given as keyword arguments (e.g. `from_pretrained(path, change_fusion="concat")`: keys
    that a checkpoint's config.json does not hold yet reach the model's constructor) on `config`.

    Raises:
        TypeError: a key that is not a per-pixel setting.
    """
    unknown = sorted(set(settings) - set(DENSE_DEFAULTS) - {"out_features"})
    if unknown:
        raise TypeError(f"Unknown arguments {unknown}; per-pixel settings are {sorted(DENSE_DEFAULTS)}.")
    if "out_features" in settings or "out_indices" in settings:
        config.out_indices = select_stages(
            config, settings.pop("out_features", None), settings.pop("out_indices", None)
        )[1]
    for name, value in settings.items():
        setattr(config, name, value)


def check_dense_config(config: S2MAEConfig) -> None:
    """Raise a `ValueError` naming the setting when a per-pixel setting of `config` is unusable."""
    merge = dense_setting(config, "spectral_merge")
    if merge not in SPECTRAL_MERGES:
        raise ValueError(f"spectral_merge must be one of {SPECTRAL_MERGES}, got {merge!r}.")
    fusion = dense_setting(config, "change_fusion")
    if fusion not in CHANGE_FUSIONS:
        raise ValueError(f"change_fusion must be one of {CHANGE_FUSIONS}, got {fusion!r}.")
    if int(dense_setting(config, "decode_channels")) < 1:
        raise ValueError(f"decode_channels must be >= 1, got {dense_setting(config, 'decode_channels')}.")
    weights = dense_setting(config, "class_weights")
    if weights is not None:
        if len(weights) != config.num_labels:
            raise ValueError(
                f"class_weights has {len(weights)} values but there are {config.num_labels} labels: give one weight "
                "per class."
            )
        if any(float(value) < 0 for value in weights) or not any(float(value) > 0 for value in weights):
            raise ValueError(f"class_weights must be >= 0 with at least one > 0, got {list(weights)}.")


class S2MAEDensePreTrainedModel(S2MAEPreTrainedModel):
    """S2MAE initialisation for the encoder; Transformers' default one for the 2D convolutions and batch norms."""

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)):
            PreTrainedModel._init_weights(self, module)
        else:
            super()._init_weights(module)


class S2MAESpectralMerge(nn.Module):
    """Token sequence of one layer -> feature map: (B, G * h * w, D) -> (B, D, h, w), spectral groups merged."""

    def __init__(self, config: S2MAEConfig, merge: str):
        super().__init__()
        self.merge = merge
        self.num_groups = config.num_spectral_groups
        width = config.hidden_size
        self.projection = nn.Linear(self.num_groups * width, width) if merge == "concat" else None

    def forward(self, hidden_states: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        groups, height, width = grid
        batch_size, _, dim = hidden_states.shape
        tokens = hidden_states.reshape(batch_size, groups, height * width, dim)  # (B, G, h * w, D)
        if self.projection is None:
            merged = tokens.mean(dim=1)  # (B, h * w, D)
        else:
            if groups != self.num_groups:
                raise ValueError(
                    f"spectral_merge='concat' projects exactly {self.num_groups} spectral groups, the input has "
                    f"{groups}: use spectral_merge='mean' to run on another band count."
                )
            merged = self.projection(tokens.permute(0, 2, 1, 3).reshape(batch_size, height * width, groups * dim))
        return merged.transpose(1, 2).reshape(batch_size, dim, height, width)  # (B, D, h, w)


class S2MAEFeaturePyramid(nn.Module):
    """Four same-scale maps -> strides x4 up, x2 up, x1, x2 down (the BEiT / ViTDet recipe for ViT backbones)."""

    def __init__(self, width: int):
        super().__init__()
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2),
            nn.BatchNorm2d(width),
            nn.GELU(),
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2),
        )
        self.fpn2 = nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """4 x (B, D, h, w) -> (B, D, 4h, 4w), (B, D, 2h, 2w), (B, D, h, w), (B, D, h/2, w/2)."""
        return [op(feature) for op, feature in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), feature_maps)]


class S2MAEFeatureMaps(nn.Module):
    """Hidden states of the encoder -> one (B, D, h, w) map per selected stage (+ the optional pyramid).

    Args:
        config: The model's config; the stages are `select_stages(config)`, written back to `config.out_indices`.
    """

    def __init__(self, config: S2MAEConfig):
        super().__init__()
        self.out_features, self.out_indices = select_stages(config)
        config.out_indices = list(self.out_indices)
        if hasattr(config, "out_features"):
            del config.out_features  # only out_indices is stored, so that a later override cannot leave it stale
        merge = dense_setting(config, "spectral_merge")
        self.spectral_merges = nn.ModuleDict({name: S2MAESpectralMerge(config, merge) for name in self.out_features})
        add_fpn = bool(dense_setting(config, "add_fpn"))
        if add_fpn and len(self.out_indices) != 4:
            raise ValueError(f"add_fpn needs exactly 4 out_indices (one per pyramid level), got {self.out_indices}.")
        self.fpn = S2MAEFeaturePyramid(config.hidden_size) if add_fpn else None
        self.channels = [config.hidden_size] * len(self.out_indices)

    def forward(
        self, hidden_states: tuple[torch.Tensor, ...], layernorm: nn.Module, grid: tuple[int, int, int]
    ) -> list[torch.Tensor]:
        """`hidden_states` (N + 1) x (B, G * h * w, D), grid (G, h, w) -> one (B, D, h, w) map per stage.

        Each stage goes through the encoder's final `layernorm` first (the identity without one).
        """
        maps = [
            self.spectral_merges[name](layernorm(hidden_states[index]), grid)
            for name, index in zip(self.out_features, self.out_indices)
        ]
        return self.fpn(maps) if self.fpn is not None else maps


def _encode_maps(
    encoder: S2MAEModel,
    feature_maps: S2MAEFeatureMaps,
    pixel_values: torch.Tensor,
    interpolate_pos_encoding: bool,
    output_attentions: bool = False,
    band_wavelengths: WavelengthsLike | None = None,
    band_bandwidths: WavelengthsLike | None = None,
) -> tuple[list[torch.Tensor], Any]:
    """Run the encoder and turn its hidden states into feature maps: (maps, the encoder's output)."""
    outputs = encoder(
        pixel_values,
        interpolate_pos_encoding=interpolate_pos_encoding,
        output_attentions=output_attentions,
        output_hidden_states=True,
        return_dict=True,
        band_wavelengths=band_wavelengths,
        band_bandwidths=band_bandwidths,
    )
    config = encoder.config
    grid = (
        pixel_values.shape[1] // config.spectral_patch_size,
        pixel_values.shape[2] // config.patch_size,
        pixel_values.shape[3] // config.patch_size,
    )
    return feature_maps(outputs.hidden_states, encoder.layernorm, grid), outputs


_ENCODER_CHECKPOINT_EXTRAS = [r"^decoder\.", r"^s2mae\.pooler\.", r"^classifier\.", r"^decode_head\."]
"""Weights of other S2MAE heads that a per-pixel model leaves out when it loads their checkpoint."""


class S2MAEBackbone(BackboneMixin, S2MAEDensePreTrainedModel):
    """The S2MAE encoder as a Transformers backbone: one (B, D, h, w) feature map per selected stage.

    Weights are laid out as in the other S2MAE heads (`s2mae.*` for the encoder), so `from_pretrained` takes the
    encoder of any S2MAE checkpoint (pretraining, feature extraction, classification, segmentation).

    Args:
        config: An `S2MAEConfig`; `out_indices`, `spectral_merge` and `add_fpn` are read from it (see
            `DENSE_DEFAULTS`).
        **settings: Per-pixel settings overriding the config's, among them `out_features` or `out_indices`: the
            stages to return (see `select_stages`). The choice is written into `config.out_indices`, so a saved
            backbone keeps it.
    """

    _keys_to_ignore_on_load_unexpected = _ENCODER_CHECKPOINT_EXTRAS

    def __init__(self, config: S2MAEConfig, **settings: Any):
        apply_dense_settings(config, settings)
        check_dense_config(config)
        super().__init__(config)
        self.s2mae = S2MAEModel(config, add_pooling_layer=False)
        self.feature_maps = S2MAEFeatureMaps(config)
        self.post_init()

    def _init_transformers_backbone(self) -> None:
        # S2MAEConfig has no BackboneConfigMixin: the stages come from the depth, the selection from select_stages
        self.stage_names = stage_names(self.config)
        self.num_features = [self.config.hidden_size] * len(self.stage_names)

    @property
    def out_indices(self) -> list[int]:
        return list(self.feature_maps.out_indices)

    @out_indices.setter
    def out_indices(self, out_indices: list[int]) -> None:
        self._reselect(None, list(out_indices))

    @property
    def out_features(self) -> list[str]:
        return list(self.feature_maps.out_features)

    @out_features.setter
    def out_features(self, out_features: list[str]) -> None:
        self._reselect(list(out_features), None)

    def _reselect(self, out_features: list[str] | None, out_indices: list[int] | None) -> None:
        if dense_setting(self.config, "spectral_merge") == "concat" or self.feature_maps.fpn is not None:
            raise ValueError(
                "This backbone has trained weights per stage (spectral_merge='concat' or add_fpn): choose the stages "
                "when loading it (from_pretrained(..., out_indices=...))."
            )
        self.config.out_indices = select_stages(self.config, out_features, out_indices)[1]
        self.feature_maps = S2MAEFeatureMaps(self.config).to(self.device)

    def get_input_embeddings(self) -> nn.Module:
        return self.s2mae.get_input_embeddings()

    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> BackboneOutput | tuple:
        """(B, C, H, W) -> `BackboneOutput.feature_maps`, one (B, D, H / p, W / p) map per stage in `out_features`.

        With `add_fpn` the four maps have strides p / 4, p / 2, p and 2 p instead.

        Args:
            pixel_values: (B, C, H, W) float in [0, 1], bands in `config.band_names` order.
            interpolate_pos_encoding: Accept another image size or band count (interpolated position tables).
            output_hidden_states: Also return the encoder's hidden states, each (B, G * h * w, D).
            output_attentions: Also return the attention maps (eager attention only).
            band_wavelengths, band_bandwidths: (C,) or (B, C) nm of the input's bands, as the image processor returns
                them (see `S2MAEModel.forward`).
        """
        output_attentions, output_hidden_states, return_dict = self._resolve_output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        maps, outputs = _encode_maps(
            self.s2mae, self.feature_maps, pixel_values, interpolate_pos_encoding, output_attentions,
            band_wavelengths, band_bandwidths,
        )  # fmt: skip
        output = BackboneOutput(
            feature_maps=tuple(maps),
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


def _upernet_head(config: S2MAEConfig, in_channels: list[int], num_labels: int) -> UperNetHead:
    """Transformers' UPerNet decoder with this config's `decode_channels` and `pool_scales`."""
    head_config = UperNetConfig(
        hidden_size=int(dense_setting(config, "decode_channels")),
        pool_scales=list(dense_setting(config, "pool_scales")),
        num_labels=num_labels,
        backbone_config={"model_type": "resnet"},  # unused: only the head is built
    )
    return UperNetHead(head_config, in_channels=list(in_channels))


def check_dense_labels(labels: torch.Tensor, num_labels: int, ignore_index: int, shape: torch.Size) -> torch.Tensor:
    """Check per-pixel class ids and return them as long.

    Args:
        labels: (B, H, W) integer class ids in [0, num_labels), or `ignore_index` for unlabelled pixels.
        shape: (B, C, H, W) of the input the labels belong to.

    Raises:
        ValueError: wrong shape or dtype, or ids outside [0, num_labels) that are not `ignore_index` (this value
            check runs in eager mode only, not in traced or compiled graphs).
    """
    expected = (shape[0], shape[2], shape[3])
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels must be (B, H, W) = {expected} class ids, got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got {labels.dtype}.")
    labels = labels.long()
    if is_tracing():  # a value check needs a data-dependent branch: eager mode only
        return labels
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_labels))
    if bool(bad.any()):
        values = sorted({int(v) for v in labels[bad].unique()[:10]})
        raise ValueError(
            f"labels hold class ids {values} outside [0, {num_labels}) that are not the ignore index {ignore_index}: "
            "set num_labels to cover every class, or map unlabelled values to the ignore index."
        )
    return labels


def dense_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    config: S2MAEConfig,
    pixel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel cross-entropy over labelled, valid pixels, weighted by `config.class_weights`.

    Args:
        logits: (B, K, H, W).
        labels: (B, H, W) class ids; `config.semantic_loss_ignore_index` for unlabelled pixels.
        pixel_mask: (B, H, W), 0 where the input had no valid data; those pixels are left out as well.

    Returns:
        Scalar float32 loss (the weighted mean over the pixels counted; 0 with a gradient when none is).
    """
    ignore_index = int(dense_setting(config, "semantic_loss_ignore_index"))
    labels = check_dense_labels(labels.to(logits.device), logits.shape[1], ignore_index, logits.shape)
    if pixel_mask is not None:
        labels = labels.masked_fill(pixel_mask.to(labels.device) == 0, ignore_index)
    weights = dense_setting(config, "class_weights")
    weight = None if weights is None else torch.tensor([float(v) for v in weights], device=logits.device)
    # cross_entropy's weighted mean, written without a data-dependent branch (traceable by torch.compile /
    # torch.export): the sum of the per-pixel losses over the sum of the counted pixels' class weights, 0 (with a
    # gradient) when no pixel is counted
    per_pixel = nn.functional.cross_entropy(
        logits.float(), labels, weight=weight, ignore_index=ignore_index, reduction="none"
    )  # (B, H, W), 0 where ignored
    counted = labels != ignore_index
    if weight is None:
        pixel_weights = counted.float()
    else:
        pixel_weights = weight[labels.masked_fill(~counted, 0)] * counted
    return per_pixel.sum() / pixel_weights.sum().clamp(min=torch.finfo(torch.float32).tiny)


class S2MAEForSemanticSegmentation(S2MAEDensePreTrainedModel):
    """`S2MAEBackbone` + Transformers' UPerNet decoder, logits up-sampled to the input size.

    The same architecture as `UperNetForSemanticSegmentation` on an `S2MAEBackbone`, as one S2MAE class: it loads the
    encoder of any S2MAE checkpoint with `from_pretrained`, leaves nodata pixels (`pixel_mask`) and unlabelled pixels
    (`config.semantic_loss_ignore_index`) out of the loss, and weights classes with `config.class_weights`.
    """

    accepts_loss_kwargs = False  # the loss is a plain mean: Trainer divides it for gradient accumulation
    _keys_to_ignore_on_load_unexpected = _ENCODER_CHECKPOINT_EXTRAS[:-1]

    def __init__(self, config: S2MAEConfig, **settings: Any):
        apply_dense_settings(config, settings)
        super().__init__(config)
        check_dense_config(config)
        if config.num_labels < 2:
            raise ValueError(f"Semantic segmentation needs num_labels >= 2, got {config.num_labels}.")
        self.s2mae = S2MAEModel(config, add_pooling_layer=False)
        self.feature_maps = S2MAEFeatureMaps(config)
        self.decode_head = _upernet_head(config, self.feature_maps.channels, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.s2mae.get_input_embeddings()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> SemanticSegmenterOutput | tuple:
        """Segment `pixel_values` (B, C, H, W).

        Args:
            labels: (B, H, W) class ids in [0, num_labels), `config.semantic_loss_ignore_index` for unlabelled pixels.
            pixel_mask: (B, H, W), 1 for valid pixels; pixels with 0 are left out of the loss.
            interpolate_pos_encoding: Accept another image size or band count.
            band_wavelengths, band_bandwidths: (C,) or (B, C) nm of the input's bands, as the image processor returns
                them, so that `model(**processor(images, ...))` works (see `S2MAEModel.forward`).

        Returns:
            `SemanticSegmenterOutput` with `logits` (B, num_labels, H, W) and `loss` when labels are given.
        """
        output_attentions, output_hidden_states, return_dict = self._resolve_output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if pixel_mask is not None:
            check_pixel_mask(pixel_mask, pixel_values)
        maps, outputs = _encode_maps(
            self.s2mae, self.feature_maps, pixel_values, interpolate_pos_encoding, output_attentions,
            band_wavelengths, band_bandwidths,
        )  # fmt: skip
        logits = self.decode_head(maps)  # (B, K, h', w')
        logits = nn.functional.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear", align_corners=False)
        loss = dense_cross_entropy(logits, labels, self.config, pixel_mask) if labels is not None else None
        output = SemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


@dataclass
class S2MAEChangeDetectionOutput(ModelOutput):
    """Output of `S2MAEForChangeDetection`.

    Args:
        loss: Weighted per-pixel cross-entropy (when labels are given).
        logits: (B, 2, H, W), class 0 "no change", class 1 "change".
        feature_maps: Per level, the fused (B, D', h, w) maps the decoder read (D' = D, 2 D or 3 D by fusion).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    feature_maps: tuple[torch.Tensor, ...] | None = None


def _repeat_per_sample(values: WavelengthsLike | None) -> WavelengthsLike | None:
    """Per-sample (B, C) band values -> (2B, C) for the two dates stacked in one batch; others unchanged."""
    if isinstance(values, torch.Tensor) and values.dim() == 2:
        return torch.cat([values, values])
    return values


class S2MAEForChangeDetection(S2MAEDensePreTrainedModel):
    """Siamese S2MAE: one shared `S2MAEBackbone` on both dates, per-level fusion, a UPerNet decoder to 2 classes.

    `config.change_fusion`: "difference" (|f1 - f2|, symmetric in the dates), "concat" ([f1, f2]) or "both".
    `config.class_weights` (2 values) weights the loss; change is rare, so e.g. [1.0, 10.0]. `config.num_labels` is
    set to 2 ("no change", "change").
    """

    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_unexpected = _ENCODER_CHECKPOINT_EXTRAS[:-1]

    def __init__(self, config: S2MAEConfig, **settings: Any):
        apply_dense_settings(config, settings)
        if config.num_labels != 2 or config.id2label.get(1) != "change":
            config.id2label, config.label2id = {0: "no change", 1: "change"}, {"no change": 0, "change": 1}
        super().__init__(config)
        check_dense_config(config)
        self.fusion = dense_setting(config, "change_fusion")
        self.s2mae = S2MAEModel(config, add_pooling_layer=False)  # shared by both dates
        self.feature_maps = S2MAEFeatureMaps(config)
        factor = {"difference": 1, "concat": 2, "both": 3}[self.fusion]
        self.decode_head = _upernet_head(config, [c * factor for c in self.feature_maps.channels], 2)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.s2mae.get_input_embeddings()

    def fuse(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Two (B, D, h, w) maps of one level -> (B, D', h, w) by `config.change_fusion`."""
        if self.fusion == "difference":
            return (before - after).abs()
        if self.fusion == "concat":
            return torch.cat([before, after], dim=1)
        return torch.cat([(before - after).abs(), before, after], dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_values_2: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        pixel_mask_2: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> S2MAEChangeDetectionOutput | tuple:
        """Change map of two co-registered images of one place.

        Args:
            pixel_values: (B, C, H, W), the first date.
            pixel_values_2: (B, C, H, W), the second date: the same bands (and band order), grid and size.
            labels: (B, H, W), 1 where it changed, 0 where not, `config.semantic_loss_ignore_index` where unknown.
            pixel_mask, pixel_mask_2: (B, H, W), 0 at nodata pixels of each date; left out of the loss.
            band_wavelengths, band_bandwidths: (C,) or (B, C) nm of the bands (the same for both dates), as the image
                processor returns them (see `S2MAEModel.forward`).

        Returns:
            `S2MAEChangeDetectionOutput` with `logits` (B, 2, H, W) and `loss` when labels are given.
        """
        return_dict = bool(self.config.return_dict if return_dict is None else return_dict)
        if not isinstance(pixel_values_2, torch.Tensor) or pixel_values_2.shape != pixel_values.shape:
            shape = tuple(pixel_values_2.shape) if isinstance(pixel_values_2, torch.Tensor) else type(pixel_values_2)
            raise ValueError(
                f"The two dates must have the same shape (B, C, H, W): got {tuple(pixel_values.shape)} and {shape}. "
                "Resample both onto one grid with the same bands."
            )
        for mask, values in ((pixel_mask, pixel_values), (pixel_mask_2, pixel_values_2)):
            if mask is not None:
                check_pixel_mask(mask, values)
        batch_size = pixel_values.shape[0]
        # one pass of both dates through the shared encoder, each (2B, D, h, w)
        both, _ = _encode_maps(
            self.s2mae, self.feature_maps, torch.cat([pixel_values, pixel_values_2]), interpolate_pos_encoding,
            band_wavelengths=_repeat_per_sample(band_wavelengths), band_bandwidths=_repeat_per_sample(band_bandwidths),
        )  # fmt: skip
        fused = [self.fuse(level[:batch_size], level[batch_size:]) for level in both]
        logits = self.decode_head(fused)
        logits = nn.functional.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear", align_corners=False)
        loss = None
        if labels is not None:
            mask = None
            if pixel_mask is not None or pixel_mask_2 is not None:
                ones = torch.ones_like(labels)
                mask = (pixel_mask if pixel_mask is not None else ones) * (
                    pixel_mask_2 if pixel_mask_2 is not None else ones
                )
            loss = dense_cross_entropy(logits, labels, self.config, mask)
        output = S2MAEChangeDetectionOutput(loss=loss, logits=logits, feature_maps=tuple(fused))
        return output if return_dict else output.to_tuple()


__all__ = [
    "DENSE_DEFAULTS",
    "S2MAEBackbone",
    "S2MAEChangeDetectionOutput",
    "S2MAEFeatureMaps",
    "S2MAEForChangeDetection",
    "S2MAEForSemanticSegmentation",
    "apply_dense_settings",
    "check_dense_config",
    "default_out_indices",
    "dense_cross_entropy",
    "select_stages",
    "stage_names",
]
