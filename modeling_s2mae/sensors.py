"""Sensor metadata, in one place: band names, centre wavelengths, bandwidths, native resolutions, band orders and
typical scale / offset, for Sentinel-2 A/B/C, Landsat 5 TM, 7 ETM+, 8/9 OLI and generic hyperspectral sensors.

Every other module (config, image processor, readers, model card) reads these tables; none keeps a copy.
Wavelengths and bandwidths are in nanometres. Sentinel-2: centre and FWHM of the ESA S2 MSI spectral response
functions (v3.0) of each unit. Landsat: the midpoint and width of the USGS band edges ("What are the band
designations for the Landsat satellites?"), not measured spectral-response centres.

Landsat band NUMBERS are not Sentinel-2 band names (Landsat B4 is NIR, Sentinel-2 B04 is red): bands of different
sensors are matched by wavelength (`nearest_bands`), never by number.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

_SENTINEL2_SPELLING = re.compile(r"^B0?([1-9]|1[0-2]|8A)$", re.IGNORECASE)

MIN_WAVELENGTH_NM = 100.0
"""The shortest centre wavelength (nm) accepted: the far-ultraviolet limit. Every optical / thermal sensor band lies
above it, so a smaller value is a unit mix-up (micrometres, 0.49 for 490 nm; or metres), refused rather than placed
hundreds of nanometres away from the bands the model was trained on."""


class Band(NamedTuple):
    """One spectral band of a sensor."""

    name: str
    wavelength_nm: float
    """Centre wavelength in nanometres."""
    bandwidth_nm: float
    """Full width at half maximum in nanometres."""
    resolution_m: float
    """Native ground sampling distance in metres."""


@dataclass(frozen=True)
class Sensor:
    """A sensor's bands and the usual conversion of its stored digital numbers to reflectance.

    Attributes:
        name: Registry key (e.g. "landsat7_etm").
        description: Human-readable name.
        bands: Every band by name, in the sensor's band order.
        default_bands: The bands a model usually takes (e.g. the 30 m reflective bands of Landsat).
        scale, offset: Typical `reflectance = DN * scale + offset` of the common surface-reflectance products (see
            `scale_note`); check your product's metadata, processing baselines change them.
        scale_note: Which product `scale` / `offset` refer to.
    """

    name: str
    description: str
    bands: dict[str, Band]
    default_bands: tuple[str, ...]
    scale: float | None = None
    offset: float | None = None
    scale_note: str = ""

    def _get(self, band_names: Sequence[str] | None) -> list[Band]:
        names = self.default_bands if band_names is None else band_names
        positions = band_positions(names, list(self.bands))
        values = list(self.bands.values())
        return [values[i] for i in positions]

    def wavelengths(self, band_names: Sequence[str] | None = None) -> list[float]:
        """Centre wavelengths (nm) of `band_names` (default: `default_bands`), in that order.

        Raises:
            ValueError: naming the bands this sensor does not have.
        """
        return [band.wavelength_nm for band in self._get(band_names)]

    def bandwidths(self, band_names: Sequence[str] | None = None) -> list[float]:
        """Bandwidths (FWHM, nm) of `band_names` (default: `default_bands`), in that order."""
        return [band.bandwidth_nm for band in self._get(band_names)]

    def resolutions(self, band_names: Sequence[str] | None = None) -> list[float]:
        """Native ground sampling distances (m) of `band_names` (default: `default_bands`), in that order."""
        return [band.resolution_m for band in self._get(band_names)]


_SENTINEL2A_BANDS: dict[str, Band] = {
    band.name: band
    for band in (
        Band("B01", 442.7, 21.0, 60),
        Band("B02", 492.4, 66.0, 10),
        Band("B03", 559.8, 36.0, 10),
        Band("B04", 664.6, 31.0, 10),
        Band("B05", 704.1, 15.0, 20),
        Band("B06", 740.5, 15.0, 20),
        Band("B07", 782.8, 20.0, 20),
        Band("B08", 832.8, 106.0, 10),
        Band("B8A", 864.7, 21.0, 20),
        Band("B09", 945.1, 20.0, 60),
        Band("B10", 1373.5, 31.0, 60),
        Band("B11", 1613.7, 91.0, 20),
        Band("B12", 2202.4, 175.0, 20),
    )
}

_SENTINEL2B_BANDS: dict[str, Band] = {
    band.name: band
    for band in (
        Band("B01", 442.3, 21.0, 60),
        Band("B02", 492.1, 66.0, 10),
        Band("B03", 559.0, 36.0, 10),
        Band("B04", 665.0, 31.0, 10),
        Band("B05", 703.8, 16.0, 20),
        Band("B06", 739.1, 15.0, 20),
        Band("B07", 779.7, 20.0, 20),
        Band("B08", 833.0, 106.0, 10),
        Band("B8A", 864.0, 22.0, 20),
        Band("B09", 943.2, 21.0, 60),
        Band("B10", 1376.9, 30.0, 60),
        Band("B11", 1610.4, 94.0, 20),
        Band("B12", 2185.7, 185.0, 20),
    )
}

SENTINEL2: dict[str, Band] = _SENTINEL2A_BANDS
"""The 13 Sentinel-2 MSI bands by name (Sentinel-2A values, the reference used by the model configs)."""

SENTINEL2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
"""The 12 Sentinel-2 bands S2MAE is pretrained on (B10, the cirrus band, dropped), in the model's order."""

