"""Local data sources as the scripts take them: folder-layout detection and one place that turns folders and scenes
into builder records.

Layouts of a folder (`detect_layout`):
- "bigearthnet": `<patch>/<patch>_<band>.tif` + `<patch>_labels_metadata.json` (BigEarthNet-S2 v1);
- "eurosat": class sub-folders of multi-band rasters (`<class>/<tile>.tif`);
- "scenes": anything else: every raster file is a scene, a folder of per-band files (file names with band tokens) is
  one scene, and sub-folders of per-band files are one scene each; scenes are cut into tiles.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from .builders import BIGEARTHNET_LABELS_SUFFIX, RecordSet, bigearthnet_folder, eurosat_folder, scene_tiles
from .raster import RASTER_SUFFIXES, PathLike, RasterNotFoundError, RasterReadError, band_name_from_filename

logger = logging.getLogger(__name__)

Layout = Literal["eurosat", "bigearthnet", "scenes"]
LAYOUTS: tuple[str, ...] = ("eurosat", "bigearthnet", "scenes")


def _rasters_in(folder: Path) -> list[Path]:
    """The raster files directly in `folder`, sorted; hidden files (`.DS_Store`, `._<name>.tif`) are left out."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith(".")
    )


def detect_layout(folder: PathLike) -> Layout:
    """The layout of a dataset folder (see the module docstring).

    Raises:
        RasterNotFoundError: the folder does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RasterNotFoundError(f"{root}: no such folder.")
    children = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if children and any(any(child.glob(f"*{BIGEARTHNET_LABELS_SUFFIX}")) for child in children):
        return "bigearthnet"
    per_band_children = [
        c for c in children if _rasters_in(c) and all(band_name_from_filename(p) for p in _rasters_in(c))
    ]
    # An empty class folder (a class with no tile yet) must not turn a class-folder dataset into scenes
    if children and not _rasters_in(root) and any(_rasters_in(child) for child in children) and not per_band_children:
        return "eurosat"
    return "scenes"


def list_scenes(folder: PathLike) -> list[Path]:
    """The scenes of a "scenes" folder: the folder itself when all its rasters are per-band files, else each raster
    file, plus each sub-folder (a folder of per-band files, or of scenes, read as one scene source)."""
    root = Path(folder)
    rasters = _rasters_in(root)
    if rasters and all(band_name_from_filename(path) is not None for path in rasters):
        return [root]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return rasters + folders


def folder_records(
    folder: PathLike,
    *,
    layout: Layout | None = None,
    tile_size: int | None = None,
    tile_stride: int | None = None,
    band_names: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    nodata: float | None = None,
    skip_bad_files: bool = False,
) -> RecordSet:
    """The records of one dataset folder, by its layout (detected when not given).

    Args:
        folder: The dataset folder.
        layout: "eurosat", "bigearthnet" or "scenes" (None: `detect_layout`).
        tile_size, tile_stride: Tiling of scenes (tile_size None: one square sample per scene, its smaller side
            long). Ignored for the other layouts, whose samples are whole files.
        band_names: Names of every file's bands in file order, where the files do not declare them (never for
            bigearthnet, whose files are named by band).
        bands: Bands to read (bigearthnet: default the 12 Sentinel-2 bands).
        nodata: Nodata value of files that define none.
        skip_bad_files: Leave out unreadable samples (counted in the result) instead of failing.

    Raises:
        RasterReadError: a bad folder or file (when not skipping), or options that do not apply to the layout.
    """
    layout = layout or detect_layout(folder)
    if layout == "eurosat":
        return eurosat_folder(folder, band_names=band_names, nodata=nodata, skip_bad_files=skip_bad_files)
    if layout == "bigearthnet":
        if band_names is not None:
            raise RasterReadError(f"{folder}: band names do not apply to BigEarthNet, whose files are named by band.")
        options = {"bands": list(bands)} if bands is not None else {}
        return bigearthnet_folder(folder, skip_bad_files=skip_bad_files, **options)
    if layout != "scenes":
        raise ValueError(f"Unknown layout {layout!r}; expected one of {LAYOUTS}.")
    scenes = list_scenes(folder)
    if not scenes:
        raise RasterReadError(f"{folder} holds no raster file or scene folder ({', '.join(RASTER_SUFFIXES)}).")
    return scenes_records(
        scenes, tile_size, tile_stride, band_names=band_names, nodata=nodata, skip_bad_files=skip_bad_files
    )


def scenes_records(
    scenes: Sequence[PathLike],
    tile_size: int | None,
    tile_stride: int | None = None,
    *,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    skip_bad_files: bool = False,
) -> RecordSet:
    """Tiles of scenes (`scene_tiles`); with `tile_size` None, each scene is one sample of its whole extent."""
    if tile_size is not None:
        return scene_tiles(
            scenes, tile_size, tile_stride, band_names=band_names, nodata=nodata, skip_bad_files=skip_bad_files
        )
    found = RecordSet(records=[])
    for scene in scenes:
        whole = scene_tiles(
            [scene],
            _scene_side(scene, band_names),
            band_names=band_names,
            nodata=nodata,
            skip_bad_files=skip_bad_files,
        )
        found.records += whole.records
        found.skipped += whole.skipped
    return found


def _scene_side(scene: PathLike, band_names: Sequence[str] | None) -> int:
    from .raster import raster_info

    try:
        info = raster_info(scene, band_names)
    except RasterReadError:
        return 1  # scene_tiles reports (or skips) the bad scene
    return min(info.height, info.width)


def _merged_classes(parts: Sequence[tuple[PathLike, RecordSet]], labelled: bool = True) -> list[str]:
    """The class names of several folders' records: the sorted union of class-folder names, or BigEarthNet-19;
    none (an empty list) when unlabelled folders of both kinds are mixed.

    Raises:
        RasterReadError: single-label (class folders) and multi-label (BigEarthNet) folders are mixed while
            `labelled`.
    """
    single = [folder for folder, part in parts if part.classes and any("label" in r for r in part.records)]
    multi = [folder for folder, part in parts if part.classes and any("labels" in r for r in part.records)]
    if single and multi and not labelled:
        return []  # pretraining: the labels are not used, the images are
    if single and multi:
        raise RasterReadError(
            f"Cannot mix single-label class folders {[str(f) for f in single]} with multi-label BigEarthNet folders "
            f"{[str(f) for f in multi]} in one dataset: give folders of one kind."
        )
    if multi:
        return list(next(part.classes for _, part in parts if part.classes))
    return sorted({name for _, part in parts for name in part.classes})


def _relabelled(part: RecordSet, classes: Sequence[str]) -> list[dict]:
    """`part`'s records with single labels re-indexed into `classes` (by class name): folders that hold different
    classes otherwise give one index to different classes."""
    if not part.classes or list(part.classes) == list(classes):
        return part.records
    index = {name: position for position, name in enumerate(classes)}
    return [
        {**record, "label": index[part.classes[record["label"]]]} if "label" in record else record
        for record in part.records
    ]


def collect_records(
    folders: Sequence[PathLike] = (),
    scenes: Sequence[PathLike] = (),
    *,
    tile_size: int | None = None,
    tile_stride: int | None = None,
    band_names: Sequence[str] | None = None,
    nodata: float | None = None,
    skip_bad_files: bool = False,
    labelled: bool = True,
) -> RecordSet:
    """The records of several dataset folders (any layout) and scenes, with their skipped files added up.

    Class folders of several folders are merged by name: `classes` is the sorted union of their names and every
    record's `label` indexes it (a class present in only some folders keeps one index).

    Args:
        labelled: The labels will be used (classification). When False (pretraining), class folders and BigEarthNet
            folders may be mixed; `classes` is then empty.

    Raises:
        RasterReadError: a bad source (when not skipping), single- and multi-label folders mixed while `labelled`,
            or no sample at all.
    """
    found = RecordSet(records=[])
    parts: list[tuple[PathLike, RecordSet]] = []
    for folder in folders:
        part = folder_records(
            folder, tile_size=tile_size, tile_stride=tile_stride, band_names=band_names, nodata=nodata,
            skip_bad_files=skip_bad_files,
        )  # fmt: skip
        parts.append((folder, part))
        found.skipped += part.skipped
    found.classes = _merged_classes(parts, labelled)
    for _, part in parts:
        found.records += _relabelled(part, found.classes) if found.classes else part.records
    if scenes:
        part = scenes_records(
            scenes, tile_size, tile_stride, band_names=band_names, nodata=nodata, skip_bad_files=skip_bad_files
        )
        found.records += part.records
        found.skipped += part.skipped
    if not found.records:
        hint = (
            f" Scenes smaller than the {tile_size} px tile give no tile: lower --tile_size (tile_size) to at most "
            "the scenes' height and width."
            if tile_size is not None
            else ""
        )
        raise RasterReadError(
            f"No sample found in {[str(f) for f in folders] + [str(s) for s in scenes]} "
            f"({found.num_skipped} bad file(s) skipped).{hint}"
        )
    return found


__all__ = ["LAYOUTS", "Layout", "collect_records", "detect_layout", "folder_records", "list_scenes", "scenes_records"]
