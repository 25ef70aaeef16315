"""From samples to batches for `Trainer`: a map-style dataset, a streamed dataset, the split and the collator.

Both datasets run every sample through one `SampleTransform` (processor + augmentation + nodata-robust sampling), so
local files and streamed Hub rows are prepared identically.
"""

import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .raster import RasterSample
from .samples import RasterRecord, Sample, record_to_sample
from .transforms import SampleTransform

logger = logging.getLogger(__name__)


def as_sample(item: RasterRecord | Sample | RasterSample | dict[str, Any], index: int = 0) -> Sample:
    """A `Sample` from a builder record (read now), a `Sample`, or a bare `RasterSample`."""
    if isinstance(item, Sample):
        return item
    if isinstance(item, RasterSample):
        return Sample(id=f"sample-{index:08d}", raster=item)
    if isinstance(item, dict) and "paths" in item:
        return record_to_sample(item)
    raise TypeError(f"Item {index} is a {type(item).__name__}; expected a builder record, a Sample or a RasterSample.")


class SampleDataset(torch.utils.data.Dataset):
    """Map-style dataset over builder records (read lazily) or any sequence of `Sample`s, through a `SampleTransform`.

    A sample the transform rejects (too few valid pixels) is replaced by another one drawn at random, up to
    `max_redraws` times, and counted in `transform.skipped`; a run never stops on a legitimate sparse tile.

    Args:
        items: Records from the builders (`eurosat_folder`, `bigearthnet_folder`, `scene_tiles`, ...), or a sequence
            of `Sample`s (e.g. `BigEarthNetV2`).
        transform: The `SampleTransform`.
        max_redraws: How many other samples to try before giving up on an index.
        deterministic: Draw replacements (and any random crop) from a generator seeded by the index, not from torch's
            global one: index i is then the same sample at every evaluation, so evaluations compare, and reading
            the set does not move the training's random state. For evaluation sets.
    """

    def __init__(
        self, items: Sequence[Any], transform: SampleTransform, max_redraws: int = 50, deterministic: bool = False
    ) -> None:
        if len(items) == 0:
            raise ValueError("No samples: the dataset folder, scene list or split is empty.")
        self.items = items
        self.transform = transform
        self.max_redraws = max_redraws
        self.deterministic = deterministic

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed = index if self.deterministic else int(torch.randint(0, 2**62, (1,)).item())
        rng = random.Random(seed)
        tried = []
        for _ in range(self.max_redraws + 1):
            sample = as_sample(self.items[index], index)
            item = self.transform(sample, rng)
            if item is not None:
                return item
            tried.append(sample.id)
            logger.info("Skipping %s: fewer valid pixels than min_valid_fraction; drawing another sample.", sample.id)
            index = rng.randrange(len(self))
        raise ValueError(
            f"{len(tried)} samples in a row had fewer valid pixels than min_valid_fraction="
            f"{self.transform.min_valid_fraction} (e.g. {tried[:3]}): the data is almost all nodata. Check the "
            "nodata value, lower --min_valid_fraction, or choose another area."
        )


def stream_model_inputs(
    dataset: Any,
    transform: SampleTransform,
    to_samples: Callable[[dict[str, Any]], Iterable[Sample]],
    features: Any | None = None,
) -> Any:
    """Map a (streamed) Hugging Face dataset of raw rows to model inputs; one row may give 0, 1 or many samples.

    The mapping is a batched `datasets` map of one row at a time, so the result is still a `datasets` dataset:
    Trainer shards it across processes by file, and samples the transform rejects simply produce no output row.

    Args:
        dataset: A `datasets.IterableDataset` (or `Dataset`) of raw rows.
        transform: The `SampleTransform` (its counters count rejected samples in this process).
        to_samples: Decodes one raw row into samples (e.g. `decode_row` for the s2mae format, one grid cell into tiles
            for Major-TOM).
        features: The output `datasets.Features` (pixel_values, pixel_mask, and labels / sample_id /
            band_wavelengths / band_bandwidths if produced).

    Returns:
        The mapped dataset in torch format.
    """
    columns = list(dataset.features or {}) or None

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        output: dict[str, list[Any]] = {}
        for row in rows:
            for sample in to_samples(row):
                item = transform(sample)
                if item is None:
                    continue
                for key, value in item.items():
                    if isinstance(value, torch.Tensor):
                        value = value.item() if value.ndim == 0 else value.numpy()
                    output.setdefault(key, []).append(value)
        if not output:  # every sample of the batch was rejected: an empty batch with the right columns
            output = {name: [] for name in (features or {"pixel_values": None, "pixel_mask": None})}
        return output

    mapped = dataset.map(convert, batched=True, batch_size=1, remove_columns=columns, features=features)
    return mapped.with_format("torch")


