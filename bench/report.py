"""Turns bench/results/results.jsonl into a Markdown table (with ratios) and a latency plot."""

import json
import os
import platform
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results_path, out = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(results_path)]
by = {r["name"]: r for r in rows}


def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


lines = [
    f"Machine: {os.cpu_count()} CPUs ({cpu()}), {platform.system()} {platform.release()}; "
    "load generator on the same machine.",
    "",
    "| run | requests/s | events/s | p50 ms | p99 ms | max ms | errors | acknowledged events | landed | peak RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    if "requests_per_second" not in r:
        continue
    landed = r.get("landed_events")
    lines.append(
        f"| {r['name']} | {r['requests_per_second']:.0f} | {r['events_per_second']:.0f} | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} | {r['acknowledged_events']} | "
        f"{'—' if landed is None else landed} | {r['peak_rss_kb'] / 1024:.1f} |"
    )
kinds = [f"{r['name']}: " + ", ".join(f"{n} × {k}" for k, n in r["error_kinds"].items())
         for r in rows if r.get("error_kinds")]
if kinds:
    lines += ["", "Errors by kind: " + "; ".join(kinds) + "."]
idle = by.get("hookyard-idle", {})
lines += ["", f"hookyard start-up to first served request: {idle.get('startup_ms', '?')} ms; "
          f"idle RSS: {idle.get('idle_rss_kb', 0) / 1024:.1f} MB.", ""]
journal = [f"{r['name']} {r['journal_bytes_per_event']:.0f}" for r in rows if "journal_bytes_per_event" in r]
if journal:
    lines += ["Journal bytes per event (after the checkpoint): " + "; ".join(journal) + ".", ""]
hy, ce, wh = by.get("hookyard-gridx"), by.get("ceiling-gridx"), by.get("webhook-gridx")
if hy and ce:
    lines.append(f"hookyard / ceiling (gridX requests/s): {hy['requests_per_second'] / ce['requests_per_second']:.2f}")
if hy and wh and wh["requests_per_second"] > 0:
    lines.append(f"hookyard / adnanh-webhook (gridX requests/s): {hy['requests_per_second'] / wh['requests_per_second']:.1f}")
tails = by.get("hookyard-gridx-3-tails")
if hy and tails:
    lines.append(f"gridX with three live-log tails / without (requests/s): "
                 f"{tails['requests_per_second'] / hy['requests_per_second']:.2f}")
hist, hg = by.get("hookyard-history"), by.get("hookyard-history-gridx")
if hist:
    lines += ["", f"history: {hist['events']} gridX events journaled ({hist['journal_bytes_per_event']:.0f} journal bytes "
              f"per event, filled in {hist['fill_seconds']:.0f} s): start-up to first served request "
              f"{hist['startup_ms']} ms; RSS after start-up {hist['started_rss_kb'] / 1024:.1f} MB (peak "
              f"{hist['started_peak_rss_kb'] / 1024:.1f} MB), 1 s after the gridX load {hist['after_load_rss_kb'] / 1024:.1f} MB, "
              f"5 s after it {hist.get('settled_rss_kb', 0) / 1024:.1f} MB "
              f"(peak {hist['peak_rss_kb'] / 1024:.1f} MB)."]
if hg and hy:
    lines.append(f"history / empty journal (gridX requests/s): {hg['requests_per_second'] / hy['requests_per_second']:.2f}")
h5, e5 = by.get("hookyard-history-gridx-5000rps"), by.get("hookyard-gridx-5000rps")
if h5:
    lines.append(f"p99 at a steady 5,000 gridX requests/s: {h5['p99_ms']:.2f} ms with the history journaled"
                 + (f", {e5['p99_ms']:.2f} ms on the empty journal" if e5 else ""))
disk = [r for r in rows if r["name"].startswith("disk-fsync")]
if disk:
    lines.append("The disk's own floor (4 KiB append + fdatasync, as one journal commit): "
                 + "; ".join(f"{r['name'][len('disk-fsync-'):]} the loads p50 {r['p50_ms']:.2f} ms, "
                             f"p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms" for r in disk))
table = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
print(table)

runs = [r for r in rows if "requests_per_second" in r]
fig, ax = plt.subplots(figsize=(10, 4.5))
x = range(len(runs))
ax.bar([i - 0.2 for i in x], [r["p50_ms"] for r in runs], width=0.4, label="p50")
ax.bar([i + 0.2 for i in x], [r["p99_ms"] for r in runs], width=0.4, label="p99")
ax.set_xticks(list(x))
ax.set_xticklabels([r["name"] for r in runs], rotation=30, ha="right")
ax.set_ylabel("latency (ms)")
ax.set_yscale("log")
ax.set_title("Request latency per run (log scale)")
ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(out, "latency.png"), dpi=110)
