"""Fault cases of the data between files and the Trainer: folder layouts, hub rows' labels, skip counts in workers."""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from model_tester import half_nodata_samples

from modeling_s2mae import S2MAEImageProcessor
from modeling_s2mae.data import bigearthnet_folder, collect_records, detect_layout, eurosat_folder
from modeling_s2mae.data.hub_format import MULTI_LABEL, SINGLE_LABEL, row_to_sample, sample_to_row
from modeling_s2mae.data.raster import RasterNotFoundError, RasterSample
from modeling_s2mae.data.training import SampleDataset, collate_pixels, split_records
from modeling_s2mae.data.transforms import SampleTransform

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " * 4
"""The start of a macOS `._<name>` resource-fork file: not a raster, though named like one."""


@pytest.fixture
def eurosat(tmp_path: Path, sample_data: Path) -> Path:
    """A copy of the sample EuroSAT-MS folder (AnnualCrop, Forest: 3 tiles each) to damage."""
    root = tmp_path / "eurosat"
    shutil.copytree(sample_data / "eurosat_ms", root)
    return root


def test_hidden_files_named_like_tiles_are_not_samples(eurosat: Path) -> None:
    (eurosat / "Forest" / "._Forest_1.tif").write_bytes(APPLE_DOUBLE)
    (eurosat / "Forest" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (eurosat / "._AnnualCrop.tif").write_bytes(APPLE_DOUBLE)  # at the root too: must not make it "scenes"
    assert detect_layout(eurosat) == "eurosat"
    found = eurosat_folder(eurosat)
    assert len(found) == 6 and found.num_skipped == 0


def test_an_empty_class_folder_keeps_the_class_folder_layout(eurosat: Path) -> None:
    (eurosat / "Highway").mkdir()
    assert detect_layout(eurosat) == "eurosat"  # was "scenes": the class tiles were then read as unlabeled scenes
    found = collect_records([eurosat])
    assert found.classes == ["AnnualCrop", "Forest", "Highway"]
    assert sorted({r["label"] for r in found.records}) == [0, 1]


def test_tiles_in_nested_folders_keep_their_class(eurosat: Path) -> None:
    (eurosat / "Forest" / "north").mkdir()
    shutil.move(eurosat / "Forest" / "Forest_3.tif", eurosat / "Forest" / "north" / "Forest_3.tif")
    found = eurosat_folder(eurosat)
    assert len(found) == 6  # was 5: the nested tile was dropped in silence
    nested = [r for r in found.records if r["id"] == "Forest/north/Forest_3"]
    assert len(nested) == 1 and found.classes[nested[0]["label"]] == "Forest"


def test_a_broken_symlink_is_a_bad_file_not_a_dropped_sample(eurosat: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone" / "Forest_9.tif", eurosat / "Forest" / "Forest_9.tif")
    with pytest.raises(RasterNotFoundError, match="Forest_9.tif is a symbolic link to .*does not exist"):
        eurosat_folder(eurosat)
    found = eurosat_folder(eurosat, skip_bad_files=True)
    assert len(found) == 6 and found.num_skipped == 1 and found.skipped[0].path.endswith("Forest_9.tif")


def test_a_symlink_to_a_tile_outside_the_folder_is_read(eurosat: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.tif"
    shutil.move(eurosat / "Forest" / "Forest_2.tif", outside)
    os.symlink(outside, eurosat / "Forest" / "Forest_2.tif")
    found = eurosat_folder(eurosat)
    assert len(found) == 6 and "Forest/Forest_2" in {r["id"] for r in found.records}


def test_folders_with_different_classes_get_one_class_list(eurosat: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "River").mkdir(parents=True)
    shutil.copy(eurosat / "Forest" / "Forest_1.tif", other / "River" / "River_1.tif")
    shutil.copytree(eurosat / "AnnualCrop", other / "AnnualCrop")
    found = collect_records([eurosat, other])
    assert found.classes == ["AnnualCrop", "Forest", "River"]
    for record in found.records:  # River_1 was labelled 1, i.e. "Forest"
        assert found.classes[record["label"]] == record["class_name"]


def test_single_and_multi_label_folders_mix_for_pretraining_only(eurosat: Path, sample_data: Path) -> None:
    with pytest.raises(ValueError, match="Cannot mix single-label class folders"):
        collect_records([eurosat, sample_data / "bigearthnet"])
    unlabelled = collect_records([eurosat, sample_data / "bigearthnet"], labelled=False)  # the README's sample run
    eurosat_only, bigearthnet_only = collect_records([eurosat]), collect_records([sample_data / "bigearthnet"])
    assert len(unlabelled.records) == len(eurosat_only.records) + len(bigearthnet_only.records)
    assert unlabelled.classes == []


def test_bigearthnet_patches_with_hidden_resource_forks(tmp_path: Path, sample_data: Path) -> None:
    root = tmp_path / "ben"
    shutil.copytree(sample_data / "bigearthnet", root)
    for patch in [p for p in root.iterdir() if p.is_dir()]:
        (patch / f"._{patch.name}_B02.tif").write_bytes(APPLE_DOUBLE)
        (patch / f"._{patch.name}_labels_metadata.json").write_bytes(APPLE_DOUBLE)
    assert detect_layout(root) == "bigearthnet"
    found = bigearthnet_folder(root)  # was "two files for band B02" / "found 2" label files
    assert len(found) == 2 and found.num_skipped == 0


def _row(**labels: object) -> dict:
    raster = RasterSample(
        array=np.full((3, 4, 4), 7, np.uint16), band_names=["B02", "B03", "B04"], nodata=0,
        transform=Affine.identity(), crs=None, source=["x"],
    )  # fmt: skip
    return {**sample_to_row(raster, "row-1"), **labels}


@pytest.mark.parametrize(
    ("problem_type", "labels", "message"),
    [
        (SINGLE_LABEL, {"label": 7}, "label value 7 is not a class index in \\[0, 3\\)"),
        (SINGLE_LABEL, {"label": None}, "is unlabeled \\(label None\\)"),
        (SINGLE_LABEL, {"label": -1}, "is unlabeled \\(label -1\\)"),
        (MULTI_LABEL, {"labels": [0, 3]}, "labels value 3 is not a class index"),
        (MULTI_LABEL, {"labels": [-1]}, "labels value -1 is not a class index"),  # was: the last class set
        (MULTI_LABEL, {"labels": None}, "'labels' must be a list of class indices"),
    ],
)
def test_hub_rows_with_labels_outside_the_class_list_are_named(problem_type: str, labels: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"Row 'row-1'.*{message}|Row 'row-1' {message}"):
        row_to_sample(_row(**labels), problem_type, num_classes=3)
    good = row_to_sample(_row(label=2, labels=[0, 2]), problem_type, num_classes=3)
    assert good.label == 2 if problem_type == SINGLE_LABEL else good.labels == [1, 0, 1]


def test_skip_counts_include_the_dataloader_workers() -> None:
    transform = SampleTransform(S2MAEImageProcessor(size=8), min_valid_fraction=0.5)
    dataset = SampleDataset(half_nodata_samples(8), transform, max_redraws=200)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=2, collate_fn=collate_pixels, multiprocessing_context="fork"
    )
    assert sum(len(batch["pixel_values"]) for batch in loader) == 8
    assert transform.skipped.samples >= 1  # was 0: the workers counted in their own copies
    assert transform.skipped.as_dict()["skipped_samples"] == transform.skipped.samples
    restored = pickle.loads(pickle.dumps(transform))  # a spawned worker gets a pickled transform (a lock failed)
    restored.skipped.add(samples=1)
    transform.skipped.reset()
    assert transform.skipped.samples == 0


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [{"id": "a", "label": 0}, {"id": "b", "label": "Forest"}, {"id": "c", "label": 0}],
            "label 'Forest' \\(str\\)",
        ),
        ([{"id": "a", "label": 0}, {"id": "b", "label": None}], "label None"),
        ([{"id": "a", "labels": [0, 1]}, {"id": "b", "labels": [1, 0]}], "is multi-label"),
    ],
)
def test_a_stratified_split_of_mixed_or_multi_labels_says_what_to_do(records: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_records(records, 0.5, seed=0, by="label")
    train, validation = split_records(records, 0.5, seed=0, by="random")
    assert len(train) + len(validation) == len(records)
