"""tshark's reading of the flow records in a capture of NetFlow v5/v9 (or IPFIX), for the
NetFlow peer tests (tests/it/common/wire_capture.rs).

Usage: python3 tshark_netflow.py CAPTURE PORT

Prints one line per flow record, space-separated: source, destination, protocol, packets,
octets, then source and destination port when the record has them; options records (no
addresses) are left out. Then `expert <severity> <text>` for every expert item or malformed
packet tshark reports.
"""

import json
import os
import subprocess
import sys

SEVERITY = {"1048576": "comment", "2097152": "chat", "4194304": "note", "6291456": "warn",
            "8388608": "error"}


def records(node):
    """The flow records under a cflow tree: v5's `pdu N/M`, v9 and IPFIX's `Flow N`."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if (key.startswith("pdu ") or key.startswith("Flow ")) and isinstance(value, dict):
            yield value
        elif isinstance(value, dict):
            yield from records(value)


def experts(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("_ws.expert") and isinstance(value, dict):
                severity = SEVERITY.get(value.get("_ws.expert.severity"), "unknown")
                yield "expert %s %s" % (severity, value.get("_ws.expert.message", ""))
            elif key.startswith("_ws.malformed"):
                yield "expert malformed %s" % (value,)
            else:
                yield from experts(value)


def main():
    capture, port = sys.argv[1:3]
    out = subprocess.run(
        ["tshark", "-r", capture, "-d", "udp.port==%s,cflow" % port, "-T", "json"],
        check=True, capture_output=True, env=dict(os.environ, TZ="UTC"),
    ).stdout
    for packet in json.loads(out):
        layers = packet["_source"]["layers"]
        for line in experts(layers):
            print(line)
        for r in records(layers.get("cflow", {})):
            src = r.get("cflow.srcaddr", r.get("cflow.srcaddrv6"))
            if src is None:
                continue
            dst = r.get("cflow.dstaddr", r.get("cflow.dstaddrv6"))
            fields = [src, dst, r["cflow.protocol"], r["cflow.packets"], r["cflow.octets"]]
            if "cflow.srcport" in r:
                fields += [r["cflow.srcport"], r["cflow.dstport"]]
            print(" ".join(fields))


if __name__ == "__main__":
    main()
