"""Errors of the e-discovery export package.

ArchiverError
└── ExportError               root of this package
    ├── ExportInputError      an item, attachment, batch or Bates number is inconsistent
    └── ExportStateError      the writer's phases were called out of order
"""

from __future__ import annotations

from archiver.errors import ArchiverError


class ExportError(ArchiverError):
    code = "export_error"


class ExportInputError(ExportError):
    code = "export_input_invalid"


class ExportStateError(ExportError):
    code = "export_state"
