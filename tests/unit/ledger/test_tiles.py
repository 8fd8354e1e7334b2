"""C2SP tlog-tiles path math."""

from __future__ import annotations

import pytest

from archiver.ledger import tiles
from archiver.ledger.errors import TileError


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1000, "x001/000"),
        (1234067, "x001/x234/067"),
        (10**9, "x001/x000/x000/000"),
    ],
)
def test_index_encoding(n: int, want: str) -> None:
    assert tiles.encode_index(n) == want


def test_paths() -> None:
    assert tiles.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tiles.tile_path(1, 0, 17) == "tile/1/000.p/17"
    assert tiles.entries_path(1234067, 3) == "tile/entries/x001/x234/067.p/3"
    assert tiles.entries_path(2) == "tile/entries/002"
    for bad in (0, 257):
        with pytest.raises(TileError):
            tiles.tile_path(0, 0, bad)
    with pytest.raises(TileError):
        tiles.encode_index(-1)


def test_widths_and_tiles_for_size() -> None:
    assert tiles.tile_width(0, 0, 255) == 255
    assert tiles.tile_width(0, 1, 300) == 44
    assert tiles.tile_width(1, 0, 300) == 1
    assert tiles.tile_width(0, 5, 300) == 0
    refs = list(tiles.tiles_for_size(256 * 256 + 3))
    paths = [r.path for r in refs]
    assert paths[:2] == ["tile/0/000", "tile/0/001"]
    assert "tile/0/256.p/3" in paths and "tile/1/000" in paths and "tile/2/000.p/1" in paths
    assert len(refs) == 256 + 1 + 1 + 1


def test_node_location() -> None:
    assert tiles.node_location(0, 300) == (0, 1, 44, 1)
    assert tiles.node_location(3, 5) == (0, 0, 40, 8)
    assert tiles.node_location(8, 2) == (1, 0, 2, 1)
    assert tiles.node_location(15, 1) == (1, 0, 128, 128)
    assert tiles.node_location(15, 2) == (1, 1, 0, 128)


def test_bundle_round_trip() -> None:
    entries = [b"", b"a", b"x" * 65535]
    assert tiles.decode_bundle(tiles.encode_bundle(entries)) == entries
    with pytest.raises(TileError):
        tiles.encode_bundle([b"x" * 65536])
    with pytest.raises(TileError):
        tiles.decode_bundle(b"\x00\x05abc")
    with pytest.raises(TileError):
        tiles.split_hashes(b"x" * 33)
