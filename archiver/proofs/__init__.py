"""Serving and checking the archive's proofs: trusted keys, record proofs, verify runs."""
