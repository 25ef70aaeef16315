"""S2MAE models: cube embedding -> spatial-spectral position tables -> ViT encoder (-> MAE decoder | head).

Shapes use: B batch, C bands, H x W pixels, p spatial patch, s spectral patch, G = C / s spectral groups,
h = H / p, w = W / p, L = G * h * w tokens (spectral-group major), K visible tokens, D width.
"""

import functools
import itertools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging
from transformers.utils.output_capturing import OutputRecorder, capture_outputs, maybe_install_capturing_hooks

from .configuration_s2mae import S2MAEConfig
from .masking import mask_tokens, num_kept_tokens, token_noise
from .position_embeddings import (
    S2MAEPositionEmbeddings,
    WavelengthsLike,
    band_validity,
    pad_bands_by_repetition,
    padded_band_count,
    prepare_band_wavelengths,
)

logger = logging.get_logger(__name__)


@dataclass
class S2MAEModelOutput(ModelOutput):
    """Output of `S2MAEModel`.

    Args:
        last_hidden_state: (B, L, D) token features after the final LayerNorm (if `config.use_final_layernorm`);
            (B, K, D) when masking was applied.
        pooler_output: (B, D) mean over (valid) tokens followed by LayerNorm; None without a pooling layer.
        mask: (B, L), 1 for hidden tokens and 0 for visible ones, when masking was applied.
        ids_restore: (B, L), the permutation restoring token order, when masking was applied.
        hidden_states: Embedding output and the output of each layer, each (B, L or K, D).
        attentions: Per layer (B, heads, L or K, L or K); computed with eager attention whatever the backend.
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class S2MAEForPreTrainingOutput(ModelOutput):
    """Output of `S2MAEForPreTraining`.

    Args:
        loss: Scalar MSE over the hidden cubes (only when `return_loss`).
        logits: (B, L, s * p * p) reconstruction of every cube, ordered band-within-cube, pixel row, pixel column.
        mask: (B, L), 1 for hidden tokens.
        ids_restore: (B, L).
        hidden_states, attentions: of the encoder, as in `S2MAEModelOutput`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class BlockDims:
    """Width, heads and MLP width of a stack of transformer blocks (the encoder's or the decoder's)."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int

    @classmethod
    def encoder(cls, config: S2MAEConfig) -> "BlockDims":
        return cls(config.hidden_size, config.num_attention_heads, config.intermediate_size)

    @classmethod
    def decoder(cls, config: S2MAEConfig) -> "BlockDims":
        return cls(config.decoder_hidden_size, config.decoder_num_attention_heads, config.decoder_intermediate_size)


def is_tracing() -> bool:
    """True while torch.compile, torch.export, the ONNX exporter or `torch.jit.trace` trace the model.

    Checks that read tensor values (a sample with no valid pixel, class ids out of range) need a data-dependent
    branch that a traced graph cannot hold; they run in eager mode only. Traced graphs get the same inputs checked
    once by `S2MAEImageProcessor` (an image with no valid pixel is rejected there); a compiled loss over no valid
    hidden cube is NaN instead of a `ValueError`.
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_pixel_values(
    pixel_values: torch.Tensor, config: S2MAEConfig, interpolate_pos_encoding: bool, by_wavelength: bool = False
) -> None:
    """Raise a `ValueError` saying what was expected when `pixel_values` cannot be cut into the model's cubes.

    `by_wavelength`: the input's band wavelengths are given, so another band count is placed by wavelength.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"pixel_values must be a torch.Tensor of shape (B, C, H, W), got {type(pixel_values)}.")
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have shape (batch, bands, height, width), got {tuple(pixel_values.shape)}. "
            "Use S2MAEImageProcessor to prepare images."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be floating point scaled to [0, 1], got {pixel_values.dtype}. "
            "Use S2MAEImageProcessor to scale raw digital numbers."
        )
    batch_size, bands, height, width = pixel_values.shape
    if batch_size == 0:
        raise ValueError(
            f"pixel_values is an empty batch of shape {tuple(pixel_values.shape)}: pass at least one image, "
            "(B, C, H, W) with B >= 1."
        )
    if bands == 0 or height == 0 or width == 0:
        raise ValueError(
            f"pixel_values of shape {tuple(pixel_values.shape)} holds no pixel: give (B, C, H, W) with at least one "
            f"band and H, W at least patch_size ({config.patch_size})."
        )
    if bands % config.spectral_patch_size != 0 and config.spectral_padding != "repeat":
        raise ValueError(
            f"pixel_values has {bands} bands, not divisible by spectral_patch_size {config.spectral_patch_size}. "
            "Bands are never cropped: set config.spectral_padding='repeat' to complete the last group by repeating "
            "the last band, or select bands with S2MAEImageProcessor."
        )
    if height % config.patch_size != 0 or width % config.patch_size != 0:
        raise ValueError(f"Image size {height}x{width} is not divisible by patch_size {config.patch_size}.")
    if interpolate_pos_encoding:
        return
    if bands != config.num_channels and not by_wavelength:
        raise ValueError(
            f"pixel_values has {bands} bands but the model expects {config.num_channels} ({config.band_names}). "
            "Select the bands by name with S2MAEImageProcessor(input_band_names=...), or pass the input's "
            "band_wavelengths (nm) to place another band set by wavelength."
        )
    if height != config.image_size or width != config.image_size:
        raise ValueError(
            f"Input image size {height}x{width} does not match the model ({config.image_size}x{config.image_size}). "
            "Resize with S2MAEImageProcessor, or pass interpolate_pos_encoding=True."
        )


RAW_VALUE_WARNING_THRESHOLD = 100.0
"""`pixel_values` above this look like raw digital numbers (Sentinel-2 L1C / L2A: 0-10000), not the model's [0, 1]
(or z-scores, with `scaling="standardize"`): the model warns once."""


def check_pixel_mask(pixel_mask: torch.Tensor, pixel_values: torch.Tensor) -> None:
    """Raise a `ValueError` saying the expected shape when `pixel_mask` is not (B, H, W) for `pixel_values` (B, C, H, W).

    A mask is never broadcast: a (1, H, W) mask over a batch of B > 1 images, a mask at another resolution than
    the images, or a (B, 1, H, W) mask are errors.
    """
    if not isinstance(pixel_mask, torch.Tensor):
        raise ValueError(f"pixel_mask must be a torch.Tensor of shape (B, H, W), got {type(pixel_mask)}.")
    batch_size, _, height, width = pixel_values.shape
    expected = (batch_size, height, width)
    got = tuple(pixel_mask.shape)
    if pixel_mask.ndim == 3 and got == expected:
        return
    advice = "Take pixel_values and pixel_mask together from S2MAEImageProcessor, which resizes both."
    if pixel_mask.ndim == 3 and got[0] == 1 and batch_size > 1 and got[1:] == expected[1:]:
        advice = (
            f"A mask is not broadcast over the batch: give one mask per image (pixel_mask.expand({batch_size}, -1, -1) "
            "if they really share one)."
        )
    elif pixel_mask.ndim == 3 and got[0] == batch_size:
        advice = f"The mask is at another resolution than the images ({height}x{width}). " + advice
    elif pixel_mask.ndim == 4 and got[1] == 1:
        advice = "Drop the channel axis: pixel_mask[:, 0]."
    raise ValueError(
        f"pixel_mask must have shape (B, H, W) = {expected} for pixel_values of shape {tuple(pixel_values.shape)}, "
        f"got {got}. {advice}"
    )


def check_pixel_value_range(
    pixel_values: torch.Tensor,
    pixel_mask: torch.Tensor | None,
    warn: bool = True,
    compute_dtype: torch.dtype | None = None,
) -> bool:
    """Raise a `ValueError` for NaN / inf in `pixel_values`, or for values the model's `compute_dtype` cannot hold;
    warn (when `warn`) about values that look like raw digital numbers. Reads tensor values: eager mode only (see
    `is_tracing`).

    A non-finite value is an error even at a pixel `pixel_mask` marks invalid: the cube embedding mixes it into its
    token and attention spreads it to every token of the image. `S2MAEImageProcessor` writes 0 at invalid pixels.

    Args:
        pixel_values: (B, C, H, W) float, B >= 1.
        pixel_mask: (B, H, W) or None, 1 for valid pixels.
        warn: Log the raw-values warning when the values exceed `RAW_VALUE_WARNING_THRESHOLD`.
        compute_dtype: The dtype the model casts `pixel_values` to (its weights'); values beyond its largest finite
            number (a float64 1e39 for a float32 model, 7e4 for a float16 one) would become inf there.

    Returns:
        True when the values exceed `RAW_VALUE_WARNING_THRESHOLD` (the caller warns only once).
    """
    low, high = torch.aminmax(pixel_values.detach())
    low, high = torch.stack([low, high]).double().tolist()  # one device sync
    if math.isfinite(low) and math.isfinite(high) and compute_dtype is not None and compute_dtype.is_floating_point:
        largest = torch.finfo(compute_dtype).max
        if max(-low, high) > largest:
            raise ValueError(
                f"pixel_values reach {max(-low, high):g} in {pixel_values.dtype}, beyond the largest {compute_dtype} "
                f"number ({largest:g}) the model computes in: they would become inf. The model takes values scaled "
                "to [0, 1]: prepare images with S2MAEImageProcessor."
            )
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = torch.isfinite(pixel_values.detach())  # (B, C, H, W)
        bad_images = torch.nonzero(~finite.flatten(1).all(dim=1)).flatten().tolist()
        where = ""
        if pixel_mask is not None:
            at_valid = (~finite & (pixel_mask.to(finite.device)[:, None] != 0)).sum().item()
            where = f", {at_valid} of them at pixels that pixel_mask marks valid"
        raise ValueError(
            f"pixel_values holds {(~finite).sum().item()} non-finite values (NaN or inf) in images {bad_images[:10]} "
            f"of the batch{where}. The model cannot ignore them, not even at invalid pixels: mark missing pixels in "
            "pixel_mask and write a finite value there (S2MAEImageProcessor writes 0), and check the scaling of "
            "values that overflow."
        )
    raw = high > RAW_VALUE_WARNING_THRESHOLD
    if raw and warn:
        logger.warning(
            f"pixel_values reach {high:g}, but the model takes values scaled to [0, 1] (z-scores with "
            "scaling='standardize'): these look like raw digital numbers (e.g. Sentinel-2's 0-10000). Prepare "
            "images with S2MAEImageProcessor (AutoImageProcessor.from_pretrained(checkpoint)). This warning is "
            "shown once per model."
        )
    return raw


def check_pixel_mask_values(pixel_mask: torch.Tensor) -> None:
    """Raise a `ValueError` when `pixel_mask` holds values other than finite numbers in [0, 1] (1 valid, 0 invalid).

    The mask weights tokens in the pooling and pixels in the loss: a negative, NaN or larger weight would silently
    skew both (a mask of -1 everywhere pools like a mask of ones; a NaN mask makes every feature NaN). Reads tensor
    values: eager mode only (see `is_tracing`).

    Args:
        pixel_mask: (B, H, W), any real dtype.
    """
    if pixel_mask.dtype == torch.bool or pixel_mask.numel() == 0:
        return
    low, high = torch.aminmax(pixel_mask.detach())
    low, high = torch.stack([low, high]).double().tolist()
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low and high <= 1.0):
        bad = ~torch.isfinite(pixel_mask.detach().double()) | (pixel_mask < 0) | (pixel_mask > 1)
        examples = pixel_mask[bad].unique()[:5].tolist()
        raise ValueError(
            f"pixel_mask must hold 1 for valid pixels and 0 for invalid ones (values in [0, 1]), but {int(bad.sum())} "
            f"of its values are not (e.g. {examples}). Take the mask from S2MAEImageProcessor, or build it as "
            "(mask > 0).long() from a mask with other codes."
        )


def check_hidden_states_selection(output_hidden_states: Any, num_hidden_layers: int) -> Any:
    """Check an `output_hidden_states` argument: None, a bool, or an index / a list of indices into the
    `num_hidden_layers + 1` hidden states (negative ones from the end).

    Returns:
        The argument, a single index as a one-element list (Transformers' output capture takes an index of 0 for
        False).

    Raises:
        ValueError: for another type, or an index out of range (it would silently select nothing).
    """
    if output_hidden_states is None or isinstance(output_hidden_states, bool):
        return output_hidden_states
    count = num_hidden_layers + 1
    indices = [output_hidden_states] if isinstance(output_hidden_states, int) else output_hidden_states
    if not isinstance(indices, (list, tuple)) or not all(
        isinstance(index, int) and not isinstance(index, bool) for index in indices
    ):
        raise ValueError(
            "output_hidden_states must be a bool, or an index or list of indices into the "
            f"{count} hidden states (embeddings + {num_hidden_layers} layers), got {output_hidden_states!r}."
        )
    wrong = [index for index in indices if not -count <= index < count]
    if wrong:
        raise ValueError(
            f"output_hidden_states selects {wrong}, out of range: there are {count} hidden states (embeddings + "
            f"{num_hidden_layers} layers), indices {-count}..{count - 1}."
        )
    return list(indices)


def selects_valid_hidden_states(forward: Callable) -> Callable:
    """Decorate `S2MAEModel.forward` (outside `capture_outputs`) to check `output_hidden_states` first."""

    @functools.wraps(forward)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if "output_hidden_states" in kwargs:
            kwargs["output_hidden_states"] = check_hidden_states_selection(
                kwargs["output_hidden_states"], self.config.num_hidden_layers
            )
        return forward(self, *args, **kwargs)

    return wrapper


def token_weights_from_pixel_mask(pixel_mask: torch.Tensor, num_groups: int, patch_size: int) -> torch.Tensor:
    """Fraction of valid pixels in every cube token.

    Args:
        pixel_mask: (B, H, W), 1 for valid pixels, 0 for nodata / filled pixels.
        num_groups: G.
        patch_size: p.

    Returns:
        (B, G * h * w) float in [0, 1], in token order.
    """
    valid = nn.functional.avg_pool2d(pixel_mask[:, None].float(), patch_size)  # (B, 1, h, w)
    return valid.flatten(1).repeat(1, num_groups)  # (B, G * h * w)


class S2MAECubeEmbeddings(nn.Module):
    """Cuts (B, C, H, W) into cubes of s bands x p x p pixels and projects each to D with a Conv3d."""

    def __init__(self, config: S2MAEConfig):
        super().__init__()
        kernel = (config.spectral_patch_size, config.patch_size, config.patch_size)
        self.projection = nn.Conv3d(1, config.hidden_size, kernel_size=kernel, stride=kernel)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, D), tokens spectral-group major.

        Equal to the Conv3d applied with stride = kernel, computed as cut-into-cubes + one matrix product: faster
        (the Conv3d backward with one input channel is slow on CPU) and it leaves the tokens contiguous.
        """
        batch_size, bands, height, width = pixel_values.shape
        depth, patch, _ = self.projection.kernel_size
        cubes = pixel_values.to(self.projection.weight.dtype).reshape(
            batch_size, bands // depth, depth, height // patch, patch, width // patch, patch
        )
        cubes = cubes.permute(0, 1, 3, 5, 2, 4, 6).flatten(4).flatten(1, 3)  # (B, G * h * w, s * p * p)
        return nn.functional.linear(cubes, self.projection.weight.flatten(1), self.projection.bias)  # (B, L, D)


class S2MAEEmbeddings(nn.Module):
    """Cube embedding + position tables, then (when asked) masking."""

    def __init__(self, config: S2MAEConfig):
        super().__init__()
        self.config = config
        self.cube_embeddings = S2MAECubeEmbeddings(config)
        self.position_embeddings = S2MAEPositionEmbeddings(config, config.hidden_size)

    def forward(
        self,
        pixel_values: torch.Tensor,
        apply_masking: bool = False,
        noise: torch.Tensor | None = None,
        mask_ratio: float | None = None,
        interpolate_pos_encoding: bool = False,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Returns (tokens (B, L or K, D), mask (B, L) | None, ids_restore (B, L) | None, ids_keep (B, K) | None).

        `band_wavelengths` / `band_bandwidths`: (C,) or (B, C) in nm, see `prepare_band_wavelengths`. A band
        count not divisible by s is completed by repeating the last band (`config.spectral_padding="repeat"`).
        """
        check_pixel_values(pixel_values, self.config, interpolate_pos_encoding, band_wavelengths is not None)
        batch_size, bands, height, width = pixel_values.shape
        wavelengths, bandwidths = prepare_band_wavelengths(
            self.config, bands, band_wavelengths, band_bandwidths, interpolate_pos_encoding
        )
        pixel_values = pad_bands_by_repetition(pixel_values, self.config.spectral_patch_size)  # (B, C', H, W)
        grid = (
            pixel_values.shape[1] // self.config.spectral_patch_size,
            height // self.config.patch_size,
            width // self.config.patch_size,
        )
        embeddings = self.cube_embeddings(pixel_values)  # (B, L, D)
        embeddings = embeddings + self.position_embeddings(grid, interpolate_pos_encoding, wavelengths, bandwidths)
        if not apply_masking:
            return embeddings, None, None, None
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        strategy = self.config.masking_strategy
        num_keep = num_kept_tokens(strategy, ratio, grid[0], grid[1] * grid[2])  # checks the ratio on this grid
        noise = token_noise(strategy, batch_size, grid[0], grid[1] * grid[2], noise, embeddings.device)
        kept, mask, ids_restore, ids_keep = mask_tokens(embeddings, noise, num_keep)
        return kept, mask, ids_restore, ids_keep


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention. query/key/value: (B, heads, N, head_dim). Returns ((B, N, heads, head_dim), weights)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, N, N)
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, N, heads, head_dim)
    return output, weights


class S2MAEAttention(nn.Module):
    """Bidirectional multi-head self-attention with separate q / k / v projections, through the attention interface."""

    def __init__(self, config: S2MAEConfig, dims: BlockDims):
        super().__init__()
        self.config = config
        self.num_heads = dims.num_attention_heads
        self.head_dim = dims.hidden_size // dims.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.q_proj = nn.Linear(dims.hidden_size, dims.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(dims.hidden_size, dims.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(dims.hidden_size, dims.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(dims.hidden_size, dims.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, D) -> ((B, N, D), attention weights (B, heads, N, N) or None)."""
        head_shape = (*hidden_states.shape[:-1], self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(head_shape).transpose(1, 2)  # (B, heads, N, head_dim)
        key = self.k_proj(hidden_states).view(head_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(head_shape).transpose(1, 2)
        implementation = self.config._attn_implementation
        if output_attentions and implementation not in (None, "eager"):
            # SDPA, flash and flex kernels return no attention weights: these calls use eager attention instead
            logger.warning_once(
                f"output_attentions=True: attention maps are computed with eager attention for these calls (the model "
                f"uses {implementation!r}, which returns none). Load with attn_implementation='eager' to avoid the "
                "switch."
            )
            implementation = "eager"
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention(
            self,
            query,
            key,
            value,
            None,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        output = self.o_proj(output.reshape(*hidden_states.shape[:-1], -1))  # (B, N, D)
        return output, weights if output_attentions else None


class S2MAEMLP(nn.Module):
    def __init__(self, config: S2MAEConfig, dims: BlockDims):
        super().__init__()
        self.fc1 = nn.Linear(dims.hidden_size, dims.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(dims.intermediate_size, dims.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(hidden_states)))))


class S2MAEDropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `rate` during training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return hidden_states
        keep = 1.0 - self.rate
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
        return hidden_states * hidden_states.new_empty(shape).bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class S2MAELayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, config: S2MAEConfig, dims: BlockDims, drop_path: float = 0.0):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(dims.hidden_size, eps=config.layer_norm_eps)
        self.attention = S2MAEAttention(config, dims)
        self.layernorm_after = nn.LayerNorm(dims.hidden_size, eps=config.layer_norm_eps)
        self.mlp = S2MAEMLP(config, dims)
        self.drop_path = S2MAEDropPath(drop_path)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(self.layernorm_before(hidden_states), output_attentions)
        hidden_states = hidden_states + self.drop_path(self.dropout(attended))
        hidden_states = hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, weights


class S2MAEBlockStack(nn.Module):
    """A stack of `S2MAELayer`s. Hidden states and attention maps are recorded by hooks (`capture_outputs`)."""

    def __init__(self, config: S2MAEConfig, dims: BlockDims, depth: int, drop_path_rate: float = 0.0):
        super().__init__()
        rates = [drop_path_rate * index / max(depth - 1, 1) for index in range(depth)]  # linear in depth
        self.layers = nn.ModuleList([S2MAELayer(config, dims, rate) for rate in rates])

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> torch.Tensor:
        """(B, N, D) -> (B, N, D). `output_attentions` makes every attention module return its weights."""
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states, output_attentions)
        return hidden_states


class S2MAEPooler(nn.Module):
    """Mean over tokens (weighted by the fraction of valid pixels when known), then LayerNorm."""

    def __init__(self, config: S2MAEConfig):
        super().__init__()
        self.skip_first = config.pooling == "mean_skip_first"
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, token_weights: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states (B, N, D), token_weights (B, N) or None -> (B, D)."""
        if token_weights is None:
            token_weights = hidden_states.new_ones(hidden_states.shape[:2])
        if self.skip_first:
            hidden_states, token_weights = hidden_states[:, 1:], token_weights[:, 1:]
        token_weights = token_weights.to(hidden_states.dtype).unsqueeze(-1)  # (B, N, 1)
        total = token_weights.sum(dim=1)
        if not is_tracing() and bool((total == 0).any()):
            raise ValueError("A sample has no valid pixel in any token (pixel_mask is all zero): nothing to pool.")
        return self.layernorm((hidden_states * token_weights).sum(dim=1) / total)


ENCODER_CORE_PREFIXES = ("embeddings.", "encoder.", "layernorm.")
"""Weights of the encoder (relative to `S2MAEModel`) that every S2MAE checkpoint holds."""


def required_missing_keys(model: nn.Module, missing_keys: Iterable[str]) -> list[str]:
    """The keys of `missing_keys` that a checkpoint for `model` must hold: all of them when the checkpoint was saved
    from `model`'s class (`config.architectures`), else those of the encoder (a new head may be missing)."""
    if type(model).__name__ in (model.config.architectures or []):
        return sorted(missing_keys)
    base = f"{model.base_model_prefix}."
    return sorted(key for key in missing_keys if key.removeprefix(base).startswith(ENCODER_CORE_PREFIXES))


class S2MAEPreTrainedModel(PreTrainedModel):
    config_class = S2MAEConfig
    config: S2MAEConfig
    base_model_prefix = "s2mae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["S2MAEEmbeddings", "S2MAELayer"]
    # eager, SDPA and flex attention are tested to agree (flex on CPU); flash attention is not claimed until it is
    # tested on a GPU
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    # Transformers' output capture: hooks record every encoder layer's output and attention weights, so that
    # `output_hidden_states` may also select layers (an index or a list of indices, negative ones from the end)
    _can_record_outputs = {
        "hidden_states": OutputRecorder(S2MAELayer, index=0),
        "attentions": OutputRecorder(S2MAEAttention, index=1),
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """MAE initialisation, safe under meta-device loading (loaded tensors carry `_is_hf_initialized`).

        Linear layers and the cube embedding keep the original MAE's Xavier-uniform initialisation, whose scale
        follows each layer's fan-in and fan-out: `config.initializer_range` does not apply to them. It sets the
        standard deviation of the learnable position tables (truncated normal) and of the decoder's mask token.
        """
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv3d):
            # like a Linear over the flattened cube, as in MAE
            if not getattr(module.weight, "_is_hf_initialized", False):
                init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, S2MAEPositionEmbeddings):
            module.reset_parameters()
        elif isinstance(module, S2MAEDecoder):
            init.normal_(module.mask_token, std=self.config.initializer_range)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike[str] | None, *model_args: Any, **kwargs: Any
    ) -> "S2MAEPreTrainedModel | tuple[S2MAEPreTrainedModel, dict[str, Any]]":
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint that lacks trained tensors.

        Transformers initialises a tensor missing from `model.safetensors` at random and only logs it. That is right
        for a new head (a pretraining checkpoint loaded into `S2MAEModel` or a task model) but silently wrong for
        an incomplete file: tensors of the checkpoint's own class (`config.architectures`), and the encoder's
        (`embeddings`, `encoder`, `layernorm`) whatever the class, must all be there.

        Also refused: a truncated or damaged `.safetensors` file, and weights holding NaN or inf (a diverged run).

        Raises:
            ValueError: naming the checkpoint and the missing (or non-finite) tensors.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except SafetensorError as error:
            raise ValueError(
                f"{pretrained_model_name_or_path}: a .safetensors weights file is truncated or damaged ({error}). "
                "Save or download the checkpoint again."
            ) from error
        not_finite = [
            name
            for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
            if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor).all())
        ]
        if not_finite:
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(not_finite)} tensor(s) of the checkpoint hold NaN or inf, "
                f"e.g. {not_finite[:5]}: every output would be NaN. The training run that saved it diverged, or the "
                "file is damaged: use an earlier checkpoint."
            )
        missing = required_missing_keys(model, info["missing_keys"])
        if missing:
            architectures = model.config.architectures or ["an S2MAE"]
            raise ValueError(
                f"{pretrained_model_name_or_path}: the weights lack {len(missing)} tensor(s) that a "
                f"{architectures[0]} checkpoint holds, e.g. {missing[:5]}. Loading would start them from random "
                "values. The file is incomplete or damaged (an interrupted save or download?): save or download "
                "the checkpoint again."
            )
        return (model, info) if output_loading_info else model

    def resize_position_embeddings(
        self,
        image_size: int | None = None,
        band_names: list[str] | None = None,
        band_wavelengths: list[float] | None = None,
        band_bandwidths: list[float] | None = None,
    ) -> None:
        """Adapt the model in place to another image size and/or band list: the spatial tables are interpolated
        (bicubic); spectral tables are placed by wavelength when both band sets' wavelengths are known (from the
        arguments, or the sensor registry for Sentinel-2 names), else interpolated linearly over group index.

        The config is updated (its wavelengths too), so a model saved afterwards loads natively at the new size.
        Use it to fine-tune or to continue pretraining (progressive pretraining) at another resolution or on
        another sensor's bands.

        Args:
            image_size: New square input size in pixels (a multiple of `patch_size`).
            band_names: New band list; its length must be a multiple of `spectral_patch_size` (unless
                `spectral_padding="repeat"`).
            band_wavelengths: Centre wavelengths (nm) of `band_names`.
            band_bandwidths: Bandwidths (nm) of `band_names`.
        """
        config = self.config
        values = {k: v for k, v in config.to_dict().items() if k in S2MAEConfig.__dataclass_fields__}
        if image_size is not None:
            values["image_size"] = image_size
        if band_names is not None:
            values.update(
                band_names=list(band_names),
                num_channels=len(band_names),
                band_wavelengths=band_wavelengths,
                band_bandwidths=band_bandwidths,
                sensor=None,
            )
        elif band_wavelengths is not None or band_bandwidths is not None:
            raise ValueError("Give band_wavelengths / band_bandwidths together with the band_names they describe.")
        checked = S2MAEConfig(**values)  # validates, and fills wavelengths from the registry
        if image_size is not None:
            config.image_size = image_size
        new_wavelengths, new_bandwidths = config.band_wavelengths, config.band_bandwidths
        if band_names is not None:
            new_wavelengths, new_bandwidths = checked.band_wavelengths, checked.band_bandwidths
            config.band_wavelengths, config.band_bandwidths = new_wavelengths, new_bandwidths
            config.sensor = None
            config.num_channels = len(band_names)
            config.band_names = list(band_names)
        grid = (config.num_spectral_groups, config.grid_size, config.grid_size)
        for module in self.modules():
            if isinstance(module, S2MAEPositionEmbeddings):
                module.resize(grid, new_wavelengths, new_bandwidths)

    @property
    def num_layers_for_decay(self) -> int:
        """The top layer id, `num_hidden_layers + 1`: `layer_id` gives every parameter an id in [0, this].

        With layer-wise learning-rate decay `d`, a parameter's learning rate is scaled by
        `d ** (num_layers_for_decay - layer_id(name))`: 1 for the head, `d ** (num_hidden_layers + 1)` for the
        cube embedding.
        """
        return self.config.num_hidden_layers + 1

    def layer_id(self, parameter_name: str) -> int:
        """Depth of a parameter for layer-wise learning-rate decay (the timm / BEiT / MAE fine-tuning rule).

        0 for the cube embedding and the encoder's position tables, i + 1 for encoder block i, and
        `num_layers_for_decay` (num_hidden_layers + 1) for everything after the blocks: final norm, pooler norm,
        classifier head and decoder.

        Args:
            parameter_name: A name from `self.named_parameters()` (e.g. "s2mae.encoder.layers.3.mlp.fc1.weight" in
                a head model, "encoder.layers.3.mlp.fc1.weight" in `S2MAEModel`).
        """
        try:
            self.get_parameter(parameter_name)
        except AttributeError as error:
            raise ValueError(
                f"{parameter_name!r} is not a parameter of this {type(self).__name__}: pass a name from "
                "model.named_parameters()."
            ) from error
        name = parameter_name.removeprefix(f"{self.base_model_prefix}.")  # head models hold the encoder as `s2mae`
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return self.num_layers_for_decay

    def no_weight_decay(self) -> set[str]:
        """Full names (as in `self.named_parameters()`) of the parameters that take no weight decay.

        They are every parameter of at most one dimension (biases, LayerNorm weights) plus the position tables of
        encoder and decoder and the decoder's mask token. Matrices and the cube-embedding kernel take weight decay.
        """
        names = set()
        for module_name, module in self.named_modules():
            is_table = isinstance(module, (S2MAEPositionEmbeddings, S2MAEDecoder))  # the decoder's own: mask_token
            for name, parameter in module.named_parameters(recurse=False):
                if is_table or parameter.ndim <= 1:
                    names.add(f"{module_name}.{name}" if module_name else name)
        return names

    def _resolve_output_flags(
        self,
        output_attentions: bool | None,
        output_hidden_states: bool | int | list[int] | None,
        return_dict: bool | None,
    ) -> tuple[bool, bool | int | list[int], bool]:
        """The flags with the config's defaults filled in; a layer selection in `output_hidden_states` is kept."""
        config = self.config
        hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return (
            bool(config.output_attentions if output_attentions is None else output_attentions),
            hidden if isinstance(hidden, (int, list, tuple)) and not isinstance(hidden, bool) else bool(hidden),
            bool(config.return_dict if return_dict is None else return_dict),
        )

    def _encode(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None,
        output_hidden_states: bool | int | list[int] | None,
        return_dict: bool | None,
        **encoder_kwargs: Any,
    ) -> tuple[S2MAEModelOutput, bool]:
        """A head's first step: fill in the output flags (`_resolve_output_flags`) and run its encoder `self.s2mae`.

        Args:
            pixel_values: (B, C, H, W).
            output_attentions, output_hidden_states, return_dict: The head's arguments, None for the config's.
            **encoder_kwargs: Other arguments of `S2MAEModel.forward` (pixel_mask, interpolate_pos_encoding, ...).

        Returns:
            (the encoder's `S2MAEModelOutput`, whether the head returns a `ModelOutput` rather than a tuple).
        """
        output_attentions, output_hidden_states, return_dict = self._resolve_output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        outputs = self.s2mae(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **encoder_kwargs,
        )
        return outputs, return_dict


