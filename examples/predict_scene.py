"""Run an S2MAE model over a whole scene, window by window with overlap and blending, and write a GeoTIFF.

- A segmentation checkpoint (`S2MAEForSemanticSegmentation`) writes class ids (uint8, nodata 255), or with
  `--probabilities` one float32 band per class.
- A change-detection checkpoint (`S2MAEForChangeDetection`) needs `--scene_2` (the second date on the same grid) and
  writes 0 / 1 (uint8, nodata 255), or with `--probabilities` the change probability.
- Any other S2MAE checkpoint (pretraining, encoder, classifier) writes the encoder's embeddings: D float32 bands on the
  grid of the patches (pixel size x patch size), spectral groups averaged.

Windows have the model's input size and overlap by `--overlap` pixels; each window's output is weighted by a tent
that is highest at its centre, so overlapping windows blend without seams, and a pixel seen by one window only gets
exactly that window's output. The output has the scene's CRS and transform, and nodata where the input had no valid
pixel in any band.

Example:
    python examples/predict_scene.py --model runs/seg --scene sample_data/sentinel2_scene --output pred.tif
"""

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window
from tqdm.auto import tqdm

import modeling_s2mae  # noqa: F401  (registers the Auto classes)
from modeling_s2mae import S2MAEConfig, S2MAEModel
from modeling_s2mae.data.change_detection import check_same_dates_grid
from modeling_s2mae.data.raster import raster_info, read_window
from modeling_s2mae.data.transforms import valid_pixel_mask
from modeling_s2mae.modeling_s2mae_dense import S2MAEForChangeDetection, S2MAEForSemanticSegmentation
from modeling_s2mae.training import check_model_name_or_path, load_image_processor

logger = logging.getLogger("predict_scene")
CLASS_NODATA = 255


def window_origins(size: int, window: int, stride: int, step: int = 1) -> list[int]:
    """Origins of windows of `window` px every `stride` px covering [0, size // step * step), all multiples of `step`.

    The last window ends at the last whole `step` (flush with the end when `step` is 1): with `step` the patch size,
    every window's patches lie on the output grid of patches (an origin off that grid would shift its patches by up
    to step - 1 pixels against the output's georeference).
    """
    if size < window:
        raise ValueError(
            f"The scene ({size} px) is smaller than the model's window ({window} px); pad it, or use a checkpoint "
            "whose processor size fits."
        )
    last = (size - window) // step * step
    origins = list(range(0, last + 1, stride))
    if origins[-1] != last:
        origins.append(last)
    return origins


def tent_weights(size: int) -> torch.Tensor:
    """(size, size) weights: min(distance to the nearer edge + 1) per axis, multiplied; > 0 everywhere."""
    ramp = torch.minimum(torch.arange(1, size + 1), torch.arange(size, 0, -1)).float()
    return ramp[:, None] * ramp[None, :]


