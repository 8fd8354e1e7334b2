"""Signed audit reports, the service side: gather facts, run the report job, store results.

The numbers, findings, twin, HTML, PDF and signature are the pure ``reports`` package's;
this package reads the archive (log, index, store, working state) into
``reports.facts.ReportFacts`` and runs the pipeline as a durable job.
"""
