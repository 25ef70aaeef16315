"""A functional, plain-torch implementation of the ORIGINAL checkpoint architecture, for parity checks.

Written from the "Original checkpoint layout" section of docs/s2mae-method.md, not from any released code.
Every function reads the original key names directly from a state_dict (no `nn.Module` of this package), so a
wrong key mapping in the converter shows up as a parity failure instead of being mirrored.

Shapes use: B batch, C bands, H x W pixels, s spectral patch, p spatial patch, G = C / s spectral groups,
h = H / p, w = W / p, L = G * h * w tokens (index g * (h * w) + row * w + col), K visible tokens, D width.

Original architecture, as documented:
- cube embedding: Conv3d(1 -> D, kernel = stride = (s, p, p)) over (B, 1, C, H, W);
- pretraining position tables: `pos_embed_spatial` (1, h*w, D) + `pos_embed_temporal` (1, G, D), token (g, i)
  gets spatial[i] + temporal[g]; fine-tuned classifiers hold a joint `pos_embed` (1, L, D) instead;
- random masking: argsort of per-token noise, keep the `int(L * (1 - mask_ratio))` tokens of lowest noise;
- pre-norm blocks (LayerNorm eps 1e-6, separate q / k / v / proj linears, exact GELU MLP), final `norm`;
- decoder: `decoder_embed`, `mask_token`, `decoder_pos_embed_spatial` / `_temporal`, `decoder_blocks`,
  `decoder_norm`, `decoder_pred` (-> s * p * p values per token);
- classifier: blocks, mean over tokens 1..L-1 (the first cube token is left out), `norm`, `head`.
"""

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReferenceSettings:
    """Hyperparameters the original weights do not carry (or that the reference checks them against).

    Args:
        num_heads: Encoder attention heads.
        spectral_patch_size: s, bands per cube.
        patch_size: p, pixels per cube side.
        decoder_num_heads: Decoder attention heads (pretraining checkpoints only).
        layer_norm_eps: Epsilon of every LayerNorm.
    """

    num_heads: int
    spectral_patch_size: int
    patch_size: int
    decoder_num_heads: int = 16
    layer_norm_eps: float = 1e-6


@dataclass
class ReferenceEncoding:
    """Encoder result.

    Args:
        latent: (B, L, D) without masking, (B, K, D) with it; after the final `norm`.
        mask: (B, L), 1 for hidden tokens; None without masking.
        ids_restore: (B, L); None without masking.
    """

    latent: torch.Tensor
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None


def cube_embed(state_dict: StateDict, pixel_values: torch.Tensor, settings: ReferenceSettings) -> torch.Tensor:
    """(B, C, H, W) -> (B, G * h * w, D) with `patch_embed.proj`."""
    weight, bias = state_dict["patch_embed.proj.weight"], state_dict["patch_embed.proj.bias"]
    kernel = (settings.spectral_patch_size, settings.patch_size, settings.patch_size)
    if tuple(weight.shape[1:]) != (1, *kernel):
        raise ValueError(f"patch_embed.proj.weight has shape {tuple(weight.shape)}, expected (D, 1, {kernel}).")
    cubes = F.conv3d(pixel_values.unsqueeze(1), weight, bias, stride=kernel)  # (B, D, G, h, w)
    return cubes.flatten(2).transpose(1, 2)  # (B, G * h * w, D)


