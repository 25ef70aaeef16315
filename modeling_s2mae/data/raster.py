"""Reading multispectral rasters (GeoTIFF, JPEG2000, any GDAL format) into band-named numpy arrays.

Everything here returns a `RasterSample`: an array of shape (C, H, W) in the file's dtype together with the name of
each band, the nodata value and the georeference of the pixels actually read. Bands are always identified by name
(see `resolve_band_names`), never by bare position, because the common sources disagree on the order
(EuroSAT puts B8A last, most others right after B08).

A *source* is one of:
- a path to one raster file (any number of bands);
- a sequence of paths, typically one file per band (Sentinel-2 SAFE granules, BigEarthNet patches), possibly at
  different resolutions: they are resampled onto one grid (the finest by default);
- a path to a folder: every raster file in it (`RASTER_SUFFIXES`), ordered by Sentinel-2 band when the file names
  carry a band token, otherwise by name.
"""

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..sensors import (
    EUROSAT_MS_BANDS,
    SENTINEL2_13_BANDS,
    SENTINEL2_BANDS,
    SENTINEL2_RESOLUTIONS_M,
    band_positions,
    canonical_band_name,
    known_band_wavelengths,
)

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
RasterSource = PathLike | Sequence[PathLike]

RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".jp2", ".img", ".dat", ".bsq", ".bil", ".bip")
"""File suffixes taken as rasters when a folder is given as a source (other files, e.g. JSON, are ignored)."""

ALLOWED_DRIVERS: tuple[str, ...] = ("GTiff", "JP2OpenJPEG", "ENVI")
"""The only GDAL drivers a file is opened with: GeoTIFF (and COG), JPEG2000, ENVI. Never VRT or any other format
that can point at other files or URLs: a file's bytes choose nothing but pixels."""

MAX_READ_BYTES = int(os.environ.get("S2MAE_MAX_READ_BYTES", 4 << 30))
"""The most bytes one read (`read_raster`, `read_window`, a tile) decodes into memory (env `S2MAE_MAX_READ_BYTES`,
default 4 GiB): a file's header can declare any size, and a whole-file read of a huge declared grid would exhaust
memory instead of failing. A full Sentinel-2 tile (13 bands, 10980 x 10980, uint16) is 2.9 GiB."""

SIDECAR_SUFFIX = ".bands.json"
"""A file `<raster file name>.bands.json` next to a raster, holding `{"band_names": [...]}`, names its bands."""

_UNIT_FACTORS_NM: dict[str, float] = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "micron": 1000.0,
    "microns": 1000.0,
    "micrometer": 1000.0,
    "micrometers": 1000.0,
    "micrometre": 1000.0,
    "micrometres": 1000.0,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimeters": 1e6,
}
"""Wavelength units (as ENVI headers, GDAL metadata and band descriptions spell them) -> nanometres."""

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_DESCRIPTION_WAVELENGTH = re.compile(
    rf"({_NUMBER})\s*(nanomet(?:er|re)s?|nm|micromet(?:er|re)s?|microns?|um|µm|μm)\b", re.IGNORECASE
)

_LANDSAT_NAME = re.compile(r"^L[COTEM](?:\d{14}[A-Z]{3}\d{2}|0\d_)", re.IGNORECASE)
"""A Landsat scene id (`LE70350322011222EDC00`) or Collection product id (`LC08_L2SP_...`, `LT05_...`)."""

_BAND_TOKEN = re.compile(r"(?:^|[_\-.])(B(?:0?[1-9]|1[0-2]|8A))(?=[_\-.]|$)", re.IGNORECASE)


class RasterReadError(ValueError):
    """A raster could not be read: not a raster, truncated or corrupt, unnamed bands, or files that do not align."""


class RasterNotFoundError(RasterReadError, FileNotFoundError):
    """A raster file or folder does not exist (also a `FileNotFoundError`)."""


