#!/usr/bin/env python3
"""CPU per archived record of `flowvm collect` builds, side by side in one run.

Usage: python3 benches/collector_cpu.py [--records N] [--rate R] [--rounds K] BIN [BIN ...]

For each round and each collector binary BIN (in turn, so the machine's mood is shared): start
`BIN collect` on loopback ports the OS picks, with its archive in a fresh directory, replay N
records at R records/s over UDP with the first binary's `bench-replay` (so every collector
gets the same load), stop it with SIGTERM (every file completed), and read the collector's own
user + system CPU time from the kernel (os.wait4), start to exit (the Parquet files completed
at shutdown included). Prints, per binary, the median over the rounds of: records decoded,
records lost, CPU nanoseconds per decoded record, and the octets of the archive it wrote.

Example (a baseline build beside the current one):

    python3 benches/collector_cpu.py --records 5000000 --rate 500000 \\
        /tmp/baseline/release/flowvm target/release/flowvm
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from benchlib import metric, start_collect


def one(binary, replayer, records, rate):
    out = tempfile.mkdtemp(prefix="flowvm-cpu-")
    proc, udp, metrics = start_collect(binary, out)
    replay = subprocess.run(
        [replayer, "bench-replay", "--collector", udp, "--metrics", metrics,
         "--records", str(records), "--rate", str(rate)],
        capture_output=True, text=True, check=True).stdout
    page = subprocess.run(["curl", "-s", "http://%s/metrics" % metrics],
                          capture_output=True, text=True).stdout
    decoded = metric(page, "flowvm_records_decoded_total")
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (binary, status)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    shutil.rmtree(out, ignore_errors=True)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "decoded": decoded,
        "lost": records - decoded,
        "ns_per_row": cpu * 1e9 / max(decoded, 1),
        "replay": replay.strip(),
        "bytes": size,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=5_000_000)
    p.add_argument("--rate", type=int, default=500_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("binaries", nargs="+")
    a = p.parse_args()
    results = {b: [] for b in a.binaries}
    for _ in range(a.rounds):
        for b in a.binaries:
            results[b].append(one(b, a.binaries[0], a.records, a.rate))
            time.sleep(1)
    base = None
    print("| collector | records decoded (median) | lost | CPU ns per record (median) | vs first "
          "| archive bytes |")
    print("|---|---|---|---|---|---|")
    for b in a.binaries:
        ns = statistics.median(r["ns_per_row"] for r in results[b])
        decoded = statistics.median(r["decoded"] for r in results[b])
        lost = statistics.median(r["lost"] for r in results[b])
        size = statistics.median(r["bytes"] for r in results[b])
        base = base or ns
        print("| %s | %d | %d | %.0f | %.2fx | %d |" % (b, decoded, lost, ns, ns / base, size))


if __name__ == "__main__":
    main()
