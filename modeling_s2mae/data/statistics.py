"""Dataset-level per-band statistics of multispectral samples, for the image processor's "dataset_range" scaling.

`compute_band_statistics` streams once over `Sample`s or `RasterSample`s and returns a `BandStatistics`: for every
band NAME, over the valid pixels only, the count, exact mean and standard deviation, minimum, maximum and
percentiles. Samples may hold different bands in different orders; a band is counted wherever it is present.

A pixel of a sample is invalid when any of its counted bands equals the sample's `nodata` or is not finite: the
image processor's `pixel_mask` rule. Per-image "minmax" scaling erases absolute radiometry (water, forest and fields
all end up spanning [0, 1]); dataset-level ranges keep it:

    >>> stats = compute_band_statistics(samples, band_names=SENTINEL2_BANDS)
    >>> processor = S2MAEImageProcessor(input_band_names=EUROSAT_MS_BANDS, **stats.processor_kwargs())
"""

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .raster import RasterSample
from .samples import Sample
from .transforms import valid_pixel_mask

logger = logging.getLogger(__name__)

STATISTICS_FORMAT = "s2mae-band-statistics"
"""The `format` tag of `BandStatistics.to_dict()`."""

STATISTICS_VERSION = 1
"""The `version` of `BandStatistics.to_dict()`."""

DEFAULT_PERCENTILES: tuple[float, ...] = (1.0, 2.0, 98.0, 99.0)
"""Percentile levels computed by default (in percent)."""


