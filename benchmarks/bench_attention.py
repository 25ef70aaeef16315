"""How close the attention kernels get to the machine's matmul peak at S2MAE's attention shapes.

S2MAE's pretraining step spends about a quarter of its FLOPs in attention (the decoder attends over all 1024 tokens
with 16 heads of 32 channels). This script times `scaled_dot_product_attention` alone, restricted to each SDPA kernel
that runs on the device, forward ("inference") and forward + backward ("training"), at the attention shapes of the
benchmark configs (`bench_model.benchmark_config`), and reports GFLOP/s and the share of the matmul peak measured in
the same run and dtype (`bench_model.matmul_peak`). If the best kernel runs well below the GEMM peak, the model's
share of peak is capped by it whatever the rest of the model does.

    python benchmarks/bench_attention.py --dtype bfloat16 --threads 2
    python benchmarks/bench_attention.py --device cuda --dtype bfloat16 --batch-size 64
"""

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from bench_model import DTYPES, SDPA_BACKENDS, benchmark_config, matmul_peak, synchronize  # noqa: E402

CPU_KERNELS = ("flash", "math")  # the SDPA kernels PyTorch has on CPU
CUDA_KERNELS = ("flash", "efficient", "cudnn", "math")
BACKWARD_FLOP_FACTOR = 2.5  # backward recomputes the scores and does two products per forward product


@dataclass(frozen=True)
class AttentionShape:
    """One attention call: (batch, heads, tokens, head_dim), named after where the model makes it."""

    name: str
    batch: int
    heads: int
    tokens: int
    head_dim: int

    def flops(self, training: bool) -> float:
        """Q K^T and P V: 2 products of 2 * N * N * d FLOPs per head (x 3.5 with the backward)."""
        forward = 4.0 * self.batch * self.heads * self.tokens**2 * self.head_dim
        return forward * (1.0 + BACKWARD_FLOP_FACTOR) if training else forward


def model_attention_shapes(size: str, batch_size: int, mask_ratio: float = 0.9) -> list[AttentionShape]:
    """The attention shapes of a preset: encoder without masking, encoder on the visible tokens, decoder."""
    config = benchmark_config(size, mask_ratio=mask_ratio)
    encoder_heads = config.num_attention_heads
    encoder_dim = config.hidden_size // encoder_heads
    decoder_heads = config.decoder_num_attention_heads
    decoder_dim = config.decoder_hidden_size // decoder_heads
    return [
        AttentionShape(f"{size} encoder, all tokens", batch_size, encoder_heads, config.num_tokens, encoder_dim),
        AttentionShape(
            f"{size} encoder, visible tokens", batch_size, encoder_heads, config.num_kept_tokens(), encoder_dim
        ),
        AttentionShape(f"{size} decoder", batch_size, decoder_heads, config.num_tokens, decoder_dim),
    ]


def time_call(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Best wall time of `repeats` calls, in seconds, after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def time_kernel(
    shape: AttentionShape, kernel: str, training: bool, device: torch.device, dtype: torch.dtype, repeats: int
) -> float | None:
    """Seconds per call of SDPA restricted to `kernel`, or None when the kernel refuses this shape / device."""
    size = (shape.batch, shape.heads, shape.tokens, shape.head_dim)
    query, key, value = (torch.randn(size, device=device, dtype=dtype, requires_grad=training) for _ in range(3))

    def call() -> None:
        with sdpa_kernel([SDPA_BACKENDS[kernel]]):
            output = F.scaled_dot_product_attention(query, key, value)
        if training:
            output.backward(torch.ones_like(output))
            for tensor in (query, key, value):
                tensor.grad = None

    try:
        if training:
            return time_call(call, device, repeats)
        with torch.inference_mode():
            return time_call(call, device, repeats)
    except RuntimeError:  # "No available kernel": this kernel does not take this shape, dtype or device
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["vit-s", "vit-b"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per kernel; the best is kept.")
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Print a markdown table (one row per shape, task and kernel) and return its rows."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    kernels = CUDA_KERNELS if device.type == "cuda" else CPU_KERNELS
    peak = matmul_peak(device, dtype)
    shapes = [shape for size in args.sizes for shape in model_attention_shapes(size, args.batch_size, args.mask_ratio)]
    rows = []
    for shape in shapes:
        for training in (False, True):
            for kernel in kernels:
                seconds = time_kernel(shape, kernel, training, device, dtype, args.repeats)
                achieved = shape.flops(training) / seconds if seconds else None
                rows.append(
                    {
                        "shape": shape.name,
                        "size": (shape.batch, shape.heads, shape.tokens, shape.head_dim),
                        "task": "training" if training else "inference",
                        "kernel": kernel,
                        "ms": None if seconds is None else seconds * 1e3,
                        "gflops": None if achieved is None else achieved / 1e9,
                    }
                )
    peak = max(peak, matmul_peak(device, dtype))  # a busy machine lowers one measurement: keep the better
    for row in rows:
        row["peak_share"] = None if row["gflops"] is None else row["gflops"] * 1e9 / peak
    print(
        f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} matmul_peak={peak / 1e9:.1f} GFLOP/s"
    )
    print("\n| attention | (B, heads, N, d) | task | kernel | ms | GFLOP/s | share of matmul peak |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for row in rows:
        if row["ms"] is None:
            print(f"| {row['shape']} | {row['size']} | {row['task']} | {row['kernel']} | - | - | not available |")
        else:
            print(
                f"| {row['shape']} | {row['size']} | {row['task']} | {row['kernel']} | {row['ms']:.1f} | "
                f"{row['gflops']:.0f} | {row['peak_share']:.0%} |"
            )
    return rows


if __name__ == "__main__":
    main()
