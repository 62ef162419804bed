#!/usr/bin/env python3
"""Cross-checks crmflow's exact Markov attribution with the ChannelAttribution package.

crmflow solves the first-order absorbing chain exactly; ChannelAttribution estimates
the same removal effects by simulation. On the same `attribution_paths` the channel
shares must agree within ChannelAttribution's simulation error.

    cargo run --release -- demo
    crmflow query --lake crmflow-demo/lake --format csv "SELECT * FROM attribution_paths" > paths.csv
    crmflow query --lake crmflow-demo/lake --format csv "SELECT * FROM int_attribution_markov" > ours.csv
    python3 scripts/crosscheck_markov.py paths.csv ours.csv

Needs `pip install channelattribution pandas matplotlib` (scripts/crosscheck_markov.sh
does it in a venv). Exits 1 when a share differs by more than --tolerance.
"""
import argparse
import sys

import pandas as pd


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths_csv")
    parser.add_argument("ours_csv")
    parser.add_argument("--tolerance", type=float, default=0.01, help="max absolute share difference")
    parser.add_argument("--nsim", type=float, default=1e6, help="ChannelAttribution simulations")
    args = parser.parse_args()

    import ChannelAttribution as ca  # noqa: imported late: it prints a banner

    paths = pd.read_csv(args.paths_csv)
    ours = pd.read_csv(args.ours_csv)
    worst = 0.0
    for ctype, group in paths.groupby("conversion_type"):
        data = group[["path", "conversions", "nulls"]].copy()
        data["path"] = data["path"].str.replace(" > ", ">", regex=False)
        result = ca.markov_model(
            data, var_path="path", var_conv="conversions", var_null="nulls",
            order=1, nsim_start=args.nsim, sep=">", ncore=1, seed=7, verbose=False, flg_pro=False,
        )
        theirs = result.set_index("channel_name")["total_conversions"]
        theirs = theirs / theirs.sum()
        mine = ours[ours["conversion_type"] == ctype].set_index("channel")["share"]
        print(f"\n{ctype}: {int(group['conversions'].sum())} conversions, {len(group)} paths")
        print(f"{'channel':<16} {'crmflow':>9} {'ChannelAttribution':>19} {'diff':>8}")
        for channel in sorted(set(theirs.index) | set(mine.index)):
            a, b = float(mine.get(channel, 0.0)), float(theirs.get(channel, 0.0))
            worst = max(worst, abs(a - b))
            print(f"{channel:<16} {a:>9.4f} {b:>19.4f} {a - b:>+8.4f}")
    print(f"\nlargest absolute share difference: {worst:.4f} (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