SENTINEL2_13_BANDS: tuple[str, ...] = tuple(SENTINEL2)
"""All 13 Sentinel-2 bands in the usual file order (B8A right after B08, B10 at index 10), e.g. Copernicus-FM tiles."""

EUROSAT_MS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip
"""Band order of the 13-band EuroSAT-MS GeoTIFFs: B8A is the LAST band (index 12); index 8 is B09."""

SENTINEL2_WAVELENGTHS_NM: tuple[float, ...] = tuple(SENTINEL2[name].wavelength_nm for name in SENTINEL2_BANDS)
"""Centre wavelengths (nm) of `SENTINEL2_BANDS`, in the same order."""

SENTINEL2_BANDWIDTHS_NM: tuple[float, ...] = tuple(SENTINEL2[name].bandwidth_nm for name in SENTINEL2_BANDS)
"""Bandwidths (FWHM, nm) of `SENTINEL2_BANDS`, in the same order."""

SENTINEL2_RESOLUTIONS_M: dict[str, float] = {name: band.resolution_m for name, band in SENTINEL2.items()}
"""Native ground sampling distance (metres) of each Sentinel-2 band."""


def _edges(name: str, lower_um: float, upper_um: float, resolution_m: float) -> Band:
    """A band from its USGS band edges in micrometres: centre = midpoint, bandwidth = edge-to-edge width (nm)."""
    return Band(name, round((lower_um + upper_um) * 500.0, 3), round((upper_um - lower_um) * 1000.0, 3), resolution_m)


_LANDSAT_TM_BANDS = (
    _edges("B1", 0.45, 0.52, 30),
    _edges("B2", 0.52, 0.60, 30),
    _edges("B3", 0.63, 0.69, 30),
    _edges("B4", 0.76, 0.90, 30),
    _edges("B5", 1.55, 1.75, 30),
    _edges("B6", 10.40, 12.50, 120),
    _edges("B7", 2.08, 2.35, 30),
)
_LANDSAT_ETM_BANDS = (
    _edges("B1", 0.45, 0.52, 30),
    _edges("B2", 0.52, 0.60, 30),
    _edges("B3", 0.63, 0.69, 30),
    _edges("B4", 0.77, 0.90, 30),
    _edges("B5", 1.55, 1.75, 30),
    _edges("B6", 10.40, 12.50, 60),
    _edges("B7", 2.09, 2.35, 30),
    _edges("B8", 0.52, 0.90, 15),
)
_LANDSAT_OLI_BANDS = (
    _edges("B1", 0.43, 0.45, 30),
    _edges("B2", 0.45, 0.51, 30),
    _edges("B3", 0.53, 0.59, 30),
    _edges("B4", 0.64, 0.67, 30),
    _edges("B5", 0.85, 0.88, 30),
    _edges("B6", 1.57, 1.65, 30),
    _edges("B7", 2.11, 2.29, 30),
    _edges("B8", 0.50, 0.68, 15),
    _edges("B9", 1.36, 1.38, 30),
    _edges("B10", 10.60, 11.19, 100),
    _edges("B11", 11.50, 12.51, 100),
)
_LANDSAT_SR_C2 = {
    "scale": 2.75e-5,
    "offset": -0.2,
    "scale_note": "Landsat Collection 2 Level-2 surface reflectance (reflective bands)",
}
_SENTINEL2_L2A = {
    "scale": 1e-4,
    "offset": -0.1,
    "scale_note": "Sentinel-2 L1C / L2A from processing baseline 04.00 (BOA_ADD_OFFSET -1000); offset 0 before it",
}


