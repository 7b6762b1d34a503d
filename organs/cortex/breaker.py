"""A circuit breaker: after K consecutive failures stop calling, then let one half-open probe through.

States: CLOSED (calls pass) -> OPEN after ``failures`` consecutive failures (calls are refused) ->
HALF_OPEN once ``reset_s`` has passed (one probe passes; its success closes, its failure re-opens).
The clock is injectable, so the states are tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with a half-open probe."""

    def __init__(self, failures: int = 5, reset_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if failures < 1:
            raise ValueError(f"cortex.breaker_failures={failures}: must be > 0")
        if reset_s <= 0:
            raise ValueError(f"cortex.breaker_reset_s={reset_s}: must be > 0")
        self.failures, self.reset_s, self.clock = failures, reset_s, clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened = 0
        """How often the breaker has opened."""

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker past its reset time reads half-open)."""
        if self._state is BreakerState.OPEN and self.clock() - self._opened_at >= self.reset_s:
            self._state = BreakerState.HALF_OPEN
            self._probing = False
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open: only the one probe)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        """A call succeeded: close."""
        self._state, self._consecutive, self._probing = BreakerState.CLOSED, 0, False

    def record_failure(self) -> None:
        """A call failed: count it; open at the limit, or at once when the probe failed."""
        self._consecutive += 1
        if self._state is BreakerState.HALF_OPEN or self._consecutive >= self.failures:
            if self._state is not BreakerState.OPEN:
                self.opened += 1
            self._state, self._opened_at, self._probing = BreakerState.OPEN, self.clock(), False
