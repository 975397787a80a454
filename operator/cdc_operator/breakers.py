"""Circuit breakers per dependency: one Kafka, Vault or Cassandra being down must not starve the
pipelines that use the others.

A dependency is keyed by what identifies it (Kafka's bootstrap servers, Vault's address,
Cassandra's contact points) and by the identity used there. Every call to it goes through
`Breakers.call`, with a timeout:

- healthy (its last call succeeded): calls run, concurrently;
- unknown (never called) or due for a retry after an outage: the first caller is the *probe*,
  and while the probe runs other callers are deferred (`Deferred`: the pass stops before doing
  anything and its key is queued again when the probe settles) instead of each waiting out the
  same timeout on a thread;
- down (the probe failed or timed out): callers fail at once (`Unavailable`, which the pass turns
  into a condition such as `Ready=False, reason KafkaUnavailable`) until the next probe is due,
  after 1, 2, 4 … seconds (capped by CDC_OPERATOR_BREAKER_MAX_SECONDS, default 60).

So a dependency that is down costs one thread for one timeout per retry period, not one per
pipeline per pass, and the other pipelines keep every worker of the queue.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
# (kind: "Kafka" | "Vault" | "Cassandra", address, who): `who` is the identity the operator uses
# there (a login refused to one pipeline must not look like an outage to the others); messages
# name only the kind and the address.
Dep = tuple[str, str, str]

MAX_SECONDS = float(os.environ.get("CDC_OPERATOR_BREAKER_MAX_SECONDS", "60"))


class Unavailable(Exception):
    """The dependency is down: fail fast. `reason` is the condition reason to report."""

    def __init__(self, dep: Dep, why: str) -> None:
        super().__init__(f"{dep[0]} at {dep[1]} is unavailable ({why}); retrying with backoff")
        self.dep = dep
        self.reason = f"{dep[0]}Unavailable"


class Deferred(Exception):
    """Another pass is probing the dependency: stop, and run again once it knows."""

    def __init__(self, dep: Dep) -> None:
        super().__init__(f"{dep[0]} at {dep[1]} is being checked")
        self.dep = dep


@dataclass
class _State:
    healthy: bool | None = None  # None: never called
    failures: int = 0
    retry_at: float = 0.0
    why: str = ""
    probing: bool = False
    parked: list[Callable[[], None]] = field(default_factory=list)


class Breakers:
    def __init__(
        self, base: float = 1.0, cap: float = MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.base, self.cap, self.clock = base, cap, clock
        self._deps: dict[Dep, _State] = {}

    def _get(self, dep: Dep) -> _State:
        return self._deps.setdefault(dep, _State())

    def probing(self, dep: Dep) -> bool:
        found = self._deps.get(dep)
        return found is not None and found.probing

    def park(self, dep: Dep, then: Callable[[], None]) -> None:
        """Run `then` when the probe in flight settles (at once when there is none)."""
        s = self._get(dep)
        if s.probing:
            s.parked.append(then)
        else:
            then()

    def down(self, dep: Dep) -> Unavailable | None:
        """Why calls to `dep` would fail fast right now, or None."""
        s = self._deps.get(dep)
        if s is None or s.healthy is not False or self.clock() >= s.retry_at:
            return None
        return Unavailable(dep, s.why)

    def retry_in(self, dep: Dep) -> float:
        """Seconds until `dep` may be probed again (0 when it is not down)."""
        s = self._deps.get(dep)
        if s is None or s.healthy is not False:
            return 0.0
        return max(0.0, s.retry_at - self.clock())

    def admit(self, dep: Dep) -> bool:
        """May a call go ahead? True when the caller is the probe; raises when it may not."""
        s = self._get(dep)
        if s.healthy:
            return False
        if s.healthy is False and self.clock() < s.retry_at:
            raise Unavailable(dep, s.why)
        if s.probing:
            raise Deferred(dep)
        s.probing = True
        return True

    def succeeded(self, dep: Dep, probe: bool = False) -> None:
        s = self._get(dep)
        s.healthy, s.failures, s.why = True, 0, ""
        if probe:
            self._settle(s)

    def failed(self, dep: Dep, why: str, probe: bool = False) -> None:
        s = self._get(dep)
        s.healthy, s.why = False, why
        s.retry_at = self.clock() + min(self.cap, self.base * 2**s.failures)
        s.failures += 1
        if probe:
            self._settle(s)

    def release(self, dep: Dep) -> None:
        """A probe that ended without telling (cancelled, or an unrelated error)."""
        s = self._get(dep)
        if s.probing:
            self._settle(s)

    def _settle(self, s: _State) -> None:
        s.probing = False
        parked, s.parked = s.parked, []
        for then in parked:
            then()

    async def call(
        self, dep: Dep, fn: Callable[[], Awaitable[T]], timeout: float,
        outage: Callable[[BaseException], str | None] = lambda e: None,
    ) -> T:  # fmt: skip
        """`await fn()` under the breaker of `dep` and a timeout. `outage(e)` says whether an
        exception means the dependency is down (and in what words), or is the call's own
        (a refusal, a bad request: the dependency answered)."""
        probe = self.admit(dep)
        try:
            result = await asyncio.wait_for(fn(), timeout)
        except TimeoutError:
            self.failed(dep, f"no answer within {timeout:g} s", probe)
            raise Unavailable(dep, f"no answer within {timeout:g} s") from None
        except Exception as e:
            why = outage(e)
            if why is None:
                self.succeeded(dep, probe)
                raise
            self.failed(dep, why, probe)
            raise Unavailable(dep, why) from None
        except BaseException:
            if probe:
                self.release(dep)
            raise
        self.succeeded(dep, probe)
        return result

    def __len__(self) -> int:
        return len(self._deps)


BREAKERS = Breakers()
