"""Spatial-spectral position tables of S2MAE: building, fixed sin-cos values and interpolation.

Tokens are ordered spectral-group major: token index = g * (h * w) + row * w + col. A separable table gives
token (g, i) the sum `spatial[i] + spectral[g]`; a joint table holds one vector per token.
"""

import torch
from torch import nn
from transformers import initialization as init


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin-cos embedding of 1D positions.

    Args:
        positions: Positions, shape (N,).
        dim: Embedding width, even.

    Returns:
        Tensor of shape (N, dim), laid out as [sin | cos], float32.
    """
    if dim % 2 != 0:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}.")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim / 2,)
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)  # (N, dim / 2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(grid_height: int, grid_width: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos embedding of a (grid_height, grid_width) grid, row-major.

    Returns:
        Tensor of shape (grid_height * grid_width, dim): the first half encodes the row, the second the column.
    """
    if dim % 4 != 0:
        raise ValueError(f"2D sin-cos embedding width must be divisible by 4, got {dim}.")
    rows, cols = torch.meshgrid(torch.arange(grid_height), torch.arange(grid_width), indexing="ij")
    return torch.cat([sincos_1d(rows.flatten(), dim // 2), sincos_1d(cols.flatten(), dim // 2)], dim=1)


def interpolate_spatial(
    table: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[int, int]
) -> torch.Tensor:
    """Bicubic interpolation of a spatial table over its grid.

    Args:
        table: Shape (N, h * w, D).
        source_grid: (h, w) of `table`.
        target_grid: (h', w') wanted.

    Returns:
        Shape (N, h' * w', D).
    """
    if tuple(source_grid) == tuple(target_grid):
        return table
    num, _, dim = table.shape
    grid = table.reshape(num, *source_grid, dim).permute(0, 3, 1, 2)  # (N, D, h, w)
    grid = nn.functional.interpolate(grid.float(), size=target_grid, mode="bicubic", align_corners=False)
    return grid.to(table.dtype).permute(0, 2, 3, 1).reshape(num, target_grid[0] * target_grid[1], dim)


def interpolate_spectral(table: torch.Tensor, target_groups: int) -> torch.Tensor:
    """Linear interpolation of a spectral table over its groups.

    Args:
        table: Shape (N, G, D).
        target_groups: G' wanted.

    Returns:
        Shape (N, G', D).
    """
    if table.shape[1] == target_groups:
        return table
    line = table.permute(0, 2, 1)  # (N, D, G)
    line = nn.functional.interpolate(line.float(), size=target_groups, mode="linear", align_corners=False)
    return line.to(table.dtype).permute(0, 2, 1)


class S2MAEPositionEmbeddings(nn.Module):
    """Position tables for a grid of G spectral groups x h x w spatial cubes, at a given width.

    The kind of table is `config.position_embedding_type`:
    - "separable": learnable `spatial` (1, h*w, D) and `spectral` (1, G, D);
    - "joint": learnable `joint` (1, G*h*w, D);
    - "sincos": fixed (not trained, but saved) `spatial` and `spectral` sin-cos tables.
    """

    def __init__(self, config, hidden_size: int):
        super().__init__()
        self.kind = config.position_embedding_type
        self.grid = (config.num_spectral_groups, config.grid_size, config.grid_size)
        self.initializer_range = config.initializer_range
        groups, height, width = self.grid
        if self.kind == "joint":
            self.joint = nn.Parameter(torch.zeros(1, groups * height * width, hidden_size))
        else:
            trainable = self.kind == "separable"
            self.spatial = nn.Parameter(torch.zeros(1, height * width, hidden_size), requires_grad=trainable)
            self.spectral = nn.Parameter(torch.zeros(1, groups, hidden_size), requires_grad=trainable)

    def reset_parameters(self) -> None:
        """Initialise the tables: truncated normal for learnable ones, exact sin-cos values for fixed ones.

        Parameters already loaded from a checkpoint (flagged `_is_hf_initialized`) are left untouched.
        """
        if self.kind == "sincos":
            groups, height, width = self.grid
            dim = self.spatial.shape[-1]
            init.copy_(self.spatial, sincos_2d(height, width, dim).unsqueeze(0))
            init.copy_(self.spectral, sincos_1d(torch.arange(groups), dim).unsqueeze(0))
            return
        for table in self.parameters():
            init.trunc_normal_(table, std=self.initializer_range)

    def tables_at(self, grid: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        """The stored tables brought to another (G, h, w) grid, by name ("joint", or "spatial" and "spectral").

        Learnable tables are interpolated (bicubic over space, linear over spectral groups); sin-cos tables are
        recomputed exactly.
        """
        groups, height, width = grid
        built_groups, built_height, built_width = self.grid
        if self.kind == "joint":
            dim = self.joint.shape[-1]
            table = self.joint.reshape(built_groups, built_height * built_width, dim)
            table = interpolate_spatial(table, (built_height, built_width), (height, width))  # (G, h'*w', D)
            table = interpolate_spectral(table.transpose(0, 1), groups).transpose(0, 1)  # (G', h'*w', D)
            return {"joint": table.reshape(1, groups * height * width, dim)}
        if self.kind == "sincos" and tuple(grid) != self.grid:
            dim = self.spatial.shape[-1]
            return {
                "spatial": sincos_2d(height, width, dim).unsqueeze(0).to(self.spatial),
                "spectral": sincos_1d(torch.arange(groups), dim).unsqueeze(0).to(self.spectral),
            }
        return {
            "spatial": interpolate_spatial(self.spatial, (built_height, built_width), (height, width)),
            "spectral": interpolate_spectral(self.spectral, groups),
        }

    @torch.no_grad()
    def resize(self, grid: tuple[int, int, int]) -> None:
        """Replace the stored tables by `tables_at(grid)`, for fine-tuning or progressive pretraining at another
        image size or band count."""
        grid = tuple(int(value) for value in grid)
        for name, table in self.tables_at(grid).items():
            requires_grad = getattr(self, name).requires_grad
            setattr(self, name, nn.Parameter(table.detach().clone(), requires_grad=requires_grad))
        self.grid = grid

    def forward(self, grid: tuple[int, int, int], interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """The table for a token grid, interpolated when it differs from the built one.

        Args:
            grid: (G', h', w') of the input.
            interpolate_pos_encoding: Allow a grid other than the configured one. Without it, a different grid is
                an error.

        Returns:
            Shape (1, G' * h' * w', D), in token order.
        """
        grid = tuple(int(value) for value in grid)
        if grid != self.grid and not interpolate_pos_encoding:
            raise ValueError(
                f"The input makes a grid of {grid[0]} spectral groups x {grid[1]} x {grid[2]} cubes, but the model was "
                f"built for {self.grid[0]} x {self.grid[1]} x {self.grid[2]} (band count / image size of the config). "
                "Pass interpolate_pos_encoding=True to interpolate the position tables, or resize / select bands "
                "with the image processor."
            )
        if self.kind == "joint":
            return self.joint if grid == self.grid else self.tables_at(grid)["joint"]
        if grid == self.grid:
            spatial, spectral = self.spatial, self.spectral
        else:
            tables = self.tables_at(grid)
            spatial, spectral = tables["spatial"], tables["spectral"]
        return (spectral[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)  # (1, G' * h'*w', D)


__all__ = ["S2MAEPositionEmbeddings", "interpolate_spatial", "interpolate_spectral", "sincos_1d", "sincos_2d"]
