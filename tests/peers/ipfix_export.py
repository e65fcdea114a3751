"""python-ipfix as a programmable Exporting Process, for tests/peer_python_ipfix.rs.

Usage: /usr/bin/python3 ipfix_export.py udp|tcp HOST PORT EXPECTED

Sends what the other peers never send, over one UDP socket or one TCP connection:
two Observation Domains reusing Template 256 with different layouts, variable-length fields
in both length forms, micro- and nanosecond NTP timestamps, three Options Templates with
different scopes, a Template refresh and a redefinition of Template 256 (after a withdrawal
over TCP). EXPECTED receives one line per Data Record sent: the Observation Domain ID, then
tab-separated name=value pairs, values as the test renders the archive: integers in decimal,
addresses and strings as text (none holds a tab or a newline), octetArrays in hex, every
timestamp as nanoseconds since the UNIX epoch.

python-ipfix cannot express some of it, so those records are built here with struct:
- the 3-octet length form for a length below 255 (RFC 7011 section 7 allows it; python-ipfix
  uses it only from 255 up);
- NTP timestamps with chosen fraction bits (python-ipfix encodes from a datetime: microseconds
  only, its fraction truncated).
"""

import socket
import struct
import sys
import time
from datetime import datetime, timezone
from ipaddress import ip_address

import ipfix.ie
import ipfix.message
import ipfix.template

ipfix.ie.use_iana_default()

NTP_UNIX_OFFSET = 2_208_988_800
EPOCH = datetime(1970, 1, 1)


class Transport:
    """One UDP socket or one TCP connection to the collector."""

    def __init__(self, kind, host, port):
        self.kind = kind
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect((host, port))
        else:
            self.sock = socket.create_connection((host, port), timeout=10)

    def send(self, message):
        if self.kind == "udp":
            self.sock.send(message)
            # Loopback UDP has no flow control: leave the collector time to read.
            time.sleep(0.002)
        else:
            self.sock.sendall(message)

    def close(self):
        self.sock.close()


def ns_of(dt):
    """A naive UTC datetime as integer nanoseconds since the UNIX epoch."""
    delta = dt - EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000


def render(ie, value):
    """A value as the test renders the archive column of the element's type."""
    name = ie.type.name
    if name == "string":
        return value
    if name == "octetArray":
        return bytes(value).hex()
    if name in ("dateTimeMicroseconds", "dateTimeNanoseconds"):
        # Quirk: python-ipfix 0.9.7 writes UNIX seconds into the NTP seconds field, which
        # counts from 1900 (RFC 7011 section 6.1.9): on the wire its times are 70 years early,
        # and that is what a collector following the RFC must archive.
        return str(ns_of(value) - NTP_UNIX_OFFSET * 1_000_000_000)
    if name.startswith("dateTime"):
        return str(ns_of(value))
    return str(value)


class Exporter:
    """python-ipfix's MessageBuffer plus the expected rows and a sequence per domain."""

    def __init__(self, transport, expected):
        self.t = transport
        self.expected = expected
        self.msg = ipfix.message.MessageBuffer()
        self.msg.auto_export_time = False
        self.msg.export_epoch = 1_700_000_000

    def begin(self, domain):
        # Quirk: begin_export(odid) reads the sequence number of the *previous* domain before
        # it switches, so a Message for domain 2 after one for domain 1 would carry domain 1's
        # count. Switching first gives each domain its own count (RFC 7011 section 3.1).
        self.msg.odid = domain
        self.msg.begin_export()

    def template(self, tid, names, scope=0):
        tmpl = ipfix.template.from_ielist(tid, ipfix.ie.spec_list(names))
        tmpl.scopecount = scope
        self.msg.add_template(tmpl)
        return tmpl

    def records(self, tid, rows):
        self.msg.export_ensure_set(tid)
        tmpl = self.msg.template_for_id(tid)
        for row in rows:
            self.msg.export_namedict(row)
            self.note(tmpl.ies, [row[ie.name] for ie in tmpl.ies])

    def note(self, ies, values):
        pairs = ["%s=%s" % (ie.name, render(ie, v)) for ie, v in zip(ies, values)]
        self.expected.append("\t".join([str(self.msg.odid)] + pairs))

    def send(self):
        self.t.send(self.msg.to_bytes())

    def sequence(self):
        return self.msg.sequences.get((self.msg.odid, 0), 0)

    def raw(self, domain, tid, records, notes):
        """A Message with one Data Set of raw records, sequenced with python-ipfix's count."""
        self.msg.odid = domain
        body = b"".join(records)
        data_set = struct.pack("!HH", tid, 4 + len(body)) + body
        header = struct.pack(
            "!HHIII", 10, 16 + len(data_set), 1_700_000_000, self.sequence(), domain
        )
        self.t.send(header + data_set)
        self.msg.sequences[(domain, 0)] = self.sequence() + len(records)
        for ies, values, rendered in notes:
            pairs = ["%s=%s" % (ie.name, r) for ie, r in zip(ies, rendered)]
            self.expected.append("\t".join([str(domain)] + pairs))


