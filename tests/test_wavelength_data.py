"""Wavelengths read from the data (ENVI headers, GDAL metadata, band descriptions) and carried to the model."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from modeling_s2mae import S2MAEImageProcessor, S2MAEModel
from modeling_s2mae.data.hub_format import decode_row, sample_to_row
from modeling_s2mae.data.raster import (
    RasterReadError,
    RasterSample,
    parse_envi_list,
    raster_info,
    read_raster,
    wavelength_from_description,
    wavelength_unit_factor,
)
from modeling_s2mae.sensors import SENTINEL2, get_sensor
from tests.model_tester import tiny_config

LANDSAT_OLINDA = Path(__file__).resolve().parent.parent / "sample_data" / "landsat" / "L7_ETMs_olinda_crop96.tif"

# The exact syntax of real ENVI headers (AVIRIS / ENVI-written): multi-line braces, "wavelength units", fwhm.
ENVI_MICROMETRES = """ENVI
description = {
  AVIRIS-like test cube, reflectance x 10000}
samples = 5
lines   = 4
bands   = 4
header offset = 0
file type = ENVI Standard
data type = 2
interleave = bil
sensor type = Unknown
byte order = 0
wavelength units = Micrometers
band names = {
 Band 1, Band 2, Band 3, Band 4}
wavelength = {
 0.399370, 0.409070,
 0.418770, 2.496500}
fwhm = {
 0.010100, 0.010100, 0.010200, 0.009700}
