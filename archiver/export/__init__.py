"""E-discovery export packages (issue 11): a streaming zip with RSMF 2.0, natives, text,
a Concordance load file, Bates numbers and a manifest of Merkle proofs, plus the offline
verifier. See ``docs/export.md``.

Pure modules (no store, index or API import): :mod:`.model`, :mod:`.layout`, :mod:`.dat`,
:mod:`.rsmf`, :mod:`.batches`, :mod:`.manifest`, :mod:`.verify`. :mod:`.writer` writes to
a caller's sink and spools to temporary files.
"""
