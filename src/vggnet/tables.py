"""Plain-text and Markdown tables for the CLI's reports."""

from collections.abc import Collection


def render_table(
    headers: list[str], rows: list[list[object]], style: str = "text", labels: Collection[str] = ()
) -> str:
    """Render rows under headers, as aligned text (numbers right-aligned) or as a Markdown table.

    Args:
        headers: Column titles.
        rows: One list of cells per row; each cell is shown with `str`.
        style: `"text"` or `"markdown"`.
        labels: Titles of columns of names that may look like numbers (class names "0".."9"): left-aligned all the
            same, so that the column keeps its alignment whatever its rows hold.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    numeric = [
        header not in labels and bool(cells) and all(_is_number(row[i]) for row in cells)
        for i, header in enumerate(headers)
    ]
    if style == "markdown":
        rule = ["---:" if right else "---" for right in numeric]
        lines = [headers, rule, *cells]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def _is_number(text: str) -> bool:
    return text in ("-", "") or text.replace(",", "").replace(".", "", 1).rstrip("KMGT").isdigit()


def human_count(value: float) -> str:
    """1792 -> '1.79K', 15470264320 -> '15.47G'."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    return f"{value:g}"
