#!/usr/bin/env python3
"""What shipping to object storage costs the collector: `flowvm collect` into a local directory
and into an S3 bucket (through its spool), side by side in one run, under the same load.

Usage: python3 benches/to_s3.py [--records N] [--rate R] [--rounds K] [BIN]

Starts s3s-fs 0.14.1 (installed by `sh tests/setup.sh`) on a loopback port with a bucket in a
temporary directory. For each round, and each destination in turn (so the machine's mood is
shared): start `BIN collect` (default target/release/flowvm) with files rotated every 5 s,
replay N records at R records/s over UDP with `BIN bench-replay`, wait until the spool is empty
(every completed file shipped), stop it with SIGTERM (the last files completed and shipped),
and read the collector's own user + system CPU time from the kernel (os.wait4), start to exit;
s3s-fs's CPU is not counted. Prints, per destination, the median over the rounds of: records
decoded, records lost, CPU nanoseconds per decoded record, octets archived (the directory, or
the objects in the bucket), files uploaded, and seconds from SIGTERM to exit.

Example:

    cargo build --release && python3 benches/to_s3.py --records 5000000 --rate 500000 --rounds 3
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from benchlib import metric, start_collect

ACCESS, SECRET = "flowvm-bench", "flowvm-bench-secret"


def s3s_fs():
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    for path in [shutil.which("s3s-fs"), os.path.join(home, "bin", "s3s-fs")]:
        if path and os.path.exists(path):
            return path
    raise SystemExit("s3s-fs not found: run `sh tests/setup.sh` first")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page(metrics):
    with urllib.request.urlopen("http://%s/metrics" % metrics, timeout=5) as r:
        return r.read().decode()


def size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if f.endswith(".parquet"))


def one(binary, destination, port, root, round_, records, rate):
    work = tempfile.mkdtemp(prefix="flowvm-s3-bench-")
    extra = ["--rotate", "5"]
    if destination == "s3":
        prefix = "bench-%d" % round_
        out = "s3://flows/%s" % prefix
        extra += ["--spool", os.path.join(work, "spool"), "--collector-id", "bench"]
        os.environ.update({
            "AWS_ENDPOINT_URL": "http://127.0.0.1:%d" % port, "AWS_ACCESS_KEY_ID": ACCESS,
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true"})
        archive = os.path.join(root, "flows", prefix)
    else:
        out = archive = os.path.join(work, "flows")
    proc, udp, metrics = start_collect(binary, out, extra=extra)
    replay = subprocess.run(
        [binary, "bench-replay", "--collector", udp, "--metrics", metrics,
         "--records", str(records), "--rate", str(rate)],
        capture_output=True, text=True, check=True).stdout
    text = page(metrics)
    decoded = metric(text, "flowvm_records_decoded_total")
    if destination == "s3":
        # Every file completed so far shipped: the spool empty (bounded: 120 s).
        for _ in range(1200):
            text = page(metrics)
            if metric(text, "flowvm_spool_bytes") == 0:
                break
            time.sleep(0.1)
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    stopped = time.monotonic() - stop
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (destination, status)
    octets = size(archive)
    files = sum(1 for _, _, fs in os.walk(archive) for f in fs if f.endswith(".parquet"))
    left = size(os.path.join(work, "spool")) if destination == "s3" else 0
    shutil.rmtree(work, ignore_errors=True)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "decoded": decoded,
        "lost": records - decoded,
        "ns_per_row": cpu * 1e9 / max(decoded, 1),
        "bytes": octets,
        "files": files,
        "left_in_spool": left,
        "stop_seconds": stopped,
        "replay": replay.strip(),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=5_000_000)
    p.add_argument("--rate", type=int, default=500_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("binary", nargs="?", default="target/release/flowvm")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="flowvm-s3-root-")
    os.makedirs(os.path.join(root, "flows"))
    port = free_port()
    server = subprocess.Popen(
        [s3s_fs(), "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS,
         "--secret-key", SECRET, root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        results = {"local": [], "s3": []}
        for r in range(a.rounds):
            for destination in ("local", "s3"):
                res = one(a.binary, destination, port, root, r, a.records, a.rate)
                results[destination].append(res)
                print("round %d %-5s %s" % (r + 1, destination,
                                             {k: v for k, v in res.items() if k != "replay"}),
                      flush=True)
        print("\n%d records at %d/s, %d rounds, medians:" % (a.records, a.rate, a.rounds))
        print("| destination | decoded | lost | CPU ns/record | archived octets | files | "
              "left in spool | SIGTERM to exit (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for destination, runs in results.items():
            med = {k: statistics.median(r[k] for r in runs)
                   for k in runs[0] if k != "replay"}
            print("| %s | %d | %d | %.0f | %d | %d | %d | %.1f |" % (
                destination, med["decoded"], med["lost"], med["ns_per_row"], med["bytes"],
                med["files"], med["left_in_spool"], med["stop_seconds"]))
        local = statistics.median(r["ns_per_row"] for r in results["local"])
        s3 = statistics.median(r["ns_per_row"] for r in results["s3"])
        print("\nCPU per record, s3 / local: %.2fx" % (s3 / max(local, 1e-9)))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
