"""Every working-state key the cases package writes, in one place (the lead moves these
into the keyspace module)::

    cases/<case id>                          the case document (CAS)
    cases-custody/<case id>/<ns:020d>-<rand>  one chain-of-custody entry, written once
                                             (keys sort by time)
    cases-bates/<case id>/head               {"next": int}: the next free Bates number (CAS)
    cases-bates/<case id>/map/<bb>           {item id: number} for items whose
                                             SHA-256 starts with byte ``bb`` (CAS)
"""

from __future__ import annotations

CASES_PREFIX = "cases/"
CUSTODY_PREFIX = "cases-custody/"
BATES_PREFIX = "cases-bates/"


def case_key(case_id: str) -> str:
    return CASES_PREFIX + case_id


def custody_key(case_id: str, stamp: str) -> str:
    return f"{CUSTODY_PREFIX}{case_id}/{stamp}"


def custody_prefix(case_id: str) -> str:
    return f"{CUSTODY_PREFIX}{case_id}/"


def bates_head_key(case_id: str) -> str:
    return f"{BATES_PREFIX}{case_id}/head"


def bates_bucket_key(case_id: str, bucket: str) -> str:
    return f"{BATES_PREFIX}{case_id}/map/{bucket}"
