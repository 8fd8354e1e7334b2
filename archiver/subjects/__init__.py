"""Who is who: the alias registry and the merges that make one person one subject."""
