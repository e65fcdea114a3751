#!/usr/bin/env python3
"""Wall-clock time of `flowvm export` and softflowd 1.1.0 metering the same pcap, in one run.

Usage: python3 benches/vs_softflowd.py [--rounds K] [--packets N] [--flows F] [--timeout S]
                                        [--baseline OLD_FLOWVM]

The input is a generated pcap (classic, Ethernet), built once and cached under
target/bench-data/: N packets (default 1,000,000) of F flows (default 39 a thousand packets,
about 39,000), about 45 % IPv4 TCP, 25 % IPv4 UDP, 15 % IPv6 TCP, 10 % IPv6 UDP, 3 % ICMP echo
and 2 % ICMPv6 echo (shares of flows, hence of packets on average). Frames are 60-1514 octets
(57 % of them 60-100 octets, 24 % 1400-1514, about 540 on average: 1 M packets make a file of
about 560 MB), stored whole with correct IPv4, TCP, UDP and ICMP checksums (zero payloads).
Flows have heavy-tailed packet counts (1 to thousands), each one unidirectional, active over
a stretch of the file of its own, its packets interleaved with those of the others (about a
thousand flows at once) as on a real link; timestamps 5-15 us apart (10 on average) from the
moment the file was generated. TCP packets carry ACK|PSH only: no flow ends early on a flag.

For each round and each meter in turn (softflowd, then flowvm), with the pcap in the page cache
(read once beforehand): start a UDP sink on a free loopback port (a thread that counts the
datagrams and octets it receives; 64 MiB socket buffer), run the meter over the whole file with
its IPFIX export aimed at the sink, and time the command start to exit (wall clock), reading its
user + system CPU time from the kernel (os.wait4). Each meter exports every flow it still holds
at the end of the file, then exits:

    softflowd -r PCAP -n 127.0.0.1:PORT -v 10 -m F+100000 -c none -p SCRATCH/softflowd.pid
    target/release/flowvm export --pcap PCAP --collector 127.0.0.1:PORT

softflowd: -r reads the file without forking, never expires flows on time (only when the table
is full), exports every flow at the end of the file and exits; -m above the flow count: nothing
is expired early, so every flow is exported once, at the end; -v 10: IPFIX (IPv6 flows tracked).
-c none: no control socket (-r alone disables it, but a -c after -r brings it back, and
softflowd 1.1.0 then blocks in accept() on an unpolled socket). -p: the pid file softflowd
unlinks at exit is a scratch one, not /var/run/softflowd.pid.
flowvm: its defaults (UDP, path MTU 512, active 15 s and passive 120 s timers: the file spans
about N x 10 us, 10 s for 1 M packets, so no flow is exported before the end).

Prints a line a run, then a markdown table per meter: the best wall-clock time of the K rounds
(what the issue measured) and the median, CPU seconds (median), packets/s (N / best), the
records it says it exported, the datagrams and octets the sink received (median) and the
sink's kernel drops; then the ratio of the best wall-clock times, softflowd's over flowvm's.
With --baseline, an earlier build of flowvm runs as a third meter in every round, and its
ratio and median are printed beside (before/after in one run: this machine is noisy).

Needs: a release build of flowvm (`cargo build --release --bin flowvm`; this script does not
build it) and softflowd (installed with apt-get when missing; root or sudo).

Example (the issue's load: 1 M packets, about 560 MB):

    cargo build --release --bin flowvm && python3 benches/vs_softflowd.py --rounds 3

A short check: python3 benches/vs_softflowd.py --packets 100000 --rounds 1
"""

import argparse
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

from benchlib import ensure_package

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWVM = os.path.join(ROOT, "target", "release", "flowvm")
DATA = os.path.join(ROOT, "target", "bench-data")
# Bumped whenever the generator changes, so a stale cached file is not reused.
FORMAT = 1


# --- tools -------------------------------------------------------------------------------------

# --- the pcap ----------------------------------------------------------------------------------

# Protocol mix, by flows: (share, kind).
MIX = [(0.45, "ipv4-tcp"), (0.25, "ipv4-udp"), (0.15, "ipv6-tcp"), (0.10, "ipv6-udp"),
       (0.03, "ipv4-icmp"), (0.02, "ipv6-icmp")]
