"""The retention services of one runtime, built once by ``Runtime.open`` from its parts
(``Runtime.retention``)."""

from __future__ import annotations

from dataclasses import dataclass

from archiver.keys.envelope import KeyEncryptionKey
from archiver.keys.store import KeyStore
from archiver.ledger.log import TransparencyLog
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.apply import RetentionApplier
from archiver.retention.disposition import DispositionJob
from archiver.retention.erasure import ErasureService
from archiver.retention.holds import HoldRegistry, HoldService
from archiver.retention.policy import EngineDecider
from archiver.store.port import LockMode, ObjectStore, StateStore
from search.port import SearchIndex


@dataclass(frozen=True, slots=True)
class RetentionServices:
    registry: HoldRegistry
    holds: HoldService
    disposition: DispositionJob
    erasure: ErasureService
    applier: RetentionApplier


def retention_services(
    *,
    objects: ObjectStore,
    state: StateStore,
    log: TransparencyLog,
    keys: KeyStore,
    index: SearchIndex,
    pseudo: Pseudonymizer,
    policy: EngineDecider,
    lock: LockMode,
    log_retention_days: int,
    kek: KeyEncryptionKey | None = None,
) -> RetentionServices:
    days = log_retention_days
    registry = HoldRegistry(objects=objects, state=state, log=log, keys=keys)
    erasure = ErasureService(
        objects=objects, state=state, log=log, keys=keys, index=index, pseudo=pseudo,
        policy=policy, holds=registry, lock_mode=lock, log_retention_days=days, reader=log,
        kek=kek,
    )  # fmt: skip
    # A released hold may have been the last thing keeping an erased person's raw slot.
    registry.after_release.append(erasure.settle_kept_slots)
    return RetentionServices(
        registry=registry,
        holds=HoldService(registry, index, log, pseudo),
        disposition=DispositionJob(
            objects=objects, state=state, log=log, index=index, policy=policy, holds=registry,
            lock_mode=lock, log_retention_days=days, pseudo=pseudo,
        ),
        erasure=erasure,
        applier=RetentionApplier(objects=objects, log=log, policy=policy, state=state),
    )  # fmt: skip
