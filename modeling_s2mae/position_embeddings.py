"""Spatial-spectral position tables of S2MAE: building, fixed sin-cos values, interpolation, and spectral positions
computed from the bands' wavelengths.

Tokens are ordered spectral-group major: token index = g * (h * w) + row * w + col. A separable table gives
token (g, i) the sum `spatial[i] + spectral[g]`; a joint table holds one vector per token.

With `position_embedding_type="wavelength"` the spectral term is not a table indexed by group number but a function
of physics: fixed sin-cos of the group's mean centre wavelength and of its spectral extent (nm), optionally followed
by a small learnable map. A model trained on one band set then runs on any other (Landsat, a 200-band airborne cube)
by wavelength, with no interpolation over indices.
"""

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true
from transformers import initialization as init

from .sensors import MIN_WAVELENGTH_NM, check_wavelengths_nm, estimate_bandwidths

WavelengthsLike = torch.Tensor | Sequence[float] | Sequence[Sequence[float]]
"""Band wavelengths or bandwidths in nm: (C,) for the whole batch or (B, C) per sample."""

GridSize = int | torch.SymInt
"""A grid extent: an int, or a symbolic size while `torch.export` traces a dynamic height / width."""


def as_grid(grid: Sequence[Any]) -> tuple[GridSize, ...]:
    """`grid` as a tuple of ints; symbolic sizes (`torch.SymInt`, while tracing with dynamic shapes) are kept as they
    are, since `int()` would specialise the traced graph to the example's size."""
    return tuple(value if isinstance(value, torch.SymInt) else int(value) for value in grid)


def same_grid(grid: Sequence[GridSize], other: Sequence[GridSize]) -> bool:
    """True when two grids are known to be equal without specialising a symbolic size.

    In eager mode this is `tuple(grid) == tuple(other)`. While tracing with a dynamic height / width, a symbolic
    extent is not known to equal a built one, so the answer is False and the caller takes its general path
    (interpolation, which is exact at the built grid) instead of adding a guard on the traced size.
    """
    return len(grid) == len(other) and all(statically_known_true(a == b) for a, b in zip(grid, other))


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


