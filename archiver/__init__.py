"""Compliance archive for WhatsApp Business (Coexistence).

The object store is the system of record; everything else (the index, the
working state) can be rebuilt or is operational only. See ``docs/`` and the
README for the walk of a message.
"""

__version__ = "0.1.0"
