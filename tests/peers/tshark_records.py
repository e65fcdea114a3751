"""Decode a capture of `flowvm export` with tshark and python-ipfix, for tests/peer_tshark.rs.

Usage: /usr/bin/python3 tshark_records.py tshark|python-ipfix CAPTURE PORT [udp|tcp]

Prints one line per Data Record, tab-separated name=value pairs in one fixed vocabulary both
decoders map to (the test renders its reference records the same way):

    template=256 src=10.0.0.1 dst=10.0.0.2 proto=6 sport=1 dport=2 flags=27 packets=3
    octets=1320 start=<ns> end=<ns> reason=4 [srcmac=.. dstmac=.. ethertype=2048 vlan=0]
    in=0 out=0

then, for tshark, `template <id> <element>/<length>,...` for every Template Record it shows,
`message <sequence> <domain> <records>` per IPFIX Message, and `expert <severity> <text>`
for every expert-info or malformed-packet item (the test wants none above chat).

python-ipfix reads the UDP payloads (or the TCP stream) of the capture, which the test wrote
itself (linktype 101, raw IPv4), as a stream of IPFIX Messages with ipfix.reader.
"""

import io
import json
import os
import struct
import subprocess
import sys
from datetime import datetime, timezone

NTP_UNIX_OFFSET = 2_208_988_800
# Wireshark's expert severities (epan/proto.h PI_CHAT ... PI_ERROR).
SEVERITY = {"1048576": "comment", "2097152": "chat", "4194304": "note", "6291456": "warn",
            "8388608": "error"}


def emit(pairs):
    print("\t".join("%s=%s" % kv for kv in pairs))


def tshark_time(text):
    """'Nov 14, 2023 22:13:20.001000000 UTC' as nanoseconds since the UNIX epoch."""
    stamp, zone = text.rsplit(" ", 1)
    assert zone == "UTC", text
    whole, fraction = stamp.split(".")
    seconds = datetime.strptime(whole, "%b %d, %Y %H:%M:%S").replace(tzinfo=timezone.utc)
    return int(seconds.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0"))


def walk(pairs_list, found):
    """Every (key, value) pair in tshark's JSON, in order, duplicates kept."""
    for key, value in pairs_list:
        found.append((key, value))
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            walk(value, found)


def tshark(capture, port, transport):
    out = subprocess.run(
        ["tshark", "-r", capture, "-d", "%s.port==%s,cflow" % (transport, port), "-T", "json",
         "-o", "tcp.desegment_tcp_streams:TRUE"],
        check=True, capture_output=True, env=dict(os.environ, TZ="UTC"),
    ).stdout
    packets = json.loads(out, object_pairs_hook=lambda pairs: pairs)
    for packet in packets:
        flat = []
        walk(packet, flat)
        for key, value in flat:
            if key.startswith("_ws.expert") and isinstance(value, list):
                item = dict(value)
                severity = SEVERITY.get(item.get("_ws.expert.severity"), "unknown")
                print("expert %s %s" % (severity, item.get("_ws.expert.message", value)))
            elif key.startswith("_ws.malformed"):
                print("expert malformed: %s" % (value,))
        cflow = [v for k, v in dict_items(packet, "_source", "layers") if k == "cflow"]
        for message in cflow:
            decode_message(message)


def dict_items(pairs, *path):
    for name in path:
        pairs = dict(pairs)[name]
    return pairs


def decode_message(message):
    fields = dict(message)
    records = 0
    for key, value in message:
        if not key.startswith("Set "):
            continue
        for name, item in value:
            if name.startswith("Template (Id"):
                t = dict(item)
                specs = [
                    "%s/%s" % (dict(f)["cflow.template_ipfix_field_type"],
                               dict(f)["cflow.template_field_length"])
                    for n, f in item if n.startswith("Field (")
                ]
                print("template %s %s" % (t["cflow.template_id"], ",".join(specs)))
            elif name.startswith("Flow "):
                records += 1
                set_id = dict(value)["cflow.flowset_id"]
                record(set_id, item)
    print("message %s %s %d" % (fields["cflow.sequence"], fields["cflow.od_id"], records))


def record(set_id, item):
    f = dict(item)
    times = dict(f["cflow.timedelta_tree"])
    pairs = [("template", set_id)]
    if "cflow.srcaddr" in f or "cflow.srcaddrv6" in f:
        v6 = "v6" if "cflow.srcaddrv6" in f else ""
        pairs += [("src", f["cflow.srcaddr" + v6]), ("dst", f["cflow.dstaddr" + v6])]
    if "cflow.protocol" in f:
        pairs += [("proto", f["cflow.protocol"]), ("sport", f["cflow.srcport"]),
                  ("dport", f["cflow.dstport"]), ("flags", int(f["cflow.tcpflags"], 16))]
    pairs += [("packets", f["cflow.packets"]), ("octets", f["cflow.octets"]),
              ("start", tshark_time(times["cflow.abstimestart"])),
              ("end", tshark_time(times["cflow.abstimeend"])),
              ("reason", f["cflow.flow_end_reason"])]
    if "cflow.srcmac" in f:
        pairs += [("srcmac", f["cflow.srcmac"]), ("dstmac", f["cflow.dstmac"]),
                  ("ethertype", f["cflow.ethernet_type"]), ("vlan", f["cflow.vlanid"])]
    pairs += [("in", f["cflow.inputint"]), ("out", f["cflow.outputint"])]
    emit(pairs)


def payloads(capture):
    """The transport payloads of a capture of raw IPv4 (linktype 101), in order."""
    with open(capture, "rb") as f:
        data = f.read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert magic == 0xA1B2C3D4 and linktype == 101, (hex(magic), linktype)
    at = 24
    while at < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, at)
        ip = data[at + 16:at + 16 + incl]
        at += 16 + incl
        ihl = (ip[0] & 15) * 4
        if ip[9] == 17:
            yield ip[ihl + 8:]
        elif ip[9] == 6:
            yield ip[ihl + (ip[ihl + 12] >> 4) * 4:]


