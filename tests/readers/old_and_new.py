"""An archive of IPv4 addresses as numbers with a file of an older flowvm beside it (the same
columns, IPv4 addresses as text), read through `flowvm sql`'s view.

Usage: old_and_new.py ARCHIVE_DIR VIEW_SQL
Writes the older file into the archive's first partition, then prints one JSON object: every
row's sourceIPv4Address and octetDeltaCount as the view gives them, and the rows the view
finds for 10.9.9.9 written as text.
"""
import glob
import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

archive, view = sys.argv[1], sys.argv[2]
partition = os.path.dirname(sorted(glob.glob(f"{archive}/**/*.parquet", recursive=True))[0])
pq.write_table(
    pa.table({
        "sourceIPv4Address": pa.array(["10.9.9.9"], pa.string()),
        "octetDeltaCount": pa.array([5], pa.uint64()),
    }),
    os.path.join(partition, "flows-older.parquet"),
)
con = duckdb.connect()
with open(view, encoding="utf-8") as statements:
    con.execute(statements.read())
rows = con.execute(
    "SELECT sourceIPv4Address, octetDeltaCount::BIGINT FROM flows ORDER BY octetDeltaCount"
).fetchall()
older = con.execute("SELECT count(*) FROM flows WHERE sourceIPv4Address = '10.9.9.9'").fetchone()
print(json.dumps({"rows": [list(r) for r in rows], "older": older[0]}))
