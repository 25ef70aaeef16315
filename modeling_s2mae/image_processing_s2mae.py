"""Image processor of S2MAE: selects multispectral bands by name, resizes them and scales them to [0, 1].

Pipeline, per image (shapes for one image; a batch adds a leading B):

1. Read the input as (C_in, H, W), channels first or last (given or inferred from the band count).
2. Select and reorder the bands BY NAME, `input_band_names` -> `band_names`: (C, H, W). Extra bands (B10) are
   dropped; a missing band is an error. Files disagree on band order (EuroSAT puts B8A last, most others right
   after B08), so a band is never taken by position.
3. Mark invalid pixels: a pixel is invalid when it equals `nodata` or is not finite in any of the C bands.
4. Scale with `scaling` ("minmax", "reflectance", "standardize", "sigma" or "dataset_range"); "minmax" takes its
   per-image statistics from valid pixels only, the others use fixed or dataset-level values.
5. Resize to (size, size) with `torch.nn.functional.interpolate`; the validity mask with nearest neighbour.
6. Clamp to [0, 1] (all scalings but "standardize") and write 0 at invalid pixels.
   A valid pixel whose scaled value is not finite in float32 is an error naming the image: the output never holds
   NaN or inf.

Output: `pixel_values` (B, C, size, size) float32 in the model's band order and `pixel_mask` (B, size, size)
int64, 1 where a pixel is valid in every band.
"""

import copy
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import TensorType, logging

from .configuration_s2mae import S2MAEConfig
from .sensors import (
    EUROSAT_MS_BANDS,
    SENTINEL2_13_BANDS,
    SENTINEL2_BANDS,
    check_bandwidths_nm,
    check_wavelengths_nm,
    known_band_wavelengths,
)

logger = logging.get_logger(__name__)

FMOW_SENTINEL_BAND_MEAN: dict[str, float] = {
    "B01": 1370.19, "B02": 1184.38, "B03": 1120.77, "B04": 1136.26, "B05": 1263.74, "B06": 1645.40,
    "B07": 1846.87, "B08": 1762.60, "B8A": 1972.62, "B09": 582.73, "B10": 14.77, "B11": 1732.16,
    "B12": 1247.92,
}  # fmt: skip
"""Per-band mean of fMoW-Sentinel (Sentinel-2 L1C digital numbers, reflectance x 10000)."""

FMOW_SENTINEL_BAND_STD: dict[str, float] = {
    "B01": 633.15, "B02": 650.28, "B03": 712.13, "B04": 965.23, "B05": 948.98, "B06": 1108.07,
    "B07": 1258.36, "B08": 1233.15, "B8A": 1364.39, "B09": 472.38, "B10": 14.31, "B11": 1310.37,
    "B12": 1087.60,
}  # fmt: skip
"""Per-band standard deviation of fMoW-Sentinel (digital numbers)."""

EUROSAT_BAND_MEAN: dict[str, float] = {
    "B01": 752.40, "B02": 884.30, "B03": 1144.16, "B04": 1297.47, "B05": 1624.91, "B06": 2194.64,
    "B07": 2422.21, "B08": 2517.76, "B8A": 2581.65, "B09": 2645.52, "B11": 2368.51, "B12": 1805.07,
}  # fmt: skip
"""Per-band mean of EuroSAT-MS used by the fine-tuning recipe (digital numbers). There is no B10 statistic."""

EUROSAT_BAND_STD: dict[str, float] = {
    "B01": 1108.03, "B02": 1155.15, "B03": 1183.63, "B04": 1368.11, "B05": 1370.27, "B06": 1355.55,
    "B07": 1416.51, "B08": 1474.79, "B8A": 1439.31, "B09": 1582.28, "B11": 1455.52, "B12": 1343.48,
}  # fmt: skip
"""Per-band standard deviation of EuroSAT-MS (digital numbers). There is no B10 statistic."""

SCALING_METHODS: tuple[str, ...] = ("minmax", "reflectance", "standardize", "sigma", "dataset_range")
"""Accepted values of `scaling`."""

RESAMPLE_MODES: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")
"""Accepted values of `resample`."""

INPUT_DATA_FORMATS: tuple[str, ...] = ("channels_first", "channels_last")
"""Accepted values of `input_data_format` (a `transformers.image_utils.ChannelDimension` works too)."""

_SCALINGS_WITH_STATS = ("standardize", "sigma")
_SCALINGS_WITH_RANGE = ("dataset_range",)
_SCALINGS_IN_UNIT_RANGE = ("minmax", "reflectance", "sigma", "dataset_range")
SIGMA_RANGE = 2.0
"""The "sigma" scaling maps [mean - SIGMA_RANGE * std, mean + SIGMA_RANGE * std] onto [0, 1]."""
_TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact", "area": "area"}
_SERVICE_KWARGS = ("image_processor_type", "processor_class", "auto_map")


