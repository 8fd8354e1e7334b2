"""The derived search index: query language, the port, and two adapters
(Elasticsearch and embedded SQLite FTS5). Imports nothing from ``archiver``."""
