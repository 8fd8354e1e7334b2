"""In-process retry policy of the Graph API client (tenacity)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, ParamSpec, TypeVar

import tenacity

from archiver.whatsapp.graph_errors import GraphUnavailable

__all__ = ["NO_RETRY", "RetryPolicy"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """In-process retry for ``GraphUnavailable`` only: exponential back-off with jitter.

    This covers seconds-long blips; the durable, days-long schedule is
    ``media.should_retry`` / ``media.next_retry_at`` driven by the worker.
    """

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    jitter: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(self.attempts, 1)),
            # initial·2^(n-1) capped at max_wait, plus uniform jitter in [0, jitter]
            # (composed, as tenacity renamed wait_exponential_jitter's arguments in 9.x).
            wait=tenacity.wait_exponential(multiplier=self.initial_wait, max=self.max_wait)
            + tenacity.wait_random(0, self.jitter),
            retry=tenacity.retry_if_exception_type(GraphUnavailable),
            reraise=True,
            sleep=self.sleep,
        )

    def call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return self.retrying()(fn, *args, **kwargs)


NO_RETRY: Final = RetryPolicy(attempts=1)