def ie(name):
    return ipfix.ie.for_spec(name)


def two_domains(x, redefine_with_withdrawal):
    """Template 256 in domains 1 and 2 with different layouts, refreshed, then redefined."""
    a = ["sourceIPv4Address", "destinationIPv4Address", "octetDeltaCount", "packetDeltaCount"]
    b = ["sourceIPv6Address", "destinationIPv6Address", "protocolIdentifier", "octetDeltaCount[4]"]
    x.begin(1)
    x.template(256, a)
    x.records(256, [
        {"sourceIPv4Address": ip_address("192.0.2.1"),
         "destinationIPv4Address": ip_address("198.51.100.%d" % i),
         "octetDeltaCount": 10_000_000_000 + i, "packetDeltaCount": i}
        for i in range(1, 4)
    ])
    x.send()
    x.begin(2)
    x.template(256, b)
    x.records(256, [
        {"sourceIPv6Address": ip_address("2001:db8::%x" % i),
         "destinationIPv6Address": ip_address("2001:db8:ffff::1"),
         "protocolIdentifier": 17, "octetDeltaCount": 4_000_000_000 + i}
        for i in range(1, 3)
    ])
    x.send()
    # Refresh: the same Template 256 again in domain 1, then more data.
    x.begin(1)
    x.template(256, a)
    x.records(256, [{"sourceIPv4Address": ip_address("192.0.2.9"),
                     "destinationIPv4Address": ip_address("203.0.113.9"),
                     "octetDeltaCount": 9, "packetDeltaCount": 1}])
    x.send()
    # Redefinition in domain 1: new layout, same ID. Over TCP a Template ID may not change
    # before it is withdrawn (RFC 7011 section 8.1), so the withdrawal comes first there.
    x.begin(1)
    if redefine_with_withdrawal:
        # Quirk: delete_template(export=True) calls a method python-ipfix 0.9.7 does not have
        # (export_template_withdrawal); the private one it meant writes the withdrawal.
        x.msg.delete_template(256, export=False)
        x.msg._export_template_withdrawal(ipfix.template.TEMPLATE_SET_ID, 256)
        x.send()
        x.begin(1)
    x.template(256, ["sourceIPv4Address", "sourceTransportPort", "destinationTransportPort",
                     "packetDeltaCount[4]"])
    x.records(256, [{"sourceIPv4Address": ip_address("10.9.9.9"), "sourceTransportPort": 53,
                     "destinationTransportPort": 5353 + i, "packetDeltaCount": 7 + i}
                    for i in range(2)])
    x.send()
    # Domain 2's Template 256 is untouched by domain 1's redefinition.
    x.begin(2)
    x.records(256, [{"sourceIPv6Address": ip_address("2001:db8::99"),
                     "destinationIPv6Address": ip_address("::1"),
                     "protocolIdentifier": 6, "octetDeltaCount": 1}])
    x.send()


VARLEN = ["flowId", "interfaceName", "interfaceDescription", "ipPayloadPacketSection", "vlanId"]


def varlen(field, form3=False):
    """A variable-length field's octets: 1-octet length below 255 unless `form3`."""
    if len(field) < 255 and not form3:
        return struct.pack("!B", len(field)) + field
    return struct.pack("!BH", 255, len(field)) + field


def variable_length(x):
    """Template 300: strings and octets in both length forms, a fixed field after them."""
    x.begin(1)
    x.template(300, VARLEN)
    rows = [
        (1, "eth0", "uplink", b"\x00\x01\x02", 10),
        (2, "", "", b"", 11),
        (3, "i" * 254, "d" * 255, bytes(range(256)) * 4, 12),
        (4, "é" * 300, "Grüezi " * 100, b"\xff" * 255, 4095),
    ]
    x.records(300, [dict(zip(VARLEN, r)) for r in rows])
    x.send()
    # Built with struct: the 3-octet form for short lengths (0 and 5) and a 40000-octet field.
    ies = [ie(n) for n in VARLEN]
    rows = [
        (5, "Gi0/1".encode(), b"", b"\x7f", 1, (True, True, True)),
        (6, "x".encode(), "y".encode(), bytes(40_000), 2, (False, True, True)),
    ]
    records, notes = [], []
    for flow, name, descr, payload, vlan, forms in rows:
        records.append(
            struct.pack("!Q", flow)
            + varlen(name, forms[0])
            + varlen(descr, forms[1])
            + varlen(payload, forms[2])
            + struct.pack("!H", vlan)
        )
        notes.append((ies, None, [str(flow), name.decode(), descr.decode(), payload.hex(), str(vlan)]))
    x.raw(1, 300, records, notes)


