"""The one data seam: every source (files on disk, streamed Hub rows, Major-TOM cells, BigEarthNet v2 patches)
becomes `Sample`s, and one `SampleTransform` turns a `Sample` into model inputs.

- `RasterRecord`: the typed, JSON-friendly description of one sample on disk, made by the builders without reading
  pixels (`eurosat_folder`, `bigearthnet_folder`, `scene_tiles`) and read by `load_record`.
- `Sample`: decoded pixels (a `RasterSample`, (C, H, W) with band names and nodata) plus its id and labels.
"""

from dataclasses import dataclass
from typing import Any, TypedDict

import torch

from .raster import RasterSample


class WindowDict(TypedDict):
    """A pixel window of a scene's common grid."""

    row_off: int
    col_off: int
    height: int
    width: int


class RasterRecord(TypedDict, total=False):
    """How to read one sample from files, without its pixels (JSON-friendly: `datasets.Dataset.from_list` works).

    Keys:
        id: A unique, readable identifier (required).
        paths: The raster files: one multi-band file, or one file per band (required).
        band_names: Names of all bands of those files, in file order; None: read from the files
            (`resolve_band_names`).
        bands: Names of the bands to return, in that order; None: all.
        window: For scene tiles, the window on the scene's common grid.
        target_resolution: Pixel size of the common grid; None: the finest file's.
        nodata: Nodata value to use when the files define none (None: the files' own).
        scene: For scene tiles, the scene's id (tiles of one scene share it; used for spatial splits).
        label, class_name: Single-label classification target and its name.
        labels, label_names: Multi-label target (multi-hot list of ints) and the names of the positive classes.
        corine_labels: BigEarthNet's original CORINE names.
    """

    id: str
    paths: list[str]
    band_names: list[str] | None
    bands: list[str] | None
    window: WindowDict | None
    target_resolution: float | tuple[float, float] | None
    nodata: float | None
    scene: str
    label: int
    class_name: str
    labels: list[int]
    label_names: list[str]
    corine_labels: list[str]


@dataclass
class Sample:
    """One decoded sample: what every source yields and what `SampleTransform` consumes.

    Attributes:
        id: A unique, readable identifier (file / patch / row id, with the tile position for tiles).
        raster: The pixels (C, H, W) in their stored dtype, with band names, nodata and georeference.
        label: Single-label target (class index), or None.
        labels: Multi-label target as a multi-hot list of ints, or None.
        group: What the sample belongs to for a spatial split (scene, grid cell); None: its own id.
    """

    id: str
    raster: RasterSample
    label: int | None = None
    labels: list[int] | None = None
    group: str | None = None


def sample_targets(sample: Sample) -> torch.Tensor:
    """The training target of a sample: a long scalar (single-label) or a float multi-hot vector (multi-label).

    Raises:
        ValueError: the sample has no label.
    """
    if sample.labels is not None:
        return torch.tensor(sample.labels, dtype=torch.float32)
    if sample.label is not None:
        return torch.tensor(int(sample.label), dtype=torch.long)
    raise ValueError(f"Sample {sample.id!r} has no 'label' or 'labels'.")


def record_to_sample(record: RasterRecord | dict[str, Any]) -> Sample:
    """Read the pixels of a builder record into a `Sample` (labels and scene carried over)."""
    from .builders import load_record

    return Sample(
        id=str(record["id"]),
        raster=load_record(record),
        label=record.get("label"),
        labels=record.get("labels"),
        group=record.get("scene"),
    )


__all__ = ["RasterRecord", "Sample", "WindowDict", "record_to_sample", "sample_targets"]