ETH_V4 = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
ETH_V6 = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x86\xdd"
ZEROS = bytes(1514)


def fold(s):
    """The ones' complement of a 16-bit ones' complement sum."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def words(b):
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def frame_length(rng):
    """60-1514 octets: 57 % small (60-100), 19 % medium (101-1399), 24 % full (1400-1514);
    about 540 on average."""
    x = rng.random()
    if x < 0.57:
        return rng.randrange(60, 101)
    if x < 0.76:
        return rng.randrange(101, 1400)
    return rng.randrange(1400, 1515)


class Flow:
    """One unidirectional flow and what its next packet needs: per-flow constants are built
    once, so a packet costs a few struct.packs."""
    __slots__ = ("kind", "v6", "proto", "head", "src", "dst", "sport", "dport", "csum_ip",
                 "csum_l4", "seq", "ident")

    def __init__(self, i, kind, rng):
        self.kind = kind
        self.v6 = kind.startswith("ipv6")
        if kind.endswith("tcp"):
            self.proto = 6
        elif kind.endswith("udp"):
            self.proto = 17
        else:
            self.proto = 58 if self.v6 else 1
        # Distinct source addresses make every flow distinct, whatever the rest.
        if self.v6:
            self.src = bytes.fromhex("20010db80001") + bytes(6) + struct.pack("!I", i + 1)
            self.dst = bytes.fromhex("20010db8ff00") + rng.getrandbits(80).to_bytes(10, "big")
        else:
            self.src = struct.pack("!I", (10 << 24) | (i + 1))
            self.dst = struct.pack("!I", (rng.choice((172, 192, 198, 203)) << 24)
                                   | rng.getrandbits(24))
        self.sport = rng.randrange(1024, 65536)
        self.dport = rng.choice((53, 80, 123, 443, 443, 443, 8080, rng.randrange(1, 65536)))
        if self.proto in (1, 58):
            self.sport, self.dport = rng.getrandbits(16), 0  # echo identifier, sequence
        self.seq = rng.getrandbits(32)
        self.ident = rng.getrandbits(16)
        # IPv4 header checksum without total length and identification.
        if not self.v6:
            self.csum_ip = 0x4500 + 0x4000 + ((64 << 8) | self.proto) + words(self.src) \
                + words(self.dst)
        # L4 checksum over the pseudo-header (addresses, protocol) and the constant header
        # words; the payload is zeros, adding nothing.
        pseudo = words(self.src) + words(self.dst) + self.proto
        if self.proto == 6:
            self.csum_l4 = pseudo + self.sport + self.dport + 1 + ((5 << 12) | 0x18) + 65535
        elif self.proto == 17:
            self.csum_l4 = pseudo + self.sport + self.dport
        elif self.proto == 1:
            self.csum_l4 = (8 << 8) + self.sport  # no pseudo-header for ICMP
        else:
            self.csum_l4 = pseudo + (128 << 8) + self.sport
        self.head = ETH_V6 if self.v6 else ETH_V4

    def frame(self, length):
        """The next packet of this flow, `length` octets of frame at least (more when the
        headers alone are longer)."""
        proto = self.proto
        l3 = 40 if self.v6 else 20
        l4h = 20 if proto == 6 else 8
        payload = max(0, length - 14 - l3 - l4h)
        l4len = l4h + payload
        if proto == 6:
            seq = self.seq
            c = fold(self.csum_l4 + l4len + (seq >> 16) + (seq & 0xFFFF))
            l4 = struct.pack("!HHIIBBHHH", self.sport, self.dport, seq, 1, 5 << 4, 0x18, 65535,
                             c, 0)
            self.seq = (seq + payload) & 0xFFFFFFFF
        elif proto == 17:
            c = fold(self.csum_l4 + 2 * l4len) or 0xFFFF
            l4 = struct.pack("!HHHH", self.sport, self.dport, l4len, c)
        else:
            seq = self.dport
            self.dport = (seq + 1) & 0xFFFF
            if proto == 1:
                c = fold(self.csum_l4 + seq)
                l4 = struct.pack("!BBHHH", 8, 0, c, self.sport, seq)
            else:
                c = fold(self.csum_l4 + l4len + seq)
                l4 = struct.pack("!BBHHH", 128, 0, c, self.sport, seq)
        if self.v6:
            ip = struct.pack("!IHBB16s16s", 6 << 28, l4len, proto, 64, self.src, self.dst)
        else:
            ident = self.ident
            self.ident = (ident + 1) & 0xFFFF
            total = 20 + l4len
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, proto,
                             fold(self.csum_ip + total + ident), self.src, self.dst)
        return self.head + ip + l4 + ZEROS[:payload]


def generate(path, packets, flows, seed=1):
    """Writes the pcap; returns its packets and the packets per kind."""
    rng = random.Random(seed)
    kinds = []
    for share, kind in MIX:
        kinds += [kind] * int(round(share * flows))
    kinds = (kinds + [MIX[0][1]] * flows)[:flows]
    rng.shuffle(kinds)
    table = [Flow(i, kinds[i], rng) for i in range(flows)]

    # Packets a flow: one each, the rest spread by heavy-tailed (Pareto) weights, capped so
    # that no single flow skews the protocol mix much.
    weights = [min(rng.paretovariate(1.5), 500.0) for _ in range(flows)]
    counts = [1] * flows
    for f in rng.choices(range(flows), weights=weights, k=packets - flows):
        counts[f] += 1

    # Where in the file each flow's packets fall: a stretch of its own (about 1,000 packet
    # slots of the link per packet of the flow, so ~1,000 flows are active at once), its
    # packets at random places in it; then all packets in order of place.
    keys = []
    for f, c in enumerate(counts):
        span = min(packets, int(c * rng.uniform(200, 2000)) + 1)
        start = rng.randrange(0, packets - span + 1)
        rand = rng.random
        keys.extend(((start + int(rand() * span)) << 24) | f for _ in range(c))
    keys.sort()

    per_kind = dict.fromkeys((k for _, k in MIX), 0)
    t_us = int(time.time()) * 1_000_000
    tmp = path + ".tmp"
    with open(tmp, "wb", buffering=16 << 20) as out:
        # Classic pcap, microseconds, snaplen 65535, Ethernet.
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        randrange = rng.randrange
        pack = struct.pack
        mask = (1 << 24) - 1
        for key in keys:
            flow = table[key & mask]
            per_kind[flow.kind] += 1
            frame = flow.frame(frame_length(rng))
            n = len(frame)
            out.write(pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, n, n))
            out.write(frame)
            t_us += randrange(5, 16)
    os.replace(tmp, path)
    return len(keys), per_kind


def pcap_packets(path):
    """Packets and the first and last timestamps of a classic pcap, by walking its records."""
    n = 0
    first = last = None
    with open(path, "rb", buffering=16 << 20) as f:
        f.read(24)
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            sec, usec, incl, _ = struct.unpack("<IIII", h)
            last = sec + usec / 1e6
            if first is None:
                first = last
            f.seek(incl, 1)
            n += 1
    return n, first, last


def the_pcap(packets, flows):
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, "vs-softflowd-v%d-%dp-%df.pcap" % (FORMAT, packets, flows))
    if not os.path.exists(path):
        print("generating %d packets of %d flows into %s" % (packets, flows,
                                                              os.path.relpath(path, ROOT)),
              flush=True)
        started = time.time()
        n, per_kind = generate(path, packets, flows)
        print("generated in %.1f s; packets by kind: %s"
              % (time.time() - started,
                 ", ".join("%s %.1f %%" % (k, 100.0 * v / n) for k, v in per_kind.items())),
              flush=True)
    n, first, last = pcap_packets(path)
    size = os.path.getsize(path)
    print("pcap %s: %d octets (%.0f MB), %d packets (%.0f octets a packet record), %d flows, "
          "%.2f s of traffic" % (os.path.relpath(path, ROOT), size, size / 1e6, n, size / n,
                                 flows, (last or 0) - (first or 0)), flush=True)
    if n != packets:
        sys.exit("%s holds %d packets, not %d: delete it and run again" % (path, n, packets))
    return path


def warm(path):
    """Reads the file once, so every run finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


