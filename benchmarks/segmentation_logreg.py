"""Per-pixel multinomial logistic regression on the raw bands: the baseline of `README_segmentation.md`.

It takes exactly the tiles and the spatial split that `examples/run_segmentation.py` builds from the same arguments
(its `parse_arguments` + `build_data`), standardises the 12 model bands per band on the training pixels, fits a
softmax regression (full-batch L-BFGS, torch) on a random subset of labelled training pixels, and scores every
labelled pixel of the evaluation tiles with the script's metrics (mIoU, per-class IoU, overall accuracy).

    python benchmarks/segmentation_logreg.py <the run_segmentation.py data arguments> [--max_pixels 200000]
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from run_segmentation import build_data, parse_arguments  # noqa: E402

from modeling_s2mae.data.builders import load_record  # noqa: E402
from modeling_s2mae.data.segmentation import IGNORE_INDEX, map_labels, read_label_window  # noqa: E402
from modeling_s2mae.image_processing_s2mae import SENTINEL2_13_BANDS  # noqa: E402
from modeling_s2mae.metrics import confusion_matrix, segmentation_scores  # noqa: E402

BANDS = [name for name in SENTINEL2_13_BANDS if name != "B10"]


def pixels(records: list, class_values: list[int], ignore_values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 12) raw band values and (N,) class ids of the labelled pixels of the records."""
    features, targets = [], []
    for record in records:
        raster = load_record(record)
        order = [raster.band_names.index(name) for name in BANDS]
        array = raster.array[order].reshape(len(BANDS), -1).T.astype(np.float32)
        values = read_label_window(record["label_path"], record.get("window"), record.get("label_band", 1))
        labels = map_labels(values, class_values, ignore_values).reshape(-1)
        keep = labels != IGNORE_INDEX
        features.append(array[keep])
        targets.append(labels[keep])
    return np.concatenate(features), np.concatenate(targets)


def main(argv: list[str]) -> dict:
    max_pixels = 200_000
    if "--max_pixels" in argv:
        index = argv.index("--max_pixels")
        max_pixels = int(argv[index + 1])
        argv = argv[:index] + argv[index + 2 :]
    _, data_args, training_args = parse_arguments(argv)
    train, evaluation, class_values, names = build_data(data_args, training_args.seed)
    x_train, y_train = pixels(train, class_values, data_args.ignore_values)
    x_eval, y_eval = pixels(evaluation, class_values, data_args.ignore_values)
    rng = np.random.default_rng(training_args.seed)
    if len(x_train) > max_pixels:
        keep = rng.choice(len(x_train), max_pixels, replace=False)
        x_train, y_train = x_train[keep], y_train[keep]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    inputs = torch.from_numpy((x_train - mean) / std)
    targets = torch.from_numpy(y_train)
    torch.manual_seed(training_args.seed)
    model = torch.nn.Linear(len(BANDS), len(names))
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets) + 1e-4 * model.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = model(torch.from_numpy((x_eval - mean) / std)).argmax(1).numpy()
    scores = segmentation_scores(confusion_matrix(predictions, y_eval, len(names)))
    result = {
        "mean_iou": scores["mean_iou"],
        "overall_accuracy": scores["overall_accuracy"],
        "per_class_iou": dict(zip(names, [float(v) for v in scores["per_class_iou"]])),
        "train_pixels": len(x_train),
        "eval_pixels": len(x_eval),
        "num_train_tiles": len(train),
        "num_eval_tiles": len(evaluation),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
