#!/usr/bin/env python3
"""Records lost by `flowvm collect` with 1 and with 2 workers, side by side in one run.

Usage: python3 benches/collector_workers.py [--records N] [--exporters K] [--workers W ...]
                                            [--rates R ...] [--compression CODEC ...] [BIN]

For each offered rate, archive codec and worker count in turn: start `BIN collect --workers W
--compression CODEC` (default target/release/flowvm, zstd) on loopback ports the OS picks,
with its archive in a fresh directory; replay N records of bench-replay's 7-field template at
that rate from K exporter sockets (so the kernel's SO_REUSEPORT hash spreads them over the
workers); wait until every decoded record is written; read from the collector's metrics what
it decoded and wrote and what it counted dropped (by reason, and the kernel's socket drops);
stop it with SIGTERM. Prints a table of records lost (sent - decoded) per rate, codec and
worker count, with the counted drops beside.

Example (the README's table):

    cargo build --release --bin flowvm
    python3 benches/collector_workers.py --records 20000000 --rates 4000000 5000000 6000000 0
"""

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

from benchlib import metric, start_collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scrape(metrics):
    with urllib.request.urlopen("http://%s/metrics" % metrics, timeout=5) as r:
        return r.read().decode()


def one(binary, workers, rate, records, exporters, codec):
    out = tempfile.mkdtemp(prefix="flowvm-workers-")
    proc, udp, metrics = start_collect(
        binary, out, extra=["--workers", str(workers), "--compression", codec])
    try:
        subprocess.run(
            [binary, "bench-replay", "--collector", udp, "--metrics", metrics, "--records",
             str(records), "--rate", str(rate), "--exporters", str(exporters)],
            capture_output=True, text=True, check=True)
        # Bounded: every decoded record written, or 30 s.
        for _ in range(60):
            page = scrape(metrics)
            decoded = metric(page, "flowvm_records_decoded_total")
            written = metric(page, "flowvm_rows_written_total")
            if decoded == written:
                break
            time.sleep(0.5)
        dropped = metric(page, "flowvm_dropped_total")
        kernel = metric(page, "flowvm_udp_kernel_drops")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(out, ignore_errors=True)
    return dict(decoded=decoded, written=written, dropped=dropped, kernel=kernel,
                lost=records - decoded)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=20_000_000)
    p.add_argument("--exporters", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rates", type=int, nargs="+", default=[4_000_000, 5_000_000, 6_000_000])
    p.add_argument("--compression", nargs="+", default=["zstd"], metavar="CODEC",
                   help="archive codecs, each measured in turn (zstd, lz4)")
    p.add_argument("binary", nargs="?", default=os.path.join(ROOT, "target", "release", "flowvm"))
    a = p.parse_args()
    print("| offered rate | compression | workers | decoded | written | lost | counted: dropped "
          "datagrams, kernel drops |")
    print("|---|---|---|---|---|---|---|")
    for rate in a.rates:
        for codec in a.compression:
            for workers in a.workers:
                r = one(a.binary, workers, rate, a.records, a.exporters, codec)
                print("| %s | %s | %d | %d | %d | %d (%.2f %%) | %d, %d |"
                      % ("%.1f M/s" % (rate / 1e6) if rate else "as fast as possible", codec,
                         workers, r["decoded"], r["written"], r["lost"],
                         100.0 * r["lost"] / a.records, r["dropped"], r["kernel"]), flush=True)
                time.sleep(1)


if __name__ == "__main__":
    main()
