"""Hyperspectral input at practical cost: token counts, a memory estimate, and spectral binning by wavelength.

At 128 px with 8 x 8 patches, 198 bands in cubes of 3 make 66 x 256 = 16,896 tokens: attention cost grows with the
square of that. `token_budget` makes the cost visible before a run, `check_token_budget` refuses (with the options
spelled out) a run over a budget, and `bin_bands_by_wavelength` reduces the band count by physics.
"""

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .configuration_s2mae import S2MAEConfig
from .sensors import check_bandwidths_nm, check_wavelengths_nm, estimate_bandwidths

DEFAULT_MAX_TOKENS = 8192
"""Default token limit of `check_token_budget` (a 12-band S2 model at 128 px has 1,024 tokens)."""


@dataclass(frozen=True)
class TokenBudget:
    """What one forward pass of a configuration costs.

    Attributes:
        num_groups: G = ceil(C / s) spectral groups.
        num_tokens: L = G * h * w tokens the encoder sees without masking (fine-tuning, probes).
        num_visible_tokens: K tokens the encoder sees in pretraining (after masking).
        attention_bytes: Memory of one layer's attention weights for the whole batch in float32 (eager attention,
            B * heads * L^2 * 4); SDPA / flash kernels do not materialise it, the activations below still apply.
        activation_bytes: Rough activation memory kept for the backward pass over all encoder layers, float32
            (B * L * D * 4 bytes * 16 per layer: q, k, v, MLP (4 D), norms, residuals), plus attention weights.
    """

    num_groups: int
    num_tokens: int
    num_visible_tokens: int
    attention_bytes: int
    activation_bytes: int

    def describe(self) -> str:
        """One line: tokens and memory in GiB."""
        return (
            f"{self.num_groups} spectral groups, {self.num_tokens} tokens ({self.num_visible_tokens} visible in "
            f"pretraining), attention {self.attention_bytes / 2**30:.2f} GiB per layer, about "
            f"{self.activation_bytes / 2**30:.2f} GiB of encoder activations for training"
        )


