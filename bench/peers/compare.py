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


def gtap_rates(gtap, examples, batches, seconds):
    text = subprocess.run(
        [gtap, "bench", "coalitions", "--examples", str(examples),
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
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    rows, gtap_alg2 = gtap_rates(a.gtap, a.examples, batches, a.seconds)
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
    plain = peer["plain_algorithm2_per_second"]
    print(f"algorithm 2: plain PyTorch {plain:.1f} coalitions/s, gtap (paired, incremental) "
          f"{gtap_alg2:.1f}/s: {gtap_alg2 / plain:.1f}x")


if __name__ == "__main__":
    main()
