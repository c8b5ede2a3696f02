"""The soak run's chart: the node's memory over time (VmRSS, VmHWM, RssAnon) with the fitted
slope after the warm-up, and below it the requests per minute, the users and the live sessions
the traffic built up. Usage: python plot_soak.py bench/results/soak-sqlite.json bench/results/soak-rss.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

report = json.load(open(sys.argv[1]))
out = sys.argv[2]
samples = report["samples"]
fit = report["fit"]
t = [s["minute"] for s in samples]

fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
top.plot(t, [s["rss_mib"] for s in samples], "o-", color="#2b6cb0", label="VmRSS")
top.plot(t, [s["hwm_mib"] for s in samples], "--", color="#68a0d8", label="VmHWM (peak)")
top.plot(t, [s["rss_anon_mib"] for s in samples], ":", color="#805ad5", label="RssAnon")
window = [s for s in samples if s["minute"] + 1e-6 >= fit["from_minute"]]
if len(window) >= 2:
    top.plot([window[0]["minute"], window[-1]["minute"]],
             [fit["fitted_start_mib"], fit["fitted_end_mib"]], "-", color="#c05621",
             linewidth=2,
             label=f"fit from minute {fit['from_minute']:g}: "
                   f"{fit['rss_mib_per_hour']:+.2f} MiB/h")
    top.axvspan(0, fit["from_minute"], color="#eeeeee", zorder=0)
top.set_ylabel("MiB")
top.set_ylim(bottom=0)
args = report["args"]
rate = f"paced to ≤ {args['rate']:.0f} req/s" if args["rate"] > 0 else "unpaced"
top.set_title(f"Soak: {args['minutes']} min of mixed traffic, embedded (SQLite), "
              f"{args['concurrency']} workers, {rate}, "
              f"{report['machine'].get('cores', '?')} cores")
top.legend(loc="lower right")
top.grid(alpha=0.3)

rows = samples[1:]
mins = [s["minute"] for s in rows]
span = [max(b["minute"] - a["minute"], 1e-9) for a, b in zip(samples, rows)]
per_min = [sum(s["requests"].values()) / d for s, d in zip(rows, span)]
bottom.bar(mins, per_min, width=[-d * 0.8 for d in span], align="edge", color="#a0aec0",
           label="requests per minute")
bottom.set_ylabel("requests / minute")
bottom.set_xlabel("minutes since the traffic started")
other = bottom.twinx()
other.plot(t, [s["users"] for s in samples], "-", color="#2f855a", label="verified users")
other.plot(t, [s["live_sessions"] for s in samples], "-", color="#b7791f",
           label="live sessions")
other.set_ylabel("count")
h1, l1 = bottom.get_legend_handles_labels()
h2, l2 = other.get_legend_handles_labels()
bottom.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
bottom.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"wrote {out}")
