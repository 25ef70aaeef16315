"""Plot S2MAE reconstructions: original / masked / reconstructed, in true colour and a false-colour composite.

Usage (any pretraining checkpoint folder and any raster the processor can read):

    python examples/visualize_reconstructions.py --model outputs/s2mae-sample \
        --image sample_data/eurosat_ms/Forest/Forest_1.tif --output recon.png
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

TRUE_COLOUR = ("B04", "B03", "B02")
FALSE_COLOUR = ("B08", "B04", "B03")  # near infrared as red: vegetation shows bright red
MASK_RATIOS = (0.5, 0.75, 0.9, 0.95)


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
    rgb = torch.stack([image[list(band_names).index(name)] for name in bands], dim=-1).float().numpy()
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
    batch = pixel_values[None].to(model.device, model.dtype)
    noise_shape = {"random": model.config.num_tokens, "tube": model.config.num_spatial_patches}
    noise_shape["spectral"] = model.config.num_spectral_groups
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, noise_shape[model.config.masking_strategy], generator=generator).to(model.device)
    output = model(batch, noise=noise, mask_ratio=mask_ratio, return_loss=False)
    hidden = output.mask[..., None]  # (1, L, 1)
    cubes = model.patchify(batch)
    masked = model.unpatchify(cubes * (1 - hidden))[0]
    reconstructed = model.unpatchify(cubes * (1 - hidden) + output.logits * hidden)[0]
    return masked.float().clamp(0, 1).cpu(), reconstructed.float().clamp(0, 1).cpu()


def plot_reconstructions(
    model,
    pixel_values: torch.Tensor,
    output_path: str | Path,
    mask_ratios: Sequence[float] = MASK_RATIOS,
    title: str | None = None,
) -> Path:
    """Write a PNG: a row per mask ratio and composite, columns original / masked / reconstructed.

    Args:
        model: An `S2MAEForPreTraining` (in eval mode).
        pixel_values: (C, H, W) in [0, 1], bands in `model.config.band_names` order.
        output_path: Where to write the PNG.
    """
    band_names = model.config.band_names
    composites = [(name, bands) for name, bands in (("true colour", TRUE_COLOUR), ("false colour", FALSE_COLOUR))]
    composites = [(name, bands) for name, bands in composites if all(band in band_names for band in bands)]
    if not composites:
        composites = [("bands " + ", ".join(band_names[:3]), tuple(band_names[:3]))]
    rows = [(ratio, name, bands) for ratio in mask_ratios for name, bands in composites]
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for row, (ratio, name, bands) in enumerate(rows):
        masked, reconstructed = reconstruct(model, pixel_values, ratio)
        _, limits = composite(pixel_values, band_names, bands)
        for column, (label, image) in enumerate(
            (("original", pixel_values), (f"masked {ratio:.0%}", masked), ("reconstructed", reconstructed))
        ):
            axis = axes[row, column]
            axis.imshow(composite(image, band_names, bands, limits)[0])
            axis.set_title(f"{label}\n{name}", fontsize=8)
            axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, dpi=100)
    plt.close(figure)
    return output_path


def main() -> None:
    from modeling_s2mae import S2MAEForPreTraining, S2MAEImageProcessor
    from modeling_s2mae.data import read_raster
    from modeling_s2mae.data.training import sample_to_inputs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="S2MAEForPreTraining checkpoint folder or Hub repo id")
    parser.add_argument("--image", required=True, help="A multiband raster (GeoTIFF, JPEG2000, ...)")
    parser.add_argument("--band_names", nargs="+", help="Names of the file's bands, if the file does not say")
    parser.add_argument("--output", default="reconstructions.png")
    args = parser.parse_args()

    model = S2MAEForPreTraining.from_pretrained(args.model).eval()
    processor = S2MAEImageProcessor.from_pretrained(args.model)
    sample = read_raster(args.image, args.band_names)
    pixel_values = sample_to_inputs(sample, processor)["pixel_values"]
    path = plot_reconstructions(model, pixel_values, args.output, title=Path(args.image).name)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
