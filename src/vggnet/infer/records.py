"""Prediction records as text: what `vggnet predict --format table|json|csv` prints.

    vggnet predict --model runs/train/exp/best.pt photos/ --format csv

A record is `{"path", "top": [{"class", "index", "prob"}, ...]}`, or `{"path", "error"}` for an input that failed
(see `predict`). Torch-free: rendering needs only the records.
"""

import csv
import io
import json

from ..tables import render_table


def render_records(records: list[dict], style: str) -> str:
    """Prediction records as JSON, CSV (one row per path and rank) or a text table (top prediction first).

    Args:
        records: `predict`'s records, in input order.
        style: `"table"`, `"json"` or `"csv"`.
    """
    if style == "json":
        return json.dumps(records, indent=2)
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "rank", "class", "index", "prob", "error"])
        for record in records:
            if "error" in record:
                writer.writerow([record["path"], "", "", "", "", record["error"]])
            for rank, top in enumerate(record.get("top", []), start=1):
                writer.writerow([record["path"], rank, top["class"], top["index"], f"{top['prob']:.6f}", ""])
        return buffer.getvalue().rstrip("\n")
    rows = [
        [
            record["path"],
            "ERROR" if "error" in record else record["top"][0]["class"],
            record.get("error") or "  ".join(f"{t['class']} {t['prob']:.3f}" for t in record["top"]),
        ]
        for record in records
    ]
    return render_table(["path", "class", "top predictions"], rows, labels=("class",))
