"""The one transform from a decoded `Sample` to model inputs, used by every data source alike.

`SampleTransform` = optional RandomResizedCrop (scale 0.2-1.0, the method's pretraining recipe) + the image processor
+ optional horizontal flip, with nodata-robust sampling: a random crop with too few valid pixels is drawn again, and a
sample that has too few valid pixels at all is rejected (the caller skips it and counts it). The crop is taken from
the raw raster before the processor resizes it to the model size, so that one resize does both.
"""

import logging
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .raster import RasterSample
from .samples import Sample, sample_targets

logger = logging.getLogger(__name__)

DEFAULT_MIN_VALID_FRACTION = 0.5
"""Default share of valid pixels a sample (or a random crop) needs to be trained on."""


def random_resized_crop_window(
    height: int,
    width: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """A random crop (top, left, crop_height, crop_width) covering `scale` of the area with aspect `ratio`.

    Falls back to the largest centred crop of admissible aspect ratio after 10 failed draws, as torchvision does.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            return rng.randint(0, height - crop_height), rng.randint(0, width - crop_width), crop_height, crop_width
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_width, crop_height = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_height, crop_width = height, int(round(height * ratio[1]))
    else:
        crop_height, crop_width = height, width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def valid_pixel_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """(C, H, W) -> (H, W) bool: True where every band is finite and differs from `nodata` (the processor's rule)."""
    valid = np.ones(array.shape[1:], dtype=bool)
    if np.issubdtype(array.dtype, np.floating):
        valid &= np.isfinite(array).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= (array != nodata).all(axis=0)
    return valid


@dataclass
class SkipCounter:
    """Thread-safe counts of what nodata-robust sampling skipped, for logging and for the run's metrics."""

    samples: int = 0
    """Samples rejected for having too few valid pixels."""
    crops: int = 0
    """Random crops drawn again because they had too few valid pixels."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, samples: int = 0, crops: int = 0) -> None:
        with self._lock:
            self.samples += samples
            self.crops += crops

    def as_dict(self) -> dict[str, int]:
        return {"skipped_samples": self.samples, "redrawn_crops": self.crops}


class SampleTransform:
    """`Sample` -> {"pixel_values" (C, size, size) float32, "pixel_mask" (size, size) int64, ["labels"], ["sample_id"]}.

    Args:
        processor: An `S2MAEImageProcessor`; its `band_names` and `size` set the output.
        augment: RandomResizedCrop(`crop_scale`) on the raw raster + horizontal flip of the processed tensors.
        crop_scale: Area range of the random crop.
        min_valid_fraction: Share of valid pixels (finite and not nodata in every band) a sample and a random crop
            need; a crop below it is drawn again (up to `max_crop_draws` times, then the whole sample is used), a
            sample below it is rejected (`__call__` returns None).
        max_crop_draws: How many random crops to try before falling back to the whole sample.
        nodata: Nodata to use for samples whose raster defines none (None: the processor's own).
        with_labels: Add `labels` (long scalar single-label, float multi-hot multi-label).
        with_ids: Add `sample_id` (a string), e.g. for `PixelCollator(record_ids_to=...)`.
    """

    def __init__(
        self,
        processor: Any,
        *,
        augment: bool = False,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
        max_crop_draws: int = 10,
        nodata: float | None = None,
        with_labels: bool = False,
        with_ids: bool = False,
    ) -> None:
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}.")
        if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale}.")
        self.processor = processor
        self.augment = augment
        self.crop_scale = crop_scale
        self.min_valid_fraction = min_valid_fraction
        self.max_crop_draws = max_crop_draws
        self.nodata = nodata
        self.with_labels = with_labels
        self.with_ids = with_ids
        self.skipped = SkipCounter()

    def _nodata_of(self, raster: RasterSample) -> float | None:
        if raster.nodata is not None:
            return raster.nodata
        return self.nodata if self.nodata is not None else getattr(self.processor, "nodata", None)

    def _draw_crop(self, valid: np.ndarray, rng: random.Random) -> tuple[int, int, int, int] | None:
        """A random crop with enough valid pixels, or None (use the whole sample) after `max_crop_draws` tries."""
        height, width = valid.shape
        for _ in range(self.max_crop_draws):
            top, left, crop_height, crop_width = random_resized_crop_window(height, width, rng, self.crop_scale)
            if valid[top : top + crop_height, left : left + crop_width].mean() >= self.min_valid_fraction:
                return top, left, crop_height, crop_width
            self.skipped.add(crops=1)
        return None

    def __call__(self, sample: Sample, rng: random.Random | None = None) -> dict[str, Any] | None:
        """Model inputs of one sample, or None when it has fewer valid pixels than `min_valid_fraction`.

        Args:
            sample: The decoded sample.
            rng: Source of the augmentation's randomness (default: drawn from torch's generator, which Trainer seeds
                and DataLoader workers re-seed one by one).
        """
        raster = sample.raster
        nodata = self._nodata_of(raster)
        valid = valid_pixel_mask(raster.array, nodata)
        if valid.mean() < self.min_valid_fraction or not valid.any():
            self.skipped.add(samples=1)
            logger.debug("Skipped %s: %.1f %% valid pixels.", sample.id, 100 * valid.mean())
            return None
        array, flip = raster.array, False
        if self.augment:
            rng = rng or random.Random(int(torch.randint(0, 2**62, (1,)).item()))
            crop = self._draw_crop(valid, rng)
            if crop is not None:
                top, left, crop_height, crop_width = crop
                array = array[:, top : top + crop_height, left : left + crop_width]
            flip = rng.random() < 0.5
        try:
            features = self.processor(
                np.ascontiguousarray(array),
                input_band_names=raster.band_names,
                input_data_format="channels_first",
                nodata=nodata,
                return_tensors="pt",
            )
        except ValueError as error:
            raise ValueError(f"Sample {sample.id!r}: {error}") from error
        pixel_values, pixel_mask = features["pixel_values"][0], features["pixel_mask"][0]
        if flip:
            pixel_values, pixel_mask = pixel_values.flip(-1), pixel_mask.flip(-1)
        item: dict[str, Any] = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        if self.with_labels:
            item["labels"] = sample_targets(sample)
        if self.with_ids:
            item["sample_id"] = sample.id
        return item


__all__ = [
    "DEFAULT_MIN_VALID_FRACTION",
    "SampleTransform",
    "SkipCounter",
    "random_resized_crop_window",
    "valid_pixel_mask",
]