def sincos_2d(grid_height: GridSize, grid_width: GridSize, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos embedding of a (grid_height, grid_width) grid, row-major (symbolic sizes can be traced).

    Returns:
        Tensor of shape (grid_height * grid_width, dim): the first half encodes the row, the second the column.
    """
    if dim % 4 != 0:
        raise ValueError(f"2D sin-cos embedding width must be divisible by 4, got {dim}.")
    rows, cols = torch.meshgrid(torch.arange(grid_height), torch.arange(grid_width), indexing="ij")
    return torch.cat([sincos_1d(rows.flatten(), dim // 2), sincos_1d(cols.flatten(), dim // 2)], dim=1)


def interpolate_spatial(
    table: torch.Tensor, source_grid: tuple[int, int], target_grid: tuple[GridSize, GridSize]
) -> torch.Tensor:
    """Bicubic interpolation of a spatial table over its grid.

    Args:
        table: Shape (N, h * w, D).
        source_grid: (h, w) of `table`.
        target_grid: (h', w') wanted; symbolic sizes (dynamic export) give a traced resize.

    Returns:
        Shape (N, h' * w', D); `table` itself when the grids are equal (bicubic interpolation onto the same grid
        reproduces the table, so a traced graph at the built size gives the same values).
    """
    if same_grid(source_grid, target_grid):
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


def padded_band_count(num_bands: int, spectral_patch_size: int) -> int:
    """C rounded up to a multiple of s: the band count after `pad_bands_by_repetition`."""
    return -(-num_bands // spectral_patch_size) * spectral_patch_size


def pad_bands_by_repetition(values: torch.Tensor, spectral_patch_size: int, dim: int = 1) -> torch.Tensor:
    """Complete the last spectral group by repeating the last band (`spectral_padding="repeat"`).

    Args:
        values: Any tensor with C bands along `dim`, e.g. pixel values (B, C, H, W) or wavelengths (N, C).
        spectral_patch_size: s.
        dim: The band axis.

    Returns:
        The tensor with `padded_band_count(C, s)` bands along `dim` (itself when C is a multiple of s).
    """
    num_bands = values.shape[dim]
    extra = padded_band_count(num_bands, spectral_patch_size) - num_bands
    if extra == 0:
        return values
    last = values.narrow(dim, num_bands - 1, 1)
    return torch.cat([values, *([last] * extra)], dim=dim)


def band_validity(num_bands: int, spectral_patch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """(C',) bool over the padded bands: True for real bands, False for the repeats added by padding."""
    valid = torch.zeros(padded_band_count(num_bands, spectral_patch_size), dtype=torch.bool, device=device)
    valid[:num_bands] = True
    return valid


def group_wavelengths(
    wavelengths: torch.Tensor, bandwidths: torch.Tensor, spectral_patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and extent of every spectral group of s consecutive bands.

    The centre is the mean of the group's real band centres; the extent runs from the lowest band edge
    (centre - bandwidth / 2) to the highest. Padded repeats (when C is not a multiple of s) are left out.

    Args:
        wavelengths: (N, C) band centres in nm.
        bandwidths: (N, C) bandwidths (FWHM) in nm.
        spectral_patch_size: s.

    Returns:
        (centres (N, G), extents (N, G)) in nm, G = ceil(C / s), float64.
    """
    num, num_bands = wavelengths.shape
    s = spectral_patch_size
    valid = band_validity(num_bands, s, wavelengths.device).reshape(1, -1, s).to(torch.float64)  # (1, G, s)
    centres = pad_bands_by_repetition(wavelengths.to(torch.float64), s).reshape(num, -1, s)  # (N, G, s)
    widths = pad_bands_by_repetition(bandwidths.to(torch.float64), s).reshape(num, -1, s)
    mean = (centres * valid).sum(-1) / valid.sum(-1)
    extent = (centres + widths / 2).amax(-1) - (centres - widths / 2).amin(-1)  # repeats change no min / max
    return mean, extent


def wavelength_sincos(centres: torch.Tensor, extents: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin-cos embedding of spectral groups by physics: [sincos(centre) | sincos(extent)], nm as positions.

    The centre takes `dim - dim_extent` channels and the extent `dim_extent = 2 * (dim // 8)` (a quarter of the
    width, even), so frequencies resolve a few nm (hyperspectral sampling) up to the whole 400-15000 nm range.

    Args:
        centres: (N, G) group centre wavelengths in nm.
        extents: (N, G) group spectral extents in nm.
        dim: Embedding width, even.

    Returns:
        (N, G, dim) float32.
    """
    if dim % 2 != 0:
        raise ValueError(f"wavelength position embeddings need an even width, got {dim}.")
    extent_dim = 2 * (dim // 8)
    num, groups = centres.shape
    parts = [sincos_1d(centres.flatten(), dim - extent_dim)]
    if extent_dim:
        parts.append(sincos_1d(extents.flatten(), extent_dim))
    return torch.cat(parts, dim=1).reshape(num, groups, dim)


def interpolate_spectral_by_wavelength(
    table: torch.Tensor, source_centres: torch.Tensor, target_centres: torch.Tensor
) -> torch.Tensor:
    """Linear interpolation of a spectral table over group centre WAVELENGTH (not group index), clamped at the ends.

    Used to run an index-table model ("separable", "joint", "sincos") on another band set whose wavelengths are
    known: each new group takes the table value at its own centre wavelength.

    Args:
        table: (N, G, D), the rows at `source_centres`.
        source_centres: (G,) nm, the built groups' centres.
        target_centres: (G',) nm, wanted.

    Returns:
        (N, G', D).
    """
    source, order = source_centres.to(torch.float64).sort()
    table = table[:, order]
    target = target_centres.to(torch.float64).to(source.device).clamp(source[0], source[-1])
    upper = torch.searchsorted(source, target).clamp(1, max(len(source) - 1, 1))
    lower = (upper - 1).clamp(min=0)
    span = (source[upper] - source[lower]).clamp(min=1e-9)
    weight = ((target - source[lower]) / span).clamp(0, 1).to(table.dtype)[None, :, None]
    return table[:, lower] * (1 - weight) + table[:, upper] * weight


def as_band_tensor(values: WavelengthsLike | None, num_bands: int, what: str) -> torch.Tensor | None:
    """Wavelengths or bandwidths as a float64 tensor (N, C): (C,) becomes (1, C).

    Raises:
        ValueError: for a shape other than (C,) / (B, C), or values that are not finite and positive (bandwidths:
            not negative), or wavelengths below `sensors.MIN_WAVELENGTH_NM` (micrometres given for nanometres).
    """
    if values is None:
        return None
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[-1] != num_bands:
        raise ValueError(
            f"{what} must have shape ({num_bands},) or (batch, {num_bands}), one value in nm per band of "
            f"pixel_values, got shape {tuple(tensor.shape)}."
        )
    low_ok = tensor >= 0 if what == "band_bandwidths" else tensor > 0
    if not bool((torch.isfinite(tensor) & low_ok).all()):
        raise ValueError(f"{what} must be finite positive numbers in nanometres, got {tensor.tolist()}.")
    if what != "band_bandwidths" and bool((tensor < MIN_WAVELENGTH_NM).any()):
        check_wavelengths_nm(tensor.flatten().tolist(), what)  # raises, naming the unit mix-up
    return tensor


def spectral_range(wavelengths: Sequence[float], bandwidths: Sequence[float] | None) -> tuple[float, float]:
    """(lowest, highest) wavelength in nm covered by a band set: band centres -/+ half their bandwidth."""
    widths = list(bandwidths) if bandwidths is not None else estimate_bandwidths(wavelengths)
    return (
        min(c - w / 2 for c, w in zip(wavelengths, widths)),
        max(c + w / 2 for c, w in zip(wavelengths, widths)),
    )


def _complain(policy: str, message: str) -> None:
    if policy == "error":
        raise ValueError(message + " (set config.wavelength_check='warn' or 'ignore' to run anyway).")
    if policy == "warn":
        warnings.warn(message, UserWarning, stacklevel=4)


def prepare_band_wavelengths(
    config: Any,
    num_bands: int,
    band_wavelengths: WavelengthsLike | None = None,
    band_bandwidths: WavelengthsLike | None = None,
    interpolate_pos_encoding: bool = False,
    check: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Check the wavelengths of an input against the model and bring them to tensors (part of the safety rules).

    - Wavelengths given: each must be finite and positive; bands outside the range the model was built for
      (`config.band_wavelengths` -/+ half bandwidths) warn or raise, by `config.wavelength_check`. Missing
      bandwidths are taken from the config for the config's own wavelengths, else estimated from the band spacing.
    - No wavelengths, another band count: a "wavelength" model raises (it has nothing to place the bands by); an
      index-table model interpolating over group index warns or raises, by `config.wavelength_check`.

    Args:
        config: The model's `S2MAEConfig`.
        num_bands: C of `pixel_values`.
        band_wavelengths: (C,) or (B, C) centres in nm, or None.
        band_bandwidths: (C,) or (B, C) FWHM in nm, or None.
        interpolate_pos_encoding: The caller's flag.
        check: Apply the warnings / errors of `config.wavelength_check` (False: only convert, e.g. in the decoder
            once the encoder has checked).

    Returns:
        (wavelengths (N, C), bandwidths (N, C)) float64, or (None, None) when none were given.
    """
    wavelengths = as_band_tensor(band_wavelengths, num_bands, "band_wavelengths")
    bandwidths = as_band_tensor(band_bandwidths, num_bands, "band_bandwidths")
    policy = config.wavelength_check if check else "ignore"
    built = config.band_wavelengths
    if wavelengths is None:
        if bandwidths is not None:
            raise ValueError("band_bandwidths was given without band_wavelengths: pass both (nm, one per band).")
        if num_bands == config.num_channels:
            return None, None
        hint = (
            "pass band_wavelengths=[...] (centre wavelengths in nm, one per band of the input; e.g. "
            "get_sensor('landsat7_etm').wavelengths(band_names), or the band_wavelengths returned by "
            "S2MAEImageProcessor / read from the file's metadata), and band_bandwidths if known"
        )
        if config.position_embedding_type == "wavelength":
            raise ValueError(
                f"The input has {num_bands} bands but the model was built for {config.num_channels} "
                f"({config.band_names}) and its spectral positions are computed from wavelengths: {hint}."
            )
        if interpolate_pos_encoding:
            _complain(
                policy,
                f"Running a model built for {config.num_channels} bands on {num_bands} bands without wavelengths: "
                f"its spectral positions are interpolated over group INDEX, which has no physical meaning across "
                f"sensors. To place the bands by wavelength, {hint}.",
            )
        return None, None
    if bandwidths is None:
        same = (
            built is not None
            and len(built) == num_bands
            and torch.allclose(wavelengths, torch.tensor([built], dtype=torch.float64))
        )
        if same and config.band_bandwidths is not None:
            bandwidths = torch.tensor([config.band_bandwidths], dtype=torch.float64).expand_as(wavelengths)
        else:
            bandwidths = torch.tensor([estimate_bandwidths(row) for row in wavelengths.tolist()], dtype=torch.float64)
    if built is not None:
        low, high = spectral_range(built, config.band_bandwidths)
        outside = sorted({round(v, 2) for v in wavelengths.flatten().tolist() if not low <= v <= high})
        if outside:
            _complain(
                policy,
                f"Bands at {outside} nm lie outside the spectral range the model was built for "
                f"({low:.1f}-{high:.1f} nm, bands {config.band_names}): their features are extrapolated.",
            )
    elif config.position_embedding_type != "wavelength":
        if num_bands != config.num_channels:
            _complain(
                policy,
                "The model's config has no band_wavelengths, so the input's wavelengths cannot place its bands: "
                "spectral positions are interpolated over group index. Set band_wavelengths in the model's config.",
            )
        return None, None
    return wavelengths, bandwidths


class S2MAEPositionEmbeddings(nn.Module):
    """Position tables for a grid of G spectral groups x h x w spatial cubes, at a given width.

    The kind of table is `config.position_embedding_type`:
    - "separable": learnable `spatial` (1, h*w, D) and `spectral` (1, G, D);
    - "joint": learnable `joint` (1, G*h*w, D);
    - "sincos": fixed (not trained, but saved) `spatial` and `spectral` sin-cos tables;
    - "wavelength": learnable `spatial` (1, h*w, D); the spectral term is `wavelength_sincos` of each group's centre
      and extent (nm), followed, with `config.wavelength_projection`, by a learnable map x + x @ W + b (W, b start
      at zero, so the model starts from the fixed values).

    Index tables ("separable", "joint", "sincos") of a config with `band_wavelengths` are interpolated over group
    centre wavelength when an input brings other wavelengths.
    """

    def __init__(self, config, hidden_size: int):
        super().__init__()
        self.kind = config.position_embedding_type
        self.grid = (config.num_spectral_groups, config.grid_size, config.grid_size)
        self.initializer_range = config.initializer_range
        self.spectral_patch_size = config.spectral_patch_size
        self.built_wavelengths = None if config.band_wavelengths is None else list(config.band_wavelengths)
        self.built_bandwidths = None if config.band_bandwidths is None else list(config.band_bandwidths)
        groups, height, width = self.grid
        if self.kind == "joint":
            self.joint = nn.Parameter(torch.zeros(1, groups * height * width, hidden_size))
        elif self.kind == "wavelength":
            self.spatial = nn.Parameter(torch.zeros(1, height * width, hidden_size))
            if config.wavelength_projection:
                self.spectral_weight = nn.Parameter(torch.zeros(hidden_size, hidden_size))
                self.spectral_bias = nn.Parameter(torch.zeros(hidden_size))
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
        if self.kind == "wavelength":
            init.trunc_normal_(self.spatial, std=self.initializer_range)
            if hasattr(self, "spectral_weight"):
                init.zeros_(self.spectral_weight)
                init.zeros_(self.spectral_bias)
            return
        for table in self.parameters():
            init.trunc_normal_(table, std=self.initializer_range)

    def _built_band_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The config's wavelengths and bandwidths as (1, C) float64, or None without wavelengths."""
        if self.built_wavelengths is None:
            return None
        wavelengths = torch.tensor([self.built_wavelengths], dtype=torch.float64)
        widths = (
            self.built_bandwidths if self.built_bandwidths is not None else estimate_bandwidths(self.built_wavelengths)
        )
        return wavelengths, torch.tensor([widths], dtype=torch.float64)

    def spectral_from_wavelengths(self, wavelengths: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
        """The spectral term of a "wavelength" table.

        Args:
            wavelengths: (N, C) band centres in nm.
            bandwidths: (N, C) FWHM in nm.

        Returns:
            (N, G, D), G = ceil(C / s), in the dtype / device of the spatial table.
        """
        centres, extents = group_wavelengths(wavelengths, bandwidths, self.spectral_patch_size)
        table = wavelength_sincos(centres, extents, self.spatial.shape[-1]).to(self.spatial)
        if hasattr(self, "spectral_weight"):
            table = table + table @ self.spectral_weight + self.spectral_bias
        return table

    def _spectral_by_wavelength(
        self, table: torch.Tensor, wavelengths: torch.Tensor, bandwidths: torch.Tensor
    ) -> torch.Tensor:
        """An index table (N, G, D) brought to the groups of `wavelengths` (one band set: all rows equal)."""
        built = self._built_band_tensors()
        if built is None:
            raise ValueError("The config has no band_wavelengths: an index table cannot be placed by wavelength.")
        if not bool((wavelengths == wavelengths[:1]).all()):
            raise ValueError(
                f"A {self.kind!r} position table takes one band set per batch; the batch mixes band wavelengths. "
                "Use position_embedding_type='wavelength' for per-sample band sets, or batch by sensor."
            )
        source, _ = group_wavelengths(*built, self.spectral_patch_size)
        target, _ = group_wavelengths(wavelengths[:1], bandwidths[:1], self.spectral_patch_size)
        if source.shape == target.shape and torch.allclose(source, target):
            return table
        return interpolate_spectral_by_wavelength(table, source[0], target[0])

    def tables_at(self, grid: tuple[GridSize, GridSize, GridSize]) -> dict[str, torch.Tensor]:
        """The stored tables brought to another (G, h, w) grid, by name ("joint", or "spatial" and "spectral").

        Learnable tables are interpolated (bicubic over space, linear over spectral groups); sin-cos tables are
        recomputed exactly. h and w may be symbolic (dynamic export); G is the input's band count, static.
        """
        groups, height, width = grid
        built_groups, built_height, built_width = self.grid
        if self.kind == "wavelength":
            return {"spatial": interpolate_spatial(self.spatial, (built_height, built_width), (height, width))}
        if self.kind == "joint":
            dim = self.joint.shape[-1]
            table = self.joint.reshape(built_groups, built_height * built_width, dim)
            table = interpolate_spatial(table, (built_height, built_width), (height, width))  # (G, h'*w', D)
            table = interpolate_spectral(table.transpose(0, 1), groups).transpose(0, 1)  # (G', h'*w', D)
            return {"joint": table.reshape(1, groups * height * width, dim)}
        if self.kind == "sincos" and not same_grid(grid, self.grid):
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
    def resize(
        self,
        grid: tuple[int, int, int],
        band_wavelengths: Sequence[float] | None = None,
        band_bandwidths: Sequence[float] | None = None,
    ) -> None:
        """Replace the stored tables by their values on another (G, h, w) grid, for fine-tuning or progressive
        pretraining at another image size or band set.

        With the new bands' wavelengths (and the built ones known), index tables take the values at the new groups'
        centre wavelengths (`interpolate_spectral_by_wavelength`), else they are interpolated over group index. A
        "wavelength" table has nothing spectral to resize: it only records the new bands.

        Args:
            grid: (G', h', w').
            band_wavelengths: C' centre wavelengths (nm) of the new bands, or None.
            band_bandwidths: C' FWHM (nm), or None (estimated from the spacing).
        """
        grid = tuple(int(value) for value in grid)
        if (
            band_wavelengths is None
            and self.built_wavelengths is not None
            and self.kind != "wavelength"
            and grid[0] != self.grid[0]
        ):
            warnings.warn(
                f"Resizing a {self.kind!r} spectral table from {self.grid[0]} to {grid[0]} groups without the new "
                "bands' wavelengths: it is interpolated over group INDEX, which places bands of another sensor at "
                "the wrong wavelengths. Pass band_wavelengths=[...] (nm, e.g. get_sensor('landsat7_etm')."
                "wavelengths(band_names)) to place them by wavelength.",
                UserWarning,
                stacklevel=4,
            )
        tables = self.tables_at(grid)
        if band_wavelengths is not None and self.built_wavelengths is not None and self.kind != "wavelength":
            widths = band_bandwidths if band_bandwidths is not None else estimate_bandwidths(band_wavelengths)
            wavelengths = torch.tensor([list(band_wavelengths)], dtype=torch.float64)
            widths = torch.tensor([list(widths)], dtype=torch.float64)
            if self.kind == "joint":
                dim = self.joint.shape[-1]
                built_groups, built_height, built_width = self.grid
                table = self.joint.reshape(built_groups, built_height * built_width, dim)
                table = interpolate_spatial(table, (built_height, built_width), grid[1:])  # (G, h'*w', D)
                table = self._spectral_by_wavelength(table.transpose(0, 1), wavelengths, widths).transpose(0, 1)
                tables["joint"] = table.reshape(1, -1, dim)
            else:
                tables["spectral"] = self._spectral_by_wavelength(self.spectral, wavelengths, widths)
        for name, table in tables.items():
            requires_grad = getattr(self, name).requires_grad
            setattr(self, name, nn.Parameter(table.detach().clone(), requires_grad=requires_grad))
        self.grid = grid
        self.built_wavelengths = None if band_wavelengths is None else list(band_wavelengths)
        self.built_bandwidths = None if band_bandwidths is None else list(band_bandwidths)

    def forward(
        self,
        grid: tuple[GridSize, GridSize, GridSize],
        interpolate_pos_encoding: bool = False,
        band_wavelengths: torch.Tensor | None = None,
        band_bandwidths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The table for a token grid, interpolated when it differs from the built one.

        Args:
            grid: (G', h', w') of the input; h' and w' may be symbolic while `torch.export` traces a dynamic height /
                width (with `interpolate_pos_encoding=True`: the traced graph then interpolates at every size).
            interpolate_pos_encoding: Allow a grid other than the configured one. Without it, a different grid is
                an error (except a spectral grid placed by `band_wavelengths`).
            band_wavelengths: (N, C) band centres in nm of the input (see `prepare_band_wavelengths`), or None for
                the config's bands.
            band_bandwidths: (N, C) FWHM in nm, given with `band_wavelengths`.

        Returns:
            Shape (1 or N, G' * h' * w', D), in token order.
        """
        grid = as_grid(grid)
        if band_wavelengths is not None:
            return self._forward_by_wavelength(grid, interpolate_pos_encoding, band_wavelengths, band_bandwidths)
        if self.kind == "wavelength":
            if grid[0] != self.grid[0]:
                raise ValueError(
                    f"The input makes {grid[0]} spectral groups but the model was built for {self.grid[0]}: pass "
                    "band_wavelengths (nm, one per band) to place the bands by wavelength."
                )
            built = self._built_band_tensors()
            return self._forward_by_wavelength(grid, interpolate_pos_encoding, *built)
        if not interpolate_pos_encoding and grid != self.grid:
            raise ValueError(
                f"The input makes a grid of {grid[0]} spectral groups x {grid[1]} x {grid[2]} cubes, but the model was "
                f"built for {self.grid[0]} x {self.grid[1]} x {self.grid[2]} (band count / image size of the config). "
                "Pass interpolate_pos_encoding=True to interpolate the position tables, or resize / select bands "
                "with the image processor."
            )
        built = same_grid(grid, self.grid)
        if self.kind == "joint":
            return self.joint if built else self.tables_at(grid)["joint"]
        if built:
            spatial, spectral = self.spatial, self.spectral
        else:
            tables = self.tables_at(grid)
            spatial, spectral = tables["spatial"], tables["spectral"]
        return (spectral[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)  # (1, G' * h'*w', D)

    def _forward_by_wavelength(
        self,
        grid: tuple[GridSize, GridSize, GridSize],
        interpolate_pos_encoding: bool,
        wavelengths: torch.Tensor,
        bandwidths: torch.Tensor,
    ) -> torch.Tensor:
        """`forward` for an input whose band wavelengths are known: (1 or N, G' * h' * w', D)."""
        spatial_grid = grid[1:]
        if not interpolate_pos_encoding and spatial_grid != self.grid[1:]:
            raise ValueError(
                f"The input makes a {grid[1]} x {grid[2]} grid of cubes, but the model was built for "
                f"{self.grid[1]} x {self.grid[2]} (image size of the config). Pass interpolate_pos_encoding=True to "
                "interpolate the spatial table, or resize with the image processor."
            )
        groups = -(-wavelengths.shape[1] // self.spectral_patch_size)
        if groups != grid[0]:
            raise ValueError(f"{wavelengths.shape[1]} band wavelengths make {groups} groups, the input {grid[0]}.")
        if self.kind == "joint":
            dim = self.joint.shape[-1]
            built_groups, built_height, built_width = self.grid
            table = self.joint.reshape(built_groups, built_height * built_width, dim)
            table = interpolate_spatial(table, (built_height, built_width), spatial_grid)  # (G, h'*w', D)
            table = self._spectral_by_wavelength(table.transpose(0, 1), wavelengths, bandwidths)  # (h'*w', G', D)
            return table.transpose(0, 1).reshape(1, -1, dim)
        spatial = interpolate_spatial(self.spatial, tuple(self.grid[1:]), spatial_grid)  # (1, h'*w', D)
        if self.kind == "wavelength":
            spectral = self.spectral_from_wavelengths(wavelengths, bandwidths)  # (N, G', D)
        else:
            spectral = self._spectral_by_wavelength(self.spectral, wavelengths, bandwidths)  # (1, G', D)
        return (spectral[:, :, None, :] + spatial[:, None, :, :]).flatten(1, 2)  # (N, G' * h'*w', D)


__all__ = [
    "S2MAEPositionEmbeddings",
    "as_band_tensor",
    "as_grid",
    "band_validity",
    "group_wavelengths",
    "interpolate_spatial",
    "interpolate_spectral",
    "interpolate_spectral_by_wavelength",
    "pad_bands_by_repetition",
    "padded_band_count",
    "prepare_band_wavelengths",
    "same_grid",
    "sincos_1d",
    "sincos_2d",
    "spectral_range",
    "wavelength_sincos",
]
