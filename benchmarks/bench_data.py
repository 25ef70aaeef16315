"""How fast the data pipeline feeds S2MAE pretraining, compared with a plain read and with the training step.

For each kind of shipped sample data (`sample_data/`: EuroSAT-MS tiles, tiles of the per-band Sentinel-2 scene cut by
`scene_tiles`, BigEarthNet per-band patches), stored as GeoTIFF files and as the s2mae parquet Hub format (written to
a temporary folder), it measures samples per second through:

- floor: a plain read of the same data and nothing else (GeoTIFF: `rasterio.open` + `read` of every band file, the
  window of a scene tile at each file's native resolution; parquet: pyarrow reads the `image` column and rasterio
  decodes each GeoTIFF);
- loader: the library's pipeline into batches (GeoTIFF: `SampleDataset` (`load_record`, resampling onto one
  grid, `SampleTransform`: RandomResizedCrop + flip + `S2MAEImageProcessor`) in a `DataLoader` with `collate_pixels`; parquet:
  `load_spectral_dataset(streaming=True)` + `to_model_inputs` in a `DataLoader` with `collate_pixels`), as in
  `examples/run_pretrain.py`;

and the pretraining step rate of a ViT-S S2MAE (forward + backward + AdamW step, random inputs) on this machine. It
prints a markdown table and loader samples/s / training samples/s: above 1 the loader is not the bottleneck (with
the same number of cores; workers and training share them).

Loader times include the DataLoader's start (workers, first batch); the samples are the source's records repeated to
reach `--samples`.

    python benchmarks/bench_data.py                      # about 1-2 minutes on 2 CPU cores
    python benchmarks/bench_data.py --num_workers 2 --image_size 96 --train_batch_size 8
"""

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import rasterio
import torch
from rasterio.io import MemoryFile
from rasterio.windows import Window, from_bounds

from modeling_s2mae import S2MAEConfig, S2MAEForPreTraining, S2MAEImageProcessor
from modeling_s2mae.data import RecordSet, bigearthnet_folder, eurosat_folder, scene_tiles
from modeling_s2mae.data.training import SampleDataset, collate_pixels
from modeling_s2mae.data.transforms import SampleTransform

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO_ROOT / "sample_data"


@dataclass
class Rate:
    """`samples` processed in `seconds`."""

    samples: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def sample_sources(tile_size: int) -> dict[str, RecordSet]:
    """Builder records of the shipped sample data: {source name: records}."""
    return {
        "EuroSAT-MS tiles (13 bands, 64 px, 1 file)": eurosat_folder(SAMPLE_DATA / "eurosat_ms"),
        f"scene tiles (13 band files, 10/20/60 m, {tile_size} px)": scene_tiles(
            [SAMPLE_DATA / "sentinel2_scene"], tile_size
        ),
        "BigEarthNet patches (12 band files, 10/20/60 m, 120 px)": bigearthnet_folder(SAMPLE_DATA / "bigearthnet"),
    }