def _sensor(name: str, description: str, bands: Sequence[Band] | dict[str, Band], default: Sequence[str], **kw):
    table = bands if isinstance(bands, dict) else {band.name: band for band in bands}
    return Sensor(name, description, table, tuple(default), **kw)


SENSORS: dict[str, Sensor] = {
    sensor.name: sensor
    for sensor in (
        _sensor("sentinel2a", "Sentinel-2A MSI", _SENTINEL2A_BANDS, SENTINEL2_BANDS, **_SENTINEL2_L2A),
        _sensor("sentinel2b", "Sentinel-2B MSI", _SENTINEL2B_BANDS, SENTINEL2_BANDS, **_SENTINEL2_L2A),
        # Sentinel-2C's spectral response functions are not tabulated here yet: its MSI is built to the same
        # specification, so the Sentinel-2A centres stand in for it (the A/B units differ by at most 17 nm, B12).
        _sensor(
            "sentinel2c", "Sentinel-2C MSI (Sentinel-2A values)", _SENTINEL2A_BANDS, SENTINEL2_BANDS, **_SENTINEL2_L2A
        ),
        _sensor(
            "landsat5_tm",
            "Landsat 5 TM",
            _LANDSAT_TM_BANDS,
            ("B1", "B2", "B3", "B4", "B5", "B7"),
            scale=1e-4,
            offset=0.0,
            scale_note="Landsat Collection 1 surface reflectance x 10000 (Collection 2: scale 2.75e-5, offset -0.2)",
        ),
        _sensor(
            "landsat7_etm",
            "Landsat 7 ETM+",
            _LANDSAT_ETM_BANDS,
            ("B1", "B2", "B3", "B4", "B5", "B7"),
            scale=1e-4,
            offset=0.0,
            scale_note="Landsat Collection 1 surface reflectance x 10000 (Collection 2: scale 2.75e-5, offset -0.2)",
        ),
        _sensor(
            "landsat8_oli",
            "Landsat 8 OLI/TIRS",
            _LANDSAT_OLI_BANDS,
            ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
            **_LANDSAT_SR_C2,
        ),
        _sensor(
            "landsat9_oli",
            "Landsat 9 OLI-2/TIRS-2",
            _LANDSAT_OLI_BANDS,
            ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
            **_LANDSAT_SR_C2,
        ),
    )
}
"""Every known sensor by registry name. `get_sensor` also accepts the aliases of `SENSOR_ALIASES`."""

SENSOR_ALIASES: dict[str, str] = {
    "sentinel2": "sentinel2a",
    "s2": "sentinel2a",
    "landsat5": "landsat5_tm",
    "landsat4_tm": "landsat5_tm",
    "landsat7": "landsat7_etm",
    "landsat8": "landsat8_oli",
    "landsat9": "landsat9_oli",
}


def get_sensor(name: str) -> Sensor:
    """The registered sensor called `name` (case-insensitive; aliases such as "sentinel2", "landsat7" accepted).

    Raises:
        ValueError: listing the known names.
    """
    key = name.strip().lower().replace("-", "").replace("+", "").replace(" ", "_")
    key = SENSOR_ALIASES.get(key, key)
    if key not in SENSORS:
        raise ValueError(
            f"Unknown sensor {name!r}; known: {sorted(SENSORS)} (aliases {sorted(SENSOR_ALIASES)}). For a "
            "hyperspectral or other sensor, build one with hyperspectral_sensor(wavelengths_nm, ...)."
        )
    return SENSORS[key]