class S2MAEImageProcessorKwargs(TypedDict, total=False):
    """Keyword arguments `S2MAEImageProcessor` accepts (also as overrides in `from_pretrained`)."""

    band_names: list[str] | tuple[str, ...] | None
    input_band_names: list[str] | tuple[str, ...] | None
    size: int
    resample: str
    scaling: str
    band_mean: dict[str, float] | None
    band_std: dict[str, float] | None
    band_low: dict[str, float] | None
    band_high: dict[str, float] | None
    band_statistics: dict[str, Any] | None
    reflectance_scale: float
    reflectance_offset: float
    nodata: float | int | None
    minmax_eps: float
    band_wavelengths: list[float] | None
    band_bandwidths: list[float] | None


class S2MAEImageProcessor(BaseImageProcessor):
    r"""Prepares multispectral images (numpy arrays or torch tensors) for S2MAE; numpy / torch only, no PIL.

    Bands are matched by name: give the names of the input's bands (`input_band_names`, in the input's order)
    and the processor returns the model's `band_names`, in the model's order.

    Args:
        band_names: Bands the model expects, in its order (`S2MAEConfig.band_names`). Defaults to the 12
            Sentinel-2 bands B01..B12 without B10, B8A after B08.
        input_band_names: Default names of the input's bands, in the input's order (e.g. `EUROSAT_MS_BANDS`
            for EuroSAT-MS files). Can be overridden per call. If `None`, an input must have exactly
            `len(band_names)` bands, already in the model's order.
        size: Side of the square output in pixels (the model's `image_size`). Non-square inputs are stretched.
        resample: Interpolation for resizing: "bilinear" (default), "bicubic", "nearest" (pixel-centre aligned,
            torch's "nearest-exact") or "area". Bilinear and bicubic antialias when downsampling.
        scaling: How values are mapped to the model's range:
            - "minmax" (paper default): per image, per band, `(x - min) / (max - min + minmax_eps)` over valid
              pixels; in [0, 1].
            - "reflectance": `(x + reflectance_offset) / reflectance_scale`, clipped to [0, 1].
            - "standardize": z-score `(x - band_mean) / band_std` with the stored statistics. NOT in [0, 1]:
              unbounded, roughly zero mean and unit variance (the EuroSAT fine-tuning recipe).
            - "sigma": `[band_mean - 2 band_std, band_mean + 2 band_std]` mapped onto [0, 1], clipped (the
              BigEarthNet recipe).
            - "dataset_range": `(x - band_low) / (band_high - band_low)`, clipped to [0, 1], with dataset-level
              per-band bounds (e.g. the 1st and 99th percentiles from `compute_band_statistics`). Unlike "minmax"
              it keeps absolute radiometry: a dark and a bright image stay different.
        band_mean: Per-band means keyed by band name, in the input's units (digital numbers for Sentinel-2 L1C).
            Needed for "standardize" and "sigma", for every band of `band_names`. Extra bands are ignored. See
            `EUROSAT_BAND_MEAN` and `FMOW_SENTINEL_BAND_MEAN`.
        band_std: Per-band standard deviations keyed by band name, same rules as `band_mean`; must be > 0.
        band_low: Per-band lower bounds keyed by band name (input units), mapped to 0 by "dataset_range"; needed
            for every band of `band_names` with that scaling.
        band_high: Per-band upper bounds, mapped to 1 by "dataset_range"; `band_high[b] > band_low[b]`.
        band_statistics: The dataset statistics the bounds come from (`BandStatistics.to_dict()`, or a
            `BandStatistics`), stored as they are so that a saved processor documents its data; not used to scale.
            `BandStatistics.processor_kwargs()` gives `scaling`, `band_low`, `band_high`, `band_mean`, `band_std`
            and `band_statistics` at once.
        reflectance_scale: Divisor of "reflectance" scaling (10000 for Sentinel-2 digital numbers).
        reflectance_offset: Added before dividing in "reflectance" scaling; -1000 for Sentinel-2 products of
            processing baseline 04.00 or later (from January 2022), 0 before.
        nodata: Value marking missing pixels (e.g. 0 for Sentinel-2 L1C), or `None`. Can be overridden per call.
            Non-finite values (NaN, inf) are always treated as missing.
        minmax_eps: The eps of "minmax" scaling.
        band_wavelengths: Centre wavelengths (nm) of `band_names`, in their order (`from_model_config` copies the
            config's), returned for input that brings none of its own. Without them, Sentinel-2 band names take the
            registry's values; give them for a product that reuses such names for other bands (HLS L30 "B05" is
            Landsat NIR, 865 nm, not Sentinel-2 B05, 704 nm).
        band_bandwidths: Bandwidths (FWHM, nm) of `band_names`, with `band_wavelengths`.

    Example:
        >>> processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS)
        >>> inputs = processor(tile, return_tensors="pt")  # tile: (13, 64, 64) uint16 from a EuroSAT-MS file
        >>> inputs["pixel_values"].shape, inputs["pixel_mask"].shape
        (torch.Size([1, 12, 128, 128]), torch.Size([1, 128, 128]))

        Dataset-level ranges, which keep absolute radiometry (see `modeling_s2mae.data.statistics`):

        >>> stats = compute_band_statistics(samples, band_names=SENTINEL2_BANDS)  # 1st / 99th percentiles, ...
        >>> processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, **stats.processor_kwargs())
    """

    model_input_names = ["pixel_values", "pixel_mask"]
    valid_kwargs = S2MAEImageProcessorKwargs

    def __init__(
        self,
        band_names: Sequence[str] | None = None,
        input_band_names: Sequence[str] | None = None,
        size: int = 128,
        resample: str = "bilinear",
        scaling: str = "minmax",
        band_mean: Mapping[str, float] | None = None,
        band_std: Mapping[str, float] | None = None,
        band_low: Mapping[str, float] | None = None,
        band_high: Mapping[str, float] | None = None,
        band_statistics: Mapping[str, Any] | None = None,
        reflectance_scale: float = 10000.0,
        reflectance_offset: float = 0.0,
        nodata: float | int | None = None,
        minmax_eps: float = 1e-6,
        band_wavelengths: Sequence[float] | None = None,
        band_bandwidths: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(kwargs) - set(_SERVICE_KWARGS))
        if unknown:
            raise TypeError(
                f"S2MAEImageProcessor got unknown arguments {unknown}; accepted: "
                f"{sorted(S2MAEImageProcessorKwargs.__annotations__)}."
            )
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        self.band_names = _check_band_names(SENTINEL2_BANDS if band_names is None else band_names, "band_names")
        self.input_band_names = (
            None if input_band_names is None else _check_band_names(input_band_names, "input_band_names")
        )
        self.size = _check_size(size)
        self.resample = _check_choice(resample, RESAMPLE_MODES, "resample")
        self.scaling = _check_choice(scaling, SCALING_METHODS, "scaling")
        self.band_mean = _check_stats(band_mean, "band_mean")
        self.band_std = _check_stats(band_std, "band_std")
        self.band_low = _check_stats(band_low, "band_low")
        self.band_high = _check_stats(band_high, "band_high")
        self.band_statistics = _check_band_statistics(band_statistics)
        self.reflectance_scale = _check_number(reflectance_scale, "reflectance_scale", positive=True)
        self.reflectance_offset = _check_number(reflectance_offset, "reflectance_offset")
        self.nodata = None if nodata is None else _check_number(nodata, "nodata", allow_int=True)
        self.minmax_eps = _check_number(minmax_eps, "minmax_eps", positive=True)
        self.band_wavelengths, self.band_bandwidths = _check_spectral(
            band_wavelengths,
            band_bandwidths,
            len(self.band_names),
            "band_wavelengths",
            "band_bandwidths",
            "band_names",
        )
        self._check_stats_cover_bands(self.scaling)

    @classmethod
    def from_model_config(cls, config: S2MAEConfig, **kwargs: Any) -> "S2MAEImageProcessor":
        """Build a processor whose `band_names`, `size` and band wavelengths are those of `config` (`band_names`,
        `image_size`, `band_wavelengths`, `band_bandwidths`): the wavelengths it returns for input without its own
        are then the model's, not the Sentinel-2 registry's for names such as "B05" that other products reuse.

        Args:
            config: The model's `S2MAEConfig`.
            **kwargs: Any other constructor argument (`input_band_names`, `scaling`, `nodata`, ...).
        """
        for key in ("band_names", "size"):
            if key in kwargs:
                raise ValueError(f"from_model_config takes {key!r} from the config; do not pass it.")
        spectral = {}
        if "band_wavelengths" not in kwargs and config.band_wavelengths is not None:
            spectral["band_wavelengths"] = list(config.band_wavelengths)
            if "band_bandwidths" not in kwargs and config.band_bandwidths is not None:
                spectral["band_bandwidths"] = list(config.band_bandwidths)
        return cls(band_names=list(config.band_names), size=config.image_size, **spectral, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Serialise every setting, `None` values included, for `preprocessor_config.json`."""
        output = super().to_dict()
        for name in S2MAEImageProcessorKwargs.__annotations__:
            output[name] = copy.deepcopy(getattr(self, name))
        return output

    def preprocess(
        self,
        images: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        input_band_names: Sequence[str] | None = None,
        input_data_format: str | None = None,
        nodata: float | int | None = None,
        size: int | None = None,
        resample: str | None = None,
        scaling: str | None = None,
        return_tensors: str | TensorType | None = None,
        input_band_wavelengths: Sequence[float] | None = None,
        input_band_bandwidths: Sequence[float] | None = None,
    ) -> BatchFeature:
        r"""Select bands by name, scale, resize and mask a batch of multispectral images.

        Arguments left to `None` take the processor's settings.

        Args:
            images: One image (C_in, H, W) or (H, W, C_in); a batch (B, C_in, H, W) or (B, H, W, C_in); or a list
                of images (their H, W may differ). numpy arrays or torch tensors of a real integer or floating
                dtype (uint8, uint16, int16, float32, float64, ...).
            input_band_names: Names of the input's C_in bands, in the input's order.
            input_data_format: "channels_first" or "channels_last". If `None`, the channel axis is the first or
                last axis whose length is the expected band count; an ambiguous shape is an error.
            nodata: Value marking missing pixels (`None`: the processor's `nodata`).
            size: Output side in pixels.
            resample: Interpolation mode, one of `RESAMPLE_MODES`.
            scaling: One of `SCALING_METHODS`.
            return_tensors: "pt" (torch tensors), "np" (numpy arrays) or `None` (lists of per-image arrays).
            input_band_wavelengths: Centre wavelength (nm) of each of the C_in input bands (e.g.
                `RasterSample.band_wavelengths`); selected with the bands. Without it, Sentinel-2 band names take
                the sensor registry's values.
            input_band_bandwidths: Bandwidth (FWHM, nm) of each input band, with `input_band_wavelengths`.

        Returns:
            `BatchFeature` with
            - `pixel_values`: (B, C, size, size) float32, bands in `band_names` order; 0 at invalid pixels.
            - `pixel_mask`: (B, size, size) int64, 1 where the pixel is valid in all bands, 0 otherwise.
            - `band_wavelengths`, `band_bandwidths`: (B, C) float32 in nm, in `band_names` order, when known; pass
              them to the model (`model(**inputs)`) to place the bands by wavelength.

        Raises:
            ValueError: wrong ndim, empty input, unsupported dtype, band count that does not match the band names,
                ambiguous channel axis, a model band missing from `input_band_names`, an image with no valid pixel,
                a valid pixel whose scaled value is not finite in float32 (e.g. 1e300 with "standardize"), or an
                invalid setting.
            TypeError: an input that is neither a numpy array nor a torch tensor.
        """
        input_band_names = self.input_band_names if input_band_names is None else input_band_names
        if input_band_names is not None:
            input_band_names = _check_band_names(input_band_names, "input_band_names")
        nodata = self.nodata if nodata is None else _check_number(nodata, "nodata", allow_int=True)
        size = self.size if size is None else _check_size(size)
        resample = self.resample if resample is None else _check_choice(resample, RESAMPLE_MODES, "resample")
        scaling = self.scaling if scaling is None else _check_choice(scaling, SCALING_METHODS, "scaling")
        self._check_stats_cover_bands(scaling)
        return_tensors = _check_return_tensors(return_tensors)
        data_format = _check_data_format(input_data_format)

        band_indices = torch.tensor(self._band_indices(input_band_names))
        num_input_bands = len(self.band_names) if input_band_names is None else len(input_band_names)
        images_chw = [
            _to_channels_first(image, num_input_bands, data_format, input_band_names).index_select(0, band_indices)
            for image in _split_images(images)
        ]  # each (C, H, W) float64

        pixel_values, pixel_masks = [], []
        for start, group in _group_by_shape(images_chw):
            values, mask = self._process_batch(torch.stack(group), start, nodata, size, resample, scaling)
            pixel_values.append(values)
            pixel_masks.append(mask)
        pixel_values = torch.cat(pixel_values)  # (B, C, size, size)
        pixel_mask = torch.cat(pixel_masks)  # (B, size, size)

        data = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        spectral = self._band_wavelengths(
            input_band_names, band_indices.tolist(), input_band_wavelengths, input_band_bandwidths, num_input_bands
        )
        for key, values in zip(("band_wavelengths", "band_bandwidths"), spectral):
            if values is not None:
                data[key] = torch.tensor(values, dtype=torch.float32).expand(len(pixel_values), -1)  # (B, C)
        if return_tensors == "np":
            data = {key: value.numpy() for key, value in data.items()}
        elif return_tensors is None:
            data = {key: list(value.numpy()) for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _band_wavelengths(
        self,
        input_band_names: list[str] | None,
        band_indices: list[int],
        wavelengths: Sequence[float] | None,
        bandwidths: Sequence[float] | None,
        num_input_bands: int,
    ) -> tuple[list[float] | None, list[float] | None]:
        """Wavelengths and bandwidths (nm) of the output bands: the input's, selected like the bands, else the
        sensor registry's for Sentinel-2 names, else (None, None)."""
        if wavelengths is None:
            if bandwidths is not None:
                raise ValueError("input_band_bandwidths was given without input_band_wavelengths: pass both.")
            if self.band_wavelengths is not None:
                return list(self.band_wavelengths), (
                    None if self.band_bandwidths is None else list(self.band_bandwidths)
                )
            known = known_band_wavelengths(self.band_names)
            return (None, None) if known is None else known
        wavelengths, bandwidths = _check_spectral(
            wavelengths,
            bandwidths,
            num_input_bands,
            "input_band_wavelengths",
            "input_band_bandwidths",
            f"input bands ({input_band_names}), in the input's order",
        )
        picked = [float(wavelengths[i]) for i in band_indices]
        return picked, None if bandwidths is None else [float(bandwidths[i]) for i in band_indices]

    def _band_indices(self, input_band_names: list[str] | None) -> list[int]:
        """Positions in the input of the model's bands, in the model's order."""
        if input_band_names is None:
            return list(range(len(self.band_names)))
        missing = [name for name in self.band_names if name not in input_band_names]
        if missing:
            raise ValueError(
                f"Bands {missing} that the model needs are missing from input_band_names {input_band_names}. "
                f"The model expects {self.band_names}."
            )
        dropped = [name for name in input_band_names if name not in self.band_names]
        if dropped:
            logger.debug(f"Dropping input bands {dropped}: the model does not use them.")
        return [input_band_names.index(name) for name in self.band_names]

    def _check_stats_cover_bands(self, scaling: str) -> None:
        """Raise if `scaling` needs per-band statistics that are missing or invalid for a model band."""
        if scaling in _SCALINGS_WITH_RANGE:
            self._check_range_covers_bands(scaling)
        if scaling not in _SCALINGS_WITH_STATS:
            return
        for stats_name in ("band_mean", "band_std"):
            stats = getattr(self, stats_name)
            missing = self.band_names if stats is None else [name for name in self.band_names if name not in stats]
            if missing:
                raise ValueError(
                    f"scaling={scaling!r} needs {stats_name} for every model band, but it lacks {missing}. Pass a "
                    f"dict keyed by band name, e.g. EUROSAT_BAND_MEAN / EUROSAT_BAND_STD."
                )
        non_positive = [name for name in self.band_names if self.band_std[name] <= 0]
        if non_positive:
            raise ValueError(f"band_std must be > 0 for every model band; it is not for {non_positive}.")

    def _check_range_covers_bands(self, scaling: str) -> None:
        """Raise if `band_low` / `band_high` miss a model band or do not satisfy high > low."""
        for stats_name in ("band_low", "band_high"):
            stats = getattr(self, stats_name)
            missing = self.band_names if stats is None else [name for name in self.band_names if name not in stats]
            if missing:
                raise ValueError(
                    f"scaling={scaling!r} needs {stats_name} for every model band, but it lacks {missing}. Compute "
                    "dataset statistics with modeling_s2mae.data.statistics.compute_band_statistics and pass "
                    "**stats.processor_kwargs(), or pass band_low / band_high dicts keyed by band name."
                )
        inverted = [name for name in self.band_names if not self.band_high[name] > self.band_low[name]]
        if inverted:
            raise ValueError(
                f"band_high must be > band_low for every model band; it is not for {inverted} "
                f"(low {[self.band_low[n] for n in inverted]}, high {[self.band_high[n] for n in inverted]})."
            )

    def _process_batch(
        self,
        images: torch.Tensor,
        start: int,
        nodata: float | None,
        size: int,
        resample: str,
        scaling: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale, resize and mask images of one shape.

        Args:
            images: (N, C, H, W) float64, bands in model order.
            start: Index of the first of these images in the whole batch (for error messages).

        Returns:
            `pixel_values` (N, C, size, size) float32 and `pixel_mask` (N, size, size) int64.
        """
        valid = torch.isfinite(images).all(dim=1)  # (N, H, W)
        for value in _nodata_values(nodata):
            valid &= (images != value).all(dim=1)
        num_valid = valid.flatten(1).sum(dim=1)  # (N,)
        if (num_valid == 0).any():
            empty = [start + index for index in torch.nonzero(num_valid == 0).flatten().tolist()]
            raise ValueError(
                f"Images {empty} of the batch have no valid pixel: every pixel equals nodata={nodata} or is not "
                "finite in at least one band."
            )
        band_valid = valid.unsqueeze(1).expand_as(images)  # (N, C, H, W)

        scaled = self._scale(images, band_valid, scaling)
        _check_finite_scaled(scaled, images, band_valid, start, scaling)
        # Fill invalid pixels with the band's valid mean before resizing, so interpolation does not pull their
        # valid neighbours towards an arbitrary value; they are set to 0 after resizing.
        valid_mean = torch.where(band_valid, scaled, 0.0).sum(dim=(2, 3), keepdim=True) / num_valid.view(-1, 1, 1, 1)
        scaled = torch.where(band_valid, scaled, valid_mean).float()

        height, width = scaled.shape[-2:]
        if (height, width) != (size, size):
            downsampling = size < height or size < width
            mode = _TORCH_MODES[resample]
            options: dict[str, Any] = {}
            if resample in ("bilinear", "bicubic"):
                options = {"align_corners": False, "antialias": downsampling}
            scaled = F.interpolate(scaled, size=(size, size), mode=mode, **options)
            valid = F.interpolate(valid.unsqueeze(1).float(), size=(size, size), mode="nearest-exact")
            valid = valid.squeeze(1) > 0.5  # (N, size, size)
        if scaling in _SCALINGS_IN_UNIT_RANGE:
            scaled = scaled.clamp(0.0, 1.0)  # bicubic overshoots
        pixel_values = torch.where(valid.unsqueeze(1), scaled, 0.0)
        if not torch.isfinite(pixel_values).all():  # resizing values near float32's limit can still overflow
            _check_finite_scaled(pixel_values, None, valid.unsqueeze(1).expand_as(pixel_values), start, scaling)
        return pixel_values.contiguous(), valid.long()

    def _scale(self, images: torch.Tensor, band_valid: torch.Tensor, scaling: str) -> torch.Tensor:
        """Apply `scaling` to (N, C, H, W) float64 images; statistics of "minmax" use valid pixels only.

        Values at invalid pixels are left undefined (possibly NaN); the caller replaces them.
        """
        if scaling == "minmax":
            low = torch.where(band_valid, images, math.inf).amin(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
            high = torch.where(band_valid, images, -math.inf).amax(dim=(2, 3), keepdim=True)
            return (images - low) / (high - low + self.minmax_eps)
        if scaling == "reflectance":
            return ((images + self.reflectance_offset) / self.reflectance_scale).clamp(0.0, 1.0)
        if scaling == "dataset_range":
            low = torch.tensor([self.band_low[name] for name in self.band_names], dtype=images.dtype)
            high = torch.tensor([self.band_high[name] for name in self.band_names], dtype=images.dtype)
            low, high = low.view(1, -1, 1, 1), high.view(1, -1, 1, 1)
            return ((images - low) / (high - low)).clamp(0.0, 1.0)
        mean = torch.tensor([self.band_mean[name] for name in self.band_names], dtype=images.dtype)
        std = torch.tensor([self.band_std[name] for name in self.band_names], dtype=images.dtype)
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        if scaling == "standardize":
            return (images - mean) / std
        low = mean - SIGMA_RANGE * std
        return ((images - low) / (2 * SIGMA_RANGE * std)).clamp(0.0, 1.0)


def _nodata_values(nodata: float | None) -> tuple[float, ...]:
    """The values that mark missing pixels: `nodata`, and its float32 rounding when that differs.

    Float32 rasters store their nodata (e.g. -0.1, declared as a float64 by GDAL) rounded to float32, and images
    reach the processor as float64: without the rounded value, every nodata pixel of such a file would count as
    valid.
    """
    if nodata is None or math.isnan(nodata):
        return ()
    rounded = float(np.float32(nodata)) if abs(nodata) <= np.finfo(np.float32).max else nodata
    return (nodata,) if rounded == nodata else (nodata, rounded)


def _check_finite_scaled(
    scaled: torch.Tensor, images: torch.Tensor | None, band_valid: torch.Tensor, start: int, scaling: str
) -> None:
    """Raise a `ValueError` naming the images whose valid pixels do not scale to finite float32 values.

    Args:
        scaled: (N, C, H, W) scaled values (float64 before the float32 output is made, or the float32 output).
        images: (N, C, H, W) input values, for the message, or None.
        band_valid: (N, C, H, W) bool, True at valid pixels.
        start: Index of the first of these images in the whole batch.
    """
    limit = torch.finfo(torch.float32).max
    bad = band_valid & ~(torch.isfinite(scaled) & (scaled.abs() <= limit))  # (N, C, H, W)
    if not bad.any():
        return
    per_image = bad.flatten(1).any(dim=1)
    indices = torch.nonzero(per_image).flatten().tolist()
    example = ""
    if images is not None:
        values = images[bad]
        example = f" (inputs up to {values.abs().max().item():.3g})"
    raise ValueError(
        f"Images {[start + index for index in indices[:10]]} of the batch have {int(bad.sum())} valid pixel value(s) "
        f"that scaling={scaling!r} turns into values that are not finite in float32{example}. Mark such values as "
        "missing (nodata, or NaN in a float input) or check the input's units and the scaling statistics."
    )


def _check_spectral(
    wavelengths: Sequence[float] | None,
    bandwidths: Sequence[float] | None,
    num_bands: int,
    what: str,
    what_widths: str,
    of: str,
) -> tuple[list[float] | None, list[float] | None]:
    """Centre wavelengths and bandwidths (nm), one per band: checked and as floats, or a clear `ValueError`
    (another count, values that are not finite positive nanometres, micrometres, bandwidths without wavelengths)."""
    if wavelengths is None:
        if bandwidths is not None:
            raise ValueError(f"{what_widths} was given without {what}: pass both (nm, one per band).")
        return None, None
    if len(wavelengths) != num_bands:
        raise ValueError(
            f"{what} has {len(wavelengths)} values for {num_bands} bands ({of}): give one value in nm per band."
        )
    checked = check_wavelengths_nm(wavelengths, what)
    widths = None if bandwidths is None else check_bandwidths_nm(bandwidths, num_bands, what_widths)
    return checked, widths


def _check_band_names(names: Sequence[str], what: str) -> list[str]:
    """Return `names` as a list after checking it is a non-empty sequence of unique strings."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"{what} must be a list of band names such as ['B01', 'B02'], got {names!r}.")
    names = list(names)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"{what} must be a non-empty list of strings, got {names!r}.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} must be unique; {duplicates} appear more than once in {names}.")
    return names


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive int (the side of the square output), got {size!r}.")
    return int(size)


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}.")
    return value


def _check_number(value: float, what: str, positive: bool = False, allow_int: bool = False) -> float | int:
    """Check a real number; keep an int as int when `allow_int` (so a nodata of 0 is saved as 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a real number, got {value!r}.")
    if positive and not value > 0:
        raise ValueError(f"{what} must be > 0, got {value!r}.")
    if allow_int and isinstance(value, int | np.integer):
        return int(value)
    return float(value)


def _check_stats(stats: Mapping[str, float] | None, what: str) -> dict[str, float] | None:
    """Copy per-band statistics into a plain dict {band name: float}."""
    if stats is None:
        return None
    if not isinstance(stats, Mapping):
        raise ValueError(
            f"{what} must be a dict keyed by band name (e.g. {{'B01': 752.4, ...}}), got {type(stats).__name__}: "
            "a plain list would silently depend on the band order."
        )
    result = {}
    for name, value in stats.items():
        number = float(_check_number(value, f"{what}[{name!r}]"))
        if not math.isfinite(number):
            raise ValueError(f"{what}[{name!r}] must be finite, got {value!r}.")
        result[str(name)] = number
    return result


def _check_band_statistics(statistics: Any) -> dict[str, Any] | None:
    """Copy dataset statistics (a `BandStatistics` or its `to_dict()`) into a plain JSON-serialisable dict."""
    if statistics is None:
        return None
    if not isinstance(statistics, Mapping) and callable(getattr(statistics, "to_dict", None)):
        statistics = statistics.to_dict()
    if not isinstance(statistics, Mapping):
        raise ValueError(
            "band_statistics must be the dict of BandStatistics.to_dict() (or a BandStatistics), got "
            f"{type(statistics).__name__}."
        )
    try:
        return json.loads(json.dumps(dict(statistics), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"band_statistics must be JSON-serialisable (finite numbers, strings, lists, dicts): {error}."
        ) from error


def _check_return_tensors(return_tensors: str | TensorType | None) -> str | None:
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)
    if value not in ("pt", "np"):
        raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
    return value


def _check_data_format(input_data_format: str | None) -> str | None:
    if input_data_format is None:
        return None
    value = getattr(input_data_format, "value", input_data_format)
    if value not in INPUT_DATA_FORMATS:
        raise ValueError(f"input_data_format must be one of {INPUT_DATA_FORMATS} or None, got {input_data_format!r}.")
    return value


def _as_tensor(array: Any) -> torch.Tensor:
    """Check the type, dtype and size of one array and return it as a CPU float64 tensor, shape unchanged."""
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "uif":
            raise ValueError(
                f"Expected an image of a real integer or floating dtype (uint8, uint16, int16, float32, ...), "
                f"got dtype {array.dtype}."
            )
        if isinstance(array, np.ma.MaskedArray):  # e.g. rasterio's read(masked=True): masked pixels are missing
            array = np.where(np.ma.getmaskarray(array), np.nan, np.ma.getdata(array).astype(np.float64))
        # Writable: torch warns on read-only arrays (broadcast views, memory maps); this copies only those.
        tensor = torch.from_numpy(np.require(array, dtype=np.float64, requirements="W"))
    elif isinstance(array, torch.Tensor):
        if array.dtype == torch.bool or array.dtype.is_complex:
            raise ValueError(
                f"Expected an image of a real integer or floating dtype (uint8, uint16, int16, float32, ...), "
                f"got dtype {array.dtype}."
            )
        tensor = array.detach().cpu().to(torch.float64)
    else:
        raise TypeError(f"Expected images as numpy arrays or torch tensors, got {type(array).__name__}.")
    if tensor.numel() == 0:
        raise ValueError(f"Expected a non-empty image, got shape {tuple(tensor.shape)}.")
    return tensor


def _split_images(images: Any) -> list[torch.Tensor]:
    """Turn the accepted input forms into a list of 3-dimensional float64 tensors (one per image)."""
    if isinstance(images, list | tuple):
        if not images:
            raise ValueError("Expected at least one image, got an empty list.")
        tensors = [_as_tensor(image) for image in images]
        for index, tensor in enumerate(tensors):
            if tensor.ndim != 3:
                raise ValueError(
                    f"Each image of a list must have 3 dimensions, (C, H, W) or (H, W, C); image {index} has shape "
                    f"{tuple(tensor.shape)}."
                )
        return tensors
    tensor = _as_tensor(images)
    if tensor.ndim == 3:
        return [tensor]
    if tensor.ndim == 4:
        return list(tensor)
    raise ValueError(
        "Expected one image with 3 dimensions, (C, H, W) or (H, W, C), or a batch with 4, (B, C, H, W) or "
        f"(B, H, W, C); got shape {tuple(tensor.shape)}."
    )


def _to_channels_first(
    image: torch.Tensor, num_bands: int, data_format: str | None, input_band_names: list[str] | None
) -> torch.Tensor:
    """Return a 3-dimensional image as (C_in, H, W), finding its channel axis from `data_format` or the band count."""
    expected = (
        f"{num_bands} bands, one per name in input_band_names {input_band_names}"
        if input_band_names is not None
        else f"{num_bands} bands (the processor's band_names, in the model's order, since input_band_names is None)"
    )
    shape = tuple(image.shape)
    if data_format is None:
        first, last = shape[0] == num_bands, shape[2] == num_bands
        if first and last:
            raise ValueError(
                f"Cannot tell the channel axis of an image of shape {shape}: both its first and last axes have "
                f"{num_bands} entries. Pass input_data_format='channels_first' or 'channels_last'."
            )
        if not first and not last:
            raise ValueError(
                f"Expected {expected} on the first or the last axis of an image, got shape {shape}. Pass the "
                "input's band names as input_band_names."
            )
        data_format = "channels_first" if first else "channels_last"
    axis = 0 if data_format == "channels_first" else 2
    if shape[axis] != num_bands:
        raise ValueError(
            f"input_data_format={data_format!r} puts {shape[axis]} bands on axis {axis} of shape {shape}, but "
            f"{expected} are expected."
        )
    return image if axis == 0 else image.permute(2, 0, 1)


def _group_by_shape(images: list[torch.Tensor]) -> list[tuple[int, list[torch.Tensor]]]:
    """Split a list of images into runs of consecutive images of one shape: [(index of the first, run), ...]."""
    groups: list[tuple[int, list[torch.Tensor]]] = []
    for index, image in enumerate(images):
        if groups and groups[-1][1][0].shape == image.shape:
            groups[-1][1].append(image)
        else:
            groups.append((index, [image]))
    return groups


__all__ = [
    "EUROSAT_BAND_MEAN",
    "EUROSAT_BAND_STD",
    "EUROSAT_MS_BANDS",
    "FMOW_SENTINEL_BAND_MEAN",
    "FMOW_SENTINEL_BAND_STD",
    "RESAMPLE_MODES",
    "SCALING_METHODS",
    "SENTINEL2_13_BANDS",
    "SIGMA_RANGE",
    "S2MAEImageProcessor",
]