@dataclass
class RasterSample:
    """Pixels read from a raster, with the name of every band and the georeference of what was read.

    Attributes:
        array: Pixel values of shape (C, H, W), in the file's dtype (the common dtype for several files).
        band_names: The C band names, in the order of `array`'s first axis.
        nodata: The value marking missing pixels, or None when the file defines none.
        transform: Affine map from (col, row) pixel coordinates of `array` to `crs` coordinates; for a window or
            a tile it is the window's own transform (its origin is the window's top-left corner).
        crs: Coordinate reference system, or None for a raster without georeference.
        source: The file paths the pixels come from.
        window: The window read, in pixels of the grid the source was read on (None for the whole grid).
        band_wavelengths: Centre wavelength in nm of each band (from the file's metadata: ENVI header, GDAL band
            metadata or descriptions such as "399.37 Nanometers"; else the sensor registry for Sentinel-2 names),
            or None when unknown.
        band_bandwidths: Bandwidth (FWHM) in nm of each band, or None when unknown.
    """

    array: np.ndarray
    band_names: list[str]
    nodata: float | None
    transform: Affine
    crs: CRS | None
    source: list[str]
    window: Window | None = None
    band_wavelengths: list[float] | None = None
    band_bandwidths: list[float] | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"RasterSample.array must have shape (C, H, W), got shape {self.array.shape}.")
        if len(self.band_names) != self.array.shape[0]:
            raise ValueError(f"{len(self.band_names)} band names for an array with {self.array.shape[0]} bands.")
        _check_band_values(self.band_wavelengths, self.array.shape[0], "band_wavelengths")
        _check_band_values(self.band_bandwidths, self.array.shape[0], "band_bandwidths")

    @property
    def height(self) -> int:
        """H, the number of pixel rows."""
        return self.array.shape[1]

    @property
    def width(self) -> int:
        """W, the number of pixel columns."""
        return self.array.shape[2]

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) in `crs` units (metres for UTM)."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in `crs` units."""
        t = self.transform
        xs, ys = (t.c, t.c + t.a * self.width), (t.f, t.f + t.e * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def select(self, band_names: Sequence[str]) -> "RasterSample":
        """Return a sample with only `band_names`, in that order (names are matched, never positions).

        Raises:
            ValueError: if a requested band is not in this sample.
        """
        indices = band_positions(band_names, self.band_names)
        return replace(
            self,
            array=self.array[indices],
            band_names=[self.band_names[i] for i in indices],
            band_wavelengths=None if self.band_wavelengths is None else [self.band_wavelengths[i] for i in indices],
            band_bandwidths=None if self.band_bandwidths is None else [self.band_bandwidths[i] for i in indices],
        )


def _check_band_values(values: list[float] | None, count: int, what: str) -> None:
    if values is None:
        return
    if len(values) != count:
        raise ValueError(f"{len(values)} {what} for {count} bands: give one value in nm per band, or None.")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{what} must be finite non-negative numbers in nm, got {values}.")


@dataclass
class RasterInfo:
    """What a source holds, read from the file headers only (no pixel is decoded).

    Attributes:
        band_names: Names of all bands of the source, in file order (files in the given order, bands within).
        height, width: Size of the common grid the source is read on.
        transform: Affine transform of that grid.
        crs: Coordinate reference system, or None.
        dtype: Common numpy dtype of the bands.
        nodata: Common nodata value, or None.
        source: The file paths.
        resolutions: Native pixel size (x, y) of each file.
        band_wavelengths, band_bandwidths: As in `RasterSample` (nm), or None when unknown.
    """

    band_names: list[str]
    height: int
    width: int
    transform: Affine
    crs: CRS | None
    dtype: np.dtype
    nodata: float | None
    source: list[str]
    resolutions: list[tuple[float, float]] = field(default_factory=list)
    band_wavelengths: list[float] | None = None
    band_bandwidths: list[float] | None = None

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) of the common grid."""
        return abs(self.transform.a), abs(self.transform.e)


normalize_band_name = canonical_band_name
"""Spell a Sentinel-2 band name the canonical way ("B4" / "b04" -> "B04", "b8a" -> "B8A"); others unchanged."""


def wavelength_unit_factor(units: str | None, values: Sequence[float] = ()) -> float:
    """The factor that turns wavelengths in `units` into nanometres.

    Units missing or "Unknown" (common in ENVI headers) are inferred from the values: all below 30 means
    micrometres (visible to thermal infrared is 0.4-14 µm), otherwise nanometres; the guess is logged.

    Raises:
        ValueError: for units that are not lengths (e.g. "Wavenumber", "GHz", "Index"): convert them first.
    """
    key = (units or "").strip().lower()
    if key in _UNIT_FACTORS_NM:
        return _UNIT_FACTORS_NM[key]
    if key in ("", "unknown"):
        factor = 1000.0 if values and max(values) < 30 else 1.0
        logger.info("Wavelength units %r: taken as %s from the values.", units, "µm" if factor > 1 else "nm")
        return factor
    raise ValueError(
        f"Wavelength units {units!r} are not a length; expected one of {sorted(_UNIT_FACTORS_NM)} (or convert the "
        "wavelengths to nanometres and pass them as band_wavelengths)."
    )


def parse_envi_list(text: str) -> list[float]:
    """The numbers of an ENVI header list value, e.g. "{ 0.39937, 0.40907,\n 0.41877}" -> [0.39937, ...]."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    items = [item.strip() for item in body.replace("\n", " ").split(",") if item.strip()]
    try:
        return [float(item) for item in items]
    except ValueError as error:
        raise ValueError(f"Expected an ENVI list of numbers such as {{400.0, 410.0}}, got {text!r}.") from error


def wavelength_from_description(description: str | None) -> float | None:
    """The wavelength in nm named by a band description ("399.37 Nanometers", "Band 5 (0.8647 Micrometers)",
    "B8A 864.7nm"), or None when it names none."""
    if not description:
        return None
    match = _DESCRIPTION_WAVELENGTH.search(description)
    if match is None:
        return None
    return float(match.group(1)) * wavelength_unit_factor(match.group(2))


def _envi_fwhm(envi: dict[str, str], count: int, factor: float) -> list[float] | None:
    """The ENVI header's `fwhm = {...}` in nm (in the wavelength units), or None when absent or of another length."""
    if "fwhm" not in envi:
        return None
    widths = [value * factor for value in parse_envi_list(envi["fwhm"])]
    return widths if len(widths) == count else None


