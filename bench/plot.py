"""Charts of a bench run: throughput and latency percentiles per scenario, Keyward beside the
peer. Usage: python plot.py bench/results/latest.json bench/results/"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

report = json.load(open(sys.argv[1]))
out = Path(sys.argv[2])
runs = [o for o in report["outcomes"] if o["concurrency"] == 8]
scenarios = []
for o in runs:
    if o["scenario"] not in scenarios:
        scenarios.append(o["scenario"])
colors = {"keyward": "#2b6cb0", "keyward (distributed)": "#68a0d8", "better-auth": "#c05621"}
targets = [t for t in colors if any(o["target"] == t for o in runs)]


def value(scenario, target, key):
    for o in runs:
        if o["scenario"] == scenario and o["target"] == target:
            return o[key]
    return 0.0


fig, ax = plt.subplots(figsize=(10, 4.5))
width = 0.8 / len(targets)
for i, t in enumerate(targets):
    xs = [x + (i - (len(targets) - 1) / 2) * width for x in range(len(scenarios))]
    ys = [value(s, t, "throughput") for s in scenarios]
    bars = ax.bar(xs, ys, width, label=t, color=colors[t])
    ax.bar_label(bars, labels=[f"{y:.0f}" if y else "" for y in ys], fontsize=7, padding=2)
ax.set_yscale("log")
ax.set_ylabel("requests/s (log scale)")
ax.set_xticks(range(len(scenarios)), scenarios)
ax.set_title(f"Throughput at concurrency 8, {report['seconds_per_scenario']} s each, "
             f"{report['machine'].get('cores', '?')} cores")
ax.legend()
fig.tight_layout()
fig.savefig(out / "throughput.png", dpi=120)

fig, ax = plt.subplots(figsize=(11, 4.5))
labels, p50, p95, p99, cols = [], [], [], [], []
for s in scenarios:
    for t in targets:
        if value(s, t, "throughput"):
            labels.append(f"{s}\n{t}")
            p50.append(value(s, t, "p50_ms"))
            p95.append(value(s, t, "p95_ms"))
            p99.append(value(s, t, "p99_ms"))
            cols.append(colors[t])
xs = range(len(labels))
ax.bar([x - 0.27 for x in xs], p50, 0.27, label="p50", color=cols, alpha=0.45)
ax.bar(list(xs), p95, 0.27, label="p95", color=cols, alpha=0.7)
ax.bar([x + 0.27 for x in xs], p99, 0.27, label="p99", color=cols, alpha=1.0)
ax.set_yscale("log")
ax.set_ylabel("latency, ms (log scale)")
ax.set_xticks(list(xs), labels, fontsize=7)
ax.set_title("Latency percentiles at concurrency 8 (p50, p95, p99 left to right)")
fig.tight_layout()
fig.savefig(out / "latency.png", dpi=120)
print(f"wrote {out / 'throughput.png'} and {out / 'latency.png'}")
