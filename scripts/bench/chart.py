#!/usr/bin/env python3
"""Draws the benchmark chart: docs/s by client and configuration, loopback
and uplink side by side, small documents above and big ones below.

    chart.py RESULTS.json OUT.png

Needs matplotlib (run.py runs this with scripts/bench/.venv/bin/python).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"libkuzzle": "#1f77b4", "sdk": "#ff7f0e", "raw": "#8c8c8c"}
NAMES = {"libkuzzle": "libkuzzle", "sdk": "JS SDK", "raw": "raw client"}


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    cases = res["cases"]
    meta = res["meta"]
    order = {"libkuzzle": 0, "sdk": 1, "raw": 2}

    def panel(path, shape):
        lst = [c for c in cases if c["path"] == path and c["shape"] == shape]
        return sorted(lst, key=lambda c: (order[c["client"]], -c.get("median", {}).get("docs_per_s", 0)))

    shapes = [s for s in ("small", "big") if any(c["shape"] == s for c in cases)]
    rows = [max(len(panel("loopback", s)), len(panel("uplink", s)), 1) for s in shapes]
    fig, axes = plt.subplots(len(shapes), 2, figsize=(15, 0.26 * sum(rows) + 2.2 * len(shapes)),
                             gridspec_kw={"height_ratios": rows}, squeeze=False)
    for i, shape in enumerate(shapes):
        for j, path in enumerate(("loopback", "uplink")):
            ax = axes[i][j]
            lst = panel(path, shape)
            if not lst:
                ax.axis("off")
                continue
            labels, vals, lo, hi, colors, hatches = [], [], [], [], [], []
            for c in lst:
                m = c.get("median", {}).get("docs_per_s", 0)
                labels.append("%s: %s (N=%s)" % (NAMES[c["client"]], c["label"], f"{c['n']:,}"))
                vals.append(m)
                lo.append(max(0, m - c.get("min_docs_per_s", m)))
                hi.append(max(0, c.get("max_docs_per_s", m) - m))
                colors.append(COLORS[c["client"]])
                hatches.append("//" if c["client"] == "libkuzzle" and c["label"].startswith("default") else "")
            y = range(len(lst))
            bars = ax.barh(y, vals, xerr=[lo, hi], color=colors, ecolor="#333333", capsize=2,
                           error_kw={"elinewidth": 0.8})
            for b, h in zip(bars, hatches):
                if h:
                    b.set_hatch(h)
                    b.set_edgecolor("white")
            top = max(v + e for v, e in zip(vals, hi)) if vals else 1
            for k, v in enumerate(vals):
                ax.text(v + hi[k] + top * 0.012, k, f"{v:,.0f}", va="center", fontsize=7)
            ax.set_yticks(list(y))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, top * 1.18)
            ax.grid(axis="x", alpha=0.3)
            ax.set_xlabel("documents per second (median, bars: min-max)", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
            where = "loopback" if path == "loopback" else \
                "uplink (%d ms RTT, %d Mbit/s each way)" % (
                    meta["uplink"]["rtt_ms"], meta["uplink"]["mbit_per_direction"])
            kind = "small documents (~80 B)" if shape == "small" else "big documents (~2 KB)"
            ax.set_title("%s, %s" % (kind, where), fontsize=9)
    m = meta["machine"]
    fig.suptitle("libkuzzle %s vs Kuzzle's JS SDK vs a raw client (the server's limit) - %s, %d cores, %s\n"
                 "%s; medians of %d rounds; load at start: %s" % (
                     meta.get("libkuzzle_version") or "", meta["started"][:16].replace("T", " "),
                     m["nproc"], m["cpu"], meta["command"], meta["reps"],
                     meta["uptime_start"].split("load average:")[-1].strip()), fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[k]) for k in ("libkuzzle", "sdk", "raw")]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=COLORS["libkuzzle"], hatch="//", edgecolor="white"))
    fig.legend(handles, ["libkuzzle", "official JS SDK", "raw client (pre-built bodies)",
                         "libkuzzle defaults"], loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