def scene_windows(height: int, width: int, window: int, overlap: int, step: int = 1) -> Iterator[Window]:
    """Windows covering the scene; `overlap` < window, origins multiples of `step` (the patch size for embeddings)."""
    if not 0 <= overlap < window:
        raise ValueError(f"--overlap must be in [0, {window}), got {overlap}.")
    stride = max(step, (window - overlap) // step * step)
    for row in window_origins(height, window, stride, step):
        for col in window_origins(width, window, stride, step):
            yield Window(col, row, window, window)


class ScenePredictor:
    """Wraps a model and its processor: `__call__(window)` gives the window's (K, h, w) output and its scale.

    Args:
        model: `S2MAEForSemanticSegmentation`, `S2MAEForChangeDetection` or an S2MAE encoder (`S2MAEModel`).
        processor: The checkpoint's `S2MAEImageProcessor` (its `size` is the window size).
        scenes: One scene source (two for change detection).
        probabilities: Return softmax probabilities (else logits, argmax taken by the caller).
    """

    def __init__(self, model: Any, processor: Any, scenes: Sequence[Any], probabilities: bool = True) -> None:
        self.model, self.processor, self.scenes = model.eval(), processor, list(scenes)
        self.change = isinstance(model, S2MAEForChangeDetection)
        self.dense = isinstance(model, (S2MAEForSemanticSegmentation, S2MAEForChangeDetection))
        if self.change != (len(self.scenes) == 2):
            raise ValueError("A change-detection model needs two scenes (--scene and --scene_2); other models one.")
        if self.change:
            check_same_dates_grid(*self.scenes)
        self.scale = 1 if self.dense else model.config.patch_size

    def inputs(self, window: Window) -> tuple[list[torch.Tensor], np.ndarray]:
        """Processed pixel values of every scene in the window, and the (H, W) mask of pixels valid in all."""
        values, valid = [], None
        for scene in self.scenes:
            raster = read_window(scene, window)
            nodata = raster.nodata if raster.nodata is not None else self.processor.nodata
            mask = valid_pixel_mask(raster.array, nodata)
            valid = mask if valid is None else valid & mask
            if not mask.any():
                values.append(None)
                continue
            features = self.processor(
                np.ascontiguousarray(raster.array), input_band_names=raster.band_names,
                input_data_format="channels_first", nodata=nodata, return_tensors="pt",
            )  # fmt: skip
            values.append(features["pixel_values"])
        return values, valid

    @torch.no_grad()
    def __call__(self, window: Window) -> tuple[torch.Tensor | None, np.ndarray]:
        """((K, h, w) output or None when the window has no valid pixel, (H, W) valid mask)."""
        values, valid = self.inputs(window)
        if any(value is None for value in values):
            return None, valid
        device = next(self.model.parameters()).device
        values = [value.to(device) for value in values]
        if self.change:
            output = self.model(pixel_values=values[0], pixel_values_2=values[1]).logits[0].softmax(0)
        elif self.dense:
            output = self.model(pixel_values=values[0]).logits[0].softmax(0)
        else:
            hidden = self.model(pixel_values=values[0]).last_hidden_state[0]  # (G * h * w, D)
            config, side = self.model.config, window.height // self.model.config.patch_size
            output = hidden.reshape(config.num_spectral_groups, side, side, -1).mean(0).permute(2, 0, 1)  # (D, h, w)
        return output.float().cpu(), valid


def predict_scene(
    predictor: ScenePredictor, output: str | Path, *, overlap: int = 32, probabilities: bool = False
) -> Path:
    """Blend the predictor's windows over the scene and write `output` (GeoTIFF, the scene's CRS and transform)."""
    info = raster_info(predictor.scenes[0])
    size, scale = predictor.processor.size, predictor.scale
    height, width = info.height, info.width
    windows = list(scene_windows(height, width, size, overlap, step=scale))
    weights = tent_weights(size // scale)
    total, weight_sum = None, torch.zeros(height // scale, width // scale)
    valid_any = np.zeros((height, width), dtype=bool)
    for window in tqdm(windows, desc="windows", unit="window"):
        result, valid = predictor(window)
        row, col = int(window.row_off), int(window.col_off)
        valid_any[row : row + size, col : col + size] |= valid
        if result is None:
            continue
        if total is None:
            total = torch.zeros(result.shape[0], height // scale, width // scale)
        rows, cols = slice(row // scale, (row + size) // scale), slice(col // scale, (col + size) // scale)
        total[:, rows, cols] += result * weights
        weight_sum[rows, cols] += weights
    if total is None:
        raise ValueError(f"{info.source[0]}: no window has a valid pixel.")
    blended = total / weight_sum.clamp_min(1e-12)  # (K, H / scale, W / scale)
    profile = {
        "driver": "GTiff", "height": height // scale, "width": width // scale, "crs": info.crs,
        "transform": info.transform @ Affine.scale(scale), "compress": "deflate",
    }  # fmt: skip
    if scale == 1:
        invalid = ~valid_any
    else:  # a patch is nodata when none of its pixels is valid
        invalid = ~valid_any[: height // scale * scale, : width // scale * scale].reshape(
            height // scale, scale, width // scale, scale
        ).any(axis=(1, 3))
    invalid |= (weight_sum == 0).numpy()
    if predictor.dense and not probabilities:
        data = blended.argmax(0).numpy().astype(np.uint8)[None]
        data[:, invalid] = CLASS_NODATA
        profile.update(count=1, dtype="uint8", nodata=CLASS_NODATA)
    else:
        data = blended.numpy().astype(np.float32)
        if predictor.change:
            data = data[1:]  # the change probability
        data[:, invalid] = np.nan
        profile.update(count=data.shape[0], dtype="float32", nodata=float("nan"))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(output, "w", **profile) as destination:
        destination.write(data)
    return output


def load_model(path: str) -> Any:
    """The checkpoint's per-pixel model, or its encoder for any other S2MAE checkpoint."""
    config = S2MAEConfig.from_pretrained(path)
    architectures = config.architectures or []
    if "S2MAEForChangeDetection" in architectures:
        return S2MAEForChangeDetection.from_pretrained(path)
    if "S2MAEForSemanticSegmentation" in architectures:
        return S2MAEForSemanticSegmentation.from_pretrained(path)
    return S2MAEModel.from_pretrained(path, add_pooling_layer=False)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="An S2MAE checkpoint folder (with its image processor).")
    parser.add_argument("--scene", required=True, nargs="+", help="A multi-band file, or per-band files / a folder.")
    parser.add_argument("--scene_2", nargs="+", help="Change detection: the second date, on the same grid.")
    parser.add_argument("--output", required=True, help="The GeoTIFF to write.")
    parser.add_argument("--overlap", type=int, default=32, help="Pixels shared by neighbouring windows.")
    parser.add_argument("--probabilities", action="store_true", help="Write class probabilities, not class ids.")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse paths and flags that would fail late (after the whole scene was predicted) or do something else than
    asked: a model folder that does not exist, an output that is a folder or one of the input files."""
    check_model_name_or_path(args.model)
    output = Path(args.output)
    if output.is_dir():
        raise ValueError(f"--output {args.output} is a folder: give the path of the GeoTIFF to write.")
    inputs = [Path(path) for path in [*args.scene, *(args.scene_2 or [])]]
    if any(path.exists() and path.resolve() == output.resolve() for path in inputs):
        raise ValueError(f"--output {args.output} is one of the input scenes: writing it would destroy the input.")


def main(argv: list[str] | None = None) -> Path:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    check_arguments(args)
    model = load_model(args.model)
    dense = isinstance(model, (S2MAEForSemanticSegmentation, S2MAEForChangeDetection))
    if args.probabilities and not dense:
        raise ValueError(
            f"--probabilities applies to segmentation and change-detection checkpoints; {args.model} is an "
            f"{type(model).__name__}, whose embeddings are written as they are. Leave --probabilities out."
        )
    processor = load_image_processor(model.config, args.model)
    scenes = [args.scene[0] if len(args.scene) == 1 else args.scene]
    if args.scene_2:
        scenes.append(args.scene_2[0] if len(args.scene_2) == 1 else args.scene_2)
    predictor = ScenePredictor(model, processor, scenes)
    path = predict_scene(predictor, args.output, overlap=args.overlap, probabilities=args.probabilities)
    print(f"Wrote {path}")
    return path


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"error: {error}")
