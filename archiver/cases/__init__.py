"""E-discovery cases (issue 11, item 1): custodians, a scope, holds the case owns, a
chain of custody, the scope's records for an export, and stable Bates numbers.

Public API (what the export job calls)::

    runtime.cases -> CaseService                            built by Runtime.open
    CaseService.get(case_id, actor)                         visible case or case_not_found
    CaseService.records_in_scope(case_id, actor)            Iterator[record id]
    CaseService.scope_documents(case_id, actor)             Iterator[(record id, doc | None)]
    CaseService.attachments(record_ids)                     [Attachment(link, blob)]
    CaseService.allocate_bates(case_id, actor, ids, start=) {item id: number}
    CaseService.export_requested(case_id, actor, export_id=, options=)
    CaseService.export_finished(case_id, actor, export_id=, state=, counts=, **details)
    records_in_scope(index, case_doc)                       archiver.cases.scope
    BatesAllocator(state).allocate(case_id, ids, start=)    archiver.cases.bates

State keys: ``archiver.keyspace`` (every prefix in one place).
"""
