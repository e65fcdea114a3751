#!/usr/bin/env python3
"""CPU per archived record of `flowvm collect` and nfcapd (nfdump 1.7.x), side by side in one run.

Usage: python3 benches/vs_nfcapd.py [--loops N] [--datagram-rate D] [--rounds K] [--flows F]
                                   [--baseline BIN] [--compression CODEC ...]

The load is real exporter output: softflowd's IPFIX for about 280,000 distinct IPv4 TCP/UDP
flows, built once and cached under target/bench-data/ (a generated pcap of 2 packets a flow is
fed to `softflowd -r ... -v 10`, and its export datagrams are captured as a pcap).

For each round and each collector in turn (so the machine's mood is shared): start it on a free
loopback UDP port with its output in a fresh directory (nfcapd: LZ4 files, rotated every 60 s
like flowvm's archive; flowvm: Parquet pages compressed by each codec --compression names, one
collector each, zstd alone by default), replay the capture N times at D datagrams/s with
`target/release/flowvm bench-replay --pcap` (the same bytes to all, unchanged), wait until the
collector is idle (its CPU time and output stop growing), stop it with SIGTERM (every file
completed), and read its own user + system CPU time from the kernel (os.wait4), start to exit.
Records archived are counted from the files: nfdump's summary of nfcapd's files, the Parquet
row counts of flowvm's (pyarrow or duckdb, installed by tests/setup.sh).

Each flowvm round line ends with its CPU by thread (`flowvm_thread_cpu_seconds_total`,
scraped once the collector is idle): the workers' receive and decode, the archive threads'
Parquet encoding. Prints, per collector, the median over the rounds of: records archived, records expected
(N x the records of one pass, as `flowvm decode` counts them offline), % kept, CPU nanoseconds
per archived record and output bytes; then the ratio flowvm / nfcapd of CPU per record.

Sequence numbers: every pass replays the same ones, so each new pass looks like an exporter
restart (flowvm: exporter_restarts, or messages_reordered when a pass is shorter than 65,536
records; nfcapd: one sequence error); neither drops records for it. softflowd 1.1.0's IPFIX
sequence number counts the records sent *including* the Message's own, options records not
counted: flowvm reads softflowd's streams that way, nfcapd reports about two sequence errors at
every template refresh (every 16 Messages). The per-round lines show both.

Needs: a release build (`cargo build --release --bin flowvm`), softflowd and nfdump (installed
with apt-get when missing; root or sudo).

Example (the default load: 20 passes, about 5.6 M records, at 40,000 datagrams/s):

    cargo build --release --bin flowvm
    python3 benches/vs_nfcapd.py --loops 20 --datagram-rate 40000 --rounds 3
"""

import argparse
import glob
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import ensure_package, metric, start_collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWVM = os.path.join(ROOT, "target", "release", "flowvm")
DATA = os.path.join(ROOT, "target", "bench-data")


# --- tools -------------------------------------------------------------------------------------

def parquet_rows(paths):
    """Rows of Parquet files from their footers: (all rows, rows of flow records), a flow
    record's file being one with a source address column (the others hold options records)."""
    total = flows = 0
    try:
        import pyarrow.parquet as pq
        for p in paths:
            meta = pq.ParquetFile(p).metadata
            total += meta.num_rows
            names = set(meta.schema.names)
            if names & {"sourceIPv4Address", "sourceIPv6Address"}:
                flows += meta.num_rows
        return total, flows
    except ImportError:
        pass
    try:
        import duckdb
    except ImportError:
        sys.exit("neither pyarrow nor duckdb: run tests/setup.sh "
                 "(python3 -m pip install -r tests/readers/requirements.txt)")
    for p in paths:
        rows = duckdb.execute("SELECT num_rows FROM parquet_file_metadata(?)", [p]).fetchone()[0]
        names = {r[0] for r in
                 duckdb.execute("SELECT name FROM parquet_schema(?)", [p]).fetchall()}
        total += rows
        if names & {"sourceIPv4Address", "sourceIPv6Address"}:
            flows += rows
    return total, flows


