"""Correctness of the S2MAE models on an accelerator, before any benchmark: run it first on a GPU machine.

Each check builds a ViT-S-wide model at a small image size on `--device`, runs it, and compares it with a reference;
the script prints one line per check and exits 1 when any fails, so that `gpu.sh` does not time a broken setup.

- `attention`: SDPA against eager attention (float32; every SDPA kernel the device has, one at a time).
- `bf16`: bf16 autocast pretraining and classification losses are float32, finite and within 5 % of float32, and
  the gradients are finite.
- `compile`: `torch.compile(fullgraph=True)` (inductor) matches eager in the pretraining loss and gradients.
- `export`: `torch.export` of the encoder (dynamic batch) matches eager.

    python benchmarks/gpu_checks.py --device cuda          # on the GPU machine (gpu.sh runs it first)
    python benchmarks/gpu_checks.py --device cpu           # the same checks on CPU (float32 / bf16 autocast)
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from bench_model import SDPA_BACKENDS, benchmark_config  # noqa: E402

from modeling_s2mae import S2MAEConfig, S2MAEForImageClassification, S2MAEForPreTraining, S2MAEModel  # noqa: E402
from modeling_s2mae.export import export_program  # noqa: E402

CPU_KERNELS = ("flash", "math")
CUDA_KERNELS = ("flash", "efficient", "cudnn", "math")
CHECKS = ("attention", "bf16", "compile", "export")


def check_config(size: str, image_size: int, attn_implementation: str = "sdpa") -> S2MAEConfig:
    """A preset's widths at `image_size` px (12 bands, cubes 3 x 8 x 8), two labels for the classifier."""
    return benchmark_config(
        size, mask_ratio=0.75, attn_implementation=attn_implementation, image_size=image_size, num_labels=3
    )


