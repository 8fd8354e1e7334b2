"""Audit reports (PDF/A-3b, PAdES-signed): templates, rendering and signing.

Takes plain view-models and imports nothing from ``archiver``. The report builders are
on the roadmap after the spine (capture, proof log, retention, search); this package
exists now so that the layering contracts (import-linter) already hold for it.
"""