def read_wavelengths(dataset: DatasetReader) -> tuple[list[float] | None, list[float] | None]:
    """Centre wavelengths and bandwidths (nm) of every band of an open raster, from its metadata, else None.

    Looked up in order: per-band GDAL metadata `wavelength` / `wavelength_units` / `fwhm` (what GDAL's ENVI driver
    sets from a header, and what `encode_geotiff` writes); the GDAL 3.10 IMAGERY domain `CENTRAL_WAVELENGTH_UM` /
    `FWHM_UM`; the ENVI domain's `wavelength = {...}`, `wavelength units`, `fwhm = {...}`; band descriptions such as
    "399.37 Nanometers". Bandwidths use the wavelength units.

    Raises:
        RasterReadError: for a wavelength list whose length differs from the band count, or units that are not a
            length.
    """
    count = dataset.count
    indexes = range(1, count + 1)
    try:
        envi = dataset.tags(ns="ENVI") if "ENVI" in dataset.tag_namespaces() else {}
        tags = [dataset.tags(i) for i in indexes]
        if all("wavelength" in t for t in tags):
            values = [float(t["wavelength"]) for t in tags]
            units = tags[0].get("wavelength_units") or dataset.tags().get("wavelength_units")
            factor = wavelength_unit_factor(units, values)
            if all("fwhm" in t for t in tags):
                return [v * factor for v in values], [float(t["fwhm"]) * factor for t in tags]
            return [v * factor for v in values], _envi_fwhm(envi, count, factor)
        if "IMAGERY" in dataset.tag_namespaces(1):
            imagery = [dataset.tags(i, ns="IMAGERY") for i in indexes]
            if all("CENTRAL_WAVELENGTH_UM" in t for t in imagery):
                widths = None
                if all("FWHM_UM" in t for t in imagery):
                    widths = [float(t["FWHM_UM"]) * 1000.0 for t in imagery]
                return [float(t["CENTRAL_WAVELENGTH_UM"]) * 1000.0 for t in imagery], widths
        if "wavelength" in envi:
            values = parse_envi_list(envi["wavelength"])
            if len(values) != count:
                raise ValueError(f"the ENVI header lists {len(values)} wavelengths for {count} bands")
            factor = wavelength_unit_factor(envi.get("wavelength_units"), values)
            return [v * factor for v in values], _envi_fwhm(envi, count, factor)
    except ValueError as error:
        raise RasterReadError(f"{dataset.name}: unreadable wavelength metadata ({error}).") from error
    from_descriptions = [wavelength_from_description(d) for d in dataset.descriptions]
    if all(value is not None for value in from_descriptions):
        return from_descriptions, None
    return None, None


def band_name_from_filename(path: PathLike) -> str | None:
    """The band token in a file name (`..._B8A.tif` -> "B8A", `..._B04_10m.jp2` -> "B04"), or None.

    Tokens are spelled the Sentinel-2 way ("B1" -> "B01"), except in files named by a Landsat scene or product id
    (`LE70350322011222EDC00_b3.tif`, `LC08_L2SP_..._SR_B4.TIF`): Landsat band numbers are other bands (Landsat-7
    "b3" is red, Sentinel-2 "B03" green), so they keep the Landsat spelling ("B3", "B10") and get no Sentinel-2
    wavelength. When several tokens appear, the last one is taken (granule names put the band at the end).
    """
    stem = Path(path).name.split(".")[0]
    tokens = _BAND_TOKEN.findall(stem)
    if not tokens:
        return None
    if _LANDSAT_NAME.match(stem) and tokens[-1].upper() != "B8A":
        return f"B{int(tokens[-1][1:])}"
    return normalize_band_name(tokens[-1])


def _band_sort_key(path: Path) -> tuple[int, str]:
    token = band_name_from_filename(path)
    if token in SENTINEL2_13_BANDS and not _LANDSAT_NAME.match(path.name):
        return SENTINEL2_13_BANDS.index(token), path.name
    if token is not None:  # a Landsat band number: B2 before B10
        return len(SENTINEL2_13_BANDS) + int(token[1:]), path.name
    return 1000, path.name


def _check_local_path(path: PathLike) -> None:
    """Refuse GDAL virtual file systems and URLs: a source is a local file, read as itself."""
    text = os.fspath(path)
    if text.startswith("/vsi") or "://" in text:
        raise RasterReadError(
            f"{text}: GDAL virtual file systems and URLs are not read; download the file and give its local path."
        )


def expand_source(source: RasterSource) -> list[Path]:
    """The list of raster files a source stands for (see the module docstring).

    Raises:
        RasterNotFoundError: if a path does not exist.
        RasterReadError: if a folder holds no raster file or the sequence is empty.
    """
    if isinstance(source, (str, os.PathLike)):
        _check_local_path(source)
        path = Path(source)
        if not path.exists():
            raise RasterNotFoundError(f"{path}: no such file or folder.")
        if not path.is_dir():
            return [path]
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES]
        if not files:
            raise RasterReadError(
                f"{path}: the folder holds no raster file (looked for {', '.join(RASTER_SUFFIXES)})."
            )
        return sorted(files, key=_band_sort_key)
    for item in source:
        _check_local_path(item)
    paths = [Path(p) for p in source]
    if not paths:
        raise RasterReadError("Empty list of raster files: give at least one path.")
    for path in paths:
        if not path.exists():
            raise RasterNotFoundError(f"{path}: no such file.")
        if path.is_dir():
            raise RasterReadError(f"{path} is a folder; a list of sources must hold files (or pass the folder alone).")
    return paths


def _open(path: Path) -> DatasetReader:
    """Open a raster with one of `ALLOWED_DRIVERS`, turning GDAL's errors into a `RasterReadError` naming the file."""
    _check_local_path(path)
    if not path.exists():
        raise RasterNotFoundError(f"{path}: no such file.")
    errors = []
    preferred = {".jp2": "JP2OpenJPEG", ".tif": "GTiff", ".tiff": "GTiff"}.get(path.suffix.lower(), "ENVI")
    for driver in sorted(ALLOWED_DRIVERS, key=lambda name: name != preferred):  # the suffix's driver first
        try:
            return rasterio.open(path, driver=driver)
        except RasterioError as error:
            errors.append(f"{driver}: {error}")
    raise RasterReadError(
        f"{path} could not be opened as a raster with the allowed drivers {list(ALLOWED_DRIVERS)} ({errors[0]}). "
        "Expected a GeoTIFF, JPEG2000 or ENVI file; the file may be of another kind (VRT and other formats that "
        "point at other files are refused), truncated or corrupt."
    )


def _decoding_env(dataset: DatasetReader) -> Any:
    """The GDAL settings a read of `dataset` runs under: JPEG2000 decodes on the calling thread only.

    GDAL's OpenJPEG driver decodes the blocks of a multi-block read on worker threads, whose errors never reach
    rasterio: a truncated .jp2 then reads as zeros without any error (measured: the whole band of a half-truncated
    Sentinel-2 file). Decoding on one thread makes the failure an exception, at about 1.35 x the decoding time.
    """
    if dataset.driver == "JP2OpenJPEG":
        return rasterio.Env(GDAL_NUM_THREADS=1)
    return nullcontext()


