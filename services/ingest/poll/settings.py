"""Per-tenant polling settings, from ``[tenants.<t>.settings]`` (checked at start-up; a bad value
stops the service with a message naming the setting)::

    poll_interval_s = 300          # a round every 5 minutes (a new note waits at most this + a round)
    poll_rate_per_s = 5            # EHR requests per second for this tenant (token bucket)
    poll_burst = 5                 # bucket size (default: the rate, at least 1)
    poll_concurrency = 4           # requests in flight at once for this tenant
    poll_lookback_h = 72           # a newly watched patient's notes this far back are read once
    poll_overlap_s = 5             # each search re-reads this much before the cursor (late commits)
    poll_page_size = 50            # _count
    poll_last_updated = true       # send _lastUpdated=ge... (false: the EHR does not support it)
    poll_sort = true               # send _sort=_lastUpdated (false: the EHR does not support it)
    poll_watch_refresh_s = 3600    # checkpoint-inhibitor list: how often it is rebuilt
    poll_watch_keep_days = 365     # ... and how long a patient stays watched after the last active order
    poll_watch_text = true         # ... also sweep active orders for ICI names in text (not only RxNorm)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from services.core.config import ConfigError


def _number(tenant: str, settings: dict, key: str, default: float, low: float, high: float,
            *, whole: bool = False) -> float:
    value: Any = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
            or (whole and int(value) != value):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"tenant {tenant}: settings.{key}={value!r}: expected {kind} in [{low:g}, {high:g}]")
    return int(value) if whole else float(value)


def _flag(tenant: str, settings: dict, key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"tenant {tenant}: settings.{key}={value!r}: expected true or false")
    return value


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 300.0
    rate_per_s: float = 5.0
    burst: int = 5
    concurrency: int = 4
    lookback_h: float = 72.0
    overlap_s: float = 5.0
    page_size: int = 50
    last_updated: bool = True
    sort: bool = True
    watch_refresh_s: float = 3600.0
    watch_keep_days: float = 365.0
    watch_text: bool = True

    @classmethod
    def from_tenant(cls, tenant) -> "PollSettings":
        t, s = tenant.id, tenant.settings
        rate = _number(t, s, "poll_rate_per_s", 5.0, 0.01, 1000.0)
        return cls(interval_s=_number(t, s, "poll_interval_s", 300.0, 0.2, 86400.0),
                   rate_per_s=rate,
                   burst=_number(t, s, "poll_burst", max(1, math.floor(rate)), 1, 10000, whole=True),
                   concurrency=_number(t, s, "poll_concurrency", 4, 1, 64, whole=True),
                   lookback_h=_number(t, s, "poll_lookback_h", 72.0, 0.0, 24.0 * 366),
                   overlap_s=_number(t, s, "poll_overlap_s", 5.0, 0.0, 3600.0),
                   page_size=_number(t, s, "poll_page_size", 50, 1, 1000, whole=True),
                   last_updated=_flag(t, s, "poll_last_updated", True),
                   sort=_flag(t, s, "poll_sort", True),
                   watch_refresh_s=_number(t, s, "poll_watch_refresh_s", 3600.0, 1.0, 7 * 86400.0),
                   watch_keep_days=_number(t, s, "poll_watch_keep_days", 365.0, 0.0, 3650.0),
                   watch_text=_flag(t, s, "poll_watch_text", True))
