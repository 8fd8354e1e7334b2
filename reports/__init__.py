"""Audit reports for regulators (GDPR, HIPAA, FINRA / SEC 17a-4): the pure core.

Plain facts (``facts``) → numbers and findings (``compute``, ``findings``, ``regulations``) → the
canonical JSON twin (``twin``) and HTML with inline SVG charts (``render``, ``charts``,
``templates/``). Imports nothing from ``archiver``; see ``docs/reports.md``.
"""
