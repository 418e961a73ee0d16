"""The benchmark's report: its rows as plain data, what its figures cannot be trusted for (`report_warnings`),
and the text tables (`render_benchmark`).
"""

from ..allocator import OPT_OUT_VARIABLE
from ..runtime import default_workers
from ..tables import render_table
from .ceiling import BUSY_SPREAD
from .inference import INT8_PATH, OPENVINO_PATH, ORT_CUDA_PATH, PathResult

RANDOM_WEIGHTS = "random (speed only)"
# Issue 15's targets against the peer in the same run (OpenVINO on a CPU, ONNX Runtime's CUDA provider on a GPU):
# what -> (the limit, whether the ratio must be at least it).
TARGETS = {
    OPENVINO_PATH: {
        "default path images/s": (1.0, True),
        "fastest float path images/s": (1.15, True),
        "int8 images/s": (2.0, True),
        "int8 p50 latency": (0.5, False),
    },
    ORT_CUDA_PATH: {"default path images/s": (1.5, True), "fastest float path images/s": (1.5, True)},
}


def inference_row(result: PathResult, results: list[PathResult], baseline: str, macs: int, ceilings: dict) -> dict:
    """One path at one batch size as the report's JSON row: its rate, its ratio to the baseline at the same batch
    size, its latencies, its GFLOP/s and their fraction of its precision's ceiling, its agreement with fp32."""
    reference = next(r for r in results if r.name == baseline and r.batch_size == result.batch_size)
    gflops = 2 * macs * result.images_per_s / 1e9
    ceiling = ceilings.get(result.precision, ceilings["fp32"])
    return {
        "path": result.name,
        "batch_size": result.batch_size,
        "images_per_s": result.images_per_s,
        "ratio_to_baseline": result.images_per_s / reference.images_per_s,
        "latency_p50_ms": result.median * 1000,
        "latency_p90_ms": result.p90 * 1000,
        "gflops": gflops,
        "fraction_of_ceiling": gflops / ceiling,
        "top1_agreement_vs_fp32": result.agreement,
        "max_logit_diff_vs_fp32": result.max_logit_diff,
    }


def peer_targets(rows: list[dict]) -> list[dict]:
    """Each of issue 15's targets at each batch size where its peer ran: the peer, the path measured, its ratio to
    the peer (images/s, or p50 latency at batch 1 for int8), the limit and whether the ratio meets it. The float
    paths are vggnet's paths other than int8 (the default one, fp32, and torch.compile); the fastest counts."""
    targets = []
    for batch_size in sorted({row["batch_size"] for row in rows}):
        at_batch = {row["path"]: row for row in rows if row["batch_size"] == batch_size}
        peer_path = next((path for path in TARGETS if path in at_batch), None)
        if peer_path is None:
            continue
        peer = at_batch.pop(peer_path)
        floats = [row for path, row in at_batch.items() if path.startswith("vggnet") and path != INT8_PATH]
        measured = {
            "default path images/s": next((row for row in floats if row["path"].startswith("vggnet default")), None),
            "fastest float path images/s": max(floats, key=lambda row: row["images_per_s"], default=None),
            "int8 images/s": at_batch.get(INT8_PATH),
            "int8 p50 latency": at_batch.get(INT8_PATH) if batch_size == 1 else None,
        }
        for target, (limit, at_least) in TARGETS[peer_path].items():
            row = measured[target]
            if row is None:
                continue
            if target.endswith("latency"):
                ratio = row["latency_p50_ms"] / peer["latency_p50_ms"]
            else:
                ratio = row["images_per_s"] / peer["images_per_s"]
            targets.append({"target": target, "peer": peer_path, "batch_size": batch_size, "path": row["path"],
                            "ratio": ratio, "limit": limit, "at_least": at_least,
                            "pass": ratio >= limit if at_least else ratio <= limit})  # fmt: skip
    return targets


def report_warnings(report: dict) -> list[str]:
    """What the figures of `report` cannot be trusted for, one sentence each."""
    warnings = []
    if report["machine_busy"]:
        label, spread = max(report["ceiling_spread"].items(), key=lambda item: item[1])
        best = report["ceilings_gflops"][label]
        warnings.append(
            f"machine busy: the {label} compute ceiling moved by {spread:.0%} during the run "
            f"({best * (1 - spread):,.0f} to {best:,.0f} GFLOP/s; more than {BUSY_SPREAD:.0%}): other work shared "
            "the machine, so throughputs and ratios are not this machine's, and fractions of the ceiling are left "
            "out; rerun on a quiet machine"
        )
        return warnings
    fractions = [row["fraction_of_ceiling"] for row in report["inference"]]
    fractions += [value for row in report.get("training", []) for value in row["fraction_of_ceiling"].values()]
    if any(fraction > 1 for fraction in fractions):
        warnings.append(
            "'>100%!': faster than the ceiling measured in this run, whose kernels suit that path's work less well "
            "than the path itself does; its fraction of the ceiling says nothing"
        )
    return warnings


