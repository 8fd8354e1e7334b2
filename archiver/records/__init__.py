"""Records: the immutable, canonical unit of the archive (pure code)."""
