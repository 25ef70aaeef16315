"""The one transform from a decoded `Sample` to model inputs, used by every data source alike.

`SampleTransform` = optional RandomResizedCrop (scale 0.2-1.0, the method's pretraining recipe) + the image processor
+ optional horizontal flip, with nodata-robust sampling: a random crop with too few valid pixels is drawn again, and a
sample that has too few valid pixels at all is rejected (the caller skips it and counts it). The crop is taken from
the raw raster before the processor resizes it to the model size, so that one resize does both.
"""

import dataclasses
import logging
import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..hyperspectral import bin_bands_by_wavelength
from ..sensors import estimate_bandwidths
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


def valid_value_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """(C, H, W) -> (C, H, W) bool: True where the value is finite and differs from `nodata`."""
    valid = np.ones(array.shape, dtype=bool)
    if np.issubdtype(array.dtype, np.floating):
        valid &= np.isfinite(array)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= array != nodata
        if np.issubdtype(array.dtype, np.floating) and abs(nodata) <= np.finfo(np.float32).max:
            valid &= array != float(np.float32(nodata))  # a float32 file's nodata, widened
    return valid


def valid_pixel_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """(C, H, W) -> (H, W) bool: True where every band is finite and differs from `nodata` (the processor's rule)."""
    return valid_value_mask(array, nodata).all(axis=0)


@dataclass(frozen=True)
class SpectralBinning:
    """A fixed assignment of a sensor's bands to wavelength bins, applied to every sample alike before the processor.

    Made once from the data's band list (`from_wavelengths`, the rule of `hyperspectral.bin_bands_by_wavelength`:
    equal-width bins over [min, max] wavelength, empty bins dropped), so that every sample of a run gets the same
    bins, named `bin_names`, which are the model's bands.

    Attributes:
        source_band_names: The C_in band names the bins are made of (every sample must have them).
        members: For each of the C' bins, the positions in `source_band_names` of its bands.
        bin_names: C' names of the bins ("bin00_412nm", ...).
        wavelengths: C' centre wavelengths in nm (mean of the members' centres).
        bandwidths: C' bandwidths in nm (span of the members' edges).
    """

    source_band_names: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    bin_names: tuple[str, ...]
    wavelengths: tuple[float, ...]
    bandwidths: tuple[float, ...]

    @classmethod
    def from_wavelengths(
        cls,
        band_names: Sequence[str],
        wavelengths: Sequence[float],
        num_bins: int,
        bandwidths: Sequence[float] | None = None,
    ) -> "SpectralBinning":
        """Bins of `num_bins` equal widths over the bands' wavelength range (fewer when some are empty).

        Args:
            band_names: C_in band names.
            wavelengths: C_in centre wavelengths in nm.
            num_bins: Requested number of bins (>= 1, at most C_in).
            bandwidths: C_in FWHM in nm (estimated from the spacing if None).
        """
        names = list(band_names)
        if len(names) != len(wavelengths):
            raise ValueError(f"{len(names)} band names but {len(wavelengths)} wavelengths: give one per band.")
        if not 1 <= num_bins <= len(names):
            raise ValueError(
                f"The number of spectral bins must be in [1, {len(names)}] (the band count), got {num_bins}."
            )
        # One-hot "images" (C_in, 1, C_in): the binned image's row k is non-zero exactly at bin k's members.
        one_hot = torch.eye(len(names), dtype=torch.float64)[:, None, :]
        binned, centres, widths = bin_bands_by_wavelength(
            one_hot, wavelengths, num_bins=num_bins, bandwidths=bandwidths
        )
        members = tuple(tuple(torch.nonzero(row[0]).flatten().tolist()) for row in binned)
        bin_names = tuple(f"bin{index:02d}_{centre:.0f}nm" for index, centre in enumerate(centres))
        return cls(tuple(names), members, bin_names, tuple(centres), tuple(widths))

    def apply(self, raster: RasterSample) -> RasterSample:
        """(C_in, H, W) -> (C', H, W) float32: each bin the mean of its members' valid values (finite, not nodata);
        NaN (invalid) where none of its members is valid. Bad bands (water absorption stored as NaN or nodata) thus
        do not invalidate the pixels of a bin that has good bands too.

        Raises:
            ValueError: the raster lacks one of `source_band_names`.
        """
        missing = [name for name in self.source_band_names if name not in raster.band_names]
        if missing:
            raise ValueError(
                f"Spectral binning was set up for {len(self.source_band_names)} bands; this sample lacks {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}. Every file of a binned run needs the same bands."
            )
        positions = [raster.band_names.index(name) for name in self.source_band_names]
        array = raster.array[positions]  # (C_in, H, W)
        valid = valid_value_mask(array, raster.nodata)  # (C_in, H, W)
        values = np.where(valid, array.astype(np.float32), np.float32(0.0))
        sums = np.stack([values[list(group)].sum(axis=0) for group in self.members])  # (C', H, W)
        counts = np.stack([valid[list(group)].sum(axis=0) for group in self.members])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(counts > 0, sums / np.maximum(counts, 1), np.float32(np.nan)).astype(np.float32)
        return dataclasses.replace(
            raster,
            array=values,
            band_names=list(self.bin_names),
            nodata=None,
            band_wavelengths=list(self.wavelengths),
            band_bandwidths=list(self.bandwidths),
        )