def _fraction_cell(fraction: float, busy: bool) -> str:
    """A fraction of the ceiling as the text shows it: left out when the machine was busy, and never a figure
    over 100%, which says only that the ceiling was measured too low."""
    if busy:
        return "busy"
    return ">100%!" if fraction > 1 else f"{fraction:.0%}"


def render_benchmark(report: dict) -> str:
    """The report as text tables, warnings first."""
    busy = report["machine_busy"]
    ceilings = ", ".join(
        f"{label} {gflops:,.0f} GFLOP/s (spread {report['ceiling_spread'][label]:.0%})"
        for label, gflops in report["ceilings_gflops"].items()
    )
    trained = report["weights"] != RANDOM_WEIGHTS
    lines = [
        *(f"WARNING {warning}" for warning in report["warnings"]),
        f"{report['model']} at {report['img_size']}x{report['img_size']} ({report['gmacs_per_image']:.2f} GMACs per "
        f"image), {report['device']}, {report['threads']} threads, torch {report['torch']}",
        f"weights: {report['weights']}"
        + ("" if trained else ": top-1 agreement left out (random weights give nearly tied logits, whose order "
           "rounding flips); pass --pretrained imagenet, or a checkpoint as --model, to measure it"),
        f"compute ceiling, best of {report['ceiling_samples']} samples taken before, between and after the timed "
        f"rounds ({report['ceiling_kernels']}"
        + ("; int8: oneDNN's int8 kernels, which the int8 path runs" if "int8" in report["ceilings_gflops"] else "")
        + f"): {ceilings}",
        "vggnet's paths keep freed memory for reuse; the baseline and peers run with malloc's default behaviour"
        if report["vggnet_keeps_freed_memory"]
        else f"all paths run with malloc's default behaviour ({OPT_OUT_VARIABLE}=0, or not glibc)",
        "",
    ]  # fmt: skip
    rows = [
        [
            r["path"], r["batch_size"], f"{r['images_per_s']:.1f}", f"{r['ratio_to_baseline']:.2f}x",
            f"{r['latency_p50_ms']:.1f}", f"{r['latency_p90_ms']:.1f}", f"{r['gflops']:.0f}",
            _fraction_cell(r["fraction_of_ceiling"], busy),
            *([f"{r['top1_agreement_vs_fp32']:.1%}"] if trained else []), f"{r['max_logit_diff_vs_fp32']:.2g}",
        ]
        for r in report["inference"]
    ]  # fmt: skip
    headers = ["path", "batch", "images/s", "vs baseline", "p50 ms", "p90 ms", "GFLOP/s", "of ceiling",
               *(["top-1 agree"] if trained else []), "max logit diff"]  # fmt: skip
    lines.append(render_table(headers, rows))
    measured = "agreement" if trained else "largest logit difference"
    lines.append(
        f"({measured} on {report['agreement_images']} real images from {report['agreement_data']}, against vggnet "
        f"fp32; baseline: {report['baseline']})"
    )
    if report["targets"]:
        rows = [
            [t["target"], t["batch_size"], t["path"], f"{t['ratio']:.2f}",
             f"{'>=' if t['at_least'] else '<='} {t['limit']:g}", "PASS" if t["pass"] else "MISS"]
            for t in report["targets"]
        ]  # fmt: skip
        peer = report["targets"][0]["peer"]
        lines += ["", f"targets against {peer} in this run (ratio: the path's figure over the peer's):"]
        lines.append(render_table(["target", "batch", "path", "ratio", "limit", "verdict"], rows))
    if "training" in report:
        train_rows = []
        for row in report["training"]:  # each path's images/s and fraction of its ceiling, fp32 first
            cells = [
                cell
                for label, rate in row["images_per_s"].items()
                for cell in (f"{rate:.1f}", _fraction_cell(row["fraction_of_ceiling"][label], busy))
            ]
            train_rows.append([row["model"], row["batch_size"], *cells, f"{row['ratio']:.2f}x",
                               f"{row['data_pipeline_images_per_s']:.0f}"])  # fmt: skip
        workers = f"{default_workers()} loader worker{'s' * (default_workers() != 1)}"
        lines += ["", "training (forward + backward + SGD step), images/s and fraction of the ceiling; the data "
                  f"pipeline alone (decode + augment, {workers}), images/s:"]  # fmt: skip
        paths = [header for label in report["training"][0]["images_per_s"] for header in (label, "of ceiling")]
        lines.append(render_table(["model", "batch", *paths, "default/fp32", "data pipeline"], train_rows))
    return "\n".join(lines)
