#!/usr/bin/env python3
"""Turns the runs of scripts/results into the README's results tables.

Usage: results_tables.py OUT README.md

Reads OUT/experiments/*/result.json (walk-forward folds), OUT/models/*/metrics.json and
OUT/*-rl-*.json, writes OUT/tables.md, and replaces the text between
`<!-- results:NAME -->` and `<!-- /results:NAME -->` in README.md with the table NAME.
No figure is typed by hand: every number comes from those files.
"""
import json
import pathlib
import re
import sys


def fmt(x, digits=2):
    if x is None:
        return ""
    s = f"{abs(x):,.{digits}f}"
    return ("−" if x < 0 and s.strip("0.,") else ("+" if x > 0 and s.strip("0.,") else "")) + s


def walk_forward(out, name):
    r = json.loads((out / "experiments" / name / "result.json").read_text())
    folds = r["folds"]

    def runs(kind):
        return [next(x for x in f["runs"] if x["kind"] == kind) for f in folds]

    ga = runs("ga")
    row = {
        "ga_in": sum(x["train_metrics"]["net_pnl_quote"] for x in ga) / len(ga),
        "ga": sum(x["test_metrics"]["net_pnl_quote"] for x in ga),
        "folds": len(folds),
        "errors": sum(x["test_metrics"].get("errors", 0) for f in folds for x in f["runs"]),
        "assumption": ga[0]["test_metrics"].get("queue_assumption"),
        "diverged": sum(x["test_metrics"].get("diverged_events", 0) for x in ga),
        "rival_fills": sum(x["test_metrics"].get("rival_fills", 0) for x in ga),
        "ga_bundles": sum(x["test_metrics"]["trades"] for x in ga),
    }
    for kind in ["random_search", "default", "no_trade"]:
        row[kind] = sum(x["test_metrics"]["net_pnl_quote"] for x in runs(kind))
    return row


def walk_forward_table(out):
    rows = [
        ("real sample (mainnet, 15 gwei)", "`cross-venue-arb`", "sample-cross-venue-arb"),
        ("real sample", "`price-reversion`", "sample-price-reversion"),
        ("simulated chain, 10,000 blocks (`--seed 2`)", "`cross-venue-arb`", "devnet-cross-venue-arb"),
        ("simulated chain", "`price-reversion`", "devnet-price-reversion"),
    ]
    lines = [
        "| data | strategy | GA in-sample (mean per fold) | GA | random search | default params | no trading |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for data, strategy, name in rows:
        r = walk_forward(out, name)
        lines.append(
            f"| {data} | {strategy} | {fmt(r['ga_in'])} | {fmt(r['ga'])} | {fmt(r['random_search'])} "
            f"| {fmt(r['default'])} | {fmt(r['no_trade'])} |"
        )
        n = r["ga_bundles"]
        extra = f"{name}: the GA winner sent {n} bundle{'' if n == 1 else 's'} out of sample, rivals filled " \
                f"{r['rival_fills']}, {r['diverged']} historical events were replayed on pools our trades had moved"
        if r["errors"]:
            extra += f"; {r['errors']} run errors"
        notes.append(extra)
        if r["assumption"]:
            a = r["assumption"]
            if a not in notes:
                notes.append(a)
    lines.append("")
    lines.append("(net PnL in USDC, summed over the test windows)")
    lines.append("")
    lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines)


def unwrap(m):
    if isinstance(m, dict) and len(m) == 1 and next(iter(m)).lower() in ("regression", "classification"):
        return next(iter(m.values()))
    return m


def model_table(out):
    m = json.loads((out / "models" / "sample-gate-mlp" / "metrics.json").read_text())
    t = m["test"]
    lines = [
        f"Test split of {t['rows']} blocks ({t['first_block']}..={t['last_block']}):",
        "",
        "| | MSE | MAE | directional accuracy |",
        "|---|---:|---:|---:|",
    ]

    def row(name, met):
        met = unwrap(met)
        da = met.get("directional_accuracy")
        lines.append(
            f"| {name} | {met['mse']:.3e} | {met['mae']:.2e} | {'' if da is None else f'{da:.3f}'} |"
        )

    row("MLP", t["model"])
    for b in t["baselines"]:
        row(b["name"].replace("_", " "), b["metrics"])
    return "\n".join(lines)


def rl_runs(path):
    e = json.loads(path.read_text())
    return e, {r["kind"]: r["metrics"] for r in e["runs"]}


def find(runs, *keys):
    for k, v in runs.items():
        if all(x in k for x in keys):
            return v
    return None


def strategies_table(out):
    gated = walk_forward(out, "sample-model-gated")
    lines = [
        "| | model / GA | random search or policy | heuristic default | heuristic tuned | no trading |",
        "|---|---:|---:|---:|---:|---:|",
        f"| `model-gated`, GA over {gated['folds']} walk-forward folds (sum) | {fmt(gated['ga'])} "
        f"| {fmt(gated['random_search'])} | {fmt(gated['default'])} (gated defaults) | | {fmt(gated['no_trade'])} |",
    ]
    for agent in ["dqn", "ppo"]:
        e, runs = rl_runs(out / f"sample-rl-{agent}.json")
        lines.append(rl_row(agent, runs))
    return "\n".join(lines)


def rl_row(agent, runs):
    def pnl(m):
        return "" if m is None else fmt(m["net_pnl_quote"])

    a = runs.get(agent) or find(runs, agent)
    bundles = "" if a is None else f" ({a['trades']} bundle{'' if a['trades'] == 1 else 's'})"
    return (
        f"| {agent.upper()} | {pnl(a)}{bundles} | {pnl(find(runs, 'random'))} | {pnl(find(runs, 'default'))} "
        f"| {pnl(find(runs, 'tuned'))} | {pnl(runs.get('no_trade'))} |"
    )


def devnet_rl_table(out):
    e, _ = rl_runs(out / "devnet-rl-dqn.json")
    lines = [
        f"Blocks {e['test_blocks'][0]:,}–{e['test_blocks'][1]:,} held out, net PnL in USDC:",
        "",
        "| agent | agent | random policy | `price-reversion` default | tuned on the training blocks | no trading |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for agent in ["dqn", "ppo"]:
        _, runs = rl_runs(out / f"devnet-rl-{agent}.json")
        lines.append(rl_row(agent, runs))
    return "\n".join(lines)


def main():
    out = pathlib.Path(sys.argv[1])
    readme = pathlib.Path(sys.argv[2])
    commit = (out / "commit").read_text().strip() if (out / "commit").exists() else "unknown"
    tables = {
        "walk-forward": walk_forward_table(out),
        "model": model_table(out),
        "strategies": strategies_table(out),
        "devnet-rl": devnet_rl_table(out),
    }
    stamp = f"<!-- generated by scripts/results at commit {commit} -->"
    (out / "tables.md").write_text(
        "\n\n".join(f"## {k}\n\n{v}" for k, v in tables.items()) + "\n"
    )
    text = readme.read_text()
    for name, table in tables.items():
        pattern = re.compile(
            rf"(<!-- results:{re.escape(name)} -->\n).*?(\n<!-- /results:{re.escape(name)} -->)", re.S
        )
        if not pattern.search(text):
            sys.exit(f"results_tables: README.md has no <!-- results:{name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + stamp + "\n\n" + table + m.group(2), text)
    readme.write_text(text)


if __name__ == "__main__":
    main()
