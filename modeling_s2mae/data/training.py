"""From records on disk to model inputs: a torch `Dataset`, the pretraining augmentation, and the collator.

The augmentation is the method's pretraining recipe, RandomResizedCrop (scale 0.2-1.0) + horizontal flip. The
crop is taken from the raw raster before the processor resizes it to the model size, so that one resize does
both; the flip is applied to the processed tensors.
"""

import math
import os
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .builders import load_record
from .raster import RasterSample


def random_resized_crop_window(
    height: int,
    width: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """A random crop (top, left, crop_height, crop_width) covering `scale` of the area with aspect `ratio`.

    Falls back to the largest centred crop of admissible aspect ratio after 10 failed draws, as torchvision does.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            return rng.randint(0, height - crop_height), rng.randint(0, width - crop_width), crop_height, crop_width
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_width, crop_height = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_height, crop_width = height, int(round(height * ratio[1]))
    else:
        crop_height, crop_width = height, width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def sample_to_inputs(
    sample: RasterSample,
    processor: Any,
    crop: tuple[int, int, int, int] | None = None,
    flip: bool = False,
) -> dict[str, torch.Tensor]:
    """Run the processor on one raster sample.

    Args:
        sample: Pixels (C_in, H, W) with band names and nodata.
        processor: An `S2MAEImageProcessor`.
        crop: Optional (top, left, height, width) taken before processing.
        flip: Mirror the processed image left-right.

    Returns:
        {"pixel_values": (C, size, size) float32, "pixel_mask": (size, size) int64}.
    """
    array = sample.array
    if crop is not None:
        top, left, crop_height, crop_width = crop
        array = array[:, top : top + crop_height, left : left + crop_width]
    features = processor(
        np.ascontiguousarray(array),
        input_band_names=sample.band_names,
        input_data_format="channels_first",
        nodata=sample.nodata,
        return_tensors="pt",
    )
    pixel_values, pixel_mask = features["pixel_values"][0], features["pixel_mask"][0]
    if flip:
        pixel_values, pixel_mask = pixel_values.flip(-1), pixel_mask.flip(-1)
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


class RasterRecordDataset(torch.utils.data.Dataset):
    """Map-style dataset over builder records: reads each record's raster and prepares it for the model.

    Args:
        records: Records from `eurosat_folder`, `bigearthnet_folder` or `scene_tiles` (a `RecordSet` or a list).
        processor: An `S2MAEImageProcessor`.
        augment: Apply RandomResizedCrop(scale 0.2-1.0) + horizontal flip (pretraining recipe).
        crop_scale: The area range of the random crop.
        with_labels: Return `labels` (int for single-label records, float multi-hot for multi-label ones).
        with_ids: Return the record's `sample_id` (a string), for `PixelCollator(record_ids_to=...)`.
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        processor: Any,
        augment: bool = False,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        with_labels: bool = False,
        with_ids: bool = False,
    ):
        self.records = list(records)
        if not self.records:
            raise ValueError("No records to train on: the dataset folder or scene list is empty.")
        self.processor = processor
        self.augment = augment
        self.crop_scale = crop_scale
        self.with_labels = with_labels
        self.with_ids = with_ids

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        sample = load_record(record)
        crop, flip = None, False
        if self.augment:
            # drawn from torch's generator, which Trainer seeds and DataLoader workers re-seed one by one
            rng = random.Random(int(torch.randint(0, 2**62, (1,)).item()))
            crop = random_resized_crop_window(sample.height, sample.width, rng, self.crop_scale)
            flip = rng.random() < 0.5
        item = sample_to_inputs(sample, self.processor, crop, flip)
        if self.with_labels:
            item["labels"] = record_labels(record)
        if self.with_ids:
            item["sample_id"] = str(record["id"])
        return item


def record_labels(record: dict[str, Any]) -> torch.Tensor:
    """The label of a record: a long scalar for single-label records, a float multi-hot vector otherwise."""
    if record.get("labels") is not None:
        return torch.tensor(record["labels"], dtype=torch.float32)
    if record.get("label") is not None:
        return torch.tensor(int(record["label"]), dtype=torch.long)
    raise ValueError(f"Record {record.get('id')!r} has no 'label' or 'labels'.")


def split_records(
    records: Sequence[dict[str, Any]], fraction: float, seed: int, stratify: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A reproducible train / validation split of builder records.

    Args:
        records: Records with a `label` when `stratify`.
        fraction: Share of records (of each class, when `stratify`) held out; 0 holds out nothing.
        seed: Seed of the shuffle.
        stratify: Split each class separately; a class with >= 2 records gives at least one to validation.
            Otherwise at least one record is held out when there are >= 2.

    Returns:
        (train records, validation records).
    """
    if fraction <= 0:
        return list(records), []
    generator = torch.Generator().manual_seed(seed)
    pools: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        pools.setdefault(record["label"] if stratify else 0, []).append(record)
    train, validation = [], []
    for key in sorted(pools):
        pool = pools[key]
        order = torch.randperm(len(pool), generator=generator).tolist()
        count = max(1, int(round(len(pool) * fraction))) if len(pool) > 1 else 0
        validation += [pool[i] for i in order[:count]]
        train += [pool[i] for i in order[count:]]
    return train, validation


def collate_pixels(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack per-sample dicts into a batch: pixel_values (B, C, H, W), pixel_mask (B, H, W), labels (B, ...)."""
    if not batch:
        raise ValueError("Cannot collate an empty batch.")
    keys = batch[0].keys()
    return {key: torch.stack([torch.as_tensor(item[key]) for item in batch]) for key in keys}


class PixelCollator:
    """`collate_pixels`, optionally logging the `sample_id` of every sample this process trains on.

    With `record_ids_to`, each process appends the ids of its batches to `<record_ids_to>.rank<N>` (one id per
    line), which shows how the data was sharded across processes; `sample_id` never reaches the model.
    """

    def __init__(self, record_ids_to: str | None = None):
        self.record_ids_to = record_ids_to

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [item["sample_id"] for item in batch if "sample_id" in item]
        if self.record_ids_to and ids:
            rank = int(os.environ.get("RANK", "0"))
            with open(f"{self.record_ids_to}.rank{rank}", "a", encoding="utf-8") as handle:
                handle.writelines(f"{sample_id}\n" for sample_id in ids)
        return collate_pixels([{k: v for k, v in item.items() if k != "sample_id"} for item in batch])


__all__ = [
    "PixelCollator",
    "RasterRecordDataset",
    "collate_pixels",
    "random_resized_crop_window",
    "record_labels",
    "sample_to_inputs",
    "split_records",
]
