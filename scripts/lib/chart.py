"""Draws the recovery chart for docs/BENCHMARKS.md (run by report.py with the plotting venv's
Python): per fault, jssh beside autossh, the median with a min–max bar, recovery on the left
and detection on the right, on a log scale. Usage: chart.py DATA.json OUT.png"""

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"jssh": "#1f77b4", "autossh, seed config": "#bbbbbb", "autossh, tuned": "#ff7f0e"}
SHORT_FROM = {
    "ssh SIGKILL": "the kill",
    "sshd restart": "sshd back",
    "blackhole": "path back",
    "Jupyter crash": "the kill",
    "sleep": "the resume",
    "network change": "the change",
}
LABELS = {
    "jssh": "jssh",
    "autossh, seed config": "autossh (seed config: 30 s × 6)",
    "autossh, tuned": "autossh (tuned: 2 s × 2, gatetime 0)",
}


def main():
    data = json.load(open(sys.argv[1]))
    faults = list(data["faults"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, title in (
        (axes[0], "recover", "Recovered: until the URL answers again"),
        (axes[1], "detect", "Detected: fault → supervisor reacts"),
    ):
        width = 0.26
        for i, subject in enumerate(COLORS):
            for j, fault in enumerate(faults):
                entry = data["faults"][fault].get(subject, {})
                xs = entry.get(key, [])
                x = j + (i - 1) * width
                if not entry.get("runs"):
                    if subject != "jssh":
                        ax.text(x, 0.0025, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="#666")
                    continue
                if not xs:
                    ax.text(x, 0.0025, "never", ha="center", va="bottom", fontsize=7, rotation=90, color="#a00")
                    continue
                m = statistics.median(xs)
                ax.bar(
                    x,
                    m,
                    width,
                    color=COLORS[subject],
                    label=LABELS[subject],
                    yerr=[[m - min(xs)], [max(xs) - m]],
                    capsize=3,
                    edgecolor="#333",
                    linewidth=0.5,
                )
                ax.text(x, max(xs) * 1.12, f"{m:.3f}" if m < 0.1 else f"{m:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(0.002, 300)
        ax.set_ylabel("seconds (log scale)")
        ax.set_xlim(-0.55, len(faults) - 0.45)
        ax.set_xticks(range(len(faults)))
        names = [f"{f}\n(from {SHORT_FROM[f]})" if key == "recover" else f for f in faults]
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = {}
    for h, lab in zip(handles, labels):
        seen.setdefault(lab, h)
    fig.legend(seen.values(), seen.keys(), loc="upper center", ncol=3, fontsize=9, frameon=False)
    fig.text(0.99, 0.01, f"scripts/bench, {data['date']}; bars: median, whiskers: min–max", ha="right", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.92))
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