def check_wavelengths_nm(values: Sequence[float], what: str = "wavelengths_nm") -> list[float]:
    """Centre wavelengths as floats in nanometres, or a `ValueError` saying what is wrong and what to pass.

    Args:
        values: C centre wavelengths (any sequence, array or tensor of numbers).
        what: The argument's name, for the message.

    Returns:
        C floats.

    Raises:
        ValueError: for an empty list, values that are not finite or not positive, or any value below
            `MIN_WAVELENGTH_NM` (micrometres or metres given where nanometres are expected).
    """
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be a list of numbers (nm, one per band), got {values!r}.") from error
    if not floats:
        raise ValueError(f"{what} is empty: give one centre wavelength in nm per band.")
    bad = [v for v in floats if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"{what} must be finite positive numbers in nanometres, got {bad[:5]} among {len(floats)}.")
    small = [v for v in floats if v < MIN_WAVELENGTH_NM]
    if small:
        hint = " (micrometres? multiply by 1000)" if max(small) < 30 else ""
        raise ValueError(
            f"{what} must be in nanometres, but {small[:5]} lie below {MIN_WAVELENGTH_NM:g} nm, outside any optical or "
            f"thermal band{hint}: e.g. 490.0 for the blue band, not 0.49. data.raster.parse_wavelengths converts "
            "micrometres from file metadata."
        )
    return floats


def check_bandwidths_nm(values: Sequence[float], num_bands: int, what: str = "bandwidths_nm") -> list[float]:
    """Bandwidths (FWHM) as floats in nanometres: one per band, finite and not negative (0: unknown / a line).

    Raises:
        ValueError: for another count, or values that are not finite or negative.
    """
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be a list of numbers (nm, one per band), got {values!r}.") from error
    if len(floats) != num_bands:
        raise ValueError(f"{what} has {len(floats)} values for {num_bands} bands: give one FWHM in nm per band.")
    bad = [v for v in floats if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"{what} must be finite non-negative numbers in nanometres (FWHM), got {bad[:5]}.")
    return floats


def estimate_bandwidths(wavelengths_nm: Sequence[float]) -> list[float]:
    """Bandwidths (nm) estimated from band spacing: for each band, the distance to its nearest neighbour in
    wavelength (the usual FWHM ~ sampling interval of imaging spectrometers; the nearer side, so that a gap such as
    a removed water-absorption region does not widen the bands beside it). A single band gets 0.

    Args:
        wavelengths_nm: C centre wavelengths, in any order.

    Returns:
        C bandwidths, in the input's order.
    """
    values = [float(v) for v in wavelengths_nm]
    if len(values) < 2:
        return [0.0] * len(values)
    order = sorted(range(len(values)), key=values.__getitem__)
    widths = [0.0] * len(values)
    for rank, index in enumerate(order):
        gaps = []
        if rank > 0:
            gaps.append(values[index] - values[order[rank - 1]])
        if rank + 1 < len(order):
            gaps.append(values[order[rank + 1]] - values[index])
        widths[index] = min(gaps)
    return widths


def hyperspectral_sensor(
    wavelengths_nm: Sequence[float],
    bandwidths_nm: Sequence[float] | None = None,
    band_names: Sequence[str] | None = None,
    resolution_m: float = math.nan,
    name: str = "hyperspectral",
) -> Sensor:
    """A generic sensor from a wavelength list read from the data (ENVI header, GDAL metadata).

    Args:
        wavelengths_nm: C centre wavelengths in nanometres (see `data.raster.parse_wavelengths` for units).
        bandwidths_nm: C FWHM values in nanometres; estimated from the band spacing (`estimate_bandwidths`) if None.
        band_names: C names; default "band_000", "band_001", ...
        resolution_m: Ground sampling distance, NaN when unknown.

    Raises:
        ValueError: for lengths that differ, wavelengths that are not finite positive nanometres (micrometres are
            refused, see `check_wavelengths_nm`), negative or non-finite bandwidths, or repeated names.
    """
    wavelengths = check_wavelengths_nm(wavelengths_nm, "wavelengths_nm")
    widths = (
        estimate_bandwidths(wavelengths)
        if bandwidths_nm is None
        else check_bandwidths_nm(bandwidths_nm, len(wavelengths), "bandwidths_nm")
    )
    names = [f"band_{i:03d}" for i in range(len(wavelengths))] if band_names is None else list(band_names)
    if len(widths) != len(wavelengths) or len(names) != len(wavelengths):
        raise ValueError(
            f"{len(wavelengths)} wavelengths, {len(widths)} bandwidths and {len(names)} band names: give one per band."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"band_names must be unique, got {names}.")
    bands = [Band(n, w, b, resolution_m) for n, w, b in zip(names, wavelengths, widths)]
    return _sensor(
        name, f"hyperspectral ({len(bands)} bands, {min(wavelengths):g}-{max(wavelengths):g} nm)", bands, names
    )


