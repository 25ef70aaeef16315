"""The model benchmark runs, and it compares S2MAE with a VideoMAE configured alike."""

import contextlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_s2mae import S2MAEConfig


@pytest.fixture(scope="module")
def bench_model():
    """benchmarks/bench_model.py as a module (benchmarks/ is not a package), run on one thread.

    One thread keeps the tiny steps fast on a busy machine, where two OpenMP threads wait on each other.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with benchmark_script("bench_model") as module:
        yield module
    torch.set_num_threads(threads)


@contextlib.contextmanager
def benchmark_script(name: str):
    """benchmarks/<name>.py loaded as a module (benchmarks/ is a folder of scripts, not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def tiny_config() -> S2MAEConfig:
    """6 bands at 16 px, cubes 3 x 8 x 8: 8 tokens of 192 values, half of them hidden."""
    return S2MAEConfig(
        image_size=16,
        num_channels=6,
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=192,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
        mask_ratio=0.5,
        attn_implementation="sdpa",
    )


@pytest.mark.parametrize("task", ["pretraining", "inference"])
def test_measure_returns_positive_numbers_for_models_configured_alike(bench_model, task):
    config = tiny_config()
    result = bench_model.measure(task, config, batch_size=2, steps=1, warmup=0, rounds=1)

    assert result.s2mae_samples_per_s > 0 and result.videomae_samples_per_s > 0
    assert result.ratio == pytest.approx(result.s2mae_samples_per_s / result.videomae_samples_per_s)
    assert result.s2mae_peak_mib > 0 and result.videomae_peak_mib > 0
    assert result.num_tokens == (config.num_tokens, config.num_tokens) == (8, 8)
    assert result.values_per_token == (config.cube_dim, config.cube_dim) == (192, 192)
    if task == "pretraining":
        hidden = config.num_tokens - config.num_kept_tokens()
        assert result.masked_per_sample == (hidden, hidden)
    ours, theirs = result.encoder_parameters
    assert abs(ours - theirs) / theirs < 0.01


def test_videomae_config_matches_the_transformer_sizes_and_attention(bench_model):
    config = bench_model.benchmark_config("vit-b")
    videomae = bench_model.videomae_config_like(config)
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "layer_norm_eps"):
        assert getattr(videomae, name) == getattr(config, name), name
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        assert getattr(videomae, f"decoder_{name}") == getattr(config, f"decoder_{name}"), name
    assert videomae.num_frames * videomae.num_channels == config.num_channels == 12
    assert videomae.tubelet_size == 1 and videomae.patch_size == config.patch_size == 8
    assert videomae.norm_pix_loss == config.norm_pix_loss
    assert videomae._attn_implementation == config._attn_implementation == "sdpa"
    assert config.num_tokens - config.num_kept_tokens() == 1024 - int(1024 * 0.1)


def test_flops_peak_share_and_scene_area_are_reported(bench_model):
    config = tiny_config()
    peak = bench_model.matmul_peak(torch.device("cpu"), torch.float32, size=256, repeats=2)
    assert peak > 1e8  # any machine this runs on multiplies faster than 0.1 GFLOP/s
    result = bench_model.measure("inference", config, batch_size=2, warmup=0, rounds=1, peak_flops=peak, memory=False)
    ours, theirs = result.gflops_per_sample
    # the encoders do the same matrix work: 8 tokens through 2 blocks of width 96 (plus the embedding)
    blocks = 2 * (2 * 8 * 96 * 96 * 4 + 2 * 2 * 8 * 96 * 192 + 2 * 2 * 8 * 8 * 96)
    embedding = 2 * 8 * 192 * 96
    assert ours == pytest.approx((blocks + embedding) / 1e9, rel=0.01)
    assert theirs == pytest.approx(ours, rel=0.01)
    assert result.achieved_gflops[0] == pytest.approx(ours * result.s2mae_samples_per_s)
    assert result.peak_share[0] == pytest.approx(result.achieved_gflops[0] * 1e9 / peak)
    assert result.s2mae_km2_per_s == pytest.approx(result.s2mae_samples_per_s * (16 * 10 / 1000) ** 2)
    table = bench_model.markdown_table([result], torch.device("cpu"))
    assert "| inference | eager | float32 | 2 |" in table and "share of matmul peak" in table


def test_datasheet_peaks_match_gpu_names(bench_model):
    assert bench_model.datasheet_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench_model.datasheet_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench_model.datasheet_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench_model.datasheet_bf16_tflops("Some Other GPU") is None