# --- the sink ----------------------------------------------------------------------------------

class Sink:
    """Binds 127.0.0.1:0 and counts the datagrams and octets it receives, in a thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Root may exceed net.core.rmem_max.
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33),
                                 64 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.datagrams = self.octets = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.1)
        buf = bytearray(65536)
        recv_into = self.sock.recv_into
        quiet_since = None
        while True:
            try:
                n = recv_into(buf)
                self.datagrams += 1
                self.octets += n
                quiet_since = None
            except socket.timeout:
                if self.done.is_set():
                    quiet_since = quiet_since or time.time()
                    if time.time() - quiet_since > 0.3:
                        return

    def drops(self):
        """The kernel's drop count for this socket (/proc/net/udp)."""
        with open("/proc/net/udp") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 12 and fields[1] == "0100007F:%04X" % self.port:
                    return int(fields[-1])
        return 0

    def stop(self):
        """Once the meter has exited: drains what is queued, then closes."""
        self.done.set()
        self.thread.join()
        drops = self.drops()
        self.sock.close()
        return self.datagrams, self.octets, drops


# --- the meters --------------------------------------------------------------------------------

def softflowd_cmd(pcap, port, flows, scratch):
    return ["softflowd", "-r", pcap, "-n", "127.0.0.1:%s" % port, "-v", "10",
            "-m", str(flows + 100_000), "-c", "none",
            "-p", os.path.join(scratch, "softflowd.pid")]


