"""The retention services of one runtime, built once and kept in ``runtime.extras``
(so that ``archiver/runtime.py`` needs no new field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from archiver.retention.apply import RetentionApplier
from archiver.retention.disposition import DispositionJob
from archiver.retention.erasure import ErasureService
from archiver.retention.holds import HoldRegistry, HoldService
from archiver.store.port import LockMode

if TYPE_CHECKING:
    from archiver.runtime import Runtime


@dataclass(frozen=True, slots=True)
class RetentionServices:
    registry: HoldRegistry
    holds: HoldService
    disposition: DispositionJob
    erasure: ErasureService
    applier: RetentionApplier


def retention_services(runtime: Runtime) -> RetentionServices:
    cached = runtime.extras.get("retention")
    if isinstance(cached, RetentionServices):
        return cached
    lock = LockMode(runtime.settings.lock_mode)
    days = runtime.settings.log_retention_days
    registry = HoldRegistry(
        objects=runtime.objects, state=runtime.state, log=runtime.log, keys=runtime.keys
    )
    services = RetentionServices(
        registry=registry,
        holds=HoldService(registry, runtime.index, runtime.log, runtime.pseudo),
        disposition=DispositionJob(
            objects=runtime.objects, state=runtime.state, log=runtime.log,
            index=runtime.index, policy=runtime.policy, holds=registry, lock_mode=lock,
            log_retention_days=days,
        ),
        erasure=ErasureService(
            objects=runtime.objects, state=runtime.state, log=runtime.log, keys=runtime.keys,
            index=runtime.index, pseudo=runtime.pseudo, policy=runtime.policy, holds=registry,
            lock_mode=lock, log_retention_days=days, reader=runtime.log,
        ),
        applier=RetentionApplier(objects=runtime.objects, log=runtime.log, policy=runtime.policy,
                                 state=runtime.state),
    )  # fmt: skip
    runtime.extras["retention"] = services
    return services