def test_onnx_mode_is_refused_outside_float32_cpu_inference(bench_model):
    with pytest.raises(ValueError, match="float32 inference on the CPU"):
        bench_model.measure("pretraining", tiny_config(), batch_size=2, rounds=1, mode="onnx")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "mode"), [("inference", "onnx"), ("inference", "compiled"), ("pretraining", "compiled")]
)
def test_onnx_and_compiled_modes_run(bench_model, task, mode):
    result = bench_model.measure(task, tiny_config(), batch_size=2, warmup=0, rounds=1, mode=mode, memory=False)
    assert result.mode == mode and result.s2mae_samples_per_s > 0 and result.videomae_samples_per_s > 0


def test_command_line_writes_the_environment_and_results(bench_model, monkeypatch, tmp_path):
    """The options gpu.sh passes (bf16, SDPA restricted to the flash kernel, a datasheet peak) on a tiny config."""
    monkeypatch.setattr(bench_model, "benchmark_config", lambda *args, **kwargs: tiny_config())
    output = tmp_path / "results.json"
    argv = ["--sizes", "vit-s", "--tasks", "inference", "--device", "cpu", "--dtype", "bfloat16"]
    argv += ["--sdpa-backend", "flash", "--peak-tflops", "1", "--batch-size", "2", "--rounds", "1", "--warmup", "0"]
    results = bench_model.main([*argv, "--no-memory", "--json", str(output)])
    saved = json.loads(output.read_text())
    environment = saved["environment"]
    assert environment["dtype"] == "bfloat16" and environment["sdpa_backend"] == "flash"
    assert environment["matmul_peak_gflops"] > 0 and environment["datasheet_peak_tflops"] == 1
    assert len(results) == len(saved["results"]) == 1 and saved["results"][0]["mode"] == "eager"
    assert saved["results"][0]["dtype"] == "bfloat16"


def test_gpu_script_is_valid_bash_and_lists_its_runs():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    listed = subprocess.run(["bash", str(script), "--dry-run"], check=True, capture_output=True, text=True).stdout
    lines = listed.strip().splitlines()
    assert len(lines) == 6  # the checks; ViT-B and ViT-L, pretraining and inference; the attention kernels
    assert lines[0] == "timeout 75 python3 benchmarks/gpu_checks.py --device cuda"  # the device has python3 only
    assert "bench_attention.py --device cuda --dtype bfloat16 --sizes vit-b vit-l --batch-size 64" in lines[-1]
    for line in lines[1:5]:
        assert "--device cuda --dtype bfloat16" in line and "--sdpa-backend flash" in line
        assert "--modes eager compiled" in line


def test_attention_benchmark_times_every_cpu_kernel_at_the_model_shapes(bench_model, capsys):
    with benchmark_script("bench_attention") as bench_attention:
        shapes = bench_attention.model_attention_shapes("vit-s", batch_size=1, mask_ratio=0.9)
        assert [(s.heads, s.tokens, s.head_dim) for s in shapes] == [(6, 1024, 64), (6, 102, 64), (16, 1024, 32)]
        decoder = shapes[2]
        assert decoder.flops(training=False) == 4 * 16 * 1024**2 * 32
        assert decoder.flops(training=True) == 3.5 * decoder.flops(training=False)
        argv = ["--sizes", "vit-s", "--batch-size", "1", "--repeats", "1", "--dtype", "float32", "--threads", "1"]
        rows = bench_attention.main(argv)
    assert len(rows) == 3 * 2 * 2  # shapes x (inference, training) x (flash, math)
    assert {row["kernel"] for row in rows} == {"flash", "math"}
    assert all(row["ms"] > 0 and 0 < row["peak_share"] for row in rows)
    assert "| vit-s decoder | (1, 16, 1024, 32) | training | flash |" in capsys.readouterr().out


def test_gpu_checks_pass_on_cpu_and_fail_on_a_wrong_attention_kernel(monkeypatch, capsys):
    with benchmark_script("gpu_checks") as gpu_checks:
        argv = ["--device", "cpu", "--image-size", "16", "--checks", "attention", "bf16", "export"]
        results = gpu_checks.main(argv)
        names = [name for name, _, _ in results]
        assert "attention sdpa[flash] vs eager" in names and "torch.export encoder, batch 3" in names
        assert all(passed for _, passed, _ in results), results
        assert "PASS  bf16 autocast pretraining loss" in capsys.readouterr().out

        sdpa = torch.nn.functional.scaled_dot_product_attention

        def shifted_sdpa(*args, **kwargs):  # an attention kernel that is off by 1e-2
            return sdpa(*args, **kwargs) + 1e-2

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", shifted_sdpa)
        results = gpu_checks.main(["--device", "cpu", "--image-size", "16", "--checks", "attention"])
    assert results and not any(passed for _, passed, _ in results)
    assert "FAIL  attention sdpa[flash] vs eager" in capsys.readouterr().out