MAX_COUNTER_SLOTS = 256
"""Processes one `SkipCounter` has slots for: the main process and up to 255 dataloader workers (more share slots)."""


class SkipCounter:
    """Counts of what nodata-robust sampling skipped, for logging and for the run's metrics, right across processes.

    The counts live in a shared-memory tensor of one (samples, crops) slot per process: the main process writes
    slot 0 and dataloader worker i slot i + 1, each under its own lock, so the main process sees what its forked or
    spawned workers skipped (a plain int would be copied into each worker and the main process would read 0).

    Args:
        samples: Initial count of rejected samples.
        crops: Initial count of redrawn crops.
    """

    def __init__(self, samples: int = 0, crops: int = 0) -> None:
        self._counts = torch.zeros(MAX_COUNTER_SLOTS, 2, dtype=torch.int64).share_memory_()  # (slots, 2)
        self._counts[0, 0], self._counts[0, 1] = int(samples), int(crops)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_counts": self._counts}  # the tensor goes to workers as shared memory; a lock cannot be pickled

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._counts = state["_counts"]
        self._lock = threading.Lock()

    @staticmethod
    def _slot() -> int:
        info = torch.utils.data.get_worker_info()
        return 0 if info is None else 1 + info.id % (MAX_COUNTER_SLOTS - 1)

    @property
    def samples(self) -> int:
        """Samples rejected for having too few valid pixels, in this process and its dataloader workers."""
        return int(self._counts[:, 0].sum())

    @property
    def crops(self) -> int:
        """Random crops drawn again because they had too few valid pixels, in all processes."""
        return int(self._counts[:, 1].sum())

    def add(self, samples: int = 0, crops: int = 0) -> None:
        slot = self._slot()
        with self._lock:
            self._counts[slot, 0] += samples
            self._counts[slot, 1] += crops

    def reset(self) -> None:
        """Set every count back to 0."""
        with self._lock:
            self._counts.zero_()

    def as_dict(self) -> dict[str, int]:
        return {"skipped_samples": self.samples, "redrawn_crops": self.crops}

    def __repr__(self) -> str:
        return f"SkipCounter(samples={self.samples}, crops={self.crops})"


