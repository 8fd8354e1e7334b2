"""Background work: the processing and indexing loops, and singleton jobs under a lease."""
