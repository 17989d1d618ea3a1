"""Upstream rate limits while seeding: one token bucket per source, shared by all workers."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping
from typing import Any


class SharedRateLimiter:
    """At most ``rate`` calls of ``wait()`` per second over all forked worker processes.

    A token bucket of size 1: requests are spaced at least 1/rate seconds apart, so
    there is no burst at the start. The next free slot lives in shared memory created
    before the workers fork; ``time.monotonic`` is one system-wide clock on Unix.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be positive, got {rate}")
        self.rate = float(rate)
        self.interval_seconds = 1.0 / self.rate
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self._next_slot = context.Value("d", 0.0, lock=True)

    def wait(self) -> None:
        """Block until this process may send the next request."""
        with self._next_slot.get_lock():
            now = time.monotonic()
            slot = max(now, self._next_slot.value)
            self._next_slot.value = slot + self.interval_seconds
        if slot > now:
            time.sleep(slot - now)


class RateLimitedSource:
    """A source whose ``get_map``/``get_tile`` calls wait for ``limiter`` first."""

    def __init__(self, source: Any, limiter: SharedRateLimiter) -> None:
        self._source = source
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"RateLimitedSource({self._source!r}, {self._limiter.rate:g}/s)"

    def get_map(self, query: Any) -> Any:
        """The wrapped source's ``get_map`` after waiting for a free slot."""
        self._limiter.wait()
        return self._source.get_map(query)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._source, name)
        if name == "get_tile" and callable(attribute):
            # only tile sources have get_tile: the tile manager checks for it
            def get_tile(*args: Any, **kwargs: Any) -> Any:
                self._limiter.wait()
                return attribute(*args, **kwargs)

            return get_tile
        return attribute


class RateLimits:
    """The limiters of one run: ``default`` req/s for every source, overridden per source.

    ``per_source`` maps source names to their ``seed.rate_limit`` from mapproxy.yaml;
    where both apply the lower rate wins. Limiters are created once per source name, so
    caches sharing a source share its limit.
    """

    def __init__(self, default: float | None, per_source: Mapping[str, float]) -> None:
        self.default = default
        self.per_source = dict(per_source)
        self._limiters: dict[str, SharedRateLimiter] = {}
        self._wrapped: set[int] = set()

    def rate_for(self, source_name: str | None) -> float | None:
        """The requests per second allowed for ``source_name`` (None: unlimited)."""
        rates = [self.default, self.per_source.get(source_name or "")]
        given = [rate for rate in rates if rate is not None]
        return min(given) if given else None

    def limiter(self, key: str, rate: float) -> SharedRateLimiter:
        """The limiter of ``key`` (a source name), created on first use."""
        if key not in self._limiters:
            self._limiters[key] = SharedRateLimiter(rate)
        return self._limiters[key]

    def apply(self, tile_manager: Any, source_names: list[str | None]) -> None:
        """Wrap the sources of ``tile_manager`` (named by position) with their limiters."""
        if id(tile_manager) in self._wrapped:
            return
        self._wrapped.add(id(tile_manager))
        wrapped: dict[int, Any] = {}
        for index, source in enumerate(tile_manager.sources):
            name = source_names[index] if index < len(source_names) else None
            rate = self.rate_for(name)
            if rate is None:
                continue
            key = name or f"{tile_manager.identifier}#{index}"
            wrapped[id(source)] = RateLimitedSource(source, self.limiter(key, rate))
        if wrapped:
            tile_manager.wrap_sources(lambda source: wrapped.get(id(source), source))
