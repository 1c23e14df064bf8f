"""Which settings a SIGHUP reload may change live, and which need a restart."""

from __future__ import annotations

from gateway.config.models import CallgateConfig

# Sockets, threads and connections are opened once; changing these needs a restart.
RESTART_ONLY: tuple[tuple[str, str | None], ...] = (
    ("node", None),
    ("daemon", "gc_thresholds"),  # set once start-up is done
    ("daemon", "realtime_priority"),  # threads are scheduled once, as they start
    ("media", None),
    ("store", None),
    ("http", None),
    ("sip", "listen"),
    # Routes, timers and limits; SMSC sessions and the SMS queue (the dial plan itself is
    # rebuilt on reload with the new accounts and trunks).
    ("calls", None),
    ("cdr", None),
    ("smpp", None),
    ("sms", None),
)


def merge_reload(old: CallgateConfig, new: CallgateConfig) -> tuple[CallgateConfig, list[str]]:
    """Take `new`, but keep the old value of every restart-only setting that changed.

    Returns the configuration to run with and the keys that wait for a restart.
    """
    merged = new
    waiting: list[str] = []
    for section, key in RESTART_ONLY:
        old_section = getattr(old, section)
        new_section = getattr(merged, section)
        if key is None:
            if old_section != new_section:
                waiting.append(section)
                merged = merged.model_copy(update={section: old_section})
        elif getattr(old_section, key) != getattr(new_section, key):
            waiting.append(f"{section}.{key}")
            kept = new_section.model_copy(update={key: getattr(old_section, key)})
            merged = merged.model_copy(update={section: kept})
    return merged, waiting
