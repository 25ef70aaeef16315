"""The training-side data helpers: record splits, the random crop, the collator."""

import random

import torch

from modeling_s2mae.data.training import PixelCollator, split_records
from modeling_s2mae.data.transforms import random_resized_crop_window


def test_split_is_reproducible_disjoint_and_stratified():
    records = [{"id": f"{label}-{i}", "label": label} for label in (0, 1) for i in range(5)]
    train, validation = split_records(records, 0.2, seed=3, by="label")
    assert split_records(records, 0.2, seed=3, by="label") == (train, validation)
    assert {r["id"] for r in train} | {r["id"] for r in validation} == {r["id"] for r in records}
    assert not {r["id"] for r in train} & {r["id"] for r in validation}
    assert sorted(r["label"] for r in validation) == [0, 1]  # one of each class
    assert split_records(records, 0.0, seed=3) == (records, [])


def test_random_resized_crop_stays_inside_the_image():
    rng = random.Random(0)
    for _ in range(200):
        top, left, height, width = random_resized_crop_window(64, 48, rng)
        assert 0 <= top and 0 <= left and top + height <= 64 and left + width <= 48
        assert height * width >= 0.2 * 64 * 48 * 0.9  # scale 0.2-1, up to rounding


def test_collator_drops_sample_ids_and_records_them(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    batch = [{"pixel_values": torch.zeros(3, 4, 4), "sample_id": name} for name in ("a", "b")]
    collated = PixelCollator(str(tmp_path / "ids"))(batch)
    assert set(collated) == {"pixel_values"} and collated["pixel_values"].shape == (2, 3, 4, 4)
    assert (tmp_path / "ids.rank1").read_text().split() == ["a", "b"]
