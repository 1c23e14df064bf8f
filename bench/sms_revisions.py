"""SmsService CPU per message: the working tree against a git revision, alternately, one run.

For a before/after figure on a machine whose load changes from minute to
minute: `git archive REV` of the packages into a temporary directory, then
`bench/sms_service.py`'s `service_run` (end to end incl. receipts, 500
submitters, SQLite WAL, uvloop) from each tree in turn, each in a fresh
subprocess against the same Node simulator, for --rounds rounds. The figure is
the subprocess's CPU (all threads) per message during the run, and the rate.

    .venv/bin/python bench/sms_revisions.py [--against HEAD] [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from smpp_client import PASSWORD_ENV  # noqa: E402

from tests.smsc.simulator import SmscSimulator  # noqa: E402

PACKAGES = ("smpp", "gateway", "bench", "tests")
# Runs in the subprocess with the tree to measure first on sys.path.
CHILD = """
import json, os, sys, time, types
root, messages, window, host, port, system_id = sys.argv[1:7]
sys.path[:0] = [root, root + "/bench"]
import logging, structlog, uvloop
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
import sms_service
sim = types.SimpleNamespace(host=host, smpp_port=int(port), system_id=system_id)
cpu = time.process_time()
figures = uvloop.run(sms_service.service_run(sim, int(messages), int(window)))
figures["cpu"] = time.process_time() - cpu
figures["module"] = sys.modules["smpp.service"].__file__
print(json.dumps(figures))
"""


def export(revision: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, *PACKAGES],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def measure(root: Path, sim: SmscSimulator, messages: int, window: int) -> dict[str, float]:
    sim.reset()
    sim.set_scenario(dlr_delay_ms=50)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(root),
            str(messages),
            str(window),
            sim.host,
            str(sim.smpp_port),
            sim.system_id,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, PASSWORD_ENV: sim.password},
        cwd=root,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    module = str(figures.pop("module"))
    if not module.startswith(str(root)):
        raise RuntimeError(f"measured {module}, not the tree under {root}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {args.against: [], "working tree": []}
    rate: dict[str, list[float]] = {args.against: [], "working tree": []}
    commits: dict[str, list[float]] = {args.against: [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="sms-rev-") as tmp, SmscSimulator() as sim:
        export(args.against, Path(tmp))
        trees = {args.against: Path(tmp), "working tree": ROOT}
        for _ in range(args.rounds):
            for label, root in trees.items():
                figures = measure(root, sim, args.messages, args.window)
                cpu[label].append(1e6 * figures["cpu"] / args.messages)
                rate[label].append(figures["end_to_end"])
                commits[label].append(figures["commits"])
    print(
        f"SmsService end to end incl. receipts, {args.messages} messages, window "
        f"{args.window}, uvloop, {args.rounds} alternating rounds (CPU of the service process)"
    )
    for label, costs in cpu.items():
        print(
            f"{label:<14} CPU/msg {statistics.mean(costs):6.0f} us "
            f"({', '.join(f'{c:.0f}' for c in costs)}); "
            f"end to end {statistics.mean(rate[label]):6.0f} msg/s "
            f"({', '.join(f'{r:.0f}' for r in rate[label])}); "
            f"commits {', '.join(f'{c:.0f}' for c in commits[label])}"
        )
    before, after = statistics.mean(cpu[args.against]), statistics.mean(cpu["working tree"])
    print(f"working tree / {args.against}: CPU per message {after / before:.2f}x")


if __name__ == "__main__":
    main()
