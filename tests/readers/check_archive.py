"""Opens a flowvm archive as users do, with DuckDB and pyarrow, and prints what it found.

Usage: check_archive.py ARCHIVE_DIR VIEW_SQL ADDRESS [COLUMN]
VIEW_SQL is a file holding what `flowvm sql ARCHIVE_DIR` printed. Prints one JSON object: rows
seen by DuckDB (the files, and the view `flows`) and pyarrow; counts of rows whose COLUMN
(sourceIPv4Address unless given) equals ADDRESS: DuckDB's through the view (the address as
written), DuckDB's over the files with `ipv4(ADDRESS)` for an IPv4 address (archived as a
number), and pyarrow's (the number, or an IPv6 address's text); the codecs the files' pages are
compressed with, each column's encodings, and every file's columns whose values DuckDB and
pyarrow read differently (none, when both read what was written).
"""
import ipaddress
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

archive, view, address = sys.argv[1], sys.argv[2], sys.argv[3]
column = sys.argv[4] if len(sys.argv) > 4 else "sourceIPv4Address"
ipv4 = ipaddress.ip_address(address).version == 4
con = duckdb.connect()
with open(view, encoding="utf-8") as statements:
    con.execute(statements.read())
rows = con.execute(
    f"SELECT count(*) FROM read_parquet('{archive}/**/*.parquet', union_by_name=true, hive_partitioning=true)"
).fetchone()[0]
view_rows = con.execute("SELECT count(*) FROM flows").fetchone()[0]
# The README's query, through the view.
matching = con.execute(
    f"""SELECT count(*), min(date), min(hour), sum(octetDeltaCount)
        FROM flows WHERE "{column}" = ?""",
    [address],
).fetchone()
# The README's filter on the files themselves.
matching_files = con.execute(
    f"""SELECT count(*) FROM read_parquet('{archive}/**/*.parquet', union_by_name=true)
        WHERE "{column}" = {'ipv4(?)' if ipv4 else '?'}""",
    [address],
).fetchone()[0]
# The README's pyarrow recipe: files differ in schema (one per template shape and protocol, a
# wider column where an integer came wider than its type), and a dataset takes the first
# file's unless given the union of all.
files = ds.dataset(archive, format="parquet", partitioning="hive")
schema = pa.unify_schemas([files.schema] + [f.physical_schema for f in files.get_fragments()],
                          promote_options="permissive")
# The README's NetFlow query: IPFIX and NetFlow files together.
per_exporter = con.execute(
    f"""SELECT exporter, export_version, sum(octetDeltaCount)::BIGINT AS octets
        FROM read_parquet('{archive}/**/*.parquet', union_by_name=true, hive_partitioning=true)
        GROUP BY ALL ORDER BY exporter"""
).fetchall()
table = ds.dataset(archive, format="parquet", partitioning="hive", schema=schema).to_table(
    filter=ds.field(column) == (int(ipaddress.IPv4Address(address)) if ipv4 else address)
)
every = ds.dataset(archive, format="parquet", partitioning="hive", schema=schema).to_table()
# How the files' pages are compressed (--compression), as the readers see it, and each
# column's encodings (dictionary, plain, delta) over every file and row group.
codecs = sorted({pq.ParquetFile(f).metadata.row_group(0).column(0).compression
                 for f in files.files})
encodings = {}
for f in files.files:
    metadata = pq.ParquetFile(f).metadata
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            encodings.setdefault(chunk.path_in_schema, set()).update(chunk.encodings)
# Every value of every file, as each reader reads it (compared as text: DuckDB gives times
# without their zone).
disagreements = []
for f in sorted(files.files):
    by_duckdb = con.execute(f"SELECT * FROM read_parquet('{f}')").to_arrow_table()
    by_pyarrow = pq.read_table(f)
    for name in by_pyarrow.column_names:
        ours = [str(v) for v in by_pyarrow.column(name).to_pylist()]
        theirs = [str(v) for v in by_duckdb.column(name).to_pylist()]
        if ours != theirs:
            disagreements.append(f"{f.rsplit('/', 1)[-1]}:{name}")
print(json.dumps({
    "disagreements": disagreements,
    "duckdb_rows": rows,
    "duckdb_view_rows": view_rows,
    "duckdb_matching": matching[0],
    "duckdb_matching_files": matching_files,
    "duckdb_date": str(matching[1]),
    "duckdb_octets": int(matching[3] or 0),
    "pyarrow_rows": every.num_rows,
    "per_exporter": [list(row) for row in per_exporter],
    "pyarrow_matching": table.num_rows,
    "pyarrow_columns": sorted(every.column_names),
    "codecs": codecs,
    "encodings": {column: sorted(e) for column, e in sorted(encodings.items())},
}))
