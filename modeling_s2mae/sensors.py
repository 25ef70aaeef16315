"""Sensor metadata, in one place: band names, centre wavelengths, bandwidths, native resolutions and band orders.

Every other module (config, image processor, readers, model card) reads these tables; none keeps a copy.
Wavelengths are Sentinel-2A's (ESA S2 MSI spectral response functions, v3.0), in nanometres.
"""

import re
from collections.abc import Sequence
from typing import NamedTuple

_SENTINEL2_SPELLING = re.compile(r"^B0?([1-9]|1[0-2]|8A)$", re.IGNORECASE)


class Band(NamedTuple):
    """One spectral band of a sensor."""

    name: str
    wavelength_nm: float
    """Centre wavelength in nanometres."""
    bandwidth_nm: float
    """Full width at half maximum in nanometres."""
    resolution_m: float
    """Native ground sampling distance in metres."""


SENTINEL2: dict[str, Band] = {
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
"""The 13 Sentinel-2 MSI bands by name."""

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

SENTINEL2_RESOLUTIONS_M: dict[str, float] = {name: band.resolution_m for name, band in SENTINEL2.items()}
"""Native ground sampling distance (metres) of each Sentinel-2 band."""


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
    "SENTINEL2",
    "SENTINEL2_13_BANDS",
    "SENTINEL2_BANDS",
    "SENTINEL2_RESOLUTIONS_M",
    "SENTINEL2_WAVELENGTHS_NM",
    "band_positions",
    "canonical_band_name",
    "is_sentinel2",
]
