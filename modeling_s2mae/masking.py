"""Masking of cube tokens for S2MAE pretraining.

Three strategies, for the paper's masking ablation:
- "random": every sample hides a uniformly random subset of all L = G * h * w cubes (the default);
- "tube": the same spatial locations are hidden in every spectral group;
- "spectral": whole spectral groups are hidden.

Each strategy is expressed as per-token noise: the tokens with the smallest noise are kept. A tube or a spectral
group shares one noise value, so the same stable sort and gather serve all three.
"""

from typing import Literal

import torch

MaskingStrategy = Literal["random", "tube", "spectral"]
"""The masking strategies; `S2MAEConfig.masking_strategy` is typed with it, so the config rejects any other."""


def num_kept_tokens(strategy: MaskingStrategy, mask_ratio: float, num_groups: int, num_spatial: int) -> int:
    """How many of the `num_groups * num_spatial` tokens stay visible; the one check of a mask ratio.

    The config calls it when it is built, and the model on every masked forward (a per-call `mask_ratio` or an
    interpolated grid can keep no token where the config's own grid does).

    Args:
        strategy: "random", "tube" or "spectral".
        mask_ratio: Fraction of tokens to hide, in [0, 1).
        num_groups, num_spatial: G spectral groups and h * w spatial positions.

    Returns:
        K, the number of visible tokens (>= 1).

    Raises:
        ValueError: when `mask_ratio` is outside [0, 1) or hides every token under `strategy`.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
    if strategy == "tube":
        kept = num_groups * int(num_spatial * (1 - mask_ratio))
    elif strategy == "spectral":
        kept = num_spatial * int(num_groups * (1 - mask_ratio))
    else:
        kept = int(num_groups * num_spatial * (1 - mask_ratio))
    if kept < 1:
        raise ValueError(
            f"mask_ratio {mask_ratio} with masking_strategy {strategy!r} keeps no token ({num_groups} spectral "
            f"groups, {num_spatial} spatial patches): lower mask_ratio or use another masking strategy."
        )
    return kept


def noise_shape(strategy: str, batch_size: int, num_groups: int, num_spatial: int) -> tuple[int, int]:
    """The shape of the masking noise a strategy draws: (B, G * h * w) for "random", (B, h * w) for "tube", (B, G)
    for "spectral".

    Raises:
        ValueError: an unknown strategy.
    """
    shapes = {
        "random": (batch_size, num_groups * num_spatial),
        "tube": (batch_size, num_spatial),
        "spectral": (batch_size, num_groups),
    }
    if strategy not in shapes:
        raise ValueError(f"Unknown masking strategy {strategy!r}; choose one of {sorted(shapes)}.")
    return shapes[strategy]


def token_noise(
    strategy: str,
    batch_size: int,
    num_groups: int,
    num_spatial: int,
    noise: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Per-token noise for a masking strategy.

    Args:
        strategy: "random", "tube" or "spectral".
        batch_size, num_groups, num_spatial: B, G and h * w.
        noise: Optional values in the strategy's own shape, for deterministic masking: (B, G * h * w) for
            "random", (B, h * w) for "tube", (B, G) for "spectral". Drawn uniformly when None.
        device: Where to draw the noise.

    Returns:
        Noise of shape (B, G * h * w), in token order (spectral-group major).
    """
    expected = noise_shape(strategy, batch_size, num_groups, num_spatial)
    if noise is None:
        noise = torch.rand(expected, device=device)
    elif tuple(noise.shape) != expected:
        raise ValueError(
            f"noise for {strategy!r} masking must have shape {expected} (batch, "
            f"{ {'random': 'tokens', 'tube': 'spatial positions', 'spectral': 'spectral groups'}[strategy] }), "
            f"got {tuple(noise.shape)}."
        )
    if strategy == "tube":
        noise = noise[:, None, :].expand(batch_size, num_groups, num_spatial)
    elif strategy == "spectral":
        noise = noise[:, :, None].expand(batch_size, num_groups, num_spatial)
    return noise.reshape(batch_size, num_groups * num_spatial)


def mask_tokens(
    tokens: torch.Tensor, noise: torch.Tensor, num_keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the `num_keep` tokens of lowest noise in every sample.

    Args:
        tokens: Shape (B, L, D).
        noise: Shape (B, L).
        num_keep: K, tokens kept per sample.

    Returns:
        kept: (B, K, D), the visible tokens in order of increasing noise.
        mask: (B, L) float, 0 for kept and 1 for hidden tokens, in token order.
        ids_restore: (B, L) long, the permutation that puts [kept, hidden] back into token order.
        ids_keep: (B, K) long, the token indices of `kept`.
    """
    batch_size, num_tokens, dim = tokens.shape
    # ties (tube / spectral noise) keep token order: a stable sort; the ONNX exporter has no stable sort, but ONNX
    # TopK, which a plain sort becomes, is specified to put the lower index first among equal values
    noise = noise.to(tokens.device)
    if torch.onnx.is_in_onnx_export():
        ids_shuffle = torch.argsort(noise, dim=1)  # (B, L)
    else:
        ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    # the inverse permutation by one scatter rather than a second sort
    positions = torch.arange(num_tokens, device=tokens.device).expand(batch_size, num_tokens)
    ids_restore = torch.empty_like(ids_shuffle).scatter_(1, ids_shuffle, positions)  # (B, L)
    ids_keep = ids_shuffle[:, :num_keep]  # (B, K)
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(batch_size, num_keep, dim))
    mask = (ids_restore >= num_keep).to(tokens.dtype)  # a token is hidden when its rank is K or more
    return kept, mask, ids_restore, ids_keep


__all__ = ["MaskingStrategy", "mask_tokens", "noise_shape", "num_kept_tokens", "token_noise"]