_SCALE_OFFSET_WARNED: set[str] = set()


def _warn_unapplied_scale_offset(path: Path, dataset: DatasetReader) -> None:
    """Warn once per file when its bands declare a GDAL scale or offset, which reads do not apply.

    Pixels are returned as stored (digital numbers), so the image processor's "reflectance" scaling must be told the
    file's own conversion: physical = stored * scale + offset gives `reflectance_scale = 1 / scale` and
    `reflectance_offset = offset / scale`. Per-band statistics ("standardize", "sigma", "dataset_range") absorb a
    per-band scale and offset by themselves.
    """
    scales, offsets = dataset.scales, dataset.offsets
    if all(scale == 1.0 for scale in scales) and all(offset == 0.0 for offset in offsets):
        return
    key = str(path)
    if key in _SCALE_OFFSET_WARNED:
        return
    _SCALE_OFFSET_WARNED.add(key)
    scale, offset = scales[0], offsets[0]
    hint = f" (for band 1: reflectance_scale={1.0 / scale:g}, reflectance_offset={offset / scale:g})" if scale else ""
    logger.warning(
        "%s declares GDAL scales %s and offsets %s, which are not applied: pixels are read as stored. With "
        "scaling='reflectance', set the processor's reflectance_scale / reflectance_offset to match%s; per-band "
        "statistics scalings need nothing.",
        path,
        list(scales),
        list(offsets),
        hint,
    )


def _read_error(path: str, error: Exception) -> RasterReadError:
    detail = str(error.__cause__) if error.__cause__ is not None else str(error)
    return RasterReadError(f"{path}: failed to decode pixels ({detail}); the file is probably truncated or corrupt.")


