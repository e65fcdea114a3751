"""Reads a flowvm data set in an S3 bucket as users do, with DuckDB (httpfs) and pyarrow (its
S3 file system), and prints every flow each of them found.

Usage: check_bucket.py ENDPOINT BUCKET/PREFIX ACCESS_KEY SECRET_KEY VIEW_SQL
ENDPOINT is host:port of a plain-HTTP S3 server; VIEW_SQL a file holding what
`flowvm sql s3://BUCKET/PREFIX` printed. Prints one line per row and reader:
READER<TAB>src<TAB>dst<TAB>protocol<TAB>sport<TAB>dport<TAB>flags<TAB>packets<TAB>octets<TAB>start_ns<TAB>end_ns<TAB>reason
"""
import glob
import ipaddress
import os
import sys

import duckdb
import duckdb_extension_httpfs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as fs

endpoint, location, access, secret, view = sys.argv[1:6]
bucket_prefix = location.strip("/")

# DuckDB: the README's query over s3:// (httpfs, from the duckdb-extension-httpfs package),
# through `flowvm sql`'s view (IPv4 addresses as text).
extension = glob.glob(os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__),
                                   "extensions", "*", "httpfs.duckdb_extension"))[0]
con = duckdb.connect()
con.execute(f"LOAD '{extension}'")
con.execute(f"""CREATE SECRET lake (TYPE s3, KEY_ID '{access}', SECRET '{secret}',
                ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')""")
with open(view, encoding="utf-8") as statements:
    con.execute(statements.read())
duck = con.execute(f"""
    SELECT coalesce(sourceIPv4Address, sourceIPv6Address) AS src,
           coalesce(destinationIPv4Address, destinationIPv6Address) AS dst,
           protocolIdentifier, sourceTransportPort, destinationTransportPort, tcpControlBits,
           packetDeltaCount, octetDeltaCount, epoch_ns(flowStartNanoseconds) AS flowStartNanoseconds,
           epoch_ns(flowEndNanoseconds) AS flowEndNanoseconds,
           flowEndReason
    FROM flows""").fetch_arrow_table()

# pyarrow: its own S3 client; the objects listed under the prefix, read as one data set with
# the union of their schemas (IPv4 and IPv6 files differ).
s3 = fs.S3FileSystem(access_key=access, secret_key=secret, scheme="http",
                     endpoint_override=endpoint, region="us-east-1")
keys = [f.path for f in s3.get_file_info(fs.FileSelector(bucket_prefix, recursive=True))
        if f.path.endswith(".parquet")]
files = ds.dataset(keys, filesystem=s3, format="parquet")
schema = pa.unify_schemas([f.physical_schema for f in files.get_fragments()],
                          promote_options="permissive")
table = ds.dataset(keys, filesystem=s3, format="parquet", schema=schema).to_table()


def text(col):
    """An IPv4 address column (archived as a number) as text; other columns as they are."""
    if not pa.types.is_uint32(col.type):
        return col
    return pa.array([None if v is None else str(ipaddress.IPv4Address(v))
                     for v in col.to_pylist()], pa.string())


def column(t, *names):
    """The first of `names` present, filled from the others where null."""
    present = [text(t.column(n)) for n in names if n in t.column_names]
    out = present[0]
    for other in present[1:]:
        out = pc.coalesce(out, other)
    return out


def as_int(col):
    if pa.types.is_timestamp(col.type):
        return col.cast(pa.int64())
    return col


def emit(reader, t):
    cols = [
        column(t, "src", "sourceIPv4Address", "sourceIPv6Address"),
        column(t, "dst", "destinationIPv4Address", "destinationIPv6Address"),
    ] + [as_int(column(t, n)) for n in (
        "protocolIdentifier", "sourceTransportPort", "destinationTransportPort",
        "tcpControlBits", "packetDeltaCount", "octetDeltaCount", "flowStartNanoseconds",
        "flowEndNanoseconds", "flowEndReason")]
    for row in zip(*(c.to_pylist() for c in cols)):
        print("\t".join([reader] + [str(v) for v in row]))


emit("duckdb", duck)
emit("pyarrow", table)
