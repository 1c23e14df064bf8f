"""SmsService CPU per message: the working tree against a git revision, alternately, one run.

For a before/after figure on a machine whose load changes from minute to
minute: `git archive REV` of the packages into a temporary directory, then
`bench/sms_service.py`'s `service_run` (end to end incl. receipts, 500
submitters, SQLite WAL, uvloop) from each tree in turn, each in a fresh
subprocess against the same Node simulator, for --rounds rounds. The figure is
the subprocess's CPU (all threads) per message during the run, and the rate.

    .venv/bin/python bench/sms_revisions.py [--against HEAD] [--messages 20000] [--rounds 3]
    .venv/bin/python bench/sms_revisions.py --collector [--messages 20000] [--rounds 3]

--collector measures the working tree twice instead, with Python's collector
defaults and settled as `callgate run` does after start-up; the CPU spent inside
collections is printed for every run.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from smpp_client import PASSWORD_ENV  # noqa: E402

from tests.smsc.simulator import SmscSimulator  # noqa: E402

PACKAGES = ("smpp", "gateway", "bench", "tests")
# Runs in the subprocess with the tree to measure first on sys.path.
CHILD = """
import gc, json, os, sys, time, types
root, messages, window, host, port, system_id, collector = sys.argv[1:8]
sys.path[:0] = [root, root + "/bench"]
import logging, structlog, uvloop
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
import sms_service
sim = types.SimpleNamespace(host=host, smpp_port=int(port), system_id=system_id)
gcs = [0, 0, 0, 0.0]  # collections per generation, CPU seconds inside them
def collecting(phase, info):
    if phase == "start":
        gcs[info["generation"]] += 1
        gcs[3] -= time.thread_time()  # the collecting thread's CPU
    else:
        gcs[3] += time.thread_time()
gc.callbacks.append(collecting)
options = {} if collector == "daemon" else {"settle": False}
cpu = time.process_time()
figures = uvloop.run(sms_service.service_run(sim, int(messages), int(window), **options))
figures["cpu"] = time.process_time() - cpu
figures["collections"] = "/".join(str(n) for n in gcs[:3])
figures["in_collections"] = gcs[3]
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


def measure(
    root: Path, sim: SmscSimulator, messages: int, window: int, collector: str = "daemon"
) -> dict[str, Any]:
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
            collector,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, PASSWORD_ENV: sim.password},
        cwd=root,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    module = str(figures.pop("module"))
    if not module.startswith(str(root)):
        raise RuntimeError(f"measured {module}, not the tree under {root}")
    return figures


def _figures(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")
    parser.add_argument(
        "--collector",
        action="store_true",
        help="instead: the working tree with Python's collector defaults against it "
        "settled as `callgate run` does (gateway.collector)",
    )
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before = "collector defaults" if args.collector else args.against
    runs: dict[str, list[dict[str, Any]]] = {before: [], "working tree": []}
    with tempfile.TemporaryDirectory(prefix="sms-rev-") as tmp, SmscSimulator() as sim:
        if args.collector:
            trees = {before: (ROOT, "defaults"), "working tree": (ROOT, "daemon")}
        else:
            export(args.against, Path(tmp))
            trees = {before: (Path(tmp), "daemon"), "working tree": (ROOT, "daemon")}
        for _ in range(args.rounds):
            for label, (root, collector) in trees.items():
                runs[label].append(measure(root, sim, args.messages, args.window, collector))
    print(
        f"SmsService end to end incl. receipts, {args.messages} messages, window "
        f"{args.window}, uvloop, {args.rounds} alternating rounds (CPU of the service process)"
    )
    cpu = {label: [1e6 * r["cpu"] / args.messages for r in done] for label, done in runs.items()}
    for label, done in runs.items():
        rates = [r["end_to_end"] for r in done]
        inside = [1e6 * r["in_collections"] / args.messages for r in done]
        print(
            f"{label:<18} CPU/msg {statistics.mean(cpu[label]):6.0f} us "
            f"({_figures(cpu[label])}); end to end {statistics.mean(rates):6.0f} msg/s "
            f"({_figures(rates)}); commits {_figures([r['commits'] for r in done])}"
        )
        print(
            f"{'':<18} garbage collections gen0/1/2 "
            f"{', '.join(r['collections'] for r in done)}; CPU inside them "
            f"{_figures(inside)} us/msg"
        )
    ratio = statistics.mean(cpu["working tree"]) / statistics.mean(cpu[before])
    print(f"working tree / {before}: CPU per message {ratio:.2f}x")


if __name__ == "__main__":
    main()
