"""Tests of modeling_s2mae.data.hub_format: the sample data written as a Hub dataset folder and read back."""

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from affine import Affine
from huggingface_hub import DatasetCard

from modeling_s2mae import S2MAEImageProcessor
from modeling_s2mae.configuration_s2mae import SENTINEL2_BANDS
from modeling_s2mae.data import (
    BIGEARTHNET_19_CLASSES,
    EUROSAT_MS_BANDS,
    RasterReadError,
    RasterSample,
    RecordSet,
    bigearthnet_folder,
    eurosat_folder,
    load_record,
)
from modeling_s2mae.data.hub_format import (
    MULTI_LABEL,
    SINGLE_LABEL,
    decode_row,
    label_info,
    load_spectral_dataset,
    push_hub_dataset,
    sample_to_row,
    to_model_inputs,
    write_hub_dataset,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def eurosat_records(sample_data: Path) -> RecordSet:
    return eurosat_folder(sample_data / "eurosat_ms")


@pytest.fixture(scope="module")
def bigearthnet_records(sample_data: Path) -> RecordSet:
    return bigearthnet_folder(sample_data / "bigearthnet")


@pytest.fixture(scope="module")
def eurosat_hub(eurosat_records: RecordSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eurosat_hub")
    written = write_hub_dataset(eurosat_records, root, split="train", rows_per_shard=2)
    assert written["train"].num_rows == 6 and len(written["train"].shards) == 3
    return root


@pytest.fixture(scope="module")
def bigearthnet_hub(bigearthnet_records: RecordSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bigearthnet_hub")
    write_hub_dataset(bigearthnet_records, root, rows_per_shard=1)
    return root


def processed(processor: S2MAEImageProcessor, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The processor applied to the original file(s) of a record: pixel_values (C, S, S), pixel_mask (S, S)."""
    sample = load_record(record)
    inputs = processor(sample.array, input_band_names=sample.band_names, nodata=sample.nodata, return_tensors="pt")
    return {"pixel_values": inputs["pixel_values"][0], "pixel_mask": inputs["pixel_mask"][0]}


# --- Layout and card --------------------------------------------------------------------------------------------------


def test_layout_and_card(eurosat_hub: Path, eurosat_records: RecordSet) -> None:
    shards = sorted(p.name for p in (eurosat_hub / "data").iterdir())
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert sorted(p.name for p in eurosat_hub.iterdir()) == ["README.md", "data"]
    assert [pq.ParquetFile(eurosat_hub / "data" / name).metadata.num_rows for name in shards] == [2, 2, 2]

    card = DatasetCard.load(eurosat_hub / "README.md")
    metadata = card.data.to_dict()
    assert metadata["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
    ]
    features = {feature["name"]: feature for feature in metadata["dataset_info"]["features"]}
    assert list(features) == [
        "id",
        "image",
        "band_names",
        "nodata",
        "crs",
        "transform",
        "band_wavelengths",
        "band_bandwidths",
        "label",
    ]
    assert features["image"]["dtype"] == "binary"
    assert features["label"]["dtype"]["class_label"]["names"] == {"0": "AnnualCrop", "1": "Forest"}
    assert metadata["dataset_info"]["splits"][0]["num_examples"] == 6
    assert metadata["task_ids"] == ["multi-class-image-classification"]
    assert "## Format" in card.text and "B8A" in card.text


# --- Round trips ------------------------------------------------------------------------------------------------------


def test_eurosat_streaming_round_trip(eurosat_hub: Path, eurosat_records: RecordSet) -> None:
    dataset = datasets.load_dataset(str(eurosat_hub), split="train", streaming=True)
    assert isinstance(dataset, datasets.IterableDataset)
    assert dataset.n_shards == 3  # DDP ranks and dataloader workers split on files
    assert dataset.features["label"].names == eurosat_records.classes
    assert label_info(dataset) == (SINGLE_LABEL, ["AnnualCrop", "Forest"])

    rows = list(dataset)
    assert len(rows) == len(eurosat_records) == 6
    for row, record in zip(rows, eurosat_records):
        assert row["id"] == record["id"]
        assert row["label"] == record["label"]
        assert row["band_names"] == list(EUROSAT_MS_BANDS)
        sample, original = decode_row(row), load_record(record)
        assert sample.array.dtype == original.array.dtype == np.uint16
        assert sample.array.tobytes() == original.array.tobytes()
        assert sample.band_names == original.band_names
        assert sample.crs == original.crs and sample.transform == original.transform
        assert sample.nodata is None and row["nodata"] is None
        assert row["crs"] == original.crs.to_string()
        assert Affine(*row["transform"]) == original.transform


def test_bigearthnet_multi_label_round_trip(bigearthnet_hub: Path, bigearthnet_records: RecordSet) -> None:
    dataset = load_spectral_dataset(bigearthnet_hub, split="train", streaming=True)
    assert dataset.n_shards == 2
    assert label_info(dataset) == (MULTI_LABEL, list(BIGEARTHNET_19_CLASSES))
    rows = list(dataset)
    assert [row["id"] for row in rows] == [record["id"] for record in bigearthnet_records]
    for row, record in zip(rows, bigearthnet_records):
        multi_hot = [int(index in row["labels"]) for index in range(len(BIGEARTHNET_19_CLASSES))]
        assert multi_hot == record["labels"]
        sample, original = decode_row(row), load_record(record)  # 12 bands resampled onto the 10 m grid
        assert sample.array.shape == (12, 120, 120)
        assert sample.array.tobytes() == original.array.tobytes() and sample.array.dtype == original.array.dtype
        assert row["band_names"] == list(SENTINEL2_BANDS)


def test_any_band_count_and_dtype_round_trip() -> None:
    """Hyperspectral float32 with NaN nodata and no georeference; int16 Landsat-like bands with a CRS."""
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(100, 9, 7)).astype(np.float32)
    cube[:, 0, 0] = np.nan
    hyperspectral = RasterSample(
        cube, [f"band_{i:03d}" for i in range(100)], math.nan, Affine.identity(), None, ["cube"]
    )
    row = sample_to_row(hyperspectral, "cube-0")
    decoded = decode_row(row)
    np.testing.assert_array_equal(decoded.array, cube)
    assert decoded.array.dtype == np.float32 and decoded.crs is None and math.isnan(decoded.nodata)
    assert decoded.band_names == hyperspectral.band_names and row["crs"] is None

    landsat = load_record(
        {"paths": [str(REPO_ROOT / "sample_data/eurosat_ms/Forest/Forest_1.tif")], "band_names": EUROSAT_MS_BANDS}
    )
    landsat = RasterSample(
        landsat.array[:7].astype(np.int16) - 500,
        ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"],
        -9999.0,
        landsat.transform,
        landsat.crs,
        landsat.source,
    )
    decoded = decode_row(sample_to_row(landsat, "landsat-0", label=3))
    assert decoded.array.dtype == np.int16 and decoded.array.tobytes() == landsat.array.tobytes()
    assert decoded.nodata == -9999.0 and decoded.crs == landsat.crs and decoded.band_names[0] == "SR_B1"


# --- Model inputs -----------------------------------------------------------------------------------------------------


def test_to_model_inputs_streaming_matches_processor(eurosat_hub: Path, eurosat_records: RecordSet) -> None:
    processor = S2MAEImageProcessor()
    inputs = to_model_inputs(load_spectral_dataset(eurosat_hub), processor)
    assert isinstance(inputs, datasets.IterableDataset) and inputs.n_shards == 3
    examples = list(inputs)
    assert len(examples) == 6
    for example, record in zip(examples, eurosat_records):
        assert set(example) == {"pixel_values", "pixel_mask", "labels"}
        expected = processed(processor, record)
        assert example["pixel_values"].shape == (12, 128, 128) and example["pixel_values"].dtype == torch.float32
        assert torch.equal(example["pixel_values"], expected["pixel_values"])
        assert torch.equal(example["pixel_mask"], expected["pixel_mask"])
        assert example["labels"].item() == record["label"]


def test_to_model_inputs_map_style_multi_label(
    bigearthnet_hub: Path, bigearthnet_records: RecordSet, tmp_path: Path
) -> None:
    processor = S2MAEImageProcessor(size=64)
    dataset = load_spectral_dataset(bigearthnet_hub, streaming=False, cache_dir=str(tmp_path))
    assert isinstance(dataset, datasets.Dataset) and len(dataset) == 2
    inputs = to_model_inputs(dataset, processor)
    assert inputs.column_names == ["pixel_values", "pixel_mask", "labels"]
    for index, record in enumerate(bigearthnet_records):
        example, expected = inputs[index], processed(processor, record)
        assert torch.equal(example["pixel_values"], expected["pixel_values"])
        assert torch.equal(example["pixel_mask"], expected["pixel_mask"])
        assert example["labels"].dtype == torch.float32
        assert example["labels"].tolist() == [float(v) for v in record["labels"]]
    without_labels = to_model_inputs(dataset, processor, with_labels=False)
    assert without_labels.column_names == ["pixel_values", "pixel_mask"]


def test_unlabeled_dataset_and_unlabeled_rows(eurosat_records: RecordSet, tmp_path: Path) -> None:
    samples = [load_record(record) for record in eurosat_records.records[:2]]
    write_hub_dataset(samples, tmp_path / "unlabeled", rows_per_shard=1)
    dataset = load_spectral_dataset(tmp_path / "unlabeled")
    assert "label" not in dataset.features and "labels" not in dataset.features
    assert label_info(dataset) == (None, [])
    assert [row["id"] for row in dataset] == ["train-00000000", "train-00000001"]
    with pytest.raises(ValueError, match="no label column"):
        to_model_inputs(dataset, S2MAEImageProcessor())
    assert len(list(to_model_inputs(dataset, S2MAEImageProcessor(size=32), with_labels=False))) == 2

    items = [{"sample": samples[0], "id": "a", "label": 1}, {"sample": samples[1], "id": "b"}]
    write_hub_dataset(items, tmp_path / "partly", label_names=["x", "y"])
    dataset = load_spectral_dataset(tmp_path / "partly")
    assert [row["label"] for row in dataset] == [1, -1]
    with pytest.raises(ValueError, match="'b' is unlabeled"):
        list(to_model_inputs(dataset, S2MAEImageProcessor(size=32)))


# --- Errors -----------------------------------------------------------------------------------------------------------


def test_corrupt_row_names_the_row(eurosat_hub: Path) -> None:
    row = next(iter(load_spectral_dataset(eurosat_hub)))
    with pytest.raises(RasterReadError, match="Row 'AnnualCrop/AnnualCrop_1'.*not a readable GeoTIFF"):
        decode_row({**row, "image": row["image"][: len(row["image"]) // 2]})
    with pytest.raises(ValueError, match="Row 'broken'.*not a readable GeoTIFF"):
        decode_row({**row, "id": "broken", "image": b"not a tiff at all"})
    with pytest.raises(ValueError, match="Row 'AnnualCrop/AnnualCrop_1'.*GeoTIFF bytes"):
        decode_row({**row, "image": None})
    with pytest.raises(ValueError, match="differ from the GeoTIFF's band descriptions"):
        decode_row({**row, "band_names": list(reversed(row["band_names"]))})


def test_overwrite_refused_unless_asked(eurosat_records: RecordSet, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    write_hub_dataset(eurosat_records, root, rows_per_shard=1)
    assert len(list((root / "data").iterdir())) == 6
    (root / "LICENSE").write_text("kept")
    with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
        write_hub_dataset(eurosat_records, root)
    write_hub_dataset(eurosat_records.records[:3], root, rows_per_shard=2, label_names=["a", "b"], overwrite=True)
    assert sorted(p.name for p in (root / "data").iterdir()) == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert (root / "LICENSE").read_text() == "kept"
    assert len(list(load_spectral_dataset(root))) == 3


def test_write_rejects_bad_input(eurosat_records: RecordSet, tmp_path: Path) -> None:
    record = eurosat_records[0]
    with pytest.raises(ValueError, match="appears twice"):
        write_hub_dataset({"train": [record], "validation": [record]}, tmp_path / "dup", label_names=["a", "b"])
    with pytest.raises(ValueError, match="needs label_names"):
        write_hub_dataset([record], tmp_path / "names")
    with pytest.raises(ValueError, match="has no item"):
        write_hub_dataset({"train": [record], "test": []}, tmp_path / "empty", label_names=["a", "b"])
    with pytest.raises(ValueError, match="not a class index"):
        write_hub_dataset([{**record, "label": 5}], tmp_path / "range", label_names=["a", "b"])
    multi = {**record, "id": "m", "labels": [0, 1]}
    del multi["label"]
    with pytest.raises(ValueError, match="same kind of label"):
        write_hub_dataset([multi, record], tmp_path / "mixed")
    assert not (tmp_path / "mixed" / "data").exists()  # no partial dataset left behind
    with pytest.raises(ValueError, match="label_names were given"):
        write_hub_dataset([load_record(record)], tmp_path / "unlabeled", label_names=["a", "b"])


def test_push_hub_dataset_creates_repo_and_replaces_shards(
    eurosat_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    class RecordingApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("init", {"token": token}))

        def create_repo(self, repo_id: str, **kwargs: Any) -> None:
            calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def upload_folder(self, **kwargs: Any) -> Any:
            calls.append(("upload_folder", kwargs))
            return huggingface_hub.CommitInfo(
                commit_url="https://huggingface.co/datasets/user/eurosat/commit/abc",
                commit_message="",
                commit_description="",
                oid="abc",
            )

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    url = push_hub_dataset(eurosat_hub, "user/eurosat", private=True)
    assert url.endswith("/commit/abc")
    assert calls[1] == (
        "create_repo",
        {"repo_id": "user/eurosat", "repo_type": "dataset", "private": True, "exist_ok": True},
    )
    upload = calls[2][1]
    assert upload["folder_path"] == eurosat_hub and upload["repo_type"] == "dataset"
    assert upload["delete_patterns"] == ["data/*"]
    with pytest.raises(FileNotFoundError, match="no dataset written by write_hub_dataset"):
        push_hub_dataset(tmp_path, "user/empty")


# --- Script -----------------------------------------------------------------------------------------------------------


def test_prepare_dataset_script(sample_data: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "eurosat_hub"
    command = [
        sys.executable,
        str(REPO_ROOT / "examples" / "prepare_dataset.py"),
        "--input_dir", str(sample_data / "eurosat_ms"),
        "--layout", "eurosat",
        "--output_dir", str(output_dir),
        "--validation_fraction", "0.2",
        "--rows_per_shard", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train: 4 rows in 2 shard(s)" in result.stdout

    train = datasets.load_dataset(str(output_dir), split="train", streaming=True)
    validation = datasets.load_dataset(str(output_dir), split="validation", streaming=True)
    assert train.n_shards == 2 and validation.n_shards == 1
    train_rows, validation_rows = list(train), list(validation)
    assert len(train_rows) == 4 and len(validation_rows) == 2
    assert sorted(row["label"] for row in validation_rows) == [0, 1]  # stratified by class
    ids = {row["id"] for row in train_rows} | {row["id"] for row in validation_rows}
    assert ids == {record["id"] for record in eurosat_folder(sample_data / "eurosat_ms")}
