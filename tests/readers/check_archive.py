"""Opens a flowvm archive as users do, with DuckDB and pyarrow, and prints what it found.

Usage: check_archive.py ARCHIVE_DIR ADDRESS
Prints one JSON object: rows seen by DuckDB and pyarrow, and DuckDB's count of rows whose
sourceIPv4Address equals ADDRESS (filtering on the address written as text).
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds

archive, address = sys.argv[1], sys.argv[2]
con = duckdb.connect()
# The README's query.
rows = con.execute(
    f"SELECT count(*) FROM read_parquet('{archive}/**/*.parquet', union_by_name=true, hive_partitioning=true)"
).fetchone()[0]
matching = con.execute(
    f"""SELECT count(*), min(date), min(hour), sum(octetDeltaCount)
        FROM read_parquet('{archive}/**/*.parquet', union_by_name=true, hive_partitioning=true)
        WHERE sourceIPv4Address = ?""",
    [address],
).fetchone()
table = ds.dataset(archive, format="parquet", partitioning="hive").to_table()
print(json.dumps({
    "duckdb_rows": rows,
    "duckdb_matching": matching[0],
    "duckdb_date": str(matching[1]),
    "duckdb_octets": int(matching[3] or 0),
    "pyarrow_rows": table.num_rows,
    "pyarrow_columns": sorted(table.column_names),
}))
