"""The stored log follows C2SP tlog-tiles: every tile and entry bundle of the committed
tree exists at its spec path and holds exactly the RFC 6962 node hashes / entries."""

from __future__ import annotations

from typing import Any

import pytest
from backends import open_log

from archiver.ledger import merkle, tiles

pytestmark = pytest.mark.integration


def test_tiles_at_spec_paths(backend: dict[str, Any]) -> None:
    log = open_log(backend)
    entries = [f"entry {i}".encode() for i in range(256 * 3 + 9)]
    pos = 0
    for k in (1, 255, 1, 300, 200, 20):
        log.append(entries[pos : pos + k])
        pos += k
    assert pos == len(entries) == log.size()
    size = log.size()
    tree = merkle.MemoryTree(merkle.hash_leaf(e) for e in entries)
    keys = set(log.objects.list_keys(log.prefix))
    for ref in tiles.tiles_for_size(size):
        assert log.prefix + ref.path in keys
        (v,) = [
            x
            for x in log.objects.list_versions(log.prefix + ref.path)
            if x.key == log.prefix + ref.path
        ]
        data = log.objects.get(log.prefix + ref.path, v.version_id)
        level = ref.level * tiles.TILE_HEIGHT
        want = [tree.node(level, ref.index * 256 + j) for j in range(ref.width)]
        assert tiles.split_hashes(data) == want
    for b in range(4):
        width = tiles.entry_bundle_width(b, size)
        assert log.prefix + tiles.entries_path(b, width) in keys
    assert log.prefix + "tile/1/000.p/3" in keys
    assert log.prefix + "tile/entries/003.p/9" in keys
    log.close()
