"""examples/run_pretrain.py end to end: the README's main command, resume after a kill, progressive pretraining."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForPreTraining

import modeling_s2mae  # noqa: F401  (registers the Auto classes)
from modeling_s2mae import S2MAEForPreTraining, S2MAEImageProcessor

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "examples" / "run_pretrain.py"
sys.path.insert(0, str(SCRIPT.parent))
import run_pretrain  # noqa: E402
from model_tester import tiny_overrides  # noqa: E402

TINY = tiny_overrides()


def run_script(args: list[str], **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_readme_main_command_on_the_sample_data(tmp_path):
    """`python examples/run_pretrain.py` with its defaults, cut to a handful of steps."""
    output = tmp_path / "sample-run"
    process = run_script(["--max_steps", "4", "--eval_steps", "4", "--save_steps", "4", "--output_dir", str(output)])
    log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, log[-4000:]

    model = AutoModelForPreTraining.from_pretrained(output)
    assert isinstance(model, S2MAEForPreTraining)
    assert model.config.image_size == 64 and model.config.band_names == list(modeling_s2mae.SENTINEL2_BANDS)
    processor = S2MAEImageProcessor.from_pretrained(output)
    assert processor.band_names == model.config.band_names and processor.size == 64
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["train_steps"] == 4
    assert 0 < metrics["eval_loss"] < 10
    card = (output / "README.md").read_text()
    assert "library_name: transformers" in card and "B8A" in card
    png = (output / "reconstructions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_resume_after_the_process_is_killed(tmp_path):
    output = tmp_path / "killed"
    args = [
        "--config_overrides", TINY, "--image_size", "32", "--max_steps", "300", "--save_steps", "10",
        "--save_total_limit", "3", "--eval_strategy", "no", "--output_dir", str(output),
        "--dataloader_num_workers", "0",
    ]  # fmt: skip
    process = run_script(args, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(output.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, process.stdout.read()[-4000:]
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # as soon as the first checkpoint is complete
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    saved = sorted(int(path.parent.name.split("-")[1]) for path in output.glob("checkpoint-*/trainer_state.json"))
    assert saved and saved[-1] < 300, "the run finished before it could be killed: raise max_steps"

    restarted = run_script(args)
    log, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, log[-4000:]
    assert f"Resuming from {output / f'checkpoint-{saved[-1]}'}" in log
    state = json.loads((output / "checkpoint-300" / "trainer_state.json").read_text())
    assert state["global_step"] == 300
    # the restarted run continued: its first logged step is after the checkpoint it resumed from
    steps = [entry["step"] for entry in state["log_history"]]
    assert steps == sorted(steps)
    assert AutoModelForPreTraining.from_pretrained(output).config.image_size == 32


def test_progressive_pretraining_at_a_new_image_size_carries_encoder_and_decoder(tmp_path):
    stage1 = tmp_path / "stage1"
    run_pretrain.main(
        ["--config_overrides", TINY, "--image_size", "32", "--max_steps", "2", "--eval_strategy", "no",
         "--save_strategy", "no", "--output_dir", str(stage1), "--report_to", "none"]
    )  # fmt: skip
    stage1_model = S2MAEForPreTraining.from_pretrained(stage1)

    adapted = run_pretrain.load_model(run_pretrain.ModelArguments(model_name_or_path=str(stage1), image_size=64))
    assert adapted.config.image_size == 64 and adapted.config.num_tokens == 4 * 64
    old, new = stage1_model.state_dict(), adapted.state_dict()
    assert old.keys() == new.keys()
    for key, value in old.items():
        if "position_embeddings.spatial" in key:
            assert new[key].shape == (1, 64, value.shape[-1])
        else:
            assert torch.equal(new[key], value), key  # encoder and decoder carried over unchanged

    stage2 = tmp_path / "stage2"
    run_pretrain.main(
        ["--model_name_or_path", str(stage1), "--image_size", "64", "--max_steps", "2", "--eval_strategy", "no",
         "--save_strategy", "no", "--output_dir", str(stage2), "--report_to", "none"]
    )  # fmt: skip
    assert AutoModelForPreTraining.from_pretrained(stage2).config.image_size == 64


def test_bad_data_folders_get_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no raster file"):
        run_pretrain.main(["--train_dir", str(empty), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="no such folder"):
        run_pretrain.main(["--train_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])


def test_two_cpu_ranks_stream_disjoint_shards_and_save(tmp_path):
    """torchrun with 2 processes (gloo): each rank reads its own parquet shards of a local Hub-style dataset."""
    from modeling_s2mae.data import eurosat_folder, write_hub_dataset

    dataset = tmp_path / "hub-dataset"
    write_hub_dataset(eurosat_folder(REPO_ROOT / "sample_data" / "eurosat_ms"), dataset, rows_per_shard=3)
    output = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        str(SCRIPT), "--dataset_name", str(dataset), "--max_steps", "3", "--per_device_train_batch_size", "1",
        "--record_sample_ids", "--config_overrides", TINY, "--image_size", "32", "--save_steps", "3",
        "--output_dir", str(output),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    seen = [set((output / f"sample_ids.rank{rank}").read_text().split()) for rank in (0, 1)]
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1], "two ranks trained on the same sample"
    all_ids = {record["id"] for record in eurosat_folder(REPO_ROOT / "sample_data" / "eurosat_ms")}
    assert seen[0] | seen[1] == all_ids, "3 steps x 2 ranks x batch 1 cover the 6 samples once"
    assert (output / "model.safetensors").exists() and (output / "checkpoint-3").is_dir()
    assert AutoModelForPreTraining.from_pretrained(output).config.image_size == 32


def test_a_json_arguments_file_is_checked_like_flags(tmp_path: Path) -> None:
    config = tmp_path / "args.json"
    config.write_text(json.dumps({"output_dir": str(tmp_path / "out")}))
    with pytest.raises(ValueError, match="Give a data source"):
        run_pretrain.parse_arguments([str(config)])
    config.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "train_dir": [str(tmp_path)]}))
    _, data_args, training_args, sample_run = run_pretrain.parse_arguments([str(config)])
    assert not sample_run and training_args.remove_unused_columns is False
