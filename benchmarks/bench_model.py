"""Throughput and peak memory of S2MAE against Transformers' VideoMAE configured alike.

Two tasks, each measured for both models in the same process:
- "pretraining": one forward + backward of `S2MAEForPreTraining` / `VideoMAEForPreTraining` (masked MSE loss);
- "inference": a forward of the encoders `S2MAEModel` / `VideoMAEModel` under `torch.inference_mode`, no masking.

Configured alike: C bands cut into cubes of s bands x p x p pixels are, for VideoMAE, `num_frames = C / s` frames of
`num_channels = s` channels with `tubelet_size = 1` and the same `patch_size` and `image_size`. The same pixels, viewed
as (B, C / s, s, H, W), make the same L tokens of s * p * p values in the same order. Widths, depths, heads, MLP
widths, LayerNorm eps, mask ratio (the same number of hidden tokens per sample), loss target normalisation,
attention implementation and dtype are set equal. Both encoders end with a LayerNorm and no pooling.

VideoMAE needs its mask from the caller: it is drawn inside the timed step (uniform noise, argsort), the same work
S2MAE does inside its forward.

Modes (`--modes`): "eager"; "compiled" (`torch.compile` of each model, compile time spent in the untimed warm-up);
"onnx" (inference only: each encoder exported to ONNX and run with ONNX Runtime on the CPU, float32).

Work and machine: the FLOPs of one step of each model are counted once with `torch.utils.flop_counter` (forward, and
backward for pretraining; matrix products and attention, which is nearly all of a ViT's work), and the achieved
GFLOP/s is reported as a share of the machine's measured matrix-multiply peak in the same dtype (`matmul_peak`).
Inference also gives the scene-scale figure: km² of 10 m imagery embedded per second (a 128 px tile is 1.64 km²).

Rounds alternate the order of the two models (A B, B A, ...) so that machine noise hits both; the table gives the
median over rounds and the ratio of the medians (S2MAE / VideoMAE, > 1 means S2MAE is faster).

Peak memory is measured on one extra, untimed step: on CUDA, `torch.cuda.max_memory_allocated` minus what was
allocated before the step; on CPU, the highest running total of the tensor allocations and frees that PyTorch's
allocator made during the step, from `torch.profiler` memory events (the CPU analogue of the CUDA number). Both leave
out the parameters and count the gradients, which are set to None before every step. Buffers that oneDNN / MKL
allocate for themselves are not seen on CPU.

Run from the repository root (or with the package installed, `python benchmarks/bench_model.py`):

    python -m benchmarks.bench_model --sizes vit-s vit-b --device cpu --threads 2
    python -m benchmarks.bench_model --sizes vit-s --modes eager compiled onnx --dtype bfloat16
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEModel

from modeling_s2mae import S2MAE_PRESETS, S2MAEConfig, S2MAEForPreTraining, S2MAEModel

TASKS = ("pretraining", "inference")
MODES = ("eager", "compiled", "onnx")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MIB = 2**20
GROUND_SAMPLE_DISTANCE_M = 10.0  # Sentinel-2's finest bands
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


def videomae_config_like(config: S2MAEConfig) -> VideoMAEConfig:
    """The VideoMAE config that cuts the same pixels into the same tokens with the same transformer sizes.

    Args:
        config: An S2MAE config (its `_attn_implementation` is copied).

    Returns:
        A `VideoMAEConfig` with `num_channels = s`, `num_frames = C / s`, `tubelet_size = 1`.
    """
    return VideoMAEConfig(
        image_size=config.image_size,
        patch_size=config.patch_size,
        num_channels=config.spectral_patch_size,
        num_frames=config.num_spectral_groups,
        tubelet_size=1,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        qv_bias=config.qkv_bias,
        use_mean_pooling=False,  # a final LayerNorm on every token, as S2MAEModel without its pooler
        decoder_hidden_size=config.decoder_hidden_size,
        decoder_num_hidden_layers=config.decoder_num_hidden_layers,
        decoder_num_attention_heads=config.decoder_num_attention_heads,
        decoder_intermediate_size=config.decoder_intermediate_size,
        norm_pix_loss=config.norm_pix_loss,
        attn_implementation=config._attn_implementation,
    )


def benchmark_config(
    size: str, mask_ratio: float = 0.9, norm_pix_loss: bool = False, attn_implementation: str = "sdpa", **overrides
) -> S2MAEConfig:
    """The S2MAE config of a preset size (12 bands at 128 px, cubes 3 x 8 x 8 unless overridden)."""
    return S2MAEConfig.from_preset(
        size,
        mask_ratio=mask_ratio,
        norm_pix_loss=norm_pix_loss,
        attn_implementation=attn_implementation,
        **overrides,
    )


def videomae_mask(batch_size: int, num_tokens: int, num_keep: int, device: torch.device) -> torch.Tensor:
    """(B, L) bool, True for the L - K hidden tokens: a uniformly random set, the same count in every sample."""
    ids_keep = torch.rand(batch_size, num_tokens, device=device).argsort(dim=1)[:, :num_keep]
    mask = torch.ones(batch_size, num_tokens, dtype=torch.bool, device=device)
    return mask.scatter_(1, ids_keep, False)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@dataclass
class ModelUnderTest:
    """One model ready to run: `step()` does one timed unit of work on a fixed batch."""

    name: str
    model: torch.nn.Module
    step: Callable[[], None]
    encoder_parameters: int
    num_tokens: int
    values_per_token: int
    masked_per_sample: int | None
    flops_per_step: int = 0


def build_models(
    task: str,
    config: S2MAEConfig,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    mode: str = "eager",
    workdir: str | None = None,
) -> tuple[ModelUnderTest, ModelUnderTest]:
    """Build S2MAE and VideoMAE for `task` on the same random batch; returns (s2mae, videomae).

    The token count, values per token and hidden tokens per sample are read from one untimed forward of each model,
    and the FLOPs of one step are counted (in eager mode; the same work in every mode).

    Args:
        mode: "eager", "compiled" (steps call `torch.compile`d models) or "onnx" (inference on CPU only: steps run
            ONNX Runtime sessions of the exported encoders).
        workdir: Folder for the ONNX files (a temporary one by default).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if mode == "onnx" and (task != "inference" or device.type != "cpu" or dtype != torch.float32):
        raise ValueError("mode 'onnx' measures float32 inference on the CPU (ONNX Runtime's CPU provider).")
    vconfig = videomae_config_like(config)
    torch.manual_seed(0)
    size = config.image_size
    pixel_values = torch.rand(batch_size, config.num_channels, size, size, device=device, dtype=dtype)
    video = pixel_values.view(batch_size, vconfig.num_frames, vconfig.num_channels, size, size)  # same memory
    num_tokens, num_keep = config.num_tokens, config.num_kept_tokens()

    if task == "pretraining":
        ours = S2MAEForPreTraining(config).to(device=device, dtype=dtype).train()
        theirs = VideoMAEForPreTraining(vconfig).to(device=device, dtype=dtype).train()

        ours_run, theirs_run = maybe_compile(ours, mode), maybe_compile(theirs, mode)

        def ours_step() -> None:
            ours.zero_grad(set_to_none=True)
            ours_run(pixel_values).loss.backward()

        def theirs_step() -> None:
            theirs.zero_grad(set_to_none=True)
            mask = videomae_mask(batch_size, num_tokens, num_keep, device)
            theirs_run(video, bool_masked_pos=mask).loss.backward()

        with torch.no_grad():
            ours_out = ours(pixel_values)
            theirs_out = theirs(video, bool_masked_pos=videomae_mask(batch_size, num_tokens, num_keep, device))
        # (tokens, values per token, hidden tokens per sample); VideoMAE predicts the hidden tokens only
        ours_shape = ours_out.logits.shape[1], ours_out.logits.shape[2], int(ours_out.mask[0].sum(dtype=torch.int64))
        theirs_shape = theirs.videomae.embeddings.num_patches, theirs_out.logits.shape[2], theirs_out.logits.shape[1]
        ours_encoder, theirs_encoder = ours.s2mae, theirs.videomae
    else:
        ours = S2MAEModel(config, add_pooling_layer=False).to(device=device, dtype=dtype).eval()
        theirs = VideoMAEModel(vconfig).to(device=device, dtype=dtype).eval()

        if mode == "onnx":
            ours_step, theirs_step = onnx_steps(ours, theirs, pixel_values, video, workdir)
        else:
            ours_run, theirs_run = maybe_compile(ours, mode), maybe_compile(theirs, mode)

            def ours_step() -> None:
                with torch.inference_mode():
                    ours_run(pixel_values)

            def theirs_step() -> None:
                with torch.inference_mode():
                    theirs_run(video)

        with torch.inference_mode():
            ours_tokens = ours(pixel_values).last_hidden_state.shape[1]
            theirs_tokens = theirs(video).last_hidden_state.shape[1]
        patch_values = ours.embeddings.cube_embeddings.projection.weight[0].numel()  # s * p * p per output feature
        theirs_values = theirs.embeddings.patch_embeddings.projection.weight[0].numel()  # C * t * p * p
        ours_shape, theirs_shape = (ours_tokens, patch_values, None), (theirs_tokens, theirs_values, None)
        ours_encoder, theirs_encoder = ours, theirs

    if task == "pretraining":

        def ours_eager() -> None:
            ours.zero_grad(set_to_none=True)
            ours(pixel_values).loss.backward()

        def theirs_eager() -> None:
            theirs.zero_grad(set_to_none=True)
            theirs(video, bool_masked_pos=videomae_mask(batch_size, num_tokens, num_keep, device)).loss.backward()
    else:

        def ours_eager() -> None:
            with torch.inference_mode():
                ours(pixel_values)

        def theirs_eager() -> None:
            with torch.inference_mode():
                theirs(video)

    return (
        ModelUnderTest("S2MAE", ours, ours_step, count_parameters(ours_encoder), *ours_shape, count_flops(ours_eager)),
        ModelUnderTest(
            "VideoMAE", theirs, theirs_step, count_parameters(theirs_encoder), *theirs_shape, count_flops(theirs_eager)
        ),
    )