def softflowd_records(said):
    """The records softflowd says it exported, and its summary: packets, flows exported."""
    m = re.search(r"Flows exported: (\d+) \((\d+) records\) in (\d+) packets", said)
    if not m:
        return None, "softflowd said: " + said.strip()[-300:]
    packets = re.search(r"Packets processed: \d+", said)
    return int(m.group(2)), "softflowd: %s%s" % ((packets.group(0) + "; ") if packets else "",
                                                 m.group(0))


def flowvm_cmd(pcap, port, flows, scratch, binary=FLOWVM):
    return [binary, "export", "--pcap", pcap, "--collector", "127.0.0.1:%s" % port]


def flowvm_records(said):
    """The records flowvm says it exported, and its summary: packets, flows, export."""
    m = re.search(r"exported (\d+) records in (\d+) messages.*?, (\d+) octets; (\d+) send "
                  r"errors, (\d+) records lost", said)
    if not m:
        return None, "flowvm said: " + said.strip()[-300:]
    rest = [x.group(0) for x in (re.search(r"packets read \d+, metered \d+, skipped \d+", said),
                                 re.search(r"flows \d+, records \d+", said)) if x]
    return int(m.group(1)), "flowvm: " + "; ".join(rest + [m.group(0)])


METERS = [("softflowd", softflowd_cmd, softflowd_records),
          ("flowvm export", flowvm_cmd, flowvm_records)]


