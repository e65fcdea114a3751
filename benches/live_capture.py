#!/usr/bin/env python3
"""Live capture on `lo`, side by side: CPU per captured frame and frames missed, of `flowvm
export --interface lo` builds (and of one build with several `--workers`) under the same load.

Usage (as root: live capture needs CAP_NET_RAW):
    python3 benches/live_capture.py [--loops N] [--datagram-rate D] [--rounds K] [--workers W]
                                    [--baseline BIN] [BIN]

For each round and each exporter (BIN, default target/release/flowvm; BIN with `--workers W`
when W > 1; the baseline build when given), in turn: start a UDP sink and the exporter on
`lo` sending its IPFIX to that sink, replay the UDP payloads of softflowd's test capture
(`testdata/captures/netflow-parser-cisco-avc-ipfix.pcap`, 6,666 datagrams a pass) N times at D datagrams/s to a
second sink with BIN's `bench-replay --pcap` (each datagram is one frame on `lo` the exporter
must meter), stop the exporter with SIGTERM and read its own user + system CPU time from the
kernel (os.wait4) and its summary's `packets read`. Prints, per exporter, the median over the
rounds of: frames sent, frames read by the exporter, frames missed, and CPU nanoseconds per
frame read.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import time

CAPTURE = "testdata/captures/netflow-parser-cisco-avc-ipfix.pcap"


def one(exporter, workers, replayer, loops, rate):
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    args = [exporter, "export", "--interface", "lo", "--collector",
            "127.0.0.1:%d" % collector.getsockname()[1], "--log-level", "error"]
    if workers > 1:
        args += ["--workers", str(workers)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    banner = proc.stdout.readline()
    assert banner.startswith("Collector "), banner
    time.sleep(0.3)
    replay = subprocess.run(
        [replayer, "bench-replay", "--pcap", CAPTURE, "--loops", str(loops),
         "--datagram-rate", str(rate), "--collector", "127.0.0.1:%d" % target.getsockname()[1]],
        capture_output=True, text=True, check=True).stdout
    sent = int(re.search(r"sent (\d+) datagrams", replay).group(1))
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    summary = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    collector.close()
    target.close()
    read = int(re.search(r"packets read (\d+)", summary).group(1))
    # The exporter also reads its own Messages and other traffic on lo: count only what it
    # missed of the load (never below 0).
    cpu = usage.ru_utime + usage.ru_stime
    return {"sent": sent, "read": read, "missed": max(sent - read, 0),
            "ns_per_frame": cpu * 1e9 / max(read, 1)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loops", type=int, default=40)
    p.add_argument("--datagram-rate", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--baseline")
    p.add_argument("binary", nargs="?", default="target/release/flowvm")
    a = p.parse_args()
    runs = []
    if a.baseline:
        runs.append(("baseline " + a.baseline, a.baseline, 1))
    runs.append((a.binary, a.binary, 1))
    if a.workers > 1:
        runs.append(("%s --workers %d" % (a.binary, a.workers), a.binary, a.workers))
    results = {name: [] for name, _, _ in runs}
    for r in range(a.rounds):
        for name, binary, workers in runs:
            res = one(binary, workers, a.binary, a.loops, a.datagram_rate)
            results[name].append(res)
            print("round %d %s: %s" % (r + 1, name, res), flush=True)
    print("\n%d passes of %s at %d datagrams/s, %d rounds, medians:"
          % (a.loops, CAPTURE, a.datagram_rate, a.rounds))
    print("| exporter | frames sent | read | missed | CPU ns per frame |")
    print("|---|---|---|---|---|")
    for name, res in results.items():
        med = {k: statistics.median(x[k] for x in res) for k in res[0]}
        print("| %s | %d | %d | %d | %.0f |" % (name, med["sent"], med["read"], med["missed"],
                                               med["ns_per_frame"]))


if __name__ == "__main__":
    main()
