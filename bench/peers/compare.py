"""gtap against its peers on the same work, in one run: `just bench-peers`.

Runs `gtap bench coalitions` (LeNet5 head, random weights, E examples) and then the PyTorch peers
(peers.py: the paper's Algorithm 2 written plainly, and an expert's batched evaluation), on the
same network shape, example count and coalition work, one after the other, and prints the rates
and their ratios (ratios, not absolute times: this machine is shared and times drift). The
numbers in BENCHMARKS.md come from this command.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def gtap_rates(gtap, fast_math, examples, batches, seconds):
    text = subprocess.run(
        [gtap, *(["--fast-math"] if fast_math else []), "bench", "coalitions", "--examples", str(examples),
         "--batches", ",".join(map(str, batches)), "--seconds", str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    print(text, end="")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+)\s+[\d.]+\s+\d+%\s+([\d.]+)\s+[\d.]+x", line)
        if m:
            rows[int(m[1])] = (float(m[2]), float(m[3]))
    m = re.search(r"algorithm 2 .*: ([\d.]+) coalitions/s", text)
    if not m or len(rows) != len(batches):
        sys.exit(f"could not read gtap's bench output:\n{text}")
    return rows, float(m[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gtap", default="target/debug/gtap")
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--fast-math", action="store_true",
                    help="run gtap with libtorch's defaults, as the peers run, instead of portable numerics")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    rows, gtap_alg2 = gtap_rates(a.gtap, a.fast_math, a.examples, batches, a.seconds)
    peer = json.loads(subprocess.run(
        [sys.executable, str(HERE / "peers.py"),
         json.dumps({"examples": a.examples, "batches": batches, "seconds": a.seconds})],
        check=True, capture_output=True, text=True,
    ).stdout)
    print(f"\npeers: torch {peer['torch']}, {peer['torch_threads']} threads, {peer['examples']} examples")
    print(f"{'batch':>6} {'expert/s':>10} {'gtap/s':>10} {'ratio':>7} {'gtap walks/s':>13} {'walk ratio':>11}")
    for k in batches:
        expert = peer["expert_batched_per_second"][str(k)]
        full, walks = rows[k]
        print(f"{k:>6} {expert:>10.1f} {full:>10.1f} {full / expert:>6.2f}x {walks:>13.1f} {walks / expert:>10.2f}x")
    print(f"bfloat16, expert at 64: {peer['bf16_per_second_at_64']:.1f} coalitions/s "
          f"({peer['bf16_per_second_at_64'] / peer['expert_batched_per_second'].get('64', float('nan')):.2f}x float32); "
          f"|change in nu| max {peer['bf16_max_abs_accuracy_change']:.4f}, "
          f"mean {peer['bf16_mean_abs_accuracy_change']:.4f}")
    plain = peer["plain_algorithm2_per_second"]
    print(f"algorithm 2: plain PyTorch {plain:.1f} coalitions/s, gtap (paired, incremental) "
          f"{gtap_alg2:.1f}/s: {gtap_alg2 / plain:.1f}x")
    # A sweep gives every player one Algorithm 2 difference per evaluation (plus one per walk),
    # where the pairs take two: differences per second at the 64-walk rate.
    print(f"Algorithm 2 differences/s: plain {plain / 2:.1f}, gtap pairs {gtap_alg2 / 2:.1f}, "
          f"gtap sweeps {rows[batches[-1]][1] if 64 not in rows else rows[64][1]:.1f} "
          f"({(rows[64][1] if 64 in rows else rows[batches[-1]][1]) / (plain / 2):.0f}x plain)")


if __name__ == "__main__":
    main()