def one(name, make_cmd, parse, pcap, flows, timeout):
    scratch = tempfile.mkdtemp(prefix="vs-softflowd-")
    try:
        sink = Sink()
        cmd = make_cmd(pcap, sink.port, flows, scratch)
        with tempfile.TemporaryFile(mode="w+") as log:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
            # A meter that hangs (softflowd 1.1.0 can, see above) is killed, not waited for.
            watchdog = threading.Timer(timeout, os.kill, (proc.pid, signal.SIGKILL))
            watchdog.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            watchdog.cancel()
            proc.returncode = -1  # reaped here, not by Popen
            datagrams, octets, drops = sink.stop()
            log.seek(0)
            said = log.read()
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            sys.exit("%s exited with status %#x%s: %s\n%s"
                     % (name, status, " (killed after %d s)" % timeout
                        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
                        else "", " ".join(cmd), said.strip()))
        records, summary = parse(said)
        return dict(cmd=cmd, wall=wall, cpu=usage.ru_utime + usage.ru_stime,
                    user=usage.ru_utime, sys=usage.ru_stime, datagrams=datagrams,
                    octets=octets, drops=drops, records=records, summary=summary)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="runs of each meter")
    p.add_argument("--packets", type=int, default=1_000_000,
                   help="packets in the pcap (one cached file per count)")
    p.add_argument("--flows", type=int,
                   help="flows in the pcap [default: 39 a thousand packets]")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds a meter may run before it is killed (and the script stops)")
    p.add_argument("--baseline", metavar="FLOWVM",
                   help="an earlier build of flowvm, run as a third meter in each round")
    a = p.parse_args()
    if a.baseline:
        if not os.access(a.baseline, os.X_OK):
            sys.exit("%s is not an executable" % a.baseline)
        METERS.append(("flowvm baseline",
                       lambda pcap, port, flows, scratch: flowvm_cmd(pcap, port, flows, scratch,
                                                                     a.baseline),
                       flowvm_records))
    if a.rounds < 1 or a.packets < 1:
        sys.exit("--rounds and --packets must be at least 1")
    if not os.access(FLOWVM, os.X_OK):
        sys.exit("%s missing: cargo build --release --bin flowvm" % FLOWVM)
    ensure_package("softflowd", "softflowd")
    flows = a.flows or max(1, a.packets * 39 // 1000)
    if not 1 <= flows <= min(a.packets, (1 << 24) - 1):
        sys.exit("--flows must be 1 to min(--packets, 16777215)")
    version = subprocess.run(["softflowd", "-h"], capture_output=True, text=True)
    m = re.search(r"softflowd version [\d.]+", version.stdout + version.stderr)
    print("%s; %s" % (m.group(0) if m else "softflowd (version unknown)",
                      os.path.relpath(FLOWVM, ROOT)))

    pcap = the_pcap(a.packets, flows)
    warm(pcap)
    for name, make_cmd, _ in METERS:
        print("%s: %s" % (name, " ".join(make_cmd(pcap, "PORT", flows, "SCRATCH"))),
              flush=True)

    results = {name: [] for name, _, _ in METERS}
    for k in range(a.rounds):
        for name, make_cmd, parse in METERS:
            r = one(name, make_cmd, parse, pcap, flows, a.timeout)
            results[name].append(r)
            print("round %d %s: %.3f s wall, %.3f s CPU (user %.3f, sys %.3f); sink: %d "
                  "datagrams, %d octets, %d dropped; %s"
                  % (k + 1, name, r["wall"], r["cpu"], r["user"], r["sys"], r["datagrams"],
                     r["octets"], r["drops"], r["summary"]), flush=True)
            time.sleep(1)

    print()
    print("| meter | best wall s | median wall s | CPU s (median) | packets/s (best) | "
          "records exported | sink datagrams | sink octets | sink drops |")
    print("|---|---|---|---|---|---|---|---|---|")
    best = {}
    for name, _, _ in METERS:
        rs = results[name]
        best[name] = min(r["wall"] for r in rs)
        records = [r["records"] for r in rs if r["records"] is not None]
        print("| %s | %.3f | %.3f | %.3f | %.0f | %s | %d | %d | %d |"
              % (name, best[name], statistics.median(r["wall"] for r in rs),
                 statistics.median(r["cpu"] for r in rs), a.packets / best[name],
                 ("%d" % statistics.median(records)) if records else "?",
                 statistics.median(r["datagrams"] for r in rs),
                 statistics.median(r["octets"] for r in rs),
                 max(r["drops"] for r in rs)))
    print()
    ratio = best["softflowd"] / best["flowvm export"]
    if ratio >= 1:
        print("flowvm export / softflowd (best wall clock): %.2fx faster" % ratio)
    else:
        print("flowvm export / softflowd (best wall clock): %.2fx faster, i.e. %.2fx slower"
              % (ratio, 1 / ratio))
    if "flowvm baseline" in best:
        print("flowvm baseline / softflowd (best wall clock): %.2fx faster"
              % (best["softflowd"] / best["flowvm baseline"]))
        print("flowvm export medians: %.3f s against the baseline's %.3f s"
              % (statistics.median(r["wall"] for r in results["flowvm export"]),
                 statistics.median(r["wall"] for r in results["flowvm baseline"])))


if __name__ == "__main__":
    main()
