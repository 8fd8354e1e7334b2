"""C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles), pure path and size math.

A tile of level ``L`` and index ``N`` holds up to 256 consecutive hashes of tree level
``8·L`` (tile height 8): the nodes ``[256·N, 256·N + W)``. Full tiles are at
``tile/<L>/<N>``, partial ones (width ``W`` < 256) at ``tile/<L>/<N>.p/<W>``. Entry
bundles hold the entries themselves at ``tile/entries/<N>[.p/<W>]``, each entry a
big-endian uint16 length followed by the bytes. ``<N>`` is written as 3-digit path
elements, all but the last prefixed with ``x`` (1234067 → ``x001/x234/067``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from archiver.ledger.errors import TileError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256
HASH_SIZE = 32
MAX_ENTRY_SIZE = 0xFFFF


def encode_index(n: int) -> str:
    """``N`` as x-prefixed 3-digit path elements (tlog-tiles "Tile path")."""
    if n < 0:
        raise TileError(f"negative tile index {n}")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _suffix(width: int) -> str:
    if not 0 < width <= TILE_WIDTH:
        raise TileError(f"tile width {width} outside 1..{TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``."""
    if level < 0:
        raise TileError(f"negative tile level {level}")
    return f"tile/{level}/{encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{encode_index(index)}{_suffix(width)}"


@dataclass(frozen=True, slots=True)
class TileRef:
    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)


def tile_width(level: int, index: int, tree_size: int) -> int:
    """Width of tile ``(level, index)`` in a tree of ``tree_size`` leaves (0 if absent)."""
    nodes = tree_size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, nodes - index * TILE_WIDTH))


def entry_bundle_width(index: int, tree_size: int) -> int:
    return tile_width(0, index, tree_size)


def node_location(level: int, index: int) -> tuple[int, int, int, int]:
    """Where the perfect subtree ``(level, index)`` lives: ``(tile_level, tile_index,
    first, count)``: it is the root of ``count`` (a power of two ≤ 128, or 1) consecutive
    hashes starting at ``first`` inside that tile."""
    tile_level, sub = divmod(level, TILE_HEIGHT)
    first_node = index << sub  # index at tree level 8·tile_level
    return tile_level, first_node >> TILE_HEIGHT, first_node % TILE_WIDTH, 1 << sub


def tiles_for_size(tree_size: int) -> Iterator[TileRef]:
    """Every tile (full and the right-edge partials) of a tree of ``tree_size`` leaves."""
    level = 0
    while (nodes := tree_size >> (TILE_HEIGHT * level)) > 0:
        full, rest = divmod(nodes, TILE_WIDTH)
        for i in range(full):
            yield TileRef(level, i, TILE_WIDTH)
        if rest:
            yield TileRef(level, full, rest)
        level += 1


def split_hashes(data: bytes) -> list[bytes]:
    """Tile bytes → its hashes. Raises TileError on a ragged length."""
    if len(data) % HASH_SIZE or len(data) > TILE_WIDTH * HASH_SIZE:
        raise TileError(f"tile of {len(data)} bytes is not a whole number of hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Entry bundle bytes: each entry as big-endian uint16 length ‖ data."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TileError(f"entry of {len(e)} bytes exceeds {MAX_ENTRY_SIZE}")
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """Entry bundle bytes → entries. Raises TileError on truncation."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("truncated entry length")
        n = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + n > len(data):
            raise TileError("truncated entry")
        out.append(data[pos : pos + n])
        pos += n
    if len(out) > TILE_WIDTH:
        raise TileError(f"entry bundle holds {len(out)} entries")
    return out
