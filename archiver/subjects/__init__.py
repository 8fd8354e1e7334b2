"""Who is who, and which records and raw slots name whom: the indexes ingestion writes
before any record exists.

* ``aliases``: a contact's alias forms (pure);
* ``identity``: the alias registry and the merges that make one person one subject;
* ``traces``: conversation → subjects traces (``convsubjects/``);
* ``grants``: subject → raw delivery slots (``capgrants/``);
* ``mentions``: the contacts a delivery names (pure).

Depends on the store port and the pure core only. The processor and the consent recorder
write here; retention reads (hold and erasure lookups) without ingestion knowing of it.
"""