# --- pcap writing ------------------------------------------------------------------------------

def pcap_header():
    # Classic pcap, microseconds, snaplen 65535, Ethernet.
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def pcap_record(ts, frame):
    sec = int(ts)
    usec = int(round((ts - sec) * 1e6))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def checksum(header):
    s = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0):
    """An IPv4 header (correct checksum, DF) before `payload`."""
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64,
                    proto, 0, src, dst)
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:] + payload


def ethernet(ip_packet):
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip_packet


def udp(sport, dport, payload):
    # Checksum 0: not computed (allowed over IPv4).
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, seq, payload):
    # ACK|PSH, no SYN/FIN/RST: softflowd keeps the flow open until the end of the file.
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x18, 65535, 0, 0) + payload


def synthetic_pcap(path, flows, t0, seed=7):
    """`flows` distinct IPv4 flows, TCP and UDP, 2 packets each, 10 us apart from `t0`, as a
    pcap."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.write(pcap_header())
        chunk = []
        for i in range(flows):
            # Distinct source addresses make every flow distinct, whatever the rest.
            src = struct.pack("!I", (10 << 24) | (i + 1))
            dst = struct.pack("!I", (rng.choice((172, 192, 198, 203)) << 24)
                              | rng.getrandbits(24))
            sport, dport = rng.randrange(1024, 65536), rng.choice((53, 80, 123, 443, 8080,
                                                                   rng.randrange(1, 65536)))
            proto = 6 if i % 3 else 17
            for k in range(2):
                body = bytes(rng.randrange(16, 200))
                if proto == 6:
                    l4 = tcp(sport, dport, 1000 + 4000 * k, body)
                else:
                    l4 = udp(sport, dport, body)
                ts = t0 + (2 * i + k) * 10e-6
                chunk.append(pcap_record(ts, ethernet(ipv4(src, dst, proto, l4, 2 * i + k))))
            if len(chunk) >= 4096:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


# --- the softflowd capture ---------------------------------------------------------------------

def softflowd_capture(flows):
    """softflowd's IPFIX export of `flows` generated flows, as a pcap; built once, cached."""
    os.makedirs(DATA, exist_ok=True)
    out = os.path.join(DATA, "softflowd-ipfix-%d.pcap" % flows)
    if os.path.exists(out):
        return out
    ensure_package("softflowd", "softflowd")
    work = tempfile.mkdtemp(prefix="vs-nfcapd-build-")
    try:
        traffic = os.path.join(work, "traffic.pcap")
        print("generating %d flows (%d packets) into %s" % (flows, 2 * flows, traffic),
              flush=True)
        # softflowd -r exports flowStartSysUpTime against its own start time (the wall clock):
        # packets a minute in the future keep those uptimes small and positive.
        synthetic_pcap(traffic, flows, float(int(time.time()) + 60))
        for _ in range(3):
            received, said = export(traffic, flows, work)
            sent = re.search(r"Flows exported: (\d+) \((\d+) records\) in (\d+) packets", said)
            print("softflowd: %s; received %d datagrams, %d octets"
                  % (sent.group(0) if sent else "?", len(received),
                     sum(len(d) for _, _, d in received)), flush=True)
            if sent and int(sent.group(3)) == len(received):
                break
            print("the listener missed datagrams: again", flush=True)
        else:
            sys.exit("softflowd's export could not be captured whole")
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(pcap_header())
            for n, (ts, peer, data) in enumerate(received):
                ip = ipv4(socket.inet_aton(peer[0]), socket.inet_aton("127.0.0.1"), 17,
                          udp(peer[1], 4739, data), n)
                f.write(pcap_record(ts, ethernet(ip)))
        os.replace(tmp, out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export(traffic, flows, work):
    """Runs softflowd over `traffic` and returns the datagrams it sent, with softflowd's
    summary."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Root may exceed net.core.rmem_max: the whole export fits, however late we read.
        listener.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 256 << 20)
    except OSError:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = []
    done = threading.Event()

    def listen():
        listener.settimeout(0.2)
        quiet_since = None
        while True:
            try:
                data, peer = listener.recvfrom(65535)
                received.append((time.time(), peer, data))
                quiet_since = None
            except socket.timeout:
                if done.is_set():
                    quiet_since = quiet_since or time.time()
                    if time.time() - quiet_since > 1.0:
                        return

    thread = threading.Thread(target=listen)
    thread.start()
    # -r: read the file, do not fork, never expire on time (only when the table is
    # full), export every flow still held at the end of the file, then exit; -m above the
    # flow count: nothing is expired early, every flow is exported once, at the end; -v 10:
    # IPFIX. -c none: no control socket (-r alone disables it, but a -c after -r brings it
    # back, and softflowd 1.1.0 then blocks in accept() on an unpolled socket). -p: the pid
    # file softflowd unlinks at exit is a scratch one, not /var/run/softflowd.pid.
    cmd = ["softflowd", "-r", traffic, "-n", "127.0.0.1:%d" % port, "-v", "10",
           "-m", str(flows + 100_000), "-c", "none",
           "-p", os.path.join(work, "softflowd.pid")]
    print(" ".join(cmd), flush=True)
    run = subprocess.run(cmd, capture_output=True, text=True)
    done.set()
    thread.join()
    listener.close()
    if run.returncode != 0:
        sys.exit("softflowd failed (%d): %s" % (run.returncode, run.stderr.strip()))
    return received, run.stdout + run.stderr


def records_per_pass(capture):
    """One pass of the capture as `flowvm decode` reads it offline: its summary line, and the
    rows it archives, all and flow records only."""
    out = tempfile.mkdtemp(prefix="vs-nfcapd-decode-")
    try:
        said = subprocess.run([FLOWVM, "decode", capture, "--out", out, "--log-level", "error"],
                              capture_output=True, text=True, check=True).stdout.strip()
        m = re.search(r"(\d+) messages, (\d+) records", said)
        if not m:
            sys.exit("flowvm decode said: %s" % said)
        rows, flows = parquet_rows(parquet_files(out))
        if rows != int(m.group(2)):
            print("note: flowvm decode counts %s records but archived %d rows"
                  % (m.group(2), rows))
        return said, rows, flows
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --- the collectors ----------------------------------------------------------------------------

def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def tree_bytes(root):
    total = 0
    for d, _, files in os.walk(root):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(d, name))
            except OSError:
                pass
    return total


def wait_idle(pid, out, quiet=1.5, limit=120):
    """Until the collector's CPU time and output directory stop growing for `quiet` seconds."""
    start = time.time()
    last = None
    since = time.time()
    while time.time() - start < limit:
        now = (cpu_ticks(pid), tree_bytes(out))
        if last is None or now[0] - last[0] > 1 or now[1] != last[1]:
            last, since = now, time.time()
        elif time.time() - since >= quiet:
            return
        time.sleep(0.25)


def parquet_files(out):
    return [p for p in glob.glob(os.path.join(out, "**", "*.parquet"), recursive=True)
            if not os.path.basename(p).startswith(".")]


class Flowvm:
    def __init__(self, binary=FLOWVM, name="flowvm", extra=()):
        self.binary, self.name, self.extra = binary, name, tuple(extra)

    def start(self, out):
        proc, udp_addr, self.metrics = start_collect(
            self.binary, out, listen="127.0.0.1:%d" % free_udp_port(), extra=self.extra)
        # Nothing more is read from stdout; it says nothing more at --log-level error.
        return proc, udp_addr

    def before_stop(self):
        """One scrape of the metrics, once idle: what it decoded, and what it counted lost."""
        with urllib.request.urlopen("http://%s/metrics" % self.metrics, timeout=5) as r:
            page = r.read().decode()
        names = ["records_decoded_total", "dropped_total", "udp_kernel_drops",
                 "records_lost_total", "messages_reordered_total", "exporter_restarts_total",
                 "sequence_untracked_total"]
        line = "metrics: " + ", ".join("%s %d" % (n, metric(page, "flowvm_" + n))
                                       for n in names)
        # Where the CPU went, by thread (builds that export it): each worker's receive and
        # decode, each archive thread's Parquet encoding, and the rest.
        threads = re.findall(r'^flowvm_thread_cpu_seconds_total\{thread="([^"]*)"\} (\S+)$', page,
                             re.M)
        if threads:
            line += "; CPU by thread until idle: " + ", ".join(
                "%s %.2f s" % (name, float(value)) for name, value in threads
                if float(value) > 0 or name == "other")
        return line

    def count(self, out):
        files = parquet_files(out)
        rows, _ = parquet_rows(files)
        return rows, sum(os.path.getsize(p) for p in files)

    def expected(self, rows, flows):
        """flowvm archives every Data Record, options records included."""
        return rows

    def after_stop(self):
        return ""


class Nfcapd:
    name = "nfcapd"

    def start(self, out):
        port = free_udp_port()
        # -w DIR: the files; -y: LZ4; -t 60: rotate every 60 s, as flowvm's archive does;
        # -b/-p: loopback, the port; -B: the same socket buffer flowvm asks for (32 MiB, capped
        # by net.core.rmem_max for both); -S 0: no sub-directories; -I: the ident in the files.
        # Not -D: it stays our child, so os.wait4 reads its CPU time.
        self.log = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            ["nfcapd", "-w", out, "-y", "-t", "60", "-b", "127.0.0.1", "-p", str(port),
             "-B", str(32 << 20), "-S", "0", "-I", "bench"],
            stdout=self.log, stderr=subprocess.STDOUT, text=True)
        # nfcapd prints nothing we can wait for on every version: wait for its socket.
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                self.log.seek(0)
                sys.exit("nfcapd exited: %s" % self.log.read())
            if (":%04X " % port) in open("/proc/net/udp").read():
                break
            time.sleep(0.05)
        return proc, "127.0.0.1:%d" % port

    def before_stop(self):
        return ""

    def count(self, out):
        files = [p for p in glob.glob(os.path.join(out, "**", "nfcapd.*"), recursive=True)
                 if os.path.isfile(p)]
        if not files:
            return 0, 0
        # nfdump reads every record of every file (-R DIR) for a statistic by protocol, and
        # says how many it read: the records archived.
        text = subprocess.run(["nfdump", "-R", out, "-s", "proto"], capture_output=True,
                              text=True).stdout
        m = re.search(r"Total flows processed: (\d+)", text)
        if not m:
            sys.exit("nfdump -R %s said: %s" % (out, text))
        records = int(m.group(1))
        # Cross-check: the statistics record nfcapd writes into each file when it closes it.
        stat = 0
        for p in files:
            text = subprocess.run(["nfdump", "-r", p, "-I"], capture_output=True,
                                  text=True).stdout
            m = re.search(r"^Flows:\s*(\d+)", text, re.M)
            stat += int(m.group(1)) if m else 0
        if stat != records:
            print("note: nfdump read %d records, nfcapd's file statistics say %d"
                  % (records, stat))
        return records, sum(os.path.getsize(p) for p in files)

    def expected(self, rows, flows):
        """nfcapd keeps options records (softflowd's sampling and system init time) as
        exporter information, not as flows."""
        return flows

    def after_stop(self):
        """What nfcapd said at exit: its per-source summary (sequence errors)."""
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        m = re.search(r"^Ident: .*$", text, re.M)
        return "nfcapd's summary: " + (m.group(0) if m else
                                       "; ".join(text.strip().splitlines()[-1:]))


