"""The probe demonstration (benchmarks/probe_pretraining.sh) runs end to end: pretraining, the k-NN probe callback,
and the probe tables with pretrained, random-init and raw-statistics rows. A short run on the sample crop of the
T33UUU scene; the 10-minute demonstration itself is run by hand (benchmarks/README_probe.md)."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_probe_demonstration_script_runs_on_the_sample_scene(tmp_path: Path):
    scene = REPO / "sample_data" / "sentinel2_scene"
    labels = REPO / "sample_data" / "sentinel2_scene_labels"
    env = {
        **os.environ,
        "SCENE": str(scene),
        "LABELS": str(labels / "T33UUU_osm_landuse_10m.tif"),
        "CLASSES": str(labels / "T33UUU_osm_landuse_classes.json"),
        "RESULTS": str(tmp_path / "results"),
        "CHECKPOINTS": str(tmp_path / "checkpoints"),
        "MAX_STEPS": "20",
        "PROBE_TILES": "16",
        "OMP_NUM_THREADS": "2",
    }
    subprocess.run(
        ["bash", str(REPO / "benchmarks" / "probe_pretraining.sh"), str(tmp_path / "unused"), "small_data"],
        env=env,
        check=True,
        cwd=REPO,
        timeout=900,
    )
    log = (tmp_path / "results" / "pretrain_small_data.log").read_text()
    knn = [float(value) for value in re.findall(r"'probe_knn_accuracy': '?([0-9.]+)", log)]
    assert len(knn) >= 2, "the k-NN probe callback logs at the start and every MAX_STEPS / 10 steps"
    assert all(0.0 <= value <= 1.0 for value in knn)
    assert "small_data: 20 steps of pretraining took" in log
    report = json.loads((tmp_path / "results" / "probe_small_data_tile16.json").read_text())
    representations = {row["representation"] for row in report["results"]}
    assert {"pretrained", "random_init", "raw_band_statistics"} <= representations
    assert report["settings"]["random_init_seeds"] == [0, 1, 2]
    table = (tmp_path / "results" / "probe_small_data_tile16.txt").read_text()
    assert "pretrained" in table and "random init (seeds 0, 1, 2)" in table and "raw band statistics" in table
    assert (tmp_path / "checkpoints" / "probe-small_data" / "model.safetensors").is_file()