def _repeat(records: Sequence[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    return list(records) * max(1, math.ceil(samples / len(records)))


def read_jobs(record: dict[str, Any]) -> list[tuple[str, Window | None]]:
    """What a plain read of one record opens: each file, and for a scene tile its window in that file's own grid."""
    if record.get("window") is None:
        return [(path, None) for path in record["paths"]]
    datasets = [rasterio.open(path) for path in record["paths"]]
    try:
        finest = min(datasets, key=lambda dataset: abs(dataset.res[0] * dataset.res[1]))
        window, grid = record["window"], finest.transform  # the tile is in pixels of the finest file's grid
        left, top = grid.c + window["col_off"] * grid.a, grid.f + window["row_off"] * grid.e
        right, bottom = left + window["width"] * grid.a, top + window["height"] * grid.e
        bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        return [
            (path, from_bounds(*bounds, transform=dataset.transform).round_offsets().round_lengths())
            for path, dataset in zip(record["paths"], datasets)
        ]
    finally:
        for dataset in datasets:
            dataset.close()


def measure_plain_read(records: Sequence[dict[str, Any]], samples: int) -> Rate:
    """Floor for GeoTIFF files: open and read every band file of each record (its window for a scene tile)."""
    jobs = [read_jobs(record) for record in records]
    jobs = _repeat(jobs, samples)
    start = time.perf_counter()
    for record_jobs in jobs:
        for path, window in record_jobs:
            with rasterio.open(path) as dataset:
                dataset.read(window=window)
    return Rate(len(jobs), time.perf_counter() - start)


def _time_loader(loader: torch.utils.data.DataLoader) -> Rate:
    count, start = 0, time.perf_counter()
    for batch in loader:
        count += batch["pixel_values"].shape[0]
    return Rate(count, time.perf_counter() - start)


def measure_loader(
    records: Sequence[dict[str, Any]],
    processor: S2MAEImageProcessor,
    samples: int,
    batch_size: int = 8,
    num_workers: int = 0,
    augment: bool = True,
) -> Rate:
    """Reader + transform + collator: `SampleDataset` in a `DataLoader` with `collate_pixels`."""
    dataset = SampleDataset(_repeat(records, samples), SampleTransform(processor, augment=augment))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, collate_fn=collate_pixels
    )
    return _time_loader(loader)


def write_parquet(records: RecordSet, folder: Path, num_shards: int = 1) -> Path:
    """Write a builder's records in the s2mae Hub format (parquet shards of GeoTIFF bytes, labels kept) into `folder`."""
    from modeling_s2mae.data.hub_format import write_hub_dataset

    rows_per_shard = max(1, math.ceil(len(records) / max(1, num_shards)))
    write_hub_dataset(records, folder, rows_per_shard=rows_per_shard, label_names=records.classes or None)
    return folder


def measure_parquet_read(folder: Path, samples: int) -> Rate:
    """Floor for parquet: read the `image` column with pyarrow and decode each GeoTIFF with rasterio."""
    shards = sorted((folder / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
    passes = max(1, math.ceil(samples / rows))
    count, start = 0, time.perf_counter()
    for _ in range(passes):
        for shard in shards:
            for batch in pq.ParquetFile(shard).iter_batches(columns=["image"]):
                for data in batch.column("image").to_pylist():
                    with MemoryFile(data) as memory_file, memory_file.open() as dataset:
                        dataset.read()
                    count += 1
    return Rate(count, time.perf_counter() - start)


def measure_parquet_loader(
    folder: Path, processor: S2MAEImageProcessor, samples: int, batch_size: int = 8, num_workers: int = 0
) -> Rate:
    """The streamed Hub format: `load_spectral_dataset` + `to_model_inputs` in a `DataLoader` with `collate_pixels`."""
    from modeling_s2mae.data.hub_format import load_spectral_dataset, to_model_inputs

    shards = sorted((folder / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(shard).metadata.num_rows for shard in shards)
    start = time.perf_counter()  # loading the dataset is part of a streamed run's cost
    dataset = load_spectral_dataset(str(folder), split="train", streaming=True)
    dataset = to_model_inputs(dataset.repeat(max(1, math.ceil(samples / rows))), processor, with_labels=False)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_pixels
    )
    rate = _time_loader(loader)
    return Rate(rate.samples, time.perf_counter() - start)


def measure_training(
    config: S2MAEConfig, batch_size: int = 4, steps: int = 2, warmup: int = 1, device: str = "cpu"
) -> Rate:
    """Pretraining step rate: forward + backward + AdamW step of `S2MAEForPreTraining` on random inputs (float32)."""
    torch.manual_seed(0)
    model = S2MAEForPreTraining(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    pixel_values = torch.rand(batch_size, config.num_channels, config.image_size, config.image_size, device=device)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step() -> None:
        loss = model(pixel_values).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return Rate(batch_size * steps, time.perf_counter() - start)


def _machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU core(s), torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s); load average (1, 5, 15 min): {load}"
    )


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure every source in both formats and the training step; print the table; return its rows."""
    config = S2MAEConfig.from_preset("vit-s", image_size=args.image_size)
    processor = S2MAEImageProcessor.from_model_config(config)
    log(f"Machine before: {_machine()}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        for index, (name, records) in enumerate(sample_sources(args.image_size).items()):
            folder = write_parquet(records, Path(tmp) / f"source{index}", num_shards=max(1, args.num_workers))
            rows.append(
                {
                    "source": name,
                    "format": f"GeoTIFF ({len(records)} samples)",
                    "floor": measure_plain_read(records, args.samples),
                    "loader": measure_loader(records, processor, args.samples, args.batch_size, args.num_workers),
                }
            )
            rows.append(
                {
                    "source": name,
                    "format": "parquet, streamed",
                    "floor": measure_parquet_read(folder, args.samples),
                    "loader": measure_parquet_loader(
                        folder, processor, args.samples, args.batch_size, args.num_workers
                    ),
                }
            )
            log(f"measured {name}")
    training = measure_training(config, args.train_batch_size, args.train_steps, device=args.device)
    log(f"Machine after: {_machine()}\n")

    log(
        f"Loader: {args.image_size} px, 12 bands, batch {args.batch_size}, {args.num_workers} worker(s), "
        f"RandomResizedCrop + flip on GeoTIFF records, about {args.samples} samples per row. Training: ViT-S S2MAE "
        f"pretraining at {args.image_size} px on {args.device}, batch {args.train_batch_size}, {args.train_steps} timed steps, "
        f"{training.per_second:.2f} samples/s.\n"
    )
    log(
        "| source | format | floor: plain read (samples/s) | loader (samples/s) | loader / floor | loader / training |"
    )
    log("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        floor, loader = row["floor"].per_second, row["loader"].per_second
        row["training"] = training
        log(
            f"| {row['source']} | {row['format']} | {floor:.1f} | {loader:.1f} | {loader / floor:.2f} | "
            f"{loader / training.per_second:.1f} |"
        )
    log(
        f"| ViT-S pretraining step (forward + backward + AdamW) | random tensors | | {training.per_second:.2f} | | 1.0 |"
    )
    slowest = min(rows, key=lambda row: row["loader"].per_second)
    ratio = slowest["loader"].per_second / training.per_second
    verdict = "the loader is not the bottleneck" if ratio > 1 else "the loader IS the bottleneck"
    log(
        f"\nSlowest loader ({slowest['source']}, {slowest['format']}) / training = {ratio:.1f}: {verdict} on this "
        "machine."
    )
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=128, help="Model input size (and scene tile size).")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes.")
    parser.add_argument("--batch_size", type=int, default=8, help="Loader batch size.")
    parser.add_argument("--samples", type=int, default=96, help="Samples per measurement (records repeated).")
    parser.add_argument("--train_batch_size", type=int, default=4, help="Batch of the training-step measurement.")
    parser.add_argument("--train_steps", type=int, default=2, help="Timed training steps (after one warmup step).")
    parser.add_argument("--device", default="cpu", help="Device of the training-step measurement, e.g. cuda.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