def one(collector, capture, loops, rate):
    out = tempfile.mkdtemp(prefix="vs-nfcapd-%s-" % collector.name)
    try:
        proc, addr = collector.start(out)
        replay = subprocess.run(
            [FLOWVM, "bench-replay", "--pcap", capture, "--collector", addr,
             "--loops", str(loops), "--datagram-rate", str(rate)],
            capture_output=True, text=True)
        if replay.returncode != 0:
            proc.kill()
            sys.exit("bench-replay failed: %s" % replay.stderr.strip())
        wait_idle(proc.pid, out)
        notes = collector.before_stop()
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            sys.exit("%s exited with status %#x" % (collector.name, status))
        notes = notes or collector.after_stop()
        records, size = collector.count(out)
        cpu = usage.ru_utime + usage.ru_stime
        sent = re.search(r"sent (\d+) datagrams .* in ([\d.]+) s", replay.stdout)
        return dict(records=records, bytes=size, cpu=cpu, ns=cpu * 1e9 / max(records, 1),
                    send_seconds=float(sent.group(2)) if sent else 0.0, notes=notes)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loops", type=int, default=20, help="passes over the capture a round")
    p.add_argument("--datagram-rate", type=int, default=40_000,
                   help="datagrams per second; 0 as fast as possible")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--flows", type=int, default=280_000,
                   help="flows softflowd exports in one pass (the capture is cached per count)")
    p.add_argument("--baseline", metavar="BIN",
                   help="another flowvm build to measure beside (e.g. the previous commit's)")
    p.add_argument("--compression", nargs="+", default=["zstd"], metavar="CODEC",
                   help="flowvm's archive codecs to measure, each as a collector of its own "
                        "(zstd, lz4)")
    a = p.parse_args()
    if not os.access(FLOWVM, os.X_OK):
        sys.exit("%s missing: cargo build --release --bin flowvm" % FLOWVM)
    ensure_package("nfcapd", "nfdump")
    version = subprocess.run(["nfcapd", "-V"], capture_output=True, text=True)
    print((version.stdout + version.stderr).strip())

    capture = softflowd_capture(a.flows)
    said, rows, flows = records_per_pass(capture)
    messages = int(re.search(r"(\d+) messages", said).group(1))
    print("capture %s (%d octets): %s" % (os.path.relpath(capture, ROOT),
                                          os.path.getsize(capture), said))
    print("one pass: %d datagrams, %d Data Records (%.1f a datagram): %d flow records and %d "
          "options records" % (messages, rows, rows / max(messages, 1), flows, rows - flows))
    print("load a round: %d passes at %d datagrams/s: %d datagrams, %d Data Records"
          % (a.loops, a.datagram_rate, messages * a.loops, rows * a.loops), flush=True)

    collectors = [Flowvm(name="flowvm" if codec == "zstd" else "flowvm (%s)" % codec,
                         extra=("--compression", codec))
                  for codec in a.compression] + [Nfcapd()]
    if a.baseline:
        collectors.insert(0, Flowvm(a.baseline, "flowvm baseline"))
    results = {c.name: [] for c in collectors}
    for k in range(a.rounds):
        for c in collectors:
            r = one(c, capture, a.loops, a.datagram_rate)
            results[c.name].append(r)
            print("round %d %s: %d records archived, %.2f s CPU (%.0f ns/record), %d bytes, "
                  "sent in %.2f s; %s"
                  % (k + 1, c.name, r["records"], r["cpu"], r["ns"], r["bytes"],
                     r["send_seconds"], r["notes"]), flush=True)
            time.sleep(1)

    print()
    print("| collector | records archived (median) | records expected | kept | CPU ns per "
          "archived record (median) | file bytes (median) |")
    print("|---|---|---|---|---|---|")
    ns = {}
    for c in collectors:
        rs = results[c.name]
        records = statistics.median(r["records"] for r in rs)
        expected = c.expected(rows, flows) * a.loops
        ns[c.name] = statistics.median(r["ns"] for r in rs)
        print("| %s | %d | %d | %.2f%% | %.0f | %d |"
              % (c.name, records, expected, 100.0 * records / max(expected, 1), ns[c.name],
                 statistics.median(r["bytes"] for r in rs)))
    print()
    print("records expected: passes x what one pass holds, as `flowvm decode` reads it; flowvm "
          "archives options records too (%d a pass), nfcapd only flow records." % (rows - flows))
    for name in ns:
        if name != "nfcapd":
            print("%s / nfcapd, CPU per archived record: %.2fx" % (name, ns[name] / ns["nfcapd"]))


if __name__ == "__main__":
    main()