def separable_position_table(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """spatial (1, h*w, D), temporal (1, G, D) -> (1, G * h*w, D); token g * (h*w) + i gets spatial[i] + temporal[g]."""
    num_spatial, num_groups = spatial.shape[1], temporal.shape[1]
    return spatial.repeat(1, num_groups, 1) + temporal.repeat_interleave(num_spatial, dim=1)


def random_masking(
    tokens: torch.Tensor, noise: torch.Tensor, mask_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the `int(L * (1 - mask_ratio))` tokens of lowest noise.

    Args:
        tokens: (B, L, D).
        noise: (B, L).
        mask_ratio: Fraction hidden.

    Returns:
        kept (B, K, D) in order of increasing noise, mask (B, L) with 1 for hidden tokens, ids_restore (B, L).
    """
    batch_size, num_tokens, dim = tokens.shape
    num_keep = int(num_tokens * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :num_keep]
    kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).repeat(1, 1, dim))
    mask = torch.ones(batch_size, num_tokens, dtype=tokens.dtype)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return kept, mask, ids_restore


def layer_norm(state_dict: StateDict, prefix: str, hidden: torch.Tensor, eps: float) -> torch.Tensor:
    weight = state_dict[f"{prefix}.weight"]
    return F.layer_norm(hidden, weight.shape, weight, state_dict[f"{prefix}.bias"], eps)


def linear(state_dict: StateDict, prefix: str, hidden: torch.Tensor) -> torch.Tensor:
    return F.linear(hidden, state_dict[f"{prefix}.weight"], state_dict.get(f"{prefix}.bias"))


def attention(state_dict: StateDict, prefix: str, hidden: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head self-attention with separate `q`, `k`, `v` and output `proj`, explicit softmax. (B, N, D) -> (B, N, D)."""
    batch_size, num_tokens, dim = hidden.shape
    head_dim = dim // num_heads

    def heads(name: str) -> torch.Tensor:
        projected = linear(state_dict, f"{prefix}.{name}", hidden)
        return projected.reshape(batch_size, num_tokens, num_heads, head_dim).transpose(1, 2)  # (B, heads, N, hd)

    query, key, value = heads("q"), heads("k"), heads("v")
    weights = torch.softmax(query @ key.transpose(-2, -1) * head_dim**-0.5, dim=-1)  # (B, heads, N, N)
    output = (weights @ value).transpose(1, 2).reshape(batch_size, num_tokens, dim)
    return linear(state_dict, f"{prefix}.proj", output)


def block(state_dict: StateDict, prefix: str, hidden: torch.Tensor, num_heads: int, eps: float) -> torch.Tensor:
    """Pre-norm block: x + attn(norm1(x)), then x + fc2(gelu(fc1(norm2(x))))."""
    hidden = hidden + attention(
        state_dict, f"{prefix}.attn", layer_norm(state_dict, f"{prefix}.norm1", hidden, eps), num_heads
    )
    mlp_input = layer_norm(state_dict, f"{prefix}.norm2", hidden, eps)
    mlp_output = linear(state_dict, f"{prefix}.mlp.fc2", F.gelu(linear(state_dict, f"{prefix}.mlp.fc1", mlp_input)))
    return hidden + mlp_output


def block_indices(state_dict: StateDict, stack: str) -> list[int]:
    """Sorted indices i of the `{stack}.{i}.*` keys (e.g. stack "blocks" or "decoder_blocks")."""
    pattern = re.compile(rf"{re.escape(stack)}\.(\d+)\.")
    return sorted({int(found.group(1)) for key in state_dict if (found := pattern.match(key))})


def run_blocks(state_dict: StateDict, stack: str, hidden: torch.Tensor, num_heads: int, eps: float) -> torch.Tensor:
    for index in block_indices(state_dict, stack):
        hidden = block(state_dict, f"{stack}.{index}", hidden, num_heads, eps)
    return hidden


def encode(
    state_dict: StateDict,
    pixel_values: torch.Tensor,
    settings: ReferenceSettings,
    noise: torch.Tensor | None = None,
    mask_ratio: float = 0.9,
) -> ReferenceEncoding:
    """Encoder of a pretraining checkpoint (separable position tables, final `norm`).

    Args:
        pixel_values: (B, C, H, W).
        noise: (B, L) masking noise; None encodes every token.
        mask_ratio: Fraction of tokens hidden when `noise` is given.
    """
    tokens = cube_embed(state_dict, pixel_values, settings)  # (B, L, D)
    tokens = tokens + separable_position_table(state_dict["pos_embed_spatial"], state_dict["pos_embed_temporal"])
    mask = ids_restore = None
    if noise is not None:
        tokens, mask, ids_restore = random_masking(tokens, noise, mask_ratio)  # (B, K, D)
    hidden = run_blocks(state_dict, "blocks", tokens, settings.num_heads, settings.layer_norm_eps)
    latent = layer_norm(state_dict, "norm", hidden, settings.layer_norm_eps)
    return ReferenceEncoding(latent=latent, mask=mask, ids_restore=ids_restore)


def decode(
    state_dict: StateDict, latent: torch.Tensor, ids_restore: torch.Tensor, settings: ReferenceSettings
) -> torch.Tensor:
    """latent (B, K, D), ids_restore (B, L) -> reconstruction (B, L, s * p * p)."""
    hidden = linear(state_dict, "decoder_embed", latent)  # (B, K, Dd)
    batch_size, num_visible, width = hidden.shape
    num_tokens = ids_restore.shape[1]
    mask_tokens = state_dict["mask_token"].repeat(batch_size, num_tokens - num_visible, 1)
    hidden = torch.cat([hidden, mask_tokens], dim=1)  # (B, L, Dd), visible first
    hidden = torch.gather(hidden, 1, ids_restore.unsqueeze(-1).repeat(1, 1, width))  # (B, L, Dd), token order
    hidden = hidden + separable_position_table(
        state_dict["decoder_pos_embed_spatial"], state_dict["decoder_pos_embed_temporal"]
    )
    hidden = run_blocks(state_dict, "decoder_blocks", hidden, settings.decoder_num_heads, settings.layer_norm_eps)
    hidden = layer_norm(state_dict, "decoder_norm", hidden, settings.layer_norm_eps)
    return linear(state_dict, "decoder_pred", hidden)  # (B, L, s * p * p)


def pretraining_forward(
    state_dict: StateDict,
    pixel_values: torch.Tensor,
    noise: torch.Tensor,
    settings: ReferenceSettings,
    mask_ratio: float = 0.9,
) -> tuple[ReferenceEncoding, torch.Tensor]:
    """Masked encoding and reconstruction: (visible-token encoding, reconstruction (B, L, s * p * p))."""
    encoding = encode(state_dict, pixel_values, settings, noise=noise, mask_ratio=mask_ratio)
    return encoding, decode(state_dict, encoding.latent, encoding.ids_restore, settings)


def classifier_logits(state_dict: StateDict, pixel_values: torch.Tensor, settings: ReferenceSettings) -> torch.Tensor:
    """Fine-tuned classifier: joint `pos_embed`, blocks, mean over tokens 1..L-1, `norm`, `head`. -> (B, num_labels)."""
    tokens = cube_embed(state_dict, pixel_values, settings) + state_dict["pos_embed"]  # (B, L, D)
    hidden = run_blocks(state_dict, "blocks", tokens, settings.num_heads, settings.layer_norm_eps)
    pooled = hidden[:, 1:].mean(dim=1)  # (B, D)
    return linear(state_dict, "head", layer_norm(state_dict, "norm", pooled, settings.layer_norm_eps))


__all__ = [
    "ReferenceEncoding",
    "ReferenceSettings",
    "block_indices",
    "classifier_logits",
    "cube_embed",
    "decode",
    "encode",
    "pretraining_forward",
    "random_masking",
    "separable_position_table",
]
