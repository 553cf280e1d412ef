"""Runs every notebook here headless (nbclient, the venv's own kernel) against the outputs the
environment names (DEXLAB_DATASET, DATABASE_URL, DEXLAB_BACKTEST_JSON, DEXLAB_MODEL_DIR,
DEXLAB_SESSION_DIR, DEXLAB_BIN; by default the demo's dexlab-out/), and writes the executed
notebooks to the folder given. Fails on any cell's error, and on a notebook with fewer figures
than its metadata declares (`dexlab.figures`) or a figure that is blank.

    .dexlab/notebooks-venv/bin/python notebooks/run.py OUT_DIR [NAME...]

With NAMEs (e.g. `02-experiments`), only those notebooks run.
"""

import base64
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

MIN_PNG_BYTES = 4000  # an empty matplotlib canvas is about 2 KB


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    failed = []
    only = set(sys.argv[2:])
    for path in sorted(here.glob("*.ipynb")):
        if only and path.stem not in only:
            continue
        nb = nbformat.read(path, as_version=4)
        try:
            NotebookClient(
                nb, timeout=600, kernel_name="python3",
                resources={"metadata": {"path": str(here)}},
            ).execute()
        except CellExecutionError as e:
            failed.append(f"{path.name}: {e}")
            nbformat.write(nb, out / path.name)
            continue
        pngs = [
            base64.b64decode(o["data"]["image/png"])
            for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})
        ]
        want = nb.metadata.get("dexlab", {}).get("figures", 1)
        blank = [i for i, p in enumerate(pngs) if len(p) < MIN_PNG_BYTES]
        if len(pngs) < want:
            failed.append(f"{path.name}: {len(pngs)} figures, it declares {want}")
        elif blank:
            failed.append(f"{path.name}: figures {blank} are blank")
        nbformat.write(nb, out / path.name)
        print(f"{path.name}: {len(pngs)} figures")
    for f in failed:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