def split_records(
    records: Sequence[dict[str, Any]], fraction: float, seed: int, by: str = "random"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A reproducible train / validation split of builder records.

    Args:
        records: Builder records.
        fraction: Share of records held out, in [0, 1); 0 holds out nothing.
        seed: Seed of the shuffle.
        by: "random"; "label" (stratified: each class split on its own, a class with >= 2 records gives at least one
            to validation); or "scene" (whole scenes held out, so validation tiles never neighbour training tiles;
            with a single scene this falls back to "random" with a warning). At least one record is held out when
            there are >= 2.

    Returns:
        (train records, validation records).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"The validation fraction must be in [0, 1), got {fraction}.")
    if by not in ("random", "label", "scene"):
        raise ValueError(f"by must be 'random', 'label' or 'scene', got {by!r}.")
    if fraction == 0:
        return list(records), []
    generator = torch.Generator().manual_seed(seed)
    if by == "scene":
        scenes = sorted({str(record.get("scene", record["id"])) for record in records})
        if len(scenes) < 2:
            logger.warning("Only one scene: the validation tiles neighbour training tiles of the same scene.")
            by = "random"
        else:
            order = [scenes[i] for i in torch.randperm(len(scenes), generator=generator).tolist()]
            held_out: set[str] = set()
            count = 0
            for scene in order[:-1]:
                if count >= fraction * len(records):
                    break
                held_out.add(scene)
                count += sum(str(record.get("scene", record["id"])) == scene for record in records)
            validation = [r for r in records if str(r.get("scene", r["id"])) in held_out]
            return [r for r in records if str(r.get("scene", r["id"])) not in held_out], validation
    if by == "label":
        _check_split_labels(records)
    pools: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        pools.setdefault(record["label"] if by == "label" else 0, []).append(record)
    train, validation = [], []
    for key in sorted(pools):
        pool = pools[key]
        order = torch.randperm(len(pool), generator=generator).tolist()
        count = max(1, int(round(len(pool) * fraction))) if len(pool) > 1 else 0
        validation += [pool[i] for i in order[:count]]
        train += [pool[i] for i in order[count:]]
    return train, validation


def _check_split_labels(records: Sequence[dict[str, Any]]) -> None:
    """Refuse a stratified split of records without one int class index `label` each (clear errors, not a
    TypeError from sorting mixed types or a KeyError)."""
    for record in records:
        label = record.get("label")
        if "label" not in record and "labels" in record:
            raise ValueError(
                f"Record {record.get('id')!r} is multi-label ('labels'); a split by='label' stratifies single-label "
                "records only: use by='random' or by='scene'."
            )
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            raise ValueError(
                f"Record {record.get('id')!r} has label {label!r} ({type(label).__name__}); a split by='label' needs "
                "every record's 'label' as a class index (int >= 0), not class names or a mix of both."
            )


def collate_pixels(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack per-sample dicts into a batch: pixel_values (B, C, H, W), pixel_mask (B, H, W), labels (B, ...), and
    band_wavelengths / band_bandwidths (B, C) in nm when the samples carry them (`SampleTransform(with_wavelengths=
    True)`), so that `model(**batch)` places the bands by wavelength.

    Raises:
        ValueError: an empty batch, or samples with different keys (e.g. some with band wavelengths, some without).
    """
    if not batch:
        raise ValueError("Cannot collate an empty batch.")
    keys = list(batch[0].keys())
    for index, item in enumerate(batch[1:], start=1):
        if set(item.keys()) != set(keys):
            differing = sorted(set(item.keys()) ^ set(keys))
            raise ValueError(
                f"Samples 0 and {index} of the batch carry different inputs ({differing} in only one of them): every "
                "sample of a batch needs the same keys. For band_wavelengths, make the samples with one "
                "SampleTransform(with_wavelengths=True, fallback_wavelengths=config.band_wavelengths)."
            )
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
    "SampleDataset",
    "as_sample",
    "collate_pixels",
    "split_records",
    "stream_model_inputs",
]