def token_budget(
    config: S2MAEConfig,
    num_bands: int | None = None,
    image_size: int | None = None,
    batch_size: int = 1,
    spectral_patch_size: int | None = None,
    masked: bool = False,
) -> TokenBudget:
    """The token count and a memory estimate of one batch through the encoder.

    Args:
        config: The model configuration (width, depth, heads, patch sizes, mask ratio).
        num_bands: C of the input (default `config.num_channels`).
        image_size: Side of the input in pixels (default `config.image_size`).
        batch_size: B.
        spectral_patch_size: s to evaluate instead of the config's.
        masked: Estimate for pretraining (the encoder sees only the visible tokens).

    Returns:
        A `TokenBudget`.
    """
    bands = config.num_channels if num_bands is None else num_bands
    side = config.image_size if image_size is None else image_size
    s = config.spectral_patch_size if spectral_patch_size is None else spectral_patch_size
    groups = math.ceil(bands / s)
    spatial = (side // config.patch_size) ** 2
    tokens = groups * spatial
    visible = max(1, int(tokens * (1 - config.mask_ratio)))
    seen = visible if masked else tokens
    attention = batch_size * config.num_attention_heads * seen * seen * 4
    per_layer = batch_size * seen * config.hidden_size * 4 * 16 + attention
    return TokenBudget(groups, tokens, visible, attention, per_layer * config.num_hidden_layers)


def check_token_budget(
    config: S2MAEConfig,
    num_bands: int,
    image_size: int | None = None,
    batch_size: int = 1,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    memory_bytes: int | None = None,
    masked: bool = False,
) -> TokenBudget:
    """Raise before an out-of-memory: a `ValueError` when the input makes more than `max_tokens` tokens or the
    estimate exceeds `memory_bytes`, listing the options (spectral patch size, binning by wavelength, image size).

    Returns:
        The `TokenBudget` when it fits.
    """
    budget = token_budget(config, num_bands, image_size, batch_size, masked=masked)
    too_many = budget.num_tokens > max_tokens
    too_big = memory_bytes is not None and budget.activation_bytes > memory_bytes
    if not (too_many or too_big):
        return budget
    spatial = budget.num_tokens // budget.num_groups
    fitting_groups = max(1, max_tokens // spatial)
    patch = math.ceil(num_bands / fitting_groups)
    limit = f"{max_tokens} tokens" if too_many else f"{memory_bytes / 2**30:.1f} GiB"
    raise ValueError(
        f"{num_bands} bands at {image_size or config.image_size} px: {budget.describe()}, over the limit of {limit}. "
        f"Options: a spectral patch of {patch} bands (spectral_patch_size={patch} gives {math.ceil(num_bands / patch)}"
        f" groups); bin the bands by wavelength to {fitting_groups * config.spectral_patch_size} bands "
        "(modeling_s2mae.hyperspectral.bin_bands_by_wavelength); a smaller image size or batch; or raise max_tokens "
        "if the memory is there."
    )


def bin_bands_by_wavelength(
    pixel_values: torch.Tensor,
    wavelengths: Sequence[float],
    num_bins: int | None = None,
    bin_width_nm: float | None = None,
    bandwidths: Sequence[float] | None = None,
    valid_bands: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, list[float], list[float]]:
    """Average bands into wavelength bins (spectral binning, e.g. 198 AVIRIS bands -> 33 bins of ~60 nm).

    Bins are equal-width intervals over [min, max] wavelength (`num_bins`) or of `bin_width_nm`; empty bins (water
    absorption gaps) are dropped. Each output band is the mean of its bands' finite values (a bad band stored as NaN,
    or a band left out with `valid_bands`, does not turn its bin into NaN; a pixel is NaN only where all its bin's
    bands are); its wavelength the mean of their centres and its bandwidth the span of their edges.

    Args:
        pixel_values: (B, C, H, W) or (C, H, W), any real dtype (integers are averaged in float32).
        wavelengths: C centre wavelengths in nm (micrometres are refused: see `sensors.check_wavelengths_nm`).
        num_bins: Number of equal-width bins (an int >= 1); or
        bin_width_nm: width of each bin in nm.
        bandwidths: C FWHM in nm (estimated from the spacing if None).
        valid_bands: C booleans, False for bad bands to leave out (e.g. an ENVI header's `bbl`, or the water
            absorption bands stored as zeros); None keeps every band. Bins of only bad bands are dropped.

    Returns:
        (binned values (B, C', H, W) or (C', H, W), C' centre wavelengths, C' bandwidths), in wavelength order.

    Raises:
        ValueError: for a shape that does not match the wavelengths, wavelengths or bandwidths that are not valid
            nanometres, a bin count or width that is not a positive number, or no valid band.
    """
    if (num_bins is None) == (bin_width_nm is None):
        raise ValueError("Give exactly one of num_bins or bin_width_nm.")
    wavelengths = check_wavelengths_nm(wavelengths, "wavelengths")
    band_axis = pixel_values.ndim - 3
    if pixel_values.ndim not in (3, 4) or pixel_values.shape[band_axis] != len(wavelengths):
        raise ValueError(
            f"pixel_values must be (B, C, H, W) or (C, H, W) with C = {len(wavelengths)} wavelengths, got "
            f"{tuple(pixel_values.shape)}."
        )
    if pixel_values.is_complex() or pixel_values.dtype == torch.bool:
        raise ValueError(f"pixel_values must hold real numbers, got dtype {pixel_values.dtype}.")
    if not pixel_values.is_floating_point():
        pixel_values = pixel_values.float()
    widths = (
        estimate_bandwidths(wavelengths)
        if bandwidths is None
        else check_bandwidths_nm(bandwidths, len(wavelengths), "bandwidths")
    )
    keep = list(range(len(wavelengths)))
    if valid_bands is not None:
        flags = [bool(v) for v in valid_bands]
        if len(flags) != len(wavelengths):
            raise ValueError(f"valid_bands has {len(flags)} flags for {len(wavelengths)} bands: give one per band.")
        keep = [i for i, flag in enumerate(flags) if flag]
        if not keep:
            raise ValueError("valid_bands marks every band as bad: nothing to bin.")
    centres = torch.tensor([wavelengths[i] for i in keep], dtype=torch.float64)
    widths_kept = torch.tensor([widths[i] for i in keep], dtype=torch.float64)
    low, high = float(centres.min()), float(centres.max())
    if num_bins is not None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral) or num_bins < 1:
            raise ValueError(f"num_bins must be an int >= 1, got {num_bins!r}.")
        width = (high - low) / int(num_bins) or 1.0
    else:
        if isinstance(bin_width_nm, bool) or not (isinstance(bin_width_nm, numbers.Real) and bin_width_nm > 0):
            raise ValueError(f"bin_width_nm must be a positive number of nanometres, got {bin_width_nm!r}.")
        if not math.isfinite(bin_width_nm):
            raise ValueError(f"bin_width_nm must be finite, got {bin_width_nm!r}.")
        width = float(bin_width_nm)
    index = ((centres - low) / width).floor().long().clamp(max=max(0, math.ceil((high - low) / width) - 1))
    positions = torch.tensor(keep)
    values, out_centres, out_widths = [], [], []
    for bin_index in index.unique(sorted=True).tolist():
        chosen = torch.nonzero(index == bin_index).flatten()
        members = pixel_values.index_select(band_axis, positions[chosen].to(pixel_values.device))
        values.append(members.nanmean(dim=band_axis, keepdim=True))  # NaN only where every member is NaN
        member_centres, member_widths = centres[chosen], widths_kept[chosen]
        out_centres.append(float(member_centres.mean()))
        out_widths.append(
            float((member_centres + member_widths / 2).max() - (member_centres - member_widths / 2).min())
        )
    return torch.cat(values, dim=band_axis), out_centres, out_widths


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "TokenBudget",
    "bin_bands_by_wavelength",
    "check_token_budget",
    "token_budget",
]