class SampleTransform:
    """`Sample` -> {"pixel_values" (C, size, size) float32, "pixel_mask" (size, size) int64, ["labels"], ["sample_id"],
    ["band_wavelengths" (C,) float32, "band_bandwidths" (C,) float32]}.

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
        with_wavelengths: Add `band_wavelengths` and `band_bandwidths`, (C,) float32 in nm in the processor's band
            order, so that a batch places its bands by wavelength (`model(**batch)`). Each sample's own values
            (read from its file's metadata, or the sensor registry for Sentinel-2 names), else
            `fallback_wavelengths` / `fallback_bandwidths` (e.g. the model config's); missing bandwidths are the
            fallback's for the same wavelengths, else estimated from the band spacing. Off by default: batches of
            index-table models stay `pixel_values` / `pixel_mask` only (`wants_band_wavelengths` decides in scripts).
        fallback_wavelengths: C centre wavelengths (nm) for samples whose own are unknown.
        fallback_bandwidths: C bandwidths (nm) going with `fallback_wavelengths`.
        binning: A `SpectralBinning` applied to the raw raster before everything else (the processor then sees
            the bins as bands).
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
        with_wavelengths: bool = False,
        fallback_wavelengths: Sequence[float] | None = None,
        fallback_bandwidths: Sequence[float] | None = None,
        binning: SpectralBinning | None = None,
    ) -> None:
        num_bands = len(processor.band_names)
        for what, values in (
            ("fallback_wavelengths", fallback_wavelengths),
            ("fallback_bandwidths", fallback_bandwidths),
        ):
            if values is not None and len(values) != num_bands:
                raise ValueError(
                    f"{what} has {len(values)} values but the processor has {num_bands} bands "
                    f"({list(processor.band_names)}): give one value in nm per band, in that order."
                )
        if fallback_bandwidths is not None and fallback_wavelengths is None:
            raise ValueError("fallback_bandwidths was given without fallback_wavelengths: pass both.")
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
        self.with_wavelengths = with_wavelengths
        self.fallback_wavelengths = None if fallback_wavelengths is None else [float(v) for v in fallback_wavelengths]
        self.fallback_bandwidths = None if fallback_bandwidths is None else [float(v) for v in fallback_bandwidths]
        self.binning = binning
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
        raster = sample.raster if self.binning is None else self.binning.apply(sample.raster)
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
        spectral = {}
        if self.with_wavelengths and raster.band_wavelengths is not None:
            spectral["input_band_wavelengths"] = raster.band_wavelengths
            spectral["input_band_bandwidths"] = raster.band_bandwidths
        try:
            features = self.processor(
                np.ascontiguousarray(array),
                input_band_names=raster.band_names,
                input_data_format="channels_first",
                nodata=nodata,
                return_tensors="pt",
                **spectral,
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
        if self.with_wavelengths:
            item["band_wavelengths"], item["band_bandwidths"] = self._wavelengths_of(sample, features)
        return item

    def _wavelengths_of(self, sample: Sample, features: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) wavelengths and (C,) bandwidths in nm of a processed sample: its own, else the fallback's."""
        wavelengths = features.get("band_wavelengths")
        bandwidths = features.get("band_bandwidths")
        if wavelengths is not None:
            wavelengths = [float(v) for v in wavelengths[0].tolist()]
            bandwidths = None if bandwidths is None else [float(v) for v in bandwidths[0].tolist()]
        elif self.fallback_wavelengths is not None:
            wavelengths, bandwidths = self.fallback_wavelengths, None
        else:
            raise ValueError(
                f"Sample {sample.id!r}: its band wavelengths are unknown (no wavelength metadata in the file, and "
                f"{list(self.processor.band_names)} are not Sentinel-2 band names), and no fallback was given. Pass "
                "fallback_wavelengths (e.g. the model config's band_wavelengths, or --sensor NAME in the scripts)."
            )
        if bandwidths is None:
            same = self.fallback_wavelengths is not None and np.allclose(wavelengths, self.fallback_wavelengths)
            bandwidths = self.fallback_bandwidths if same and self.fallback_bandwidths else None
            bandwidths = estimate_bandwidths(wavelengths) if bandwidths is None else bandwidths
        return torch.tensor(wavelengths, dtype=torch.float32), torch.tensor(bandwidths, dtype=torch.float32)


__all__ = [
    "DEFAULT_MIN_VALID_FRACTION",
    "SampleTransform",
    "SkipCounter",
    "SpectralBinning",
    "random_resized_crop_window",
    "valid_pixel_mask",
    "valid_value_mask",
]