def maybe_compile(model: torch.nn.Module, mode: str) -> Callable:
    """`torch.compile(model)` in mode "compiled" (compiled at the first, untimed, call), else the model itself."""
    return torch.compile(model) if mode == "compiled" else model


def onnx_steps(
    ours: torch.nn.Module,
    theirs: torch.nn.Module,
    pixel_values: torch.Tensor,
    video: torch.Tensor,
    workdir: str | None = None,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Export both encoders to ONNX (dynamic batch) and return steps running them with ONNX Runtime (CPU).

    S2MAE is exported with `modeling_s2mae.export.export_onnx` (checked against PyTorch at 1e-4 on export),
    VideoMAE with `torch.onnx.export`; both sessions use `torch.get_num_threads()` intra-op threads.
    """
    import onnxruntime

    from modeling_s2mae.export import export_onnx

    folder = Path(workdir or tempfile.mkdtemp(prefix="bench_onnx_"))
    ours_path = export_onnx(ours, folder / "s2mae.onnx", pixel_mask=False).path
    theirs_path = folder / "videomae.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            theirs.eval(), (video,), str(theirs_path), input_names=["pixel_values"], dynamic_shapes=({0: batch},)
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    sessions = [
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for path in (ours_path, theirs_path)
    ]
    ours_feed = {"pixel_values": pixel_values.numpy()}
    theirs_feed = {"pixel_values": video.numpy()}

    def ours_step() -> None:
        sessions[0].run(None, ours_feed)

    def theirs_step() -> None:
        sessions[1].run(None, theirs_feed)

    return ours_step, theirs_step


def _register_cpu_attention_flops() -> None:
    """Count the CPU flash-attention kernels that SDPA uses on CPU: torch 2.13's flop counter knows only the CUDA
    ones, so attention (a sixth of a ViT-B step at 1024 tokens) would be missed. Same formulas as the CUDA kernels."""
    aten = torch.ops.aten
    forward = aten._scaled_dot_product_flash_attention_for_cpu
    backward = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward.default not in flop_counter.flop_registry and forward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward)
        def cpu_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward.default not in flop_counter.flop_registry and backward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward)
        def cpu_attention_backward_flop(
            grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
        ) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_attention_flops()


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step` (forward, and backward where the step runs it), by `torch.utils.flop_counter`."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype,
    size: int | None = None,
    repeats: int = 10,
    threads: int | None = None,
) -> float:
    """The machine's matrix-multiply throughput in FLOP/s: best of `repeats` (size x size) @ (size x size) products.

    This is the practical peak the models' GEMMs can reach with PyTorch's own kernels (MKL / oneDNN on CPU, cuBLAS
    on GPU) in `dtype`, not the vendor's datasheet number. On a shared machine, take the best of several calls
    (`run` measures it before and after the models and keeps the higher). `size` defaults to 2048 on CPU and 8192
    on CUDA (a 2048 product takes tens of microseconds on a data-centre GPU, too short to reach its peak).
    """
    if size is None:
        size = 8192 if device.type == "cuda" else 2048
    if threads is not None:
        torch.set_num_threads(threads)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def km2_per_sample(config: S2MAEConfig, ground_sample_distance_m: float = GROUND_SAMPLE_DISTANCE_M) -> float:
    """Ground area of one input tile in km² (128 px at 10 m: 1.6384 km²)."""
    return (config.image_size * ground_sample_distance_m / 1000.0) ** 2


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds taken by `steps` calls of `step`."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def peak_memory_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak tensor memory of one call of `step` above what was allocated before it (see the module docstring)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    running, peak = 0, 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        if event.device_type() in (torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.MKLDNN):
            running += event.nbytes()
            peak = max(peak, running)
    return peak


@dataclass
class TaskResult:
    """Measurements of one task at one size; throughputs are medians over rounds, in samples per second."""

    size: str
    task: str
    batch_size: int
    s2mae_samples_per_s: float
    videomae_samples_per_s: float
    ratio: float
    round_ratios: list[float]
    s2mae_peak_mib: float
    videomae_peak_mib: float
    num_tokens: tuple[int, int]
    values_per_token: tuple[int, int]
    masked_per_sample: tuple[int | None, int | None]
    encoder_parameters: tuple[int, int]
    s2mae_rounds: list[float] = field(default_factory=list)
    videomae_rounds: list[float] = field(default_factory=list)
    mode: str = "eager"
    dtype: str = "float32"
    gflops_per_sample: tuple[float, float] = (0.0, 0.0)
    achieved_gflops: tuple[float, float] = (0.0, 0.0)
    peak_gflops: float | None = None
    peak_share: tuple[float | None, float | None] = (None, None)
    s2mae_km2_per_s: float | None = None


def measure(
    task: str,
    config: S2MAEConfig,
    batch_size: int,
    steps: int = 1,
    warmup: int = 1,
    rounds: int = 3,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    size: str = "custom",
    mode: str = "eager",
    peak_flops: float | None = None,
    memory: bool = True,
) -> TaskResult:
    """Measure S2MAE and VideoMAE (configured alike from `config`) on `task`, alternating them over rounds.

    Args:
        task: "pretraining" (forward + backward) or "inference" (encoder forward, no masking).
        config: The S2MAE config; VideoMAE's is derived with `videomae_config_like`.
        batch_size: Samples per step.
        steps: Steps per model per round.
        warmup: Untimed steps per model before the first round.
        rounds: Timed rounds; the order of the two models alternates between rounds.
        device, dtype: Where and in which dtype both models run.
        size: Label for the result (e.g. the preset name).
        mode: "eager", "compiled" or "onnx" (see `build_models`); warm-up is at least 1 step when compiled.
        peak_flops: The machine's matmul FLOP/s in `dtype` (`matmul_peak`), for the share of peak; None leaves it out.
        memory: Also measure peak memory (one extra step; not in mode "onnx", whose memory PyTorch does not see).
    """
    if steps < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"Need steps >= 1, rounds >= 1 and warmup >= 0, got {steps}, {rounds}, {warmup}.")
    device = torch.device(device)
    pair = build_models(task, config, batch_size, device, dtype, mode)
    if mode == "compiled":
        warmup = max(warmup, 1)
    for model in pair:
        for _ in range(warmup):
            model.step()
        synchronize(device)
    throughput: dict[str, list[float]] = {model.name: [] for model in pair}
    for round_index in range(rounds):
        for model in pair if round_index % 2 == 0 else pair[::-1]:
            throughput[model.name].append(batch_size * steps / time_steps(model.step, steps, device))
    measure_memory = memory and mode != "onnx"
    peaks = [peak_memory_bytes(model.step, device) / MIB if measure_memory else 0.0 for model in pair]
    ours, theirs = (throughput[model.name] for model in pair)
    speeds = (statistics.median(ours), statistics.median(theirs))
    per_sample = tuple(model.flops_per_step / batch_size for model in pair)
    achieved = tuple(flops * speed for flops, speed in zip(per_sample, speeds))
    return TaskResult(
        size=size,
        task=task,
        batch_size=batch_size,
        s2mae_samples_per_s=statistics.median(ours),
        videomae_samples_per_s=statistics.median(theirs),
        ratio=statistics.median(ours) / statistics.median(theirs),
        round_ratios=[a / b for a, b in zip(ours, theirs)],
        s2mae_peak_mib=peaks[0],
        videomae_peak_mib=peaks[1],
        num_tokens=(pair[0].num_tokens, pair[1].num_tokens),
        values_per_token=(pair[0].values_per_token, pair[1].values_per_token),
        masked_per_sample=(pair[0].masked_per_sample, pair[1].masked_per_sample),
        encoder_parameters=(pair[0].encoder_parameters, pair[1].encoder_parameters),
        s2mae_rounds=ours,
        videomae_rounds=theirs,
        mode=mode,
        dtype=str(dtype).removeprefix("torch."),
        gflops_per_sample=tuple(flops / 1e9 for flops in per_sample),
        achieved_gflops=tuple(value / 1e9 for value in achieved),
        peak_gflops=None if peak_flops is None else peak_flops / 1e9,
        peak_share=tuple(None if peak_flops is None else value / peak_flops for value in achieved),
        s2mae_km2_per_s=speeds[0] * km2_per_sample(config) if task == "inference" else None,
    )


def profile_task(
    task: str, config: S2MAEConfig, batch_size: int, device: torch.device, dtype: torch.dtype, row_limit: int
) -> str:
    """Top operators by self time of one eager step of each model (after one warm-up step), as text tables."""
    tables = []
    for model in build_models(task, config, batch_size, device, dtype):
        model.step()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            model.step()
            synchronize(device)
        sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=row_limit)
        tables.append(f"### {model.name} {task}\n\n```\n{table}\n```")
    return "\n\n".join(tables)


def markdown_table(results: list[TaskResult], device: torch.device) -> str:
    """One row per (size, task, mode): throughputs, ratio, work, achieved GFLOP/s and share of peak, memory."""
    memory = "peak MiB (CUDA max allocated)" if device.type == "cuda" else "peak MiB (CPU tensor allocations)"
    lines = [
        "| size | task | mode | dtype | batch | S2MAE samples/s | VideoMAE samples/s | ratio | ratio range over rounds "
        "| GFLOP/sample S2MAE / VideoMAE | GFLOP/s S2MAE / VideoMAE | share of matmul peak S2MAE / VideoMAE "
        f"| S2MAE km²/s (10 m) | S2MAE {memory} | VideoMAE {memory} |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        share = (
            "-"
            if result.peak_share[0] is None
            else f"{100 * result.peak_share[0]:.0f} % / {100 * result.peak_share[1]:.0f} %"
        )
        area = "-" if result.s2mae_km2_per_s is None else f"{result.s2mae_km2_per_s:.3g}"
        memory_cells = (
            f"{result.s2mae_peak_mib:.0f} | {result.videomae_peak_mib:.0f}" if result.s2mae_peak_mib else "- | -"
        )
        lines.append(
            f"| {result.size} | {result.task} | {result.mode} | {result.dtype} | {result.batch_size} | "
            f"{result.s2mae_samples_per_s:.3g} | {result.videomae_samples_per_s:.3g} | {result.ratio:.2f} | "
            f"{min(result.round_ratios):.2f}-{max(result.round_ratios):.2f} | "
            f"{result.gflops_per_sample[0]:.1f} / {result.gflops_per_sample[1]:.1f} | "
            f"{result.achieved_gflops[0]:.0f} / {result.achieved_gflops[1]:.0f} | {share} | {area} | {memory_cells} |"
        )
    return "\n".join(lines)


# Datasheet dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, matched against the CUDA device name (first
# match in this order). Pass --peak-tflops for a GPU not listed.
GPU_BF16_DENSE_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "GH200": 989.0,
    "H200": 989.0,
    "H100": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "L4": 121.0,
    "A10": 125.0,
}


def datasheet_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a known CUDA GPU by its name, or None."""
    for name, tflops in GPU_BF16_DENSE_TFLOPS.items():
        if name in device_name:
            return tflops
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["vit-s", "vit-b"], choices=sorted(S2MAE_PRESETS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="Samples per step (default: 4 on CPU, 64 on CUDA)."
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="Timed steps per model per round (default: 1 on CPU, 20 on CUDA)."
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="Untimed steps per model first (default: 1 on CPU, 5 on CUDA)."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds; the median is reported.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    parser.add_argument("--norm-pix-loss", action="store_true", help="Per-token normalised target for both models.")
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["eager"],
        choices=MODES,
        help="eager, compiled (torch.compile), onnx (ONNX Runtime, CPU float32 inference only).",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="Datasheet dense peak of the device in --dtype, for model FLOPs utilisation (default: known GPUs' bf16).",
    )
    parser.add_argument("--no-memory", action="store_true", help="Skip the peak-memory step.")
    parser.add_argument(
        "--sdpa-backend",
        default=None,
        choices=sorted(SDPA_BACKENDS),
        help="Restrict SDPA to one kernel for both models (e.g. flash); default: PyTorch's choice.",
    )
    parser.add_argument("--json", default=None, help="Also write the results and the environment to this JSON file.")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="Also print the top N ops of one step of each model."
    )
    args = parser.parse_args(argv)
    on_cuda = args.device == "cuda"
    for name, cpu_default, cuda_default in (("batch_size", 4, 64), ("steps", 1, 20), ("warmup", 1, 5)):
        if getattr(args, name) is None:
            setattr(args, name, cuda_default if on_cuda else cpu_default)
    return args