def batch(config: S2MAEConfig, device: torch.device, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pixels (B, C, H, W) in [0, 1] and masking noise (B, L), from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(batch_size, config.num_channels, config.image_size, config.image_size, generator=generator)
    noise = torch.rand(batch_size, config.num_tokens, generator=generator)
    return pixels.to(device), noise.to(device)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_attention(size: str, image_size: int, device: torch.device) -> list[tuple[str, bool, str]]:
    """SDPA (each kernel that runs here) against eager attention: encoder outputs within 1e-4 (float32)."""
    torch.manual_seed(0)
    eager = S2MAEModel(check_config(size, image_size, "eager")).to(device).eval()
    sdpa = S2MAEModel(check_config(size, image_size, "sdpa")).to(device).eval()
    sdpa.load_state_dict(eager.state_dict())
    pixels, _ = batch(eager.config, device)
    with torch.no_grad():
        reference = eager(pixels).last_hidden_state
        results = []
        for kernel in CUDA_KERNELS if device.type == "cuda" else CPU_KERNELS:
            try:
                with sdpa_kernel([SDPA_BACKENDS[kernel]]):
                    output = sdpa(pixels).last_hidden_state
            except RuntimeError as error:  # this kernel does not take float32 / this shape on this device
                results.append((f"attention sdpa[{kernel}] vs eager", True, f"not available ({str(error)[:60]})"))
                continue
            difference = max_difference(output, reference)
            results.append((f"attention sdpa[{kernel}] vs eager", difference <= 1e-4, f"max diff {difference:.2e}"))
    return results


def check_bf16(size: str, image_size: int, device: torch.device) -> list[tuple[str, bool, str]]:
    """bf16 autocast losses: float32, finite, within 5 % of the float32 loss; finite gradients."""
    torch.manual_seed(0)
    pretraining = S2MAEForPreTraining(check_config(size, image_size)).to(device)
    classifier = S2MAEForImageClassification(check_config(size, image_size)).to(device)
    pixels, noise = batch(pretraining.config, device)
    labels = torch.tensor([0, 2], device=device)
    with torch.no_grad():
        references = (pretraining(pixels, noise=noise).loss, classifier(pixels, labels=labels).loss)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        losses = (pretraining(pixels, noise=noise).loss, classifier(pixels, labels=labels).loss)
    results = []
    for name, loss, reference in zip(("pretraining", "classification"), losses, references):
        relative = abs(loss.item() - reference.item()) / abs(reference.item())
        passed = loss.dtype == torch.float32 and bool(torch.isfinite(loss)) and relative <= 0.05
        results.append((f"bf16 autocast {name} loss", passed, f"{loss.item():.5f} vs fp32 {reference.item():.5f}"))
    losses[0].backward()
    finite = all(torch.isfinite(p.grad).all() for p in pretraining.parameters() if p.grad is not None)
    results.append(("bf16 autocast pretraining gradients finite", finite, ""))
    return results


def loss_and_gradients(model: torch.nn.Module, run: Callable[[torch.nn.Module], torch.Tensor], module) -> tuple:
    model.zero_grad(set_to_none=True)
    loss = run(module)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def check_compile(size: str, image_size: int, device: torch.device) -> list[tuple[str, bool, str]]:
    """`torch.compile(fullgraph=True)` (inductor): pretraining loss within 1e-5, gradients within 1e-3."""
    torch.manual_seed(0)
    model = S2MAEForPreTraining(check_config(size, image_size)).to(device).train()
    pixels, noise = batch(model.config, device)

    def run(module: torch.nn.Module) -> torch.Tensor:
        return module(pixels, noise=noise).loss

    torch._dynamo.reset()
    loss, gradients = loss_and_gradients(model, run, torch.compile(model, fullgraph=True))
    eager_loss, eager_gradients = loss_and_gradients(model, run, model)
    loss_difference = abs(loss.item() - eager_loss.item()) / max(1.0, abs(eager_loss.item()))  # relative above 1
    gradient_difference = max(max_difference(gradients[name], eager_gradients[name]) for name in gradients)
    return [
        ("compile fullgraph pretraining loss", loss_difference <= 1e-5, f"diff {loss_difference:.2e}"),
        ("compile fullgraph gradients", gradient_difference <= 1e-3, f"max diff {gradient_difference:.2e}"),
    ]


def check_export(size: str, image_size: int, device: torch.device) -> list[tuple[str, bool, str]]:
    """`torch.export` of the encoder with a dynamic batch: outputs within 1e-4 of eager at two batch sizes."""
    torch.manual_seed(0)
    model = S2MAEModel(check_config(size, image_size)).to(device).eval()
    program = export_program(model, pixel_mask=False)
    results = []
    for batch_size in (1, 3):
        pixels, _ = batch(model.config, device, batch_size)
        with torch.no_grad():
            expected = model(pixels).last_hidden_state
            exported = program.module()(pixel_values=pixels)
        output = exported[0] if isinstance(exported, (tuple, list)) else exported
        output = getattr(output, "last_hidden_state", output)
        difference = max_difference(output, expected)
        results.append((f"torch.export encoder, batch {batch_size}", difference <= 1e-4, f"max diff {difference:.2e}"))
    return results


CHECK_FUNCTIONS = {"attention": check_attention, "bf16": check_bf16, "compile": check_compile, "export": check_export}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="vit-s", help="Preset whose widths the checked models use.")
    parser.add_argument("--image-size", type=int, default=32, help="Pixels per side (a multiple of 8).")
    parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=CHECKS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[tuple[str, bool, str]]:
    """Run the checks, print one line each, return (name, passed, detail) for every check."""
    args = parse_args(argv)
    device = torch.device(args.device)
    results = []
    for name in args.checks:
        try:
            results.extend(CHECK_FUNCTIONS[name](args.size, args.image_size, device))
        except Exception as error:  # a crash is a failed check, reported with the others
            results.append((name, False, f"raised {type(error).__name__}: {str(error)[:200]}"))
    for name, passed, detail in results:
        print(f"{'PASS' if passed else 'FAIL'}  {name}  {detail}")
    return results


if __name__ == "__main__":
    sys.exit(0 if all(passed for _, passed, _ in main()) else 1)