def _read_sidecar(path: Path) -> list[str] | None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.exists():
        return None
    try:
        names = json.loads(sidecar.read_text(encoding="utf-8"))["band_names"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise RasterReadError(
            f'{sidecar}: expected JSON of the form {{"band_names": ["B01", ...]}} ({error!r}).'
        ) from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise RasterReadError(f'{sidecar}: "band_names" must be a list of strings, got {names!r}.')
    return names


def _known_layouts(count: int) -> str:
    layouts = {
        "EUROSAT_MS_BANDS": EUROSAT_MS_BANDS,
        "SENTINEL2_13_BANDS": SENTINEL2_13_BANDS,
        "SENTINEL2_BANDS": SENTINEL2_BANDS,
    }
    matching = [name for name, names in layouts.items() if len(names) == count]
    return f" Known {count}-band layouts: {', '.join(matching)}." if matching else ""


def _check_names(names: Sequence[str], count: int, path: Path, origin: str) -> list[str]:
    names = [str(name).strip() for name in names]
    if len(names) != count:
        raise RasterReadError(f"{path} has {count} bands but {origin} gives {len(names)} names: {names}.")
    if len(set(names)) != len(names):
        raise RasterReadError(f"{origin} for {path} repeats band names: {names}.")
    return names


def _declared_names(dataset: DatasetReader, path: Path) -> tuple[list[str], str] | None:
    """The band names a file declares itself (its sidecar, else its band descriptions) and where they come from."""
    sidecar = _read_sidecar(path)
    if sidecar is not None:
        return _check_names(sidecar, dataset.count, path, f"{path.name}{SIDECAR_SUFFIX}"), "its sidecar"
    descriptions = dataset.descriptions
    if all(descriptions):
        return _check_names(descriptions, dataset.count, path, "the band descriptions"), "its band descriptions"
    return None


def _names_from_dataset(
    dataset: DatasetReader,
    path: Path,
    band_names: Sequence[str] | None,
    default: Sequence[str] | None = None,
) -> list[str]:
    declared = _declared_names(dataset, path)
    if band_names is not None:
        names = _check_names(band_names, dataset.count, path, "band_names")
        if declared is not None and [canonical_band_name(n) for n in declared[0]] != [
            canonical_band_name(n) for n in names
        ]:
            raise RasterReadError(
                f"{path} declares its band order in {declared[1]} as {declared[0]}, but {names} was given. One of "
                "them is wrong: fix the file's band names, or give the order the file declares."
            )
        return names
    if declared is not None:
        return declared[0]
    token = band_name_from_filename(path)
    if dataset.count == 1 and token is not None:
        return [token]
    if default is not None:
        return _check_names(default, dataset.count, path, "the default band order")
    missing = [index for index, text in enumerate(dataset.descriptions, start=1) if not text]
    descriptions = (
        "no band descriptions"
        if len(missing) == dataset.count
        else f"band descriptions {list(dataset.descriptions)} missing for band(s) {missing}"
    )
    raise RasterReadError(
        f"Cannot tell the band names of {path} ({dataset.count} bands, {descriptions}, no "
        f"{path.name}{SIDECAR_SUFFIX} sidecar, no band token in the file name). Pass them as "
        f"band_names=[...] (e.g. band_names=EUROSAT_MS_BANDS), or write a sidecar file "
        f'{path.name}{SIDECAR_SUFFIX} holding {{"band_names": [...]}}.{_known_layouts(dataset.count)}'
    )


def resolve_band_names(
    path: PathLike, band_names: Sequence[str] | None = None, default: Sequence[str] | None = None
) -> list[str]:
    """The names of the bands of one raster file, in file order, kept as spelled.

    Priority: `band_names` given here; a sidecar `<file>.bands.json`; the band descriptions stored in the file; for a
    one-band file, the band token in its name (`..._B8A.tif`); then `default` (e.g. a dataset's documented order).

    Raises:
        RasterReadError: if no source of names exists, if the number of names differs from the band count, or if
            `band_names` contradicts the order the file declares (sidecar or descriptions), naming both orders.
    """
    path = Path(path)
    with _open(path) as dataset:
        return _names_from_dataset(dataset, path, band_names, default)


def _parse_resampling(resampling: str | Resampling) -> Resampling:
    if isinstance(resampling, Resampling):
        return resampling
    try:
        return Resampling[resampling]
    except KeyError:
        raise ValueError(
            f"Unknown resampling {resampling!r}; use one of {[method.name for method in Resampling]}."
        ) from None


def _as_pair(value: int | float | Sequence[int | float], name: str) -> tuple[Any, Any]:
    if isinstance(value, (int, float)):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a pair (height, width) / (x, y), got {value!r}.")
    return value[0], value[1]


@dataclass
class _Grid:
    transform: Affine
    width: int
    height: int

    def matches(self, dataset: DatasetReader) -> bool:
        """Whether `dataset`'s pixels are exactly this grid's (same size, pixel size and origin)."""
        ours, theirs = self.transform, dataset.transform
        pixel = min(abs(ours.a), abs(ours.e))
        return (
            (dataset.width, dataset.height) == (self.width, self.height)
            and all(math.isclose(a, b, rel_tol=1e-9) for a, b in ((ours.a, theirs.a), (ours.e, theirs.e)))
            and theirs.b == ours.b == 0.0
            and theirs.d == ours.d == 0.0
            and abs(ours.c - theirs.c) < 1e-6 * pixel
            and abs(ours.f - theirs.f) < 1e-6 * pixel
        )


class _RasterStack:
    """The files of a source opened together, each band named, all brought onto one common grid."""

    def __init__(
        self,
        source: RasterSource,
        band_names: Sequence[str] | None = None,
        bands: Sequence[str] | None = None,
        target_resolution: float | Sequence[float] | None = None,
        out_shape: tuple[int, int] | None = None,
        resampling: str | Resampling = "bilinear",
        nodata: float | None = None,
    ) -> None:
        self.paths = expand_source(source)
        self.resampling = _parse_resampling(resampling)
        self._stack = ExitStack()
        try:
            self.datasets = [self._stack.enter_context(_open(path)) for path in self.paths]
            self.names_per_file = self._name_bands(band_names)
            self.band_names = [name for names in self.names_per_file for name in names]
            if len(set(self.band_names)) != len(self.band_names):
                raise RasterReadError(f"The files {[str(p) for p in self.paths]} repeat bands: {self.band_names}.")
            self.wavelengths_per_file = [read_wavelengths(ds) for ds in self.datasets]
            self.selection = self._select(bands)
            used = sorted({file_index for file_index, _ in self.selection})
            self.crs = self._common_crs(used)
            self.nodata = self._common_nodata(used, nodata)
            self.dtype = np.result_type(*[self.datasets[i].dtypes[0] for i in used])
            self.masked_files = self._masked_files(used)
            for i in used:
                _warn_unapplied_scale_offset(self.paths[i], self.datasets[i])
            self.grid = self._make_grid(used, target_resolution, out_shape)
            self.readers = {i: self._reader(i) for i in used}
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> "_RasterStack":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _name_bands(self, band_names: Sequence[str] | None) -> list[list[str]]:
        if band_names is None:
            return [_names_from_dataset(ds, path, None) for ds, path in zip(self.datasets, self.paths)]
        total = sum(ds.count for ds in self.datasets)
        if len(band_names) != total:
            raise RasterReadError(
                f"band_names has {len(band_names)} names but the source holds {total} bands "
                f"({', '.join(f'{p.name}: {ds.count}' for p, ds in zip(self.paths, self.datasets))}): "
                "give one name per band, in file order."
            )
        names, start = [], 0
        for ds, path in zip(self.datasets, self.paths):
            names.append(_names_from_dataset(ds, path, band_names[start : start + ds.count]))
            start += ds.count
        return names

    def _select(self, bands: Sequence[str] | None) -> list[tuple[int, int]]:
        """(file index, 1-based band index) of each output band."""
        where = {
            name: (file_index, band_index + 1)
            for file_index, names in enumerate(self.names_per_file)
            for band_index, name in enumerate(names)
        }
        if bands is None:
            return list(where.values())
        try:
            positions = band_positions(bands, self.band_names)
        except ValueError as error:
            raise RasterReadError(f"{[str(p) for p in self.paths]}: {error}") from error
        self.band_names = [self.band_names[i] for i in positions]
        return [where[name] for name in self.band_names]

    def _common_crs(self, used: list[int]) -> CRS | None:
        crs_values = {self.datasets[i].crs for i in used}
        if len(crs_values) > 1:
            detail = ", ".join(f"{self.paths[i].name}: {self.datasets[i].crs}" for i in used)
            raise RasterReadError(
                f"The files have different coordinate reference systems ({detail}) and cannot be aligned; "
                "reproject them onto one CRS first (e.g. with gdalwarp)."
            )
        return crs_values.pop()

    def _common_nodata(self, used: list[int], nodata: float | None) -> float | None:
        """The nodata value of the output: `nodata` if given (then it applies to every file), else the first value
        the files declare.

        Without `nodata`, each file keeps its own nodata (`self.file_nodata`): where files disagree, their missing
        pixels are rewritten to the common value when read, so that no file's nodata is taken for data.
        """
        if nodata is not None:
            self.file_nodata = dict.fromkeys(used, nodata)
            return nodata
        self.file_nodata = {i: self.datasets[i].nodata for i in used}
        declared = [self.file_nodata[i] for i in used if self.file_nodata[i] is not None]
        if len(set(declared)) > 1:
            logger.info(
                "The files %s declare different nodata values %s; each file's own value marks its missing pixels, "
                "written as %s in the output.",
                [self.paths[i].name for i in used],
                sorted(set(declared)),
                declared[0],
            )
        return declared[0] if declared else None

    def _masked_files(self, used: list[int]) -> set[int]:
        """The files whose missing pixels are marked by a GDAL mask (an internal / `.msk` mask or an alpha band)
        rather than a nodata value; their masked pixels are written as the output's nodata when read.

        Without a nodata value to write there, a float output takes NaN; an integer output needs `nodata=`
        (`read` raises; headers alone, as in `raster_info`, do not).
        """
        masked = set()
        for i in used:
            flags = set(self.datasets[i].mask_flag_enums[0])
            if MaskFlags.nodata not in flags and flags & {MaskFlags.per_dataset, MaskFlags.alpha}:
                masked.add(i)
        if masked and self.nodata is None and np.issubdtype(self.dtype, np.floating):
            self.nodata = math.nan
        return masked

    def _check_masks_have_nodata(self) -> None:
        """Raise when masked pixels of an integer source would have no value to mark them."""
        if self.masked_files and self.nodata is None:
            names = [self.paths[i].name for i in sorted(self.masked_files)]
            raise RasterReadError(
                f"{names}: the missing pixels are marked by a mask (an internal mask, a .msk file or an alpha "
                f"band) but no nodata value is declared, and {np.dtype(self.dtype)} pixels cannot hold NaN. Pass "
                "nodata=<a value valid pixels never take> (e.g. nodata=0 for Sentinel-2 digital numbers; "
                "--nodata in the scripts): masked pixels are then written as that value."
            )

    def _make_grid(
        self,
        used: list[int],
        target_resolution: float | Sequence[float] | None,
        out_shape: tuple[int, int] | None,
    ) -> _Grid:
        for i in used:
            if not self.datasets[i].transform.is_rectilinear:
                raise RasterReadError(f"{self.paths[i]} has a rotated geotransform, which is not supported.")
        finest = min(used, key=lambda i: abs(self.datasets[i].res[0] * self.datasets[i].res[1]))
        reference = self.datasets[finest]
        left, bottom, right, top = reference.bounds
        tolerance = 0.5 * min(reference.res)
        for i in used:
            other = self.datasets[i].bounds
            if max(abs(a - b) for a, b in zip(other, reference.bounds)) > tolerance:
                raise RasterReadError(
                    f"{self.paths[i]} covers {tuple(other)} but {self.paths[finest]} covers "
                    f"{tuple(reference.bounds)} ({self.crs}): the files do not cover the same extent and cannot be "
                    "aligned. Crop them to a common extent first."
                )
        if target_resolution is not None and out_shape is not None:
            raise ValueError("Give either target_resolution or out_shape, not both.")
        if out_shape is not None:
            height, width = (int(v) for v in _as_pair(out_shape, "out_shape"))
            if height < 1 or width < 1:
                raise ValueError(f"out_shape must be positive, got {out_shape}.")
            return _Grid(Affine((right - left) / width, 0.0, left, 0.0, -(top - bottom) / height, top), width, height)
        if target_resolution is None:
            return _Grid(reference.transform, reference.width, reference.height)
        x_res, y_res = (float(v) for v in _as_pair(target_resolution, "target_resolution"))
        width, height = (right - left) / x_res, (top - bottom) / y_res
        if min(width, height) < 0.5 or abs(width - round(width)) > 1e-3 or abs(height - round(height)) > 1e-3:
            raise ValueError(
                f"target_resolution {target_resolution} does not divide the extent {right - left:g} x {top - bottom:g} "
                "into whole pixels; choose another resolution or pass out_shape=(height, width)."
            )
        return _Grid(Affine(x_res, 0.0, left, 0.0, -y_res, top), round(width), round(height))

    def _reader(self, file_index: int) -> DatasetReader | WarpedVRT:
        dataset = self.datasets[file_index]
        if self.grid.matches(dataset):
            return dataset
        options: dict[str, Any] = {}
        if self.file_nodata[file_index] is not None:
            options = {"src_nodata": self.file_nodata[file_index], "nodata": self.nodata}
        return self._stack.enter_context(
            WarpedVRT(
                dataset,
                crs=dataset.crs,
                transform=self.grid.transform,
                width=self.grid.width,
                height=self.grid.height,
                resampling=self.resampling,
                **options,
            )
        )

    def band_wavelengths(self) -> tuple[list[float] | None, list[float] | None]:
        """(wavelengths, bandwidths) in nm of the selected bands: each band's from its file's metadata, else from
        the sensor registry when it is a Sentinel-2 band; None when some band's wavelength is unknown."""
        registry = known_band_wavelengths(self.band_names)
        wavelengths, widths = [], []
        for k, (file_index, band_index) in enumerate(self.selection):
            file_wavelengths, file_widths = self.wavelengths_per_file[file_index]
            if file_wavelengths is not None:
                wavelengths.append(file_wavelengths[band_index - 1])
                widths.append(None if file_widths is None else file_widths[band_index - 1])
            elif registry is not None:
                wavelengths.append(registry[0][k])
                widths.append(registry[1][k])
            else:
                return None, None
        return wavelengths, None if None in widths else widths

    def info(self) -> RasterInfo:
        wavelengths, widths = self.band_wavelengths()
        return RasterInfo(
            band_names=list(self.band_names),
            height=self.grid.height,
            width=self.grid.width,
            transform=self.grid.transform,
            crs=self.crs,
            dtype=np.dtype(self.dtype),
            nodata=self.nodata,
            source=[str(path) for path in self.paths],
            resolutions=[(abs(ds.res[0]), abs(ds.res[1])) for ds in self.datasets],
            band_wavelengths=wavelengths,
            band_bandwidths=widths,
        )

    def check_window(self, window: Window) -> Window:
        values = (window.row_off, window.col_off, window.height, window.width)
        if any(float(v) != int(v) for v in values):
            raise ValueError(f"Windows must have whole-pixel offsets and sizes, got {window}.")
        row, col, height, width = (int(v) for v in values)
        if (
            height < 1
            or width < 1
            or row < 0
            or col < 0
            or row + height > self.grid.height
            or col + width > self.grid.width
        ):
            raise ValueError(
                f"Window (row_off={row}, col_off={col}, height={height}, width={width}) does not lie inside the "
                f"{self.grid.height} x {self.grid.width} grid of {[str(p) for p in self.paths]}."
            )
        return Window(col, row, width, height)

    def read(self, window: Window | None = None) -> RasterSample:
        """Read the selected bands, over `window` of the common grid (the whole grid when None): (C, h, w)."""
        if window is not None:
            window = self.check_window(window)
            height, width = int(window.height), int(window.width)
            grid = self.grid.transform  # rectilinear: shift the origin by the window's offset
            transform = Affine(
                grid.a, 0.0, grid.c + grid.a * window.col_off, 0.0, grid.e, grid.f + grid.e * window.row_off
            )
        else:
            height, width, transform = self.grid.height, self.grid.width, self.grid.transform
        self._check_masks_have_nodata()
        nbytes = len(self.selection) * height * width * np.dtype(self.dtype).itemsize
        if nbytes > MAX_READ_BYTES:
            raise RasterReadError(
                f"{[str(p) for p in self.paths]}: reading {len(self.selection)} x {height} x {width} "
                f"{np.dtype(self.dtype)} pixels at once needs {nbytes / 2**30:.1f} GiB, over the "
                f"{MAX_READ_BYTES / 2**30:.1f} GiB limit (env S2MAE_MAX_READ_BYTES). Read the scene in windows "
                "(read_window, iter_tiles, scene_tiles / --tile_size), or raise the limit if the memory is there."
            )
        array = np.empty((len(self.selection), height, width), dtype=self.dtype)
        for file_index in sorted({i for i, _ in self.selection}):
            outputs = [k for k, (i, _) in enumerate(self.selection) if i == file_index]
            indexes = [self.selection[k][1] for k in outputs]
            try:
                with _decoding_env(self.datasets[file_index]):
                    values = self.readers[file_index].read(indexes, window=window)
            except RasterioError as error:
                raise _read_error(str(self.paths[file_index]), error) from error
            values = values.astype(self.dtype, copy=False)
            own = self.file_nodata[file_index]
            if own is not None and own != self.nodata and not isinstance(self.readers[file_index], WarpedVRT):
                # in the common dtype: an integer file's nodata may become NaN when another file is float
                values = np.where(values == own, np.asarray(self.nodata, dtype=self.dtype), values)
            if file_index in self.masked_files:
                masks = self.readers[file_index].read_masks(indexes, window=window)  # 0 where GDAL's mask hides
                values = np.where(masks == 0, np.asarray(self.nodata, dtype=self.dtype), values)
            array[outputs] = values
        wavelengths, widths = self.band_wavelengths()
        return RasterSample(
            array=array,
            band_names=list(self.band_names),
            nodata=self.nodata,
            transform=transform,
            crs=self.crs,
            source=[str(self.paths[i]) for i in sorted({i for i, _ in self.selection})],
            window=window,
            band_wavelengths=wavelengths,
            band_bandwidths=widths,
        )


def read_raster(
    source: RasterSource,
    band_names: Sequence[str] | None = None,
    *,
    bands: Sequence[str] | None = None,
    window: Window | None = None,
    target_resolution: float | Sequence[float] | None = None,
    out_shape: tuple[int, int] | None = None,
    resampling: str | Resampling = "bilinear",
    nodata: float | None = None,
) -> RasterSample:
    """Read a raster source (one file, per-band files or a folder) into a (C, H, W) array with named bands.

    Files at different resolutions (Sentinel-2 10 / 20 / 60 m, BigEarthNet 120 / 60 / 20 px) are resampled onto one
    grid: by default the grid of the finest file; or the same extent at `target_resolution` (CRS units, e.g. 10.0
    or (x, y)); or the same extent split into `out_shape` = (H, W) pixels. Files already on that grid are read as
    they are; the others through a `WarpedVRT` with `resampling` (bilinear by default), which only computes the
    pixels asked for.

    Args:
        source: A file, a sequence of files (in the order their bands should come), or a folder of band files.
        band_names: Names of all bands of the source in file order; by default found per file (see
            `resolve_band_names`).
        bands: Names of the bands to return, in that order (default: all, in file order). Files holding none of
            them are not read, and the default grid is the finest among the files read.
        window: A window of the common grid (whole pixels); only that window is read from disk.
        target_resolution: Pixel size of the common grid, in CRS units.
        out_shape: (H, W) of the common grid.
        resampling: A `rasterio.enums.Resampling` or its name ("nearest", "bilinear", "cubic", "average", ...).
        nodata: Nodata value, overriding the files' own; it is excluded from resampling.

    Returns:
        A `RasterSample` with `array` of shape (C, H, W) (C = len(bands) or all bands) in the files' dtype.

    Raises:
        RasterNotFoundError: a file or folder does not exist.
        RasterReadError: not a raster, truncated or corrupt, unknown band names, files that cannot be aligned.
        ValueError: an invalid window, resolution or shape.
    """
    with _RasterStack(source, band_names, bands, target_resolution, out_shape, resampling, nodata) as stack:
        return stack.read(window)


def read_window(
    source: RasterSource,
    window: Window,
    band_names: Sequence[str] | None = None,
    **kwargs: Any,
) -> RasterSample:
    """Read only `window` of a source (never the whole scene); see `read_raster` for the other arguments.

    Args:
        source: A file, a sequence of per-band files or a folder.
        window: `rasterio.windows.Window(col_off, row_off, width, height)` in pixels of the common grid (the finest
            file's by default); build one from slices with `Window.from_slices((row0, row1), (col0, col1))`.

    Returns:
        A `RasterSample` of shape (C, window.height, window.width) whose `transform` is the window's own.
    """
    return read_raster(source, band_names, window=window, **kwargs)


def raster_info(
    source: RasterSource,
    band_names: Sequence[str] | None = None,
    *,
    bands: Sequence[str] | None = None,
    target_resolution: float | Sequence[float] | None = None,
    out_shape: tuple[int, int] | None = None,
) -> RasterInfo:
    """Band names, common grid, dtype and nodata of a source, from the file headers only (no pixel decoded).

    Raises the same errors as `read_raster` for missing files, non-rasters, unnamed bands and misaligned files.
    """
    with _RasterStack(source, band_names, bands, target_resolution, out_shape) as stack:
        return stack.info()


def check_raster(source: RasterSource, band_names: Sequence[str] | None = None) -> RasterInfo:
    """Validate a source cheaply: headers, band names, alignment, and decoding of the first and the last block of
    every band.

    Truncation removes the end of a file, so decoding each band's last block finds truncated downloads; the first
    block, decoded too, finds a file damaged at its start (a header that parses over corrupt data). Neither reads
    whole scenes (about a millisecond per small file); damage confined to a middle block is found when it is read.

    Returns:
        The source's `RasterInfo`.

    Raises:
        RasterReadError: naming the first bad file.
    """
    with _RasterStack(source, band_names) as stack:
        for path, dataset in zip(stack.paths, stack.datasets):
            block_height, block_width = dataset.block_shapes[0]
            row = (dataset.height - 1) // block_height * block_height
            col = (dataset.width - 1) // block_width * block_width
            first_block = Window(0, 0, min(block_width, dataset.width), min(block_height, dataset.height))
            last_block = Window(col, row, dataset.width - col, dataset.height - row)
            blocks = [first_block] if (row, col) == (0, 0) else [first_block, last_block]
            try:
                for block in blocks:
                    dataset.read(window=block)
            except RasterioError as error:
                raise _read_error(str(path), error) from error
        return stack.info()


def tile_windows(
    height: int,
    width: int,
    tile_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    drop_incomplete: bool = True,
) -> list[Window]:
    """Windows that tile a (height, width) grid row by row.

    Args:
        height, width: Size of the grid in pixels.
        tile_size: Tile side, or (tile height, tile width).
        stride: Step between tile origins, or (row step, column step); defaults to `tile_size` (no overlap).
        drop_incomplete: Leave out the tiles that would cross the right or bottom edge. When False those tiles are
            kept, cut at the edge (smaller than `tile_size`); nothing is padded.

    Returns:
        `Window`s in row-major order of their origins.
    """
    tile_height, tile_width = (int(v) for v in _as_pair(tile_size, "tile_size"))
    row_step, col_step = (int(v) for v in _as_pair(stride if stride is not None else tile_size, "stride"))
    if min(tile_height, tile_width, row_step, col_step) < 1:
        raise ValueError(f"tile_size and stride must be positive, got tile_size={tile_size}, stride={stride}.")

    def origins(size: int, tile: int, step: int) -> list[int]:
        last = size - tile if drop_incomplete else size - 1
        return list(range(0, last + 1, step)) if last >= 0 else []

    return [
        Window(col, row, min(tile_width, width - col), min(tile_height, height - row))
        for row in origins(height, tile_height, row_step)
        for col in origins(width, tile_width, col_step)
    ]


def iter_tiles(
    source: RasterSource,
    tile_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    drop_incomplete: bool = True,
    *,
    band_names: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    target_resolution: float | Sequence[float] | None = None,
    resampling: str | Resampling = "bilinear",
    nodata: float | None = None,
) -> Iterator[RasterSample]:
    """Yield the tiles of a scene one window at a time, each with its own georeferenced `transform`.

    The files are opened once; each tile reads only its window. Per-band files are brought onto the common grid
    as in `read_raster` (tile sizes and strides are in pixels of that grid).

    Args:
        source: A file, a sequence of per-band files or a folder.
        tile_size, stride, drop_incomplete: See `tile_windows`.
        band_names, bands, target_resolution, resampling, nodata: See `read_raster`.

    Yields:
        `RasterSample`s of shape (C, tile height, tile width); `sample.window` gives the tile's offsets.
    """
    with _RasterStack(source, band_names, bands, target_resolution, None, resampling, nodata) as stack:
        windows = tile_windows(stack.grid.height, stack.grid.width, tile_size, stride, drop_incomplete)
        if not windows:
            logger.warning(
                "%s: the %d x %d grid holds no complete %s tile.",
                [str(p) for p in stack.paths],
                stack.grid.height,
                stack.grid.width,
                tile_size,
            )
        for window in windows:
            yield stack.read(window)


__all__ = [
    "ALLOWED_DRIVERS",
    "EUROSAT_MS_BANDS",
    "MAX_READ_BYTES",
    "RASTER_SUFFIXES",
    "SENTINEL2_13_BANDS",
    "SENTINEL2_RESOLUTIONS_M",
    "SIDECAR_SUFFIX",
    "RasterInfo",
    "RasterNotFoundError",
    "RasterReadError",
    "RasterSample",
    "RasterSource",
    "band_name_from_filename",
    "check_raster",
    "expand_source",
    "iter_tiles",
    "normalize_band_name",
    "parse_envi_list",
    "read_wavelengths",
    "wavelength_from_description",
    "wavelength_unit_factor",
    "raster_info",
    "read_raster",
    "read_window",
    "resolve_band_names",
    "tile_windows",
]
