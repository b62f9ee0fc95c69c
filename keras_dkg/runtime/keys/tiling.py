"""Where the tiles of a large key lie: deterministic windows that cover the key exactly.

The generator is fully convolutional, so a key larger than one run's memory budget is
generated window by window. Its instance-normalisation layers use each run's own mean
and variance, so a tiled key is not the one-pass key: it is its own scheme (`tiled/1`,
docs/keys.md), recorded in the key record so the key can be regenerated.

`tiled/1`: each axis of the generation size (multiples of 4) is cut into
n = ceil(side / core) cores whose bounds are 4·floor(i·(side/4)/n) — equal to within 4
pixels — where core = window - 2·overlap. Each core is generated inside its window, the
core grown by `overlap` on every side that is not the key's edge, and only the core is
kept (the overlap hides the padding effects at the window's border). Tiles run row by
row, left to right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

TILED_SCHEME = "tiled/1"
SINGLE_SCHEME = "single"
_MULTIPLE = 4  # the generator's two stride-2 layers: every window side a multiple of 4


@dataclass(frozen=True)
class Tile:
    """One run: the window read from the seed and the core of it that goes into the key."""

    window: tuple[slice, slice]  # in generation-size coordinates
    core: tuple[slice, slice]  # in generation-size coordinates, inside `window`

    @property
    def window_shape(self) -> tuple[int, int]:
        return tuple(s.stop - s.start for s in self.window)  # type: ignore[return-value]


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one generation size, and what the key record says about them."""

    tiles: tuple[Tile, ...]
    window: int  # the largest window side
    overlap: int
    grid: tuple[int, int]

    def record(self) -> dict:
        return {"scheme": TILED_SCHEME, "tile": self.window, "overlap": self.overlap, "grid": list(self.grid)}

    @property
    def pixels_run(self) -> int:
        """Pixels the generator runs over in all (cores plus overlaps): what the time depends on."""
        return sum(h * w for h, w in (t.window_shape for t in self.tiles))


def window_side(tile_pixels: int) -> int:
    """The largest square window (a multiple of 4) of at most `tile_pixels` pixels."""
    return math.isqrt(int(tile_pixels)) // _MULTIPLE * _MULTIPLE


def check_tiling(tile_pixels: int, overlap: int) -> None:
    """Refuse a tile budget whose windows could not hold a core beside their overlaps."""
    if overlap < 0 or overlap % _MULTIPLE:
        raise ValueError(f"tile overlap must be a non-negative multiple of {_MULTIPLE}, got {overlap}")
    # A core of at least 16 makes every core of a split axis at least 8 (the generator's minimum).
    if window_side(tile_pixels) - 2 * overlap < 4 * _MULTIPLE:
        raise ValueError(f"a tile of {tile_pixels} pixels leaves no core of 16 beside an overlap of {overlap}")


def _bounds(side: int, core: int) -> list[int]:
    count = -(-side // core)
    quarters = side // _MULTIPLE
    return [_MULTIPLE * (i * quarters // count) for i in range(count)] + [side]


def plan_tiles(size: tuple[int, int], tile_pixels: int, overlap: int) -> TilePlan | None:
    """The tiles for a generation size (multiples of 4), or None when one run fits the budget."""
    height, width = size
    if height * width <= tile_pixels:
        return None
    check_tiling(tile_pixels, overlap)
    side = window_side(tile_pixels)
    core = side - 2 * overlap
    rows, cols = _bounds(height, core), _bounds(width, core)
    tiles = []
    for top, bottom in pairwise(rows):
        for left, right in pairwise(cols):
            window = (slice(max(0, top - overlap), min(height, bottom + overlap)),
                      slice(max(0, left - overlap), min(width, right + overlap)))
            tiles.append(Tile(window=window, core=(slice(top, bottom), slice(left, right))))
    return TilePlan(tiles=tuple(tiles), window=side, overlap=overlap, grid=(len(rows) - 1, len(cols) - 1))
