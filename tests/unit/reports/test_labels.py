"""The printed-value convention: what templates print and what verify reads back."""

from __future__ import annotations

from reports.labels import checkpoint_line, find_printed, twin_hash_line

H = "0123456789abcdef" * 4
R = "fedcba9876543210" * 4


def test_helpers_round_trip() -> None:
    text = f"{twin_hash_line(H)}\n{checkpoint_line(42, R)}"
    assert find_printed(text) == ({H}, {42}, {R})


def test_footer_form_without_colons_and_with_wrapping() -> None:
    wrapped = H[:30] + "\n" + H[30:]
    text = (
        f"Checkpoint tree size 7 Page 1 of 3\nTwin SHA-256 {wrapped}\n"
        f"Checkpoint root {R.upper()}"
    )
    assert find_printed(text) == ({H}, {7}, {R})


def test_extraction_that_drops_spaces() -> None:
    assert find_printed(f"TwinSHA-256:{H}Checkpointtreesize:9Checkpointroot{R}") == (
        {H},
        {9},
        {R},
    )


def test_near_misses_are_not_read() -> None:
    text = " | ".join(
        [
            f"Twin SHA256 {H}",  # label misspelt
            f"Twin SHA-256 {H[:63]}",  # too short
            "Checkpoint tree size x12",
            f"Checkpoint root {R[:10]}",
        ]
    )
    assert find_printed(text) == (set(), set(), set())


def test_every_occurrence_is_reported() -> None:
    text = " ".join(
        [twin_hash_line(H), twin_hash_line(R), checkpoint_line(1, R), checkpoint_line(2, H)]
    )
    assert find_printed(text) == ({H, R}, {1, 2}, {R, H})