@dataclass
class BandStatistics:
    """Per-band statistics over the valid pixels of a dataset; every field but the scalars is keyed by band name.

    Values are in the units of the data as stored (digital numbers, reflectance x 10000, for Sentinel-2 L1C/L2A).

    Attributes:
        band_names: The bands, in order of first appearance in the data.
        count: Number of valid pixels of each band.
        mean: Mean of each band.
        std: Population standard deviation (ddof=0) of each band.
        min, max: Smallest and largest valid value of each band.
        percentiles: For each band, {level in percent: value}, numpy's default "linear" interpolation.
        exact_percentiles: For each band, True when every valid value was kept (count <= max_pixels_per_band), so
            the percentiles are exact; False when they come from a uniform random subsample of that size.
        percentile_levels: The levels of `percentiles`, in percent, ascending.
        num_samples: Number of samples read.
        max_pixels_per_band: The per-band cap of the subsample the percentiles come from.
        seed: Seed of that subsample.
    """

    band_names: list[str]
    count: dict[str, int]
    mean: dict[str, float]
    std: dict[str, float]
    min: dict[str, float]
    max: dict[str, float]
    percentiles: dict[str, dict[float, float]]
    exact_percentiles: dict[str, bool]
    percentile_levels: tuple[float, ...]
    num_samples: int
    max_pixels_per_band: int
    seed: int

    def percentile(self, level: float) -> dict[str, float]:
        """The `level`-th percentile of every band, {band name: value}.

        Raises:
            ValueError: `level` was not computed.
        """
        level = float(level)
        if level not in self.percentile_levels:
            raise ValueError(
                f"Percentile {level} was not computed; available: {list(self.percentile_levels)}. Pass it in "
                "compute_band_statistics(percentiles=...)."
            )
        return {name: self.percentiles[name][level] for name in self.band_names}

    def value_range(
        self,
        low_percentile: float | None = 1.0,
        high_percentile: float | None = 99.0,
        band_names: Sequence[str] | None = None,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Per-band (low, high) bounds for "dataset_range" scaling.

        Args:
            low_percentile, high_percentile: Percentile levels of the bounds; `None` takes the band's min / max.
            band_names: Bands to return (default: all). Every one must be in the statistics.

        Returns:
            (band_low, band_high), dicts keyed by band name with high > low. A band whose percentiles coincide
            (a nearly constant band) falls back to its min and max, with a warning.

        Raises:
            ValueError: a band is missing, or a band is constant (min == max), so no range can be formed.
        """
        names = self._select(band_names)
        lows = self.min if low_percentile is None else self.percentile(low_percentile)
        highs = self.max if high_percentile is None else self.percentile(high_percentile)
        band_low, band_high, constant = {}, {}, []
        for name in names:
            low, high = lows[name], highs[name]
            if not high > low:
                low, high = self.min[name], self.max[name]
                if not high > low:
                    constant.append(name)
                    continue
                logger.warning(
                    "Band %s: percentiles %s and %s are both %s; using its min %s and max %s instead.",
                    name,
                    low_percentile,
                    high_percentile,
                    lows[name],
                    low,
                    high,
                )
            band_low[name], band_high[name] = low, high
        if constant:
            raise ValueError(
                f"Bands {constant} hold a single value over the whole dataset (min == max), so they have no range to "
                "scale by. Leave them out of the model's band_names or compute the statistics on more data."
            )
        return band_low, band_high

    def processor_kwargs(
        self,
        band_names: Sequence[str] | None = None,
        low_percentile: float | None = 1.0,
        high_percentile: float | None = 99.0,
    ) -> dict[str, Any]:
        """Keyword arguments of `S2MAEImageProcessor` for "dataset_range" scaling with these statistics.

        Args:
            band_names: The model's bands (default: all bands of the statistics); each must be present.
            low_percentile, high_percentile: See `value_range`.

        Returns:
            {"scaling": "dataset_range", "band_low", "band_high", "band_mean", "band_std", "band_statistics"}:
            the bounds, the means and standard deviations (so "standardize" / "sigma" also work), and the whole
            `to_dict()` so that a saved processor documents its data.
        """
        names = self._select(band_names)
        band_low, band_high = self.value_range(low_percentile, high_percentile, names)
        return {
            "scaling": "dataset_range",
            "band_low": band_low,
            "band_high": band_high,
            "band_mean": {name: self.mean[name] for name in names},
            "band_std": {name: self.std[name] for name in names},
            "band_statistics": self.to_dict(),
        }

    def _select(self, band_names: Sequence[str] | None) -> list[str]:
        if band_names is None:
            return list(self.band_names)
        names = list(band_names)
        missing = [name for name in names if name not in self.count]
        if missing:
            raise ValueError(
                f"Bands {missing} are not in these statistics, which cover {self.band_names}. Compute them on data "
                "that holds those bands."
            )
        return names

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: format tag, settings, and a per-band entry (percentile levels as string keys)."""
        return {
            "format": STATISTICS_FORMAT,
            "version": STATISTICS_VERSION,
            "num_samples": int(self.num_samples),
            "max_pixels_per_band": int(self.max_pixels_per_band),
            "seed": int(self.seed),
            "percentile_levels": [float(level) for level in self.percentile_levels],
            "bands": {
                name: {
                    "count": int(self.count[name]),
                    "mean": float(self.mean[name]),
                    "std": float(self.std[name]),
                    "min": float(self.min[name]),
                    "max": float(self.max[name]),
                    "percentiles": {
                        _level_key(level): float(value) for level, value in self.percentiles[name].items()
                    },
                    "exact_percentiles": bool(self.exact_percentiles[name]),
                }
                for name in self.band_names
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BandStatistics":
        """Rebuild from `to_dict()`'s output (e.g. read back from JSON).

        Raises:
            ValueError: not such a dict (wrong format tag or version, missing or malformed fields).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"Expected a dict made by BandStatistics.to_dict(), got {type(data).__name__}.")
        if data.get("format") != STATISTICS_FORMAT:
            raise ValueError(
                f"Expected a dict made by BandStatistics.to_dict(), with format={STATISTICS_FORMAT!r}; got "
                f"format={data.get('format')!r}."
            )
        if data.get("version") != STATISTICS_VERSION:
            raise ValueError(f"Unsupported band statistics version {data.get('version')!r}; expected 1.")
        try:
            levels = tuple(float(level) for level in data["percentile_levels"])
            bands = data["bands"]
            names = list(bands)
            percentiles = {
                name: {float(level): float(value) for level, value in bands[name]["percentiles"].items()}
                for name in names
            }
            stats = cls(
                band_names=names,
                count={name: int(bands[name]["count"]) for name in names},
                mean={name: float(bands[name]["mean"]) for name in names},
                std={name: float(bands[name]["std"]) for name in names},
                min={name: float(bands[name]["min"]) for name in names},
                max={name: float(bands[name]["max"]) for name in names},
                percentiles=percentiles,
                exact_percentiles={name: bool(bands[name]["exact_percentiles"]) for name in names},
                percentile_levels=levels,
                num_samples=int(data["num_samples"]),
                max_pixels_per_band=int(data["max_pixels_per_band"]),
                seed=int(data["seed"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"Malformed band statistics dict: {error!r}.") from error
        wrong = [name for name in names if set(percentiles[name]) != set(levels)]
        if wrong:
            raise ValueError(f"Bands {wrong} do not hold exactly the percentile levels {list(levels)}.")
        return stats

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict()` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)


class _BandAccumulator:
    """Streaming statistics of one band: Chan et al.'s pairwise merge of (count, mean, M2), min, max, and a
    uniform reservoir (Vitter's algorithm R, vectorised) of at most `capacity` values."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.reservoir = np.empty(0, dtype=np.float64)
        self.filled = 0

    def update(self, values: np.ndarray) -> None:
        """Add `values`, a 1-dimensional float64 array of valid values (may be empty)."""
        size = values.size
        if size == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(np.square(values - batch_mean).sum())
        total = self.count + size
        delta = batch_mean - self.mean
        self.mean += delta * size / total
        self.m2 += batch_m2 + delta * delta * self.count * size / total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self._sample(values)
        self.count = total

    def _sample(self, values: np.ndarray) -> None:
        """Algorithm R: the value of global index i (0-based) replaces slot floor(u * (i + 1)) when that is below
        the capacity. Each decision depends only on its index, so applying a batch at once (the last writer of a
        slot wins) equals the sequential algorithm."""
        take = min(self.capacity - self.filled, values.size)
        if take > 0:
            if self.filled + take > self.reservoir.size:
                grown = np.empty(min(self.capacity, max(2 * self.reservoir.size, self.filled + take)))
                grown[: self.filled] = self.reservoir[: self.filled]
                self.reservoir = grown
            self.reservoir[self.filled : self.filled + take] = values[:take]
            self.filled += take
        rest = values[take:]
        if rest.size == 0:
            return
        seen = self.count + take + np.arange(rest.size, dtype=np.float64)  # global index of each remaining value
        slots = np.floor(self.rng.random(rest.size) * (seen + 1)).astype(np.int64)
        keep = slots < self.capacity
        slots, kept = slots[keep], rest[keep]
        # Last occurrence of each slot wins, as in the sequential algorithm.
        unique, last_from_end = np.unique(slots[::-1], return_index=True)
        self.reservoir[unique] = kept[::-1][last_from_end]

    def percentiles(self, levels: tuple[float, ...]) -> dict[float, float]:
        values = np.percentile(self.reservoir[: self.filled], levels)
        return {level: float(value) for level, value in zip(levels, values)}


def compute_band_statistics(
    samples: Iterable[Sample | RasterSample],
    *,
    band_names: Sequence[str] | None = None,
    max_samples: int | None = None,
    max_pixels_per_band: int = 2_000_000,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    seed: int = 0,
    nodata: float | None = None,
) -> BandStatistics:
    """Per-band statistics over the valid pixels of a stream of samples, in one pass.

    Mean and standard deviation are exact (float64, pairwise merge of per-sample moments), as are min, max and
    counts. Percentiles come from a uniform random subsample of at most `max_pixels_per_band` valid values per band
    (reservoir sampling); they are exact when a band has no more valid values than that. Memory: at most
    8 * max_pixels_per_band bytes per band.

    Args:
        samples: `Sample`s or `RasterSample`s (mixed is fine), each holding an array (C, H, W) with band names
            and a nodata value. Band sets and orders may differ between samples.
        band_names: The bands to compute (e.g. the model's `band_names`); they also decide validity: a pixel is
            invalid when any of these bands present in the sample is nodata or not finite, exactly the processor's
            `pixel_mask` for a model with these bands. Default: every band seen, a pixel being invalid when any
            band of its sample is.
        max_samples: Read at most this many samples, the first ones of `samples` (shuffle beforehand for a
            representative subset). Default: all.
        max_pixels_per_band: Size of the per-band subsample the percentiles come from.
        percentiles: Percentile levels, in percent, in [0, 100].
        seed: Seed of the subsample (a non-negative int); each band draws from its own stream, derived from the
            seed and the band name.
        nodata: A nodata value that overrides every sample's own (`None`: each sample's `nodata`).

    Returns:
        A `BandStatistics` keyed by band name.

    Raises:
        ValueError: bad arguments, an object that is not a sample, a sample with repeated band names, no sample, or
            a band (of `band_names`) without any valid pixel.
    """
    band_filter = None if band_names is None else _check_names(band_names)
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}.")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}.")
    if isinstance(max_pixels_per_band, bool) or not isinstance(max_pixels_per_band, int) or max_pixels_per_band < 1:
        raise ValueError(f"max_pixels_per_band must be a positive int, got {max_pixels_per_band!r}.")
    levels = _check_levels(percentiles)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")

    accumulators: dict[str, _BandAccumulator] = {}
    sample_means: list[tuple[float, str]] = []  # (mean of the valid values, source) per sample, for the units check
    num_samples = 0
    for sample in samples:
        if max_samples is not None and num_samples >= max_samples:
            break
        raster = _raster_of(sample, num_samples)
        names = [str(name) for name in raster.band_names]
        if len(set(names)) != len(names):
            raise ValueError(f"Sample {num_samples} ({raster.source}) repeats band names: {names}.")
        used = [index for index, name in enumerate(names) if band_filter is None or name in band_filter]
        num_samples += 1
        if not used:
            continue
        array = np.asarray(raster.array)[used]  # (C_used, H, W)
        if array.dtype.kind not in "uif":
            raise ValueError(
                f"Sample {num_samples - 1} ({raster.source}) has dtype {array.dtype}; expected a real integer or "
                "floating dtype."
            )
        fill = raster.nodata if nodata is None else nodata
        valid = valid_pixel_mask(array, fill)  # (H, W), the processor's rule
        if valid.any():
            sample_means.append((float(array[:, valid].mean(dtype=np.float64)), str(raster.source)))
        for row, index in enumerate(used):
            name = names[index]
            if name not in accumulators:
                accumulators[name] = _BandAccumulator(max_pixels_per_band, _band_rng(seed, name))
            accumulators[name].update(array[row][valid].astype(np.float64))

    if num_samples == 0:
        raise ValueError("compute_band_statistics got no sample: the iterable was empty.")
    warn_mixed_units(sample_means)
    order = list(accumulators) if band_filter is None else [name for name in band_filter if name in accumulators]
    empty = [name for name in (band_filter or order) if name not in accumulators or accumulators[name].count == 0]
    if empty:
        raise ValueError(
            f"Bands {empty} have no valid pixel in the {num_samples} samples read (absent, or nodata / not finite "
            "everywhere). Check the band names and the nodata value, or read more samples."
        )
    return BandStatistics(
        band_names=order,
        count={name: accumulators[name].count for name in order},
        mean={name: accumulators[name].mean for name in order},
        std={name: math.sqrt(accumulators[name].m2 / accumulators[name].count) for name in order},
        min={name: accumulators[name].min for name in order},
        max={name: accumulators[name].max for name in order},
        percentiles={name: accumulators[name].percentiles(levels) for name in order},
        exact_percentiles={name: accumulators[name].count <= max_pixels_per_band for name in order},
        percentile_levels=levels,
        num_samples=num_samples,
        max_pixels_per_band=max_pixels_per_band,
        seed=seed,
    )


MIXED_UNITS_RATIO = 1000.0
"""Brightest over darkest sample mean above which a dataset looks like two units (reflectance in [0, 1] and digital
numbers in the thousands give about 10^4; real scenes of one unit, from dark water to bright cloud, under 10^2)."""


def warn_mixed_units(sample_means: Sequence[tuple[float, str]]) -> bool:
    """Warn when the samples' mean values span more than `MIXED_UNITS_RATIO`, the sign of files in different units
    (e.g. float reflectance and integer digital numbers in one folder): one set of statistics then scales half the
    data wrongly, silently.

    Args:
        sample_means: (mean of the sample's valid values, its source) per sample.

    Returns:
        True when it warned.
    """
    positive = [(mean, source) for mean, source in sample_means if mean > 0]
    if len(positive) < 2:
        return False
    darkest, brightest = min(positive), max(positive)
    if brightest[0] < MIXED_UNITS_RATIO * darkest[0]:
        return False
    logger.warning(
        "The samples' mean values span %.3g (%s) to %.3g (%s), a factor of %.0f: the data looks like it mixes units "
        "(e.g. reflectance in [0, 1] and digital numbers in the thousands), and one set of statistics would scale "
        "part of it wrongly. Convert every file to one unit (or use separate datasets).",
        darkest[0],
        darkest[1],
        brightest[0],
        brightest[1],
        brightest[0] / darkest[0],
    )
    return True


def _band_rng(seed: int, band_name: str) -> np.random.Generator:
    """The random stream of one band's subsample: it depends on the seed and the band's name only, so a band's
    subsample is the same whatever other bands the samples hold and however the pixel stream is cut into samples."""
    return np.random.default_rng([seed, *band_name.encode("utf-8")])


def _raster_of(sample: Any, index: int) -> RasterSample:
    if isinstance(sample, Sample):
        return sample.raster
    if isinstance(sample, RasterSample):
        return sample
    raise ValueError(
        f"Expected Sample or RasterSample objects, got {type(sample).__name__} at position {index}. Read files with "
        "read_raster / load_record, or records with record_to_sample."
    )


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ValueError(f"band_names must be a non-empty list of band names such as ['B02', 'B03'], got {names!r}.")
    names = [str(name) for name in names]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"band_names must be unique; {duplicates} appear more than once.")
    return names


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
        raise ValueError(f"percentiles must be a non-empty list of levels in percent, e.g. (1, 99), got {levels!r}.")
    checked = []
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int | float | np.integer | np.floating):
            raise ValueError(f"percentiles must be numbers in [0, 100], got {level!r}.")
        if not 0 <= level <= 100:
            raise ValueError(f"percentiles must be in [0, 100] (percent, not fractions), got {level!r}.")
        checked.append(float(level))
    if len(set(checked)) != len(checked):
        raise ValueError(f"percentiles must be unique, got {list(levels)}.")
    return tuple(sorted(checked))


def _level_key(level: float) -> str:
    """A percentile level as a JSON key: 1.0 -> "1", 99.5 -> "99.5" (`float(key)` gives the level back)."""
    level = float(level)
    return str(int(level)) if level.is_integer() else repr(level)


__all__ = [
    "DEFAULT_PERCENTILES",
    "MIXED_UNITS_RATIO",
    "STATISTICS_FORMAT",
    "STATISTICS_VERSION",
    "BandStatistics",
    "compute_band_statistics",
    "warn_mixed_units",
]