class S2MAEModel(S2MAEPreTrainedModel):
    """The S2MAE encoder: cube embedding, position tables, transformer blocks, final LayerNorm and pooler."""

    # loading a pretraining checkpoint: its decoder is not needed, and the pooler norm starts as the identity
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]
    _keys_to_ignore_on_load_missing = [r"^pooler\.layernorm\."]

    def __init__(self, config: S2MAEConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = S2MAEEmbeddings(config)
        self.encoder = S2MAEBlockStack(
            config, BlockDims.encoder(config), config.num_hidden_layers, config.drop_path_rate
        )
        self.layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            if config.use_final_layernorm
            else nn.Identity()
        )
        self.pooler = S2MAEPooler(config) if add_pooling_layer else None
        self.post_init()
        # Transformers installs its output-capture hooks lazily, on the first call, under a lock that
        # torch.compile(fullgraph=True) cannot trace: install them now (they do nothing unless outputs are asked for)
        maybe_install_capturing_hooks(self)

    def get_input_embeddings(self) -> S2MAECubeEmbeddings:
        return self.embeddings.cube_embeddings

    def check_inputs(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None,
        interpolate_pos_encoding: bool = False,
        by_wavelength: bool = False,
        noise: torch.Tensor | None = None,
    ) -> None:
        """Raise a `ValueError` for inputs the model would process into a silently wrong result: shapes (also while
        tracing), then, in eager mode, NaN / inf values (or values the model's dtype cannot hold), mask values
        outside [0, 1] and non-finite masking noise; warn once per model about raw digital numbers.

        Args:
            pixel_values: (B, C, H, W).
            pixel_mask: (B, H, W) or None.
            noise: The masking noise or None.
        """
        check_pixel_values(pixel_values, self.config, interpolate_pos_encoding, by_wavelength)
        if pixel_mask is not None:
            check_pixel_mask(pixel_mask, pixel_values)
        if is_tracing():
            return
        if pixel_mask is not None:
            check_pixel_mask_values(pixel_mask)
        if noise is not None and isinstance(noise, torch.Tensor) and not bool(torch.isfinite(noise).all()):
            raise ValueError(
                "noise holds NaN or inf: masking sorts the noise, so the hidden tokens would be arbitrary. Pass finite "
                "values (e.g. torch.rand), or no noise for random masking."
            )
        warned = getattr(self, "_warned_raw_values", False)
        if check_pixel_value_range(pixel_values, pixel_mask, warn=not warned, compute_dtype=self.dtype):
            self._warned_raw_values = True

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the cube embedding: a module mapping (B, C, H, W) to (B, L, D) tokens, spectral-group major."""
        if not isinstance(value, nn.Module):
            raise ValueError(
                f"The input embeddings must be an nn.Module mapping pixel values (B, C, H, W) to tokens (B, L, "
                f"{self.config.hidden_size}), got {type(value).__name__}."
            )
        self.embeddings.cube_embeddings = value

    @selects_valid_hidden_states
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        apply_masking: bool = False,
        mask_ratio: float | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> S2MAEModelOutput | tuple:
        r"""Encode `pixel_values`.

        Args:
            pixel_values: (B, C, H, W) float in [0, 1], bands in `config.band_names` order.
            pixel_mask: (B, H, W), 1 for valid pixels and 0 for nodata / filled ones (from the image processor).
                Tokens are weighted by their fraction of valid pixels in the pooled output.
            noise: Deterministic masking noise, see `masking.token_noise`; implies `apply_masking`.
            apply_masking: Hide `mask_ratio` of the tokens (pretraining); the output then holds the K visible ones.
            mask_ratio: Override of `config.mask_ratio` for this call (e.g. reconstructions at 50/75/90/95 %).
            interpolate_pos_encoding: Accept another image size or band count by interpolating the position tables.
            output_attentions: Return per-layer attention maps (computed with eager attention under other backends).
            output_hidden_states: Return the embedding output and every layer's output (before the final
                LayerNorm); an index or a list of indices (negative ones count from the end) selects among them.
            return_dict: Return a `S2MAEModelOutput` (default) or a tuple.
            band_wavelengths: (C,) or (B, C) centre wavelengths in nm of the input's bands (from the image
                processor or `sensors.get_sensor(...).wavelengths()`): places another band set by wavelength.
            band_bandwidths: (C,) or (B, C) FWHM in nm, with `band_wavelengths` (estimated from the spacing if None).

        `hidden_states` and `attentions` are recorded by Transformers' `capture_outputs` hooks.
        """
        self.check_inputs(pixel_values, pixel_mask, interpolate_pos_encoding, band_wavelengths is not None, noise)
        output_attentions = bool(self.config.output_attentions if output_attentions is None else output_attentions)
        apply_masking = apply_masking or noise is not None
        embeddings, mask, ids_restore, ids_keep = self.embeddings(
            pixel_values, apply_masking, noise, mask_ratio, interpolate_pos_encoding, band_wavelengths, band_bandwidths
        )
        hidden_states = self.encoder(embeddings, output_attentions)
        sequence_output = self.layernorm(hidden_states)

        pooled_output = None
        if self.pooler is not None:
            token_weights = None
            if pixel_mask is not None:
                num_groups = padded_band_count(pixel_values.shape[1], self.config.spectral_patch_size)
                num_groups //= self.config.spectral_patch_size
                token_weights = token_weights_from_pixel_mask(pixel_mask, num_groups, self.config.patch_size)
                if ids_keep is not None:
                    token_weights = torch.gather(token_weights, 1, ids_keep)
            pooled_output = self.pooler(sequence_output, token_weights)

        return S2MAEModelOutput(
            last_hidden_state=sequence_output, pooler_output=pooled_output, mask=mask, ids_restore=ids_restore
        )


class S2MAEDecoder(nn.Module):
    """MAE decoder: project visible tokens, fill in mask tokens, add position tables, blocks, predict cubes."""

    def __init__(self, config: S2MAEConfig):
        super().__init__()
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.position_embeddings = S2MAEPositionEmbeddings(config, config.decoder_hidden_size)
        self.decoder_layers = S2MAEBlockStack(config, BlockDims.decoder(config), config.decoder_num_hidden_layers)
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.cube_dim)

    def forward(
        self,
        latent: torch.Tensor,
        ids_restore: torch.Tensor,
        grid: tuple[int, int, int],
        interpolate_pos_encoding: bool = False,
        band_wavelengths: torch.Tensor | None = None,
        band_bandwidths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """latent (B, K, D), ids_restore (B, L), grid (G, h, w) -> logits (B, L, s * p * p).

        `band_wavelengths` / `band_bandwidths`: (N, C) nm, as prepared by `prepare_band_wavelengths`, or None.
        """
        hidden_states = self.decoder_embed(latent)  # (B, K, Dd)
        batch_size, num_visible, width = hidden_states.shape
        num_tokens = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(batch_size, num_tokens - num_visible, width)
        hidden_states = torch.cat([hidden_states, mask_tokens], dim=1)  # (B, L, Dd), shuffled order
        index = ids_restore.unsqueeze(-1).expand(batch_size, num_tokens, width)
        hidden_states = torch.gather(hidden_states, 1, index)  # (B, L, Dd), token order
        hidden_states = hidden_states + self.position_embeddings(
            grid, interpolate_pos_encoding, band_wavelengths, band_bandwidths
        )
        hidden_states = self.decoder_layers(hidden_states)
        return self.decoder_pred(self.decoder_norm(hidden_states))  # (B, L, s * p * p)


class S2MAEForPreTraining(S2MAEPreTrainedModel):
    """S2MAE encoder + decoder, trained to reconstruct the hidden cubes (masked MSE)."""

    def __init__(self, config: S2MAEConfig):
        super().__init__(config)
        self.s2mae = S2MAEModel(config, add_pooling_layer=False)
        self.decoder = S2MAEDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> S2MAECubeEmbeddings:
        return self.s2mae.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.s2mae.set_input_embeddings(value)

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, s * p * p); each cube ordered band-within-cube, then pixel row, then column."""
        if pixel_values.ndim != 4:
            raise ValueError(f"patchify takes (B, C, H, W) pixel values, got shape {tuple(pixel_values.shape)}.")
        batch_size, bands, height, width = pixel_values.shape
        s, p = self.config.spectral_patch_size, self.config.patch_size
        if bands % s or height % p or width % p:
            raise ValueError(f"Cannot cut {tuple(pixel_values.shape)} into cubes of {s} bands x {p} x {p} pixels.")
        cubes = pixel_values.reshape(batch_size, bands // s, s, height // p, p, width // p, p)
        cubes = cubes.permute(0, 1, 3, 5, 2, 4, 6)  # (B, G, h, w, s, p, p)
        return cubes.reshape(batch_size, (bands // s) * (height // p) * (width // p), s * p * p)

    def unpatchify(
        self, cubes: torch.Tensor, image_size: tuple[int, int] | None = None, num_channels: int | None = None
    ) -> torch.Tensor:
        """(B, L, s * p * p) -> (B, C, H, W), the inverse of `patchify`.

        Args:
            cubes: Patchified values, e.g. `outputs.logits`.
            image_size: (H, W); defaults to the config's square size.
            num_channels: C; defaults to the config's band count.
        """
        s, p = self.config.spectral_patch_size, self.config.patch_size
        height, width = image_size if image_size is not None else (self.config.image_size,) * 2
        num_bands = num_channels if num_channels is not None else self.config.num_channels
        bands = padded_band_count(num_bands, s)  # the repeats of spectral_padding="repeat" are dropped at the end
        batch_size, num_tokens, cube_dim = cubes.shape
        grid = (bands // s, height // p, width // p)
        if num_tokens != grid[0] * grid[1] * grid[2] or cube_dim != s * p * p:
            raise ValueError(
                f"Cubes of shape {tuple(cubes.shape)} do not make an image of {bands} bands x {height} x {width} "
                f"(expected (B, {grid[0] * grid[1] * grid[2]}, {s * p * p})); pass image_size / num_channels."
            )
        pixels = cubes.reshape(batch_size, *grid, s, p, p).permute(0, 1, 4, 2, 5, 3, 6)  # (B, G, s, h, p, w, p)
        return pixels.reshape(batch_size, bands, height, width)[:, :num_bands]

    def forward_loss(
        self,
        pixel_values: torch.Tensor,
        logits: torch.Tensor,
        mask: torch.Tensor,
        pixel_mask: torch.Tensor | None,
        band_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error over the hidden cubes.

        Args:
            pixel_values: (B, C, H, W) target.
            logits: (B, L, s * p * p) prediction.
            mask: (B, L), 1 for hidden tokens.
            pixel_mask: (B, H, W) or None; invalid pixels are left out of the error, and a cube with no valid
                pixel is left out of the mean.
            band_mask: (C,) bool or None; False marks the repeats added by `spectral_padding="repeat"`, left out
                of the error.
        """
        target = self.patchify(pixel_values)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        squared_error = (logits.float() - target.float()) ** 2  # (B, L, s * p * p)
        if pixel_mask is None and band_mask is None:
            token_loss = squared_error.mean(dim=-1)  # (B, L)
            weights = mask.float()  # float32: a bf16 sum of 0/1 weights rounds (4 x 922 hidden cubes sums to 3680)
        else:
            batch_size, bands, height, width = pixel_values.shape
            valid = torch.ones(batch_size, bands, height, width, dtype=target.dtype, device=target.device)
            if pixel_mask is not None:
                valid = valid * pixel_mask[:, None].to(target.dtype)
            if band_mask is not None:
                valid = valid * band_mask.to(valid)[None, :, None, None]
            valid = self.patchify(valid)  # (B, L, s*p*p)
            valid_count = valid.sum(dim=-1)
            token_loss = (squared_error * valid).sum(dim=-1) / valid_count.clamp(min=1)
            weights = mask.float() * (valid_count > 0)
        total = weights.sum()
        if not is_tracing() and bool(total == 0):
            raise ValueError("No hidden cube has a valid pixel (pixel_mask): the loss is undefined for this batch.")
        return (token_loss * weights).sum() / total

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        mask_ratio: float | None = None,
        interpolate_pos_encoding: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        return_loss: bool = True,
        band_wavelengths: WavelengthsLike | None = None,
        band_bandwidths: WavelengthsLike | None = None,
    ) -> S2MAEForPreTrainingOutput | tuple:
        r"""Mask, encode the visible cubes, decode all of them, and score the hidden ones.

        Args:
            pixel_values: (B, C, H, W) float in [0, 1].
            pixel_mask: (B, H, W), 1 for valid pixels; invalid pixels are left out of the loss.
            noise: Deterministic masking noise (see `masking.token_noise` for its shape per strategy).
            mask_ratio: Override of `config.mask_ratio` for this call.
            interpolate_pos_encoding: Accept another image size or band count.
            return_loss: Compute the loss (Trainer reads this argument to report `eval_loss`).
            band_wavelengths, band_bandwidths: (C,) or (B, C) nm of the input's bands, see `S2MAEModel.forward`.
        """
        outputs, return_dict = self._encode(
            pixel_values, output_attentions, output_hidden_states, return_dict, pixel_mask=pixel_mask, noise=noise,
            apply_masking=True, mask_ratio=mask_ratio, interpolate_pos_encoding=interpolate_pos_encoding,
            band_wavelengths=band_wavelengths, band_bandwidths=band_bandwidths,
        )  # fmt: skip
        _, bands, height, width = pixel_values.shape
        s = self.config.spectral_patch_size
        wavelengths, bandwidths = prepare_band_wavelengths(
            self.config, bands, band_wavelengths, band_bandwidths, interpolate_pos_encoding, check=False
        )
        band_mask = band_validity(bands, s, pixel_values.device) if bands % s else None
        pixel_values = pad_bands_by_repetition(pixel_values, s)  # (B, C', H, W), C' = ceil(C / s) * s
        grid = (pixel_values.shape[1] // s, height // self.config.patch_size, width // self.config.patch_size)
        logits = self.decoder(
            outputs.last_hidden_state, outputs.ids_restore, grid, interpolate_pos_encoding, wavelengths, bandwidths
        )
        loss = self.forward_loss(pixel_values, logits, outputs.mask, pixel_mask, band_mask) if return_loss else None

        output = S2MAEForPreTrainingOutput(
            loss=loss,
            logits=logits,
            mask=outputs.mask,
            ids_restore=outputs.ids_restore,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class S2MAEForImageClassification(S2MAEPreTrainedModel):
    """S2MAE encoder, pooled (mean -> LayerNorm), then a linear head.

    `config.problem_type` picks the loss: "single_label_classification" (cross-entropy, integer labels (B,)),
    "multi_label_classification" (BCE with logits, multi-hot float labels (B, num_labels)) or "regression".
    """

    # the loss is a plain mean (no `num_items_in_batch` is passed to `loss_function`): Trainer must divide it by the
    # gradient-accumulation steps itself
    accepts_loss_kwargs = False

    def __init__(self, config: S2MAEConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.s2mae = S2MAEModel(config, add_pooling_layer=True)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def get_input_embeddings(self) -> S2MAECubeEmbeddings:
        return self.s2mae.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.s2mae.set_input_embeddings(value)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Check `labels`, then compute Transformers' `self.loss_function` (its image-classification loss).

        `config.problem_type` is inferred from the labels when unset, by the rule of that loss function. Bad labels
        get a `ValueError` here rather than an index error (or a device-side assert on GPU) inside the loss. The
        loss is computed in float32 and is a plain mean over the batch.

        Args:
            logits: (B, num_labels).
            labels: (B,) integer class ids ("single_label_classification"), (B, num_labels) multi-hot
                ("multi_label_classification"), or (B,) / (B, num_labels) targets ("regression").

        Returns:
            The scalar loss.
        """
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}: pass torch.tensor(labels).")
        if self.num_labels < 1:
            raise ValueError(
                "This model has no classification head (num_labels=0): it returns pooled features, with no loss. "
                "Build it with num_labels set to the number of classes to train it."
            )
        if labels.ndim == 0 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} do not match the batch of {logits.shape[0]} images: give one "
                "label (or one row of labels) per image."
            )
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        labels = labels.to(logits.device)
        if self.config.problem_type == "single_label_classification":
            if labels.ndim != 1 or labels.is_floating_point():
                raise ValueError(
                    f"single-label classification needs integer class ids of shape (B,), got {labels.dtype} "
                    f"{tuple(labels.shape)}; for multi-hot labels set problem_type='multi_label_classification'."
                )
            if not is_tracing() and bool(((labels < 0) | (labels >= self.num_labels)).any()):
                raise ValueError(f"Class ids must be in [0, {self.num_labels}), got {labels.tolist()}.")
            labels = labels.long()
        elif self.config.problem_type == "multi_label_classification":
            if tuple(labels.shape) != tuple(logits.shape):
                raise ValueError(
                    f"multi-label classification needs multi-hot labels of shape {tuple(logits.shape)}, "
                    f"got {tuple(labels.shape)}."
                )
            labels = labels.float()
            if not is_tracing() and bool(((labels < 0) | (labels > 1) | labels.isnan()).any()):
                raise ValueError(
                    "multi-label classification needs multi-hot labels with values in [0, 1] (1: the class is "
                    f"present), got values {labels.unique()[:10].tolist()}."
                )
        elif self.config.problem_type == "regression":
            batch_size = len(labels)
            expected = [(batch_size, self.num_labels)] if self.num_labels > 1 else [(batch_size,), (batch_size, 1)]
            if tuple(labels.shape) not in expected:
                raise ValueError(
                    f"regression with num_labels={self.num_labels} needs targets of shape "
                    f"{' or '.join(str(shape) for shape in expected)}, got {tuple(labels.shape)}: other shapes would "
                    "be broadcast against the (B, num_labels) logits into a wrong loss."
                )
            labels = labels.float()
            if not is_tracing() and not bool(torch.isfinite(labels).all()):
                raise ValueError("regression targets hold NaN or inf: the loss would be NaN. Drop or fill them.")
        else:
            raise ValueError(
                f"Unknown problem_type {self.config.problem_type!r}: use 'single_label_classification', "
                "'multi_label_classification' or 'regression'."
            )
        return self.loss_function(labels, logits.float(), self.config)

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
    ) -> ImageClassifierOutput | tuple:
        r"""Classify `pixel_values` (B, C, H, W).

        Args:
            labels: (B,) class ids (single-label), (B, num_labels) multi-hot floats (multi-label) or (B,) floats
                (regression).
            pixel_mask: (B, H, W), 1 for valid pixels; tokens are weighted by their valid fraction when pooling.
            band_wavelengths, band_bandwidths: (C,) or (B, C) nm of the input's bands, see `S2MAEModel.forward`.

        Returns:
            `ImageClassifierOutput` with `logits` (B, num_labels) and `loss` when labels are given.
        """
        outputs, return_dict = self._encode(
            pixel_values, output_attentions, output_hidden_states, return_dict, pixel_mask=pixel_mask,
            interpolate_pos_encoding=interpolate_pos_encoding, band_wavelengths=band_wavelengths,
            band_bandwidths=band_bandwidths,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "S2MAEForImageClassification",
    "S2MAEForPreTraining",
    "S2MAEForPreTrainingOutput",
    "S2MAEModel",
    "S2MAEModelOutput",
    "S2MAEPreTrainedModel",
]