def main(argv: list[str] | None = None) -> list[TaskResult]:
    args = parse_args(argv)
    if args.sdpa_backend is None:
        return run(args)
    with sdpa_kernel([SDPA_BACKENDS[args.sdpa_backend]]):
        return run(args)


def run(args: argparse.Namespace) -> list[TaskResult]:
    """Measure every size, task and mode of `args` (from `parse_args`), print the table, write the JSON."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    environment = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "attn_implementation": args.attn_implementation,
        "sdpa_backend": args.sdpa_backend,
        "mask_ratio": args.mask_ratio,
        "norm_pix_loss": args.norm_pix_loss,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
    }
    peak = matmul_peak(device, dtype)
    environment["matmul_peak_gflops"] = round(peak / 1e9, 1)
    datasheet = args.peak_tflops
    if datasheet is None and device.type == "cuda" and dtype == torch.bfloat16:
        datasheet = datasheet_bf16_tflops(environment["device"])
    environment["datasheet_peak_tflops"] = datasheet
    environment["modes"] = args.modes
    print(" ".join(f"{key}={value}" for key, value in environment.items()), flush=True)
    results = []
    for size in args.sizes:
        config = benchmark_config(size, args.mask_ratio, args.norm_pix_loss, args.attn_implementation)
        for task in args.tasks:
            for mode in args.modes:
                if mode == "onnx" and (task != "inference" or device.type != "cpu" or dtype != torch.float32):
                    print(f"{size} {task} onnx: skipped (ONNX Runtime is measured for float32 CPU inference)")
                    continue
                result = measure(
                    task,
                    config,
                    args.batch_size,
                    args.steps,
                    args.warmup,
                    args.rounds,
                    device,
                    dtype,
                    size=size,
                    mode=mode,
                    peak_flops=peak,
                    memory=not args.no_memory,
                )
                print(
                    f"{size} {task} {mode}: S2MAE {result.s2mae_rounds} VideoMAE {result.videomae_rounds} "
                    "samples/s per round",
                    flush=True,
                )
                if datasheet:
                    mfu = [value / (datasheet * 1e3) for value in result.achieved_gflops]
                    print(
                        f"{size} {task} {mode}: model FLOPs utilisation against the {datasheet:g} TFLOP/s datasheet "
                        f"peak: S2MAE {100 * mfu[0]:.1f} %, VideoMAE {100 * mfu[1]:.1f} %",
                        flush=True,
                    )
                results.append(result)
            if args.profile:
                print(profile_task(task, config, args.batch_size, device, dtype, args.profile), flush=True)
    # a busy machine lowers a single measurement: keep the best of the one before and the one after the models
    peak = max(peak, matmul_peak(device, dtype))
    environment["matmul_peak_gflops"] = round(peak / 1e9, 1)
    for result in results:
        result.peak_gflops = peak / 1e9
        result.peak_share = tuple(value * 1e9 / peak for value in result.achieved_gflops)
    print(f"matmul peak (best before / after the models): {peak / 1e9:.1f} GFLOP/s")
    print()
    print(markdown_table(results, device))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"environment": environment, "results": [asdict(result) for result in results]}, file, indent=2)
    return results


if __name__ == "__main__":
    main()