def nearest_bands(
    wavelengths_nm: Sequence[float], available_wavelengths_nm: Sequence[float], max_gap_nm: float = math.inf
) -> list[int | None]:
    """For each wanted wavelength, the index of the available band with the nearest centre, or None when the
    nearest is farther than `max_gap_nm` (e.g. Landsat B4 (835 nm) -> Sentinel-2 B08 (832.8 nm))."""
    available = [float(v) for v in available_wavelengths_nm]
    picks: list[int | None] = []
    for target in wavelengths_nm:
        index = min(range(len(available)), key=lambda i: abs(available[i] - target))
        picks.append(index if abs(available[index] - target) <= max_gap_nm else None)
    return picks


def known_band_wavelengths(band_names: Sequence[str]) -> tuple[list[float], list[float]] | None:
    """(centre wavelengths, bandwidths) in nm from the registry for names that identify their bands without a
    sensor: Sentinel-2 names spelled exactly ("B04", "B8A"; Sentinel-2A values). None for any other names: "B4" is
    not taken for "B04" here, since Landsat "B1".."B7" are other bands, ambiguous between TM, ETM+ and OLI (use
    `get_sensor(...).wavelengths(names)`)."""
    names = list(band_names)
    if not names or not is_sentinel2(names):
        return None
    return [SENTINEL2[n].wavelength_nm for n in names], [SENTINEL2[n].bandwidth_nm for n in names]


def is_sentinel2(band_names: Sequence[str]) -> bool:
    """True when every name is a Sentinel-2 band name."""
    return all(name in SENTINEL2 for name in band_names)


def canonical_band_name(name: str) -> str:
    """The canonical Sentinel-2 spelling of a band name ("B4" / "b04" -> "B04", "b8a" -> "B8A"); others stripped.

    Used only to match names that are not spelled identically: names are otherwise kept as their source gives them
    (Landsat "B1".."B7" are not Sentinel-2 bands).
    """
    name = name.strip()
    match = _SENTINEL2_SPELLING.match(name)
    if match is None:
        return name
    number = match.group(1).upper()
    return f"B{number}" if number == "8A" else f"B{int(number):02d}"


def band_positions(wanted: Sequence[str], available: Sequence[str]) -> list[int]:
    """Positions in `available` of each name of `wanted`: an identical name first, else the same Sentinel-2 band
    spelled differently ("B4" for "B04"), when exactly one name matches that way.

    Raises:
        ValueError: naming the wanted bands that `available` lacks.
    """
    available = list(available)
    canonical = [canonical_band_name(name) for name in available]
    positions, missing = [], []
    for name in wanted:
        if name in available:
            positions.append(available.index(name))
            continue
        matches = [i for i, other in enumerate(canonical) if other == canonical_band_name(name)]
        if len(matches) == 1:
            positions.append(matches[0])
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"Bands {missing} are not among the available bands {available}.")
    return positions


__all__ = [
    "Band",
    "EUROSAT_MS_BANDS",
    "MIN_WAVELENGTH_NM",
    "SENSORS",
    "SENSOR_ALIASES",
    "SENTINEL2",
    "SENTINEL2_13_BANDS",
    "SENTINEL2_BANDS",
    "SENTINEL2_BANDWIDTHS_NM",
    "SENTINEL2_RESOLUTIONS_M",
    "SENTINEL2_WAVELENGTHS_NM",
    "Sensor",
    "band_positions",
    "canonical_band_name",
    "check_bandwidths_nm",
    "check_wavelengths_nm",
    "estimate_bandwidths",
    "get_sensor",
    "hyperspectral_sensor",
    "is_sentinel2",
    "known_band_wavelengths",
    "nearest_bands",
]
