"""Turn ``results.json`` into the markdown tables and the two plots of ``benchmarks/results/``.

Times are printed as ``median [q1-q3]`` in milliseconds, ratios as ``median [q1-q3]`` of the
per-round ratios, memory as the peak MiB allocated during one call above what was allocated
before it (model, optimizer state and input excluded).
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["markdown", "plots"]


def _ms(s: dict) -> str:
    return f"{1e3 * s['median']:.2f} [{1e3 * s['q1']:.2f}-{1e3 * s['q3']:.2f}]"


def _ratio(s: dict) -> str:
    return f"{s['median']:.3f} [{s['q1']:.3f}-{s['q3']:.3f}]"


def _mem(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _overhead(sec: dict) -> list[str]:
    lines = [
        "## Framework overhead: flowlab vs bare PyTorch (issue 2)",
        "",
        f"RealNVP, {sec['couplings']} affine couplings with {'x'.join(map(str, sec['hidden']))} "
        f"MLPs, {sec['features']}-d input, batch {sec['batch']} (training step = zero_grad, "
        f"forward, backward, Adam step); sampling {sec['sample_n']} points. Targets: step "
        "ratio <= 1.05, sampling ratio <= 1.1.",
        "",
        "| variant | step flowlab (ms) | step bare (ms) | **step ratio** | sample flowlab (ms) "
        "| sample bare (ms) | **sample ratio** | peak MiB step (flowlab / bare) "
        "| peak MiB sample (flowlab / bare) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sec["rows"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | | |")
            continue
        ms, mm = r["mem_step_mb"], r["mem_sample_mb"]
        lines.append(
            f"| {r['variant']} | {_ms(r['step']['flowlab'])} | {_ms(r['step']['bare'])} "
            f"| **{_ratio(r['step_ratio'])}** | {_ms(r['sample']['flowlab'])} "
            f"| {_ms(r['sample']['bare'])} | **{_ratio(r['sample_ratio'])}** "
            f"| {_mem(ms['flowlab'])} / {_mem(ms['bare'])} "
            f"| {_mem(mm['flowlab'])} / {_mem(mm['bare'])} |"
        )
    n = sec["rows"][0].get("step", {}).get("flowlab", {}).get("n", "?") if sec["rows"] else "?"
    lines += ["", f"{n} alternating rounds per measurement.", ""]
    return lines


def _speed(sec: dict) -> list[str]:
    lines = [
        "## Speed and memory of every library (issue 8)",
        "",
        f"Same architecture everywhere ({sec['couplings']} couplings, "
        f"{'x'.join(map(str, sec['hidden']))} MLPs, {sec['features']}-d, batch {sec['batch']}; "
        f"splines: {sec['bins']} bins on [-{sec['bound']:g}, {sec['bound']:g}], linear tails; "
        f"sampling {sec['sample_n']} points). Ratios are to the bare "
        "PyTorch *affine* model, measured in the same rounds. Target for flowlab: affine step "
        "<= 1.05, sampling <= 1.1, spline step <= 3.",
        "",
        "| library | coupling | parameters | step (ms) | **step / bare affine** | sample (ms) "
        "| **sample / bare affine** | peak MiB step | peak MiB sample |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sec["rows"]:
        lines.append(
            f"| {r['impl']} | {r['kind']} | {r['params']:,} | {_ms(r['step'])} "
            f"| **{_ratio(r['step_ratio'])}** | {_ms(r['sample'])} "
            f"| **{_ratio(r['sample_ratio'])}** | {_mem(r['mem_step_mb'])} "
            f"| {_mem(r['mem_sample_mb'])} |"
        )
    notes = [f"- {r['impl']} {r['kind']}: {'; '.join(r['notes'])}" for r in sec["rows"]
             if r["notes"]]
    if notes:
        lines += ["", "What each library does its own way:", "", *notes]
    return lines + [""]


def _density(sec: dict) -> list[str]:
    tasks = sec["tasks"]
    if not tasks:
        return []
    lines = [
        "## Density at equal training budget (issue 8)",
        "",
        "Same data, split, seed, batches (lockstep training), Adam (lr 1e-3, batch "
        f"{tasks[0]['batch']}) and number of steps for every library. Test metric, lower is "
        "better; *true density* is the data's own density on the same test points, where it "
        "is known in closed form.",
        "",
    ]
    labels = []
    for t in tasks:
        for r in t["rows"]:
            if (r["impl"], r["kind"]) not in labels:
                labels.append((r["impl"], r["kind"]))
    header = "| library | coupling | " + " | ".join(
        f"{t['name']} ({t['metric']}, {t['steps']} steps)" for t in tasks) + " |"
    lines += [header, "| --- | --- | " + " | ".join("---" for _ in tasks) + " |"]
    for impl, kind in labels:
        cells = []
        for t in tasks:
            row = next((r for r in t["rows"] if (r["impl"], r["kind"]) == (impl, kind)), None)
            if row is None:
                cells.append("—")
            elif row["diverged_at"] is not None:
                cells.append(f"diverged (step {row['diverged_at']})")
            else:
                finite = [r["test"] for r in t["rows"] if math.isfinite(r["test"])]
                best = finite and row["test"] == min(finite)
                cell = _num(row["test"])
                cells.append(f"**{cell}**" if best else cell)
        lines.append(f"| {impl} | {kind} | " + " | ".join(cells) + " |")
    if any(t["reference"] is not None for t in tasks):
        lines.append("| *true density* | | " + " | ".join(
            _num(t["reference"]) for t in tasks) + " |")
    lines += ["", "Median training-step time during these runs (ms):", "",
              "| library | coupling | " + " | ".join(t["name"] for t in tasks) + " |",
              "| --- | --- | " + " | ".join("---" for _ in tasks) + " |"]
    for impl, kind in labels:
        cells = []
        for t in tasks:
            row = next((r for r in t["rows"] if (r["impl"], r["kind"]) == (impl, kind)), None)
            cells.append("—" if row is None or not row["step"]["n"]
                         else f"{1e3 * row['step']['median']:.2f}")
        lines.append(f"| {impl} | {kind} | " + " | ".join(cells) + " |")
    sources = sorted({t["source"] for t in tasks})
    lines += ["", "Data: " + "; ".join(sources) + "."]
    lines += [f"- {t['name']}: {n}" for t in tasks for n in t.get("notes", [])]
    lines.append("")
    return lines


def markdown(results: dict) -> str:
    """The whole ``RESULTS.md``."""
    meta = results["meta"]
    env = meta["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        f"# flowlab benchmark results ({meta['mode']} run)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; elapsed {meta['elapsed_s']:.0f} s  ",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['threads']} torch threads, device "
        f"{env['device']}{' (' + env['gpu'] + ')' if 'gpu' in env else ''}  ",
        f"Software: {versions}  ",
        f"Load average (1 min) at start / end: {meta['loadavg_start'][0]:.2f} / "
        f"{meta['loadavg_end'][0]:.2f} (above the core count, timings are unreliable)",
        "",
    ]
    if meta["mode"] == "quick":
        lines += ["*Quick mode: few rounds and training steps; a smoke test, not a result.*", ""]
    if "overhead" in results:
        lines += _overhead(results["overhead"])
    if "speed" in results:
        lines += _speed(results["speed"])
    if "density" in results:
        lines += _density(results["density"])
    if meta.get("skipped"):
        lines += ["## Not measured", "", *[f"- {s}" for s in meta["skipped"]], ""]
    return "\n".join(lines)


def plots(results: dict, out: Path) -> None:
    """``speed.png`` (ratios to bare affine) and ``density.png`` (test metric per task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "speed" in results:
        rows = results["speed"]["rows"]
        labels = [f"{r['impl']}\n{r['kind']}" for r in rows]
        fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 2), 4), sharey=False)
        for ax, key, title, target in (
            (axes[0], "step_ratio", "training step / bare affine", 1.05),
            (axes[1], "sample_ratio", "sampling / bare affine", 1.1),
        ):
            med = [r[key]["median"] for r in rows]
            err = [[m - r[key]["q1"] for m, r in zip(med, rows, strict=True)],
                   [r[key]["q3"] - m for m, r in zip(med, rows, strict=True)]]
            colors = ["C0" if r["impl"] == "flowlab" else "C7" if r["impl"] == "bare" else "C1"
                      for r in rows]
            ax.bar(range(len(rows)), med, yerr=err, color=colors, capsize=3)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.axhline(target, color="C3", lw=0.8, ls="--", label=f"target {target} (affine)")
            ax.set_xticks(range(len(rows)), labels, fontsize=8)
            ax.set_yscale("log")
            ax.set_title(title + " (log scale)")
            ax.legend(fontsize=8)
        fig.suptitle(f"{results['speed']['features']}-d RealNVP, batch {results['speed']['batch']} "
                     f"({results['meta']['environment']['device']}); bars: median, IQR")
        fig.tight_layout()
        fig.savefig(out / "speed.png", dpi=120)
        plt.close(fig)

    tasks = results.get("density", {}).get("tasks", [])
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.8), squeeze=False)
        for ax, t in zip(axes[0], tasks, strict=True):
            rows = [r for r in t["rows"] if math.isfinite(r["test"])]
            ax.bar(range(len(rows)), [r["test"] for r in rows],
                   color=["C0" if r["impl"] == "flowlab" else "C7" if r["impl"] == "bare"
                          else "C1" for r in rows])
            ax.set_xticks(range(len(rows)), [f"{r['impl']}\n{r['kind']}" for r in rows],
                          fontsize=7, rotation=90)
            if t["reference"] is not None:
                ax.axhline(t["reference"], color="k", ls="--", lw=0.8, label="true density")
                ax.legend(fontsize=7)
            values = [r["test"] for r in rows] + ([t["reference"]] if t["reference"] else [])
            if values:
                lo, hi = min(values), max(values)
                pad = 0.1 * (hi - lo) + 1e-3
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_title(f"{t['name']}: test {t['metric']}\n({t['steps']} steps)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "density.png", dpi=120)
        plt.close(fig)
