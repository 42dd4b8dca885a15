"""Summarise the benchmark JSON files: a Markdown table and a plot for the docs.

Reads benchmarks/results/*.json (written by the other scripts of ``make bench``) and writes
``bench.md`` and ``overhead.png`` (ratio of step times against the number of groups) to
docs/results/, or to OUT_DIR.

    python benchmarks/summarize.py [OUT_DIR]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from _timing import RESULTS  # noqa: E402

DOCS_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
CEILINGS = {10: 1.03, 100: 1.03, 1000: 1.05, 5000: 1.05}  # targets for CEAG/NFT and EL+RB/NFT
CNN_CEILING = 1.02


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def overhead_table(data: dict) -> list[str]:
    lines = [f"**Constraint overhead** (`python benchmarks/ceag_overhead.py`): one training step "
             f"of the small CNN at batch {data['batch']} (NFT), the methods' own cost per step "
             "(measured on a probe model whose step costs next to nothing), and the ratio "
             "1 + cost / NFT step. *direct* is the ratio of the CNN's own medians, which "
             "wobbles by a couple of percent on a shared machine.", "",
             "| groups | NFT step ms | + CEAG ms | + EL+RB ms | CEAG / NFT | EL+RB / NFT | "
             "direct CEAG / NFT | ceiling |", "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['groups']} | {r['nft_ms']:.1f} | {r['ceag_cost_ms']:.2f} | "
                     f"{r['el_rb_cost_ms']:.2f} | {r['ceag_over_nft']:.3f} | "
                     f"{r['el_rb_over_nft']:.3f} | {r['ceag_over_nft_direct']:.3f} | "
                     f"≤ {CNN_CEILING:.2f} |")
    return lines + [""]


def short_step_table(data: dict) -> list[str]:
    lines = [f"**Short steps** (`python benchmarks/short_step_overhead.py`): an MLP "
             f"256-512-512-10 at 90% sparsity, batch {data['batch']}, {data['rows']:,} rows, "
             f"fitted through the estimator ({data['epochs']} fine-tuning epochs, device "
             f"{data['device']}, {data['threads']} CPU thread{'s' if data['threads'] > 1 else ''}"
             f"); milliseconds per step from skorch's epoch durations, medians of "
             f"{data['rounds']} interleaved rounds; ratios from the per-round differences. "
             f"*Paired*: the extra milliseconds of a method's `train_step` over NFT's, and the "
             f"ratio, from {data['steps']} alternating steps of the fitted models on one "
             f"batch.",
             "", "| groups | NFT ms/step | CEAG ms/step | EL+RB ms/step | CEAG / NFT | "
             "EL+RB / NFT | paired CEAG + ms | paired EL+RB + ms | paired CEAG / NFT | "
             "paired EL+RB / NFT | ceiling |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        ceiling = CEILINGS.get(r["groups"])
        lines.append(f"| {r['groups']} | {r['nft_ms']:.2f} | {r['ceag_ms']:.2f} | "
                     f"{r['el_rb_ms']:.2f} | {r['ceag_over_nft']:.3f} | "
                     f"{r['el_rb_over_nft']:.3f} | {r['paired_ceag_extra_ms']:.2f} | "
                     f"{r['paired_el_rb_extra_ms']:.2f} | {r['paired_ceag_over_nft']:.3f} | "
                     f"{r['paired_el_rb_over_nft']:.3f} | "
                     f"{'≤ %.2f' % ceiling if ceiling else '–'} |")
    return lines + [""]


def plot_overhead(data: dict, out: Path) -> None:
    rows = data["rows"]
    groups = [r["groups"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(groups, [r["ceag_over_nft"] for r in rows], "o-", label="CEAG / NFT")
    ax.plot(groups, [r["el_rb_over_nft"] for r in rows], "s--", label="EL+RB / NFT")
    ax.axhline(CNN_CEILING, color="crimson", linewidth=0.8, linestyle=":", label="ceiling")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("number of groups")
    ax.set_ylabel("time per step / NFT")
    ax.set_title("Cost of the constraints (small CNN, batch 256, CPU)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_RESULTS
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"Measured {dt.date.today()} with `make bench` on 2 CPU cores.", ""]
    if overhead := load("ceag_overhead.json"):
        lines += overhead_table(overhead)
        plot_overhead(overhead, out / "overhead.png")
    if short := load("short_step_overhead.json"):
        lines += short_step_table(short)
    if fit := load("fit_vs_hand_loop.json"):
        lines += [f"**Estimator against a hand-written loop** (`python benchmarks/fit_vs_hand_loop.py`): "
                  f"{fit['samples']} samples, {fit['epochs']} epochs (GMP + CEAG), batch "
                  f"{fit['batch_size']}: hand loop {fit['hand_loop_s']:.2f} s, `fit` "
                  f"{fit['fit_s']:.2f} s, ratio **{fit['fit_over_hand_loop']:.3f}** "
                  "(ceiling 1.10).", ""]
    if gmp := load("gmp_cost.json"):
        parts = ", ".join(f"{r['pruning']} {r['update_ms']:.1f} ms ({100 * r['share_of_epoch']:.2f}%)"
                          for r in gmp["rows"])
        lines += [f"**GMP update** (`python benchmarks/gmp_cost.py`), share of a "
                  f"{gmp['epoch_ms'] / 1e3:.1f} s epoch of {gmp['samples']} samples: {parts}.", ""]
    if channel := load("channel_export_speed.json"):
        c = channel
        lines += [f"**Channel pruning, exported** (`python benchmarks/channel_export_speed.py`): "
                  f"resnet18 with {c['fraction']:.0%} of the channels of every coupled group "
                  f"removed: {c['params_dense']:,} → {c['params_exported']:,} parameters, CPU "
                  f"forward {c['dense_ms']:.1f} → {c['exported_ms']:.1f} ms "
                  f"(**{c['speedup']:.2f}×** faster).", ""]
    if grid := load("gmp_cache_gridsearch.json"):
        lines += ["**GMP cache in a grid search** (`python benchmarks/gmp_cache_gridsearch.py`): "
                  "4 tolerances × 3 folds = 12 fits on digits.", "",
                  "| schedule | without `memory=` s | with s | speed-up | GMP phases run | "
                  "identical `cv_results_` |", "|---|---|---|---|---|---|"]
        for r in grid["rows"]:
            lines.append(f"| {r['pruning_epochs']} GMP + {r['max_epochs']} | "
                         f"{r['without_cache_s']:.1f} | {r['with_cache_s']:.1f} | "
                         f"{r['speedup']:.2f}× | {r['gmp_phases_run']} of 12 | "
                         f"{'yes' if r['identical_scores'] else 'NO'} |")
        lines.append("")
    if held := load("heldout_step_cost.json"):
        lines += [f"**Held-out estimates** (`python benchmarks/heldout_step_cost.py`): a CEAG "
                  f"step of the small CNN, batch {held['batch_size']}, "
                  f"{held['train_step_ms']:.1f} ms with training estimates, "
                  f"{held['heldout_step_ms']:.1f} ms with one held-out batch per step "
                  f"(ratio **{held['ratio']:.3f}**).", ""]
    if boot := load("report_bootstrap.json"):
        parts = ", ".join(f"{r['groups']} groups {r['plain_ms']:.1f} → {r['intervals_ms']:.0f} ms "
                          f"({r['ratio']:.0f}×)" for r in boot["rows"])
        lines += [f"**Report intervals** (`python benchmarks/report_bootstrap.py`): "
                  f"{boot['rows'][0]['rows']:,} rows, {boot['rows'][0]['n_boot']} resamples, "
                  f"plain report → with intervals: {parts}.", ""]
    (out / "bench.md").write_text("\n".join(lines))
    print(f"wrote {out / 'bench.md'}")


if __name__ == "__main__":
    main()
