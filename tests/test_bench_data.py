"""benchmarks/bench_data.py: every measurement runs on a few sample files and reports a positive rate."""

import sys
from pathlib import Path

import pytest
import torch

from modeling_s2mae import S2MAEConfig, S2MAEImageProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_data  # noqa: E402

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def processor() -> S2MAEImageProcessor:
    return S2MAEImageProcessor(size=32)


@pytest.mark.parametrize("source", [0, 1, 2], ids=["eurosat", "scene_tiles", "bigearthnet"])
def test_geotiff_floor_and_loader(source: int, processor: S2MAEImageProcessor) -> None:
    records = list(bench_data.sample_sources(tile_size=64).values())[source]
    few = list(records)[:2]
    assert bench_data.measure_plain_read(few, samples=1).per_second > 0
    rate = bench_data.measure_loader(few, processor, samples=1, batch_size=2)
    assert rate.samples == len(few) and rate.per_second > 0


def test_scene_tile_floor_reads_the_tile_window_in_each_file(sample_data: Path) -> None:
    record = bench_data.sample_sources(tile_size=96)["scene tiles (13 band files, 10/20/60 m, 96 px)"][0]
    windows = {Path(path).stem[-3:]: window for path, window in bench_data.read_jobs(record)}
    assert (windows["B02"].width, windows["B05"].width, windows["B01"].width) == (96, 48, 16)  # 10, 20, 60 m


def test_parquet_floor_and_loader(tmp_path: Path, processor: S2MAEImageProcessor) -> None:
    records = next(iter(bench_data.sample_sources(tile_size=64).values()))  # EuroSAT: a RecordSet with classes
    folder = bench_data.write_parquet(records, tmp_path / "hub", num_shards=2)
    assert bench_data.measure_parquet_read(folder, samples=1).samples == len(records)
    rate = bench_data.measure_parquet_loader(folder, processor, samples=1, batch_size=4)
    assert rate.samples == len(records) and rate.per_second > 0


def test_training_step_rate() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = S2MAEConfig(**TINY, image_size=32, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                             decoder_num_attention_heads=2, decoder_intermediate_size=64)  # fmt: skip
        rate = bench_data.measure_training(config, batch_size=2, steps=1, warmup=0)
    finally:
        torch.set_num_threads(threads)
    assert rate.samples == 2 and rate.per_second > 0
