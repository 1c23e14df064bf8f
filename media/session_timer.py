"""RFC 4028 session timers for the engine's legs: settings and how pjsua2 takes them.

PJSIP runs the timers (refresh as refresher, BYE with 408 when an expected
refresh does not come); this module only says how. Each leg negotiates its
own interval with its peer, so a dead caller or callee is noticed even when
the other side never refreshes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SessionTimerUse = Literal["off", "optional", "required", "always"]

# PJSIP refuses a Min-SE below RFC 4028's 90 s floor (sip_timer.c ABS_MIN_SE).
RFC4028_MIN_SE = 90
EXPIRED_STATUS = 408
"""The status PJSIP ends a leg with when an expected refresh did not come."""

_PJSUA_TIMER_USE = {
    "off": "PJSUA_SIP_TIMER_INACTIVE",
    "optional": "PJSUA_SIP_TIMER_OPTIONAL",
    "required": "PJSUA_SIP_TIMER_REQUIRED",
    "always": "PJSUA_SIP_TIMER_ALWAYS",
}


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """Session timer policy for every leg (from the [media] configuration)."""

    use: SessionTimerUse = "optional"
    expires: int = 1800
    min_se: int = RFC4028_MIN_SE


def apply_session_timer(pj: Any, call_config: Any, timer: SessionTimer) -> None:
    """Set an AccountConfig.callConfig from `timer`."""
    call_config.timerUse = getattr(pj, _PJSUA_TIMER_USE[timer.use])
    call_config.timerSessExpiresSec = timer.expires
    call_config.timerMinSESec = timer.min_se
