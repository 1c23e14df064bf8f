"""The tests' port helpers: what they hand out must not collide."""

from __future__ import annotations

import random

import pytest

from tests.support import ports


def test_media_bases_handed_out_never_overlap_even_before_sipp_binds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIPp binds base..base+3 some time after it starts: a base picked meanwhile must
    not overlap one already given, though the probe still finds its ports free."""
    picks = iter([12_062, 12_064, 12_060, 12_066])
    monkeypatch.setattr(random, "choice", lambda _bases: next(picks))
    monkeypatch.setattr(ports, "_handed_out", type(ports._handed_out)(maxlen=64))
    assert ports.free_media_port() == 12_062
    assert ports.free_media_port() == 12_066  # 12064 and 12060 overlap 12062..12065
