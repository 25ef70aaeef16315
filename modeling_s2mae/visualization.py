"""Reconstruction figures: original / masked / reconstructed, in true colour and a false-colour composite.

Composite bands are chosen by centre wavelength when the model's config has `band_wavelengths` (any sensor), else
by Sentinel-2 name. Needs matplotlib (`pip install s2mae[examples]`), imported only when a figure is drawn.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .position_embeddings import pad_bands_by_repetition

MASK_RATIOS = (0.5, 0.75, 0.9, 0.95)
"""The mask ratios the method's figures show."""

TRUE_COLOUR_NM = (664.6, 559.8, 492.4)
"""Red, green, blue centre wavelengths (Sentinel-2 B04, B03, B02)."""
FALSE_COLOUR_NM = (832.8, 664.6, 559.8)
"""Near infrared shown as red, then red and green (Sentinel-2 B08, B04, B03): vegetation shows bright red."""
MAX_WAVELENGTH_GAP_NM = 60.0
"""A composite is drawn only when every target wavelength has a band within this distance."""


def composite_bands(
    band_names: Sequence[str], band_wavelengths: Sequence[float] | None = None
) -> list[tuple[str, tuple[str, str, str]]]:
    """The composites to draw for a band set: [(title, (red band, green band, blue band)), ...].

    By wavelength (nearest band within `MAX_WAVELENGTH_GAP_NM` of each target) when wavelengths are known; else the
    Sentinel-2 names B04/B03/B02 and B08/B04/B03; else the first three bands.
    """
    composites = []
    for title, targets in (("true colour", TRUE_COLOUR_NM), ("false colour", FALSE_COLOUR_NM)):
        if band_wavelengths is not None and len(band_wavelengths) == len(band_names):
            wavelengths = np.asarray(band_wavelengths, dtype=float)
            picks = [int(np.argmin(np.abs(wavelengths - target))) for target in targets]
            if all(abs(wavelengths[i] - t) <= MAX_WAVELENGTH_GAP_NM for i, t in zip(picks, targets)):
                composites.append((title, tuple(band_names[i] for i in picks)))
        else:
            names = ("B04", "B03", "B02") if title == "true colour" else ("B08", "B04", "B03")
            if all(name in band_names for name in names):
                composites.append((title, names))
    if not composites:
        composites = [("bands " + ", ".join(band_names[:3]), tuple(band_names[:3]))]
    return composites


def composite(
    image: torch.Tensor,
    band_names: Sequence[str],
    bands: Sequence[str],
    limits: tuple[float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """(C, H, W) in [0, 1] -> (H, W, 3) display image of three named bands, linearly stretched.

    Args:
        limits: (low, high) of the stretch; by default the 2nd and 98th percentiles of this image. Pass the
            original's limits to show a masked or reconstructed image with the same colours.

    Returns:
        The display image and the limits used.
    """
    missing = [name for name in bands if name not in band_names]
    if missing:
        raise ValueError(f"Bands {missing} are needed for this composite but the model has {list(band_names)}.")
    rgb = torch.stack([image[list(band_names).index(name)] for name in bands], dim=-1).float().detach().cpu().numpy()
    low, high = limits if limits is not None else (float(np.percentile(rgb, 2)), float(np.percentile(rgb, 98)))
    return np.clip((rgb - low) / max(high - low, 1e-6), 0.0, 1.0), (low, high)


@torch.no_grad()
def reconstruct(
    model, pixel_values: torch.Tensor, mask_ratio: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked input and reconstruction of one image.

    Args:
        model: An `S2MAEForPreTraining`.
        pixel_values: (C, H, W) in [0, 1].
        mask_ratio: Fraction of cubes hidden.

    Returns:
        (masked, reconstructed), each (C, H, W): hidden cubes are 0 in `masked`; `reconstructed` shows the visible
        cubes as they were and the model's prediction in the hidden ones.
    """
    config = model.config
    batch = pixel_values[None].to(model.device, model.dtype)
    noise_length = {
        "random": config.num_tokens,
        "tube": config.num_spatial_patches,
        "spectral": config.num_spectral_groups,
    }[config.masking_strategy]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, noise_length, generator=generator).to(model.device)
    output = model(batch, noise=noise, mask_ratio=mask_ratio, return_loss=False)
    hidden = output.mask[..., None]  # (1, L, 1)
    cubes = model.patchify(pad_bands_by_repetition(batch, config.spectral_patch_size))  # spectral_padding="repeat"
    masked = model.unpatchify(cubes * (1 - hidden))[0]
    reconstructed = model.unpatchify(cubes * (1 - hidden) + output.logits * hidden)[0]
    return masked.float().clamp(0, 1).cpu(), reconstructed.float().clamp(0, 1).cpu()


def usable_mask_ratios(config, mask_ratios: Sequence[float] = MASK_RATIOS) -> list[float]:
    """The ratios that keep at least one cube and hide at least one under the config's masking strategy."""
    usable = []
    for ratio in mask_ratios:
        try:
            kept = config.num_kept_tokens(ratio)
        except ValueError:  # keeps no token under this strategy
            continue
        if kept < config.num_tokens:
            usable.append(ratio)
    return usable


def plot_reconstructions(
    model,
    pixel_values: torch.Tensor,
    output_path: str | Path,
    mask_ratios: Sequence[float] = MASK_RATIOS,
    title: str | None = None,
) -> Path:
    """Write a PNG: a row per mask ratio and composite, columns original / masked / reconstructed.

    Ratios that the model's masking strategy cannot apply (e.g. spectral masking of 95 % of 4 groups keeps none) are
    left out; if none is left, the config's own `mask_ratio` is used.

    Args:
        model: An `S2MAEForPreTraining` (in eval mode).
        pixel_values: (C, H, W) in [0, 1], bands in `model.config.band_names` order.
        output_path: Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = model.config
    band_names = list(config.band_names)
    ratios = usable_mask_ratios(config, mask_ratios) or [config.mask_ratio]
    composites = composite_bands(band_names, getattr(config, "band_wavelengths", None))
    rows = [(ratio, name, bands) for ratio in ratios for name, bands in composites]
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for row, (ratio, name, bands) in enumerate(rows):
        masked, reconstructed = reconstruct(model, pixel_values, ratio)
        _, limits = composite(pixel_values, band_names, bands)
        for column, (label, image) in enumerate(
            (("original", pixel_values), (f"masked {ratio:.0%}", masked), ("reconstructed", reconstructed))
        ):
            axis = axes[row, column]
            axis.imshow(composite(image, band_names, bands, limits)[0])
            axis.set_title(f"{label}\n{name} ({', '.join(bands)})", fontsize=8)
            axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, dpi=100)
    plt.close(figure)
    return output_path


__all__ = ["MASK_RATIOS", "composite", "composite_bands", "plot_reconstructions", "reconstruct", "usable_mask_ratios"]