data ignore value = -9999
"""

ENVI_NANOMETRES_NO_NAMES = """ENVI
samples = 5
lines = 4
bands = 3
header offset = 0
file type = ENVI Standard
data type = 12
interleave = bsq
byte order = 0
wavelength units = Nanometers
wavelength = { 399.37 , 409.07 , 418.77 }
"""


def write_envi(folder: Path, header: str, bands: int, dtype: str) -> Path:
    path = folder / "cube.img"
    np.arange(bands * 4 * 5).astype(dtype).tofile(path)
    (folder / "cube.hdr").write_text(header)
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_envi_header_in_micrometres_with_fwhm(tmp_path):
    path = write_envi(tmp_path, ENVI_MICROMETRES, 4, "int16")
    sample = read_raster(path)
    assert sample.band_names[0] == "Band 1 (0.399370 Micrometers)"  # GDAL names ENVI bands name + wavelength
    assert sample.band_wavelengths == pytest.approx([399.37, 409.07, 418.77, 2496.5])
    assert sample.band_bandwidths == pytest.approx([10.1, 10.1, 10.2, 9.7])
    assert raster_info(path).band_wavelengths == pytest.approx(sample.band_wavelengths)
    picked = sample.select([sample.band_names[3], sample.band_names[1]])
    assert picked.band_wavelengths == pytest.approx([2496.5, 409.07]) and picked.band_bandwidths[0] == pytest.approx(
        9.7
    )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_envi_header_in_nanometres_names_bands_by_wavelength(tmp_path):
    path = write_envi(tmp_path, ENVI_NANOMETRES_NO_NAMES, 3, "uint16")
    sample = read_raster(path)
    assert sample.band_names == ["399.37 Nanometers", "409.07 Nanometers", "418.77 Nanometers"]  # GDAL's names
    assert sample.band_wavelengths == [399.37, 409.07, 418.77]
    assert sample.band_bandwidths is None


def test_envi_header_with_the_wrong_number_of_wavelengths_is_an_error(tmp_path):
    bad = ENVI_NANOMETRES_NO_NAMES.replace("wavelength = { 399.37 , 409.07 , 418.77 }", "wavelength = { 399.37 }")
    path = write_envi(tmp_path, bad, 3, "uint16")
    with pytest.raises(RasterReadError, match="1 wavelengths for 3 bands"):
        read_raster(path, band_names=["a", "b", "c"])


def test_parsing_helpers():
    assert parse_envi_list("{\n 0.39937, 0.40907,\n 0.41877}") == [0.39937, 0.40907, 0.41877]
    assert wavelength_from_description("399.37 Nanometers") == 399.37
    assert wavelength_from_description("Band 5 (0.8647 Micrometers)") == pytest.approx(864.7)
    assert wavelength_from_description("B8A 864.7nm") == 864.7
    assert wavelength_from_description("B04") is None and wavelength_from_description("") is None
    assert wavelength_unit_factor("µm") == 1000.0 and wavelength_unit_factor("Nanometers") == 1.0
    assert wavelength_unit_factor("Unknown", [0.4, 2.5]) == 1000.0 and wavelength_unit_factor(None, [400.0]) == 1.0
    with pytest.raises(ValueError, match="'Wavenumber' are not a length"):
        wavelength_unit_factor("Wavenumber")


def test_gdal_band_metadata_and_descriptions_in_a_geotiff(tmp_path):
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 2, "dtype": "uint16", "crs": "EPSG:32633",
               "transform": Affine(10, 0, 0, 0, -10, 0)}  # fmt: skip
    tagged = tmp_path / "tagged.tif"
    with rasterio.open(tagged, "w", **profile) as dataset:
        dataset.write(np.ones((2, 4, 4), dtype="uint16"))
        dataset.descriptions = ("red", "nir")
        dataset.update_tags(1, wavelength="0.665", wavelength_units="micrometers", fwhm="0.031")
        dataset.update_tags(2, wavelength="0.842", wavelength_units="micrometers", fwhm="0.106")
    sample = read_raster(tagged)
    assert sample.band_wavelengths == pytest.approx([665.0, 842.0]) and sample.band_bandwidths == pytest.approx(
        [31.0, 106.0]
    )
    described = tmp_path / "described.tif"
    with rasterio.open(described, "w", **profile) as dataset:
        dataset.write(np.ones((2, 4, 4), dtype="uint16"))
        dataset.descriptions = ("665 nm", "842 nm")
    assert read_raster(described).band_wavelengths == [665.0, 842.0]
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as dataset:
        dataset.write(np.ones((2, 4, 4), dtype="uint16"))
        dataset.descriptions = ("B04", "B08")  # Sentinel-2 names: the registry's values
    assert read_raster(plain).band_wavelengths == [SENTINEL2["B04"].wavelength_nm, SENTINEL2["B08"].wavelength_nm]


def test_wavelengths_survive_the_hub_row_format():
    sample = RasterSample(
        array=np.arange(2 * 3 * 3, dtype="uint16").reshape(2, 3, 3),
        band_names=["a", "b"],
        nodata=None,
        transform=Affine(30, 0, 0, 0, -30, 0),
        crs=CRS.from_epsg(32613),
        source=["x"],
        band_wavelengths=[660.0, 835.0],
        band_bandwidths=[60.0, 130.0],
    )
    row = sample_to_row(sample, "r0")
    assert row["band_wavelengths"] == [660.0, 835.0]
    decoded = decode_row(row)
    assert decoded.band_wavelengths == [660.0, 835.0] and decoded.band_bandwidths == [60.0, 130.0]
    # a row written before the wavelength columns existed: the GeoTIFF's band metadata still carries them
    old_row = {key: value for key, value in row.items() if key not in ("band_wavelengths", "band_bandwidths")}
    assert decode_row(old_row).band_wavelengths == [660.0, 835.0]
    with pytest.raises(ValueError, match="1 band_wavelengths for 2 bands"):
        RasterSample(**{**sample.__dict__, "band_wavelengths": [1.0]})


def test_real_landsat_through_processor_into_an_s2_model_by_wavelength():
    """Real Landsat-7 ETM+ bands (no wavelength metadata in the file: the registry gives them by sensor) run
    through the processor into a 12-band Sentinel-2 wavelength model."""
    sample = read_raster(LANDSAT_OLINDA)
    assert sample.band_names == ["B1", "B2", "B3", "B4", "B5", "B7"] and sample.band_wavelengths is None
    etm = get_sensor("landsat7_etm")
    processor = S2MAEImageProcessor(band_names=sample.band_names, size=16, scaling="reflectance",
                                    reflectance_scale=255.0)  # fmt: skip
    inputs = processor(
        sample.array, input_band_names=sample.band_names, input_band_wavelengths=etm.wavelengths(sample.band_names),
        input_band_bandwidths=etm.bandwidths(sample.band_names), return_tensors="pt",
    )  # fmt: skip
    assert inputs["band_wavelengths"].shape == (1, 6) and inputs["band_wavelengths"][0, 3] == 835.0
    model = S2MAEModel(tiny_config(band_names=list(SENTINEL2), position_embedding_type="wavelength",
                                   spectral_patch_size=1, num_channels=None)).eval()  # fmt: skip
    with torch.no_grad():
        out = model(**inputs)
    assert out.last_hidden_state.shape == (1, 6 * 16, 32) and torch.isfinite(out.pooler_output).all()
    # reordering the bands WITH their wavelengths changes only the token order: positions follow physics, so the
    # pooled features are equal
    order = [5, 0, 3, 1, 4, 2]
    with torch.no_grad():
        shuffled = model(pixel_values=inputs["pixel_values"][:, order], pixel_mask=inputs["pixel_mask"],
                         band_wavelengths=inputs["band_wavelengths"][:, order],
                         band_bandwidths=inputs["band_bandwidths"][:, order])  # fmt: skip
    torch.testing.assert_close(shuffled.pooler_output, out.pooler_output)  # one band per group, mean pooling
    # the processor of an S2 model gives the registry's wavelengths for Sentinel-2 names
    s2 = S2MAEImageProcessor(size=16)(np.ones((12, 16, 16), dtype="uint16"), return_tensors="pt")
    assert s2["band_wavelengths"][0].tolist() == pytest.approx([SENTINEL2[n].wavelength_nm for n in processor_bands()])


def processor_bands() -> list[str]:
    return S2MAEImageProcessor().band_names
