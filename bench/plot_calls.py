"""Plot calls/s against CPU and setup latency from `bench/daemon_calls.py --json`.

Left: calls/s answered and the CPU of the daemon plus its engine child against
the offered rate, for the ramp (no rate limit) and the overload steps (rate
limit set to what the ramp sustained); the direct SIPp-to-SIPp rate of the same
run is the baseline. Right: the
probe's INVITE -> 200 p50/p99 through the daemon and directly.

Run: python bench/plot_calls.py RESULTS.json [--output docs/calls.svg]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib import ticker


def _by_rate(rows: list[dict[str, Any]], path: str, key: str) -> tuple[list[float], list[float]]:
    """(offered, value) for `path`, one point per offered rate (the longest step wins)."""
    rows = sorted(rows, key=lambda r: r["wall"])
    points = {r["offered"]: r[key] for r in rows if r["path"] == path and r[key] is not None}
    rates = sorted(points)
    return rates, [points[r] for r in rates]


def plot(results: dict[str, Any], output: Path) -> None:
    rows = results["rows"]
    # Ramp: no rate limit; overload: max_new_per_second = the limit found by the ramp.
    groups = (
        ("no rate limit", [r for r in rows if r["phase"] == "ramp"], "o", "tab:blue"),
        (
            f"limit {results['limit']:g}/s",
            [r for r in rows if r["phase"].startswith("overload")],
            "s",
            "tab:orange",
        ),
    )
    # Latency steps carry the probe's calls too: they go to the right-hand plot only.
    probed = [r for r in rows if r["phase"] == "latency"]
    fig, (load, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    cpu = load.twinx()
    direct = [r for r in rows if r["phase"] != "latency"]
    load.plot(
        *_by_rate(direct, "direct", "answered_cps"),
        "x--",
        color="tab:green",
        label="answered/s, SIPp direct",
    )
    for name, group, marker, color in groups:
        load.plot(
            *_by_rate(group, "callgate", "answered_cps"),
            marker + "-",
            color=color,
            label=f"answered/s, daemon ({name})",
        )
        rates, parent = _by_rate(group, "callgate", "cpu_daemon")
        child = _by_rate(group, "callgate", "cpu_engine")[1]
        cpu.plot(
            rates,
            [p + c for p, c in zip(parent, child, strict=True)],
            marker + ":",
            color=color,
            alpha=0.6,
            label=f"CPU daemon + engine ({name})",
        )
    load.set_xlabel("offered calls/s")
    load.set_ylabel("calls/s answered")
    cpu.set_ylabel("CPU, % of one core (dotted)")
    handles = load.get_legend_handles_labels()[0] + cpu.get_legend_handles_labels()[0]
    load.legend(handles=handles, fontsize=7, loc="upper left")
    load.set_title(f"whole daemon, {results['cores']} shared cores")
    for path, color in (("callgate", "tab:blue"), ("direct", "tab:green")):
        for key, style in (("probe_p50", "o-"), ("probe_p99", "x--")):
            latency.plot(
                *_by_rate(probed, path, key), style, color=color, label=f"{path} {key[6:]}"
            )
    latency.set_xlabel("offered calls/s (load beside the probe)")
    latency.set_ylabel("INVITE -> 200, ms")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(ticker.ScalarFormatter())
    latency.legend(fontsize=7)
    latency.set_title("setup latency (sequential probe calls)")
    fig.tight_layout()
    fig.savefig(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--output", type=Path, default=Path("docs/calls.svg"))
    args = parser.parse_args()
    plot(json.loads(args.results.read_text()), args.output)


if __name__ == "__main__":
    main()