def python_ipfix(capture):
    import ipfix.ie
    import ipfix.message

    ipfix.ie.use_iana_default()
    # The Messages of a UDP capture one after the other are an IPFIX File (RFC 5655), as a TCP
    # stream is: one MessageBuffer reads them in turn, keeping the templates.
    stream = io.BytesIO(b"".join(payloads(capture)))
    msg = ipfix.message.MessageBuffer()

    def with_template_id(tmpl, buf, offset, recinf=None):
        rec, offset = tmpl.decode_namedict_from(buf, offset)
        return (tmpl.tid, rec), offset

    while True:
        try:
            msg.read_message(stream)
        except EOFError:
            break
        records = 0
        for tid, rec in msg.record_iterator(decode_fn=with_template_id):
            records += 1
            python_ipfix_record(tid, rec)
        print("message %d %d %d" % (msg.sequence, msg.odid, records))


def python_ipfix_record(tid, rec):
    pairs = [("template", tid)]
    if "sourceIPv4Address" in rec:
        pairs += [("src", rec["sourceIPv4Address"]), ("dst", rec["destinationIPv4Address"])]
    elif "sourceIPv6Address" in rec:
        pairs += [("src", rec["sourceIPv6Address"]), ("dst", rec["destinationIPv6Address"])]
    if "protocolIdentifier" in rec:
        pairs += [("proto", rec["protocolIdentifier"]), ("sport", rec["sourceTransportPort"]),
                  ("dport", rec["destinationTransportPort"]), ("flags", rec["tcpControlBits"])]
    pairs += [("packets", rec["packetDeltaCount"]), ("octets", rec["octetDeltaCount"]),
              ("start", ntp_ns(rec["flowStartNanoseconds"])),
              ("end", ntp_ns(rec["flowEndNanoseconds"])),
              ("reason", rec["flowEndReason"])]
    if "sourceMacAddress" in rec:
        pairs += [("srcmac", rec["sourceMacAddress"].hex(":")),
                  ("dstmac", rec["destinationMacAddress"].hex(":")),
                  ("ethertype", rec["ethernetType"]), ("vlan", rec["vlanId"])]
    pairs += [("in", rec["ingressInterface"]), ("out", rec["egressInterface"])]
    emit(pairs)


def ntp_ns(dt):
    """python-ipfix's datetime for an NTP timestamp, as nanoseconds since the UNIX epoch.

    Quirk: python-ipfix 0.9.7 reads the NTP seconds as UNIX seconds (70 years late), through a
    float (2^-21 s apart in 2093) into a datetime (microseconds): within a microsecond.
    """
    delta = dt - datetime(1970, 1, 1)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * 1_000 - NTP_UNIX_OFFSET * 1_000_000_000


def main():
    decoder, capture, port = sys.argv[1:4]
    transport = sys.argv[4] if len(sys.argv) > 4 else "udp"
    if decoder == "tshark":
        tshark(capture, port, transport)
    else:
        python_ipfix(capture)


if __name__ == "__main__":
    main()