TIMES = ["flowId", "flowStartSeconds", "flowStartMilliseconds", "flowStartMicroseconds",
         "flowEndMicroseconds"]
NTP_TIMES = ["flowId", "flowStartMicroseconds", "flowEndMicroseconds", "flowStartNanoseconds",
             "flowEndNanoseconds"]


def ntp(unix_ns, fraction_of):
    seconds, rest = divmod(unix_ns, 1_000_000_000)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | fraction_of(rest)


def times(x):
    """Template 310: python-ipfix's own time encodings; 311: NTP bits chosen here."""
    x.begin(1)
    x.template(310, TIMES)
    x.template(311, NTP_TIMES)
    # python-ipfix encodes a datetime (microseconds) from a float of the UNIX time, its NTP
    # fraction truncated: 654321 us goes out as 0xa7819400, 0.99999997 of the microsecond
    # meant (it decodes to the nearest microsecond itself). Seconds and milliseconds are
    # whole units: it is given whole ones.
    whole = datetime(2024, 2, 29, 12, 34, 56, 250_000)
    rows = [{"flowId": 100 + i, "flowStartSeconds": whole.replace(microsecond=0),
             "flowStartMilliseconds": whole,
             "flowStartMicroseconds": datetime(2024, 2, 29, 12, 34, 56, us),
             "flowEndMicroseconds": datetime(2024, 2, 29, 23, 59, 59, 999_999 - us)}
            for i, us in enumerate([1, 2, 3, 7, 123_456, 500_000, 654_321, 999_999])]
    x.records(310, rows)
    x.send()

    # Microseconds (RFC 7011 section 6.1.9): the fraction truncated, then its 11 lowest bits
    # set to ones, which must be ignored. Nanoseconds (section 6.1.10): every bit counts, and
    # fractions rounded down, up and to the nearest must all read back as the nanosecond meant.
    base = ns_of(datetime(2030, 1, 2, 3, 4, 5))
    down = lambda r: (r << 32) // 1_000_000_000
    up = lambda r: -((-r << 32) // 1_000_000_000)
    near = lambda r: ((r << 32) + 500_000_000) // 1_000_000_000
    micro_junk = lambda r: (((r // 1_000) << 32) // 1_000_000) | 0x7FF
    ies = [ie(n) for n in NTP_TIMES]
    records, notes = [], []
    cases = [(1, down), (999_999_999, down), (123_456_789, up), (1_000, near),
             (500_000_000, down), (999_999_000, up), (7, near), (654_321_000, down)]
    for i, (frac_ns, fraction) in enumerate(cases):
        t = base + i * 1_000_000_000 + frac_ns
        micro = t - t % 1_000
        records.append(struct.pack("!QQQQQ", 200 + i, ntp(micro, micro_junk),
                                   ntp(micro + 1_000, micro_junk), ntp(t, fraction),
                                   ntp(t + 2, fraction)))
        values = [200 + i, micro, micro + 1_000, t, t + 2]
        notes.append((ies, None, [str(v) for v in values]))
    x.raw(1, 311, records, notes)


def options(x):
    """Three Options Templates with different scopes, in domain 1, and their data."""
    x.begin(1)
    x.template(400, ["exportingProcessId", "exportedMessageTotalCount",
                     "exportedFlowRecordTotalCount"], scope=1)
    x.template(401, ["selectorId", "samplingPacketInterval", "samplingPacketSpace"], scope=1)
    x.template(402, ["lineCardId", "meteringProcessId", "ignoredPacketTotalCount",
                     "ignoredOctetTotalCount"], scope=2)
    x.records(400, [{"exportingProcessId": 7, "exportedMessageTotalCount": 12,
                     "exportedFlowRecordTotalCount": 34}])
    x.records(401, [{"selectorId": 1, "samplingPacketInterval": 1, "samplingPacketSpace": 99},
                    {"selectorId": 2, "samplingPacketInterval": 10, "samplingPacketSpace": 0}])
    x.records(402, [{"lineCardId": 3, "meteringProcessId": 4, "ignoredPacketTotalCount": 5,
                     "ignoredOctetTotalCount": 6_000_000_000}])
    x.send()


def main():
    kind, host, port, expected_path = sys.argv[1:5]
    transport = Transport(kind, host, int(port))
    expected = []
    x = Exporter(transport, expected)
    two_domains(x, redefine_with_withdrawal=(kind == "tcp"))
    variable_length(x)
    times(x)
    options(x)
    transport.close()
    with open(expected_path, "w", encoding="utf-8") as out:
        out.write("\n".join(expected) + "\n")


if __name__ == "__main__":
    main()
