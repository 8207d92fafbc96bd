"""The node bench (`python -m fasthmr_ros.bench`) of two revisions, side by side in one run.

    python scripts/compare_node_bench.py BASE [--head HEAD] [--rounds 3] [--frames 30] [--repeats 5]

Each revision is checked out into a temporary git worktree (HEAD: the working tree as it is, uncommitted
changes included, unless --head names a revision) and the benches of the two run alternately, `--rounds`
times each, so that other load on the machine falls on both alike. Printed: per marker setting and number
of people, the median over rounds of the bench's mean overhead, best pass and CPU time (ms), and new / old.
The CPU time (the bench's `CPU` column) counts only what the bench's process itself runs, so it is the
steadiest of the three on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPOSITORY = Path(__file__).resolve().parent.parent


def bench_rows(tree: Path, frames: int, repeats: int) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(people, markers) -> (overhead, best pass, CPU) ms from one bench run in `tree`."""
    environment = dict(os.environ, PYTHONPATH=str(tree), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    output = subprocess.run([sys.executable, "-m", "fasthmr_ros.bench", "--frames", str(frames), "--repeats",
                             str(repeats)], cwd=tree, env=environment, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 4 and cells[0].isdigit():
            overhead = float(re.sub(r"\*", "", cells[-5]))
            rows[(cells[0], cells[1])] = (overhead, float(cells[-4]), float(cells[-2]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the old revision (e.g. a commit or origin/main)")
    parser.add_argument("--head", help="the new revision (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fasthmr-compare-") as folder:
        trees = {}
        for label, revision in (("old", args.base), ("new", args.head)):
            if revision is None:
                trees[label] = REPOSITORY
                continue
            trees[label] = Path(folder) / label
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(trees[label]), revision],
                           check=True, capture_output=True)
        try:
            runs = {label: [] for label in trees}
            for round_index in range(args.rounds):
                for label, tree in trees.items():
                    runs[label].append(bench_rows(tree, args.frames, args.repeats))
                    print(f"round {round_index + 1}/{args.rounds}: {label} done", file=sys.stderr)
        finally:
            for label, tree in trees.items():
                if tree != REPOSITORY:
                    subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(tree)],
                                   check=False, capture_output=True)
    print(f"node bench overhead (ms), median of {args.rounds} alternating runs each; old = {args.base}, "
          f"new = {args.head or 'the working tree'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    columns = ("overhead", "best pass", "CPU")
    print(" | ".join(["people", "markers"] + [f"{age} {column}" if age else "new / old"
                                              for column in columns for age in ("old", "new", "")]))
    print(" | ".join(["---"] * (2 + 3 * len(columns))))
    for key in runs["old"][0]:
        cells = [key[0], key[1]]
        for index in range(len(columns)):
            old = median(run[key][index] for run in runs["old"])
            new = median(run[key][index] for run in runs["new"])
            cells += [f"{old:.2f}", f"{new:.2f}", f"{new / old:.2f}"]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
