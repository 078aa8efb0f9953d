"""gtap's training and evaluation against a plain PyTorch loop, in one run: `just bench-training`.

Runs `gtap bench training` (both LeNets: Adam steps of 128 on 1,280 random MNIST-shaped
examples, each epoch of 10 steps followed by the train and probe accuracies, as `gtap_nn::train`
does; then 10,000 examples through `evaluate` and `accuracy`) and then the same work written
plainly in PyTorch with libtorch's defaults (every core, oneDNN convolutions): `nn.Conv2d`,
`F.max_pool2d`, `nn.Linear`, `torch.optim.Adam`, one forward pass over the 10,000 examples under
`torch.no_grad()`. Prints both and their ratios (ratios, not absolute times: this machine is
shared and times drift). The numbers in BENCHMARKS.md come from this command.
"""

import argparse
import re
import subprocess
import sys
import time


def gtap_rates(gtap, fast_math, seconds):
    text = subprocess.run(
        [gtap, *(["--fast-math"] if fast_math else []), "bench", "training", "--seconds", str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    print(text, end="")
    header = next((l for l in text.splitlines() if l.startswith("model")), "")
    parts = [int(p) for p in re.findall(r"\((\d+) parts?\)", header)]
    rows = {}
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in ("lenet-300-100", "lenet5") and len(fields) == len(parts) + 3:
            values = [float(v) for v in fields[1:]]
            rows[fields[0]] = {
                "steps": dict(zip(parts, values[: len(parts)])),
                "evaluate": values[len(parts)],
                "accuracy": values[len(parts) + 1],
            }
    if len(rows) != 2 or not parts:
        sys.exit(f"could not read gtap's bench output:\n{text}")
    return rows


def plain_rates(seconds):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x.view(-1, 1, 28, 28))), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    class LeNet300(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def timed(f):
        f()
        start, calls = time.perf_counter(), 0
        while calls == 0 or time.perf_counter() - start < seconds:
            f()
            calls += 1
        return (time.perf_counter() - start) / calls

    torch.manual_seed(0)
    train_x, train_y = torch.rand(1280, 784), torch.randint(10, (1280,))
    probe_x, probe_y = torch.rand(10, 784), torch.randint(10, (10,))
    test_x, test_y = torch.rand(10_000, 784), torch.randint(10, (10_000,))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, model in (("lenet-300-100", LeNet300()), ("lenet5", LeNet5())):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def epoch():
            order = torch.randperm(1280)
            for i in range(10):
                idx = order[i * 128:(i + 1) * 128]
                opt.zero_grad()
                F.cross_entropy(model(train_x[idx]), train_y[idx]).backward()
                opt.step()
            with torch.no_grad():
                (model(train_x).argmax(1) == train_y).sum().item()
                (model(probe_x).argmax(1) == probe_y).sum().item()

        def evaluate():
            with torch.no_grad():
                (model(test_x).argmax(1) == test_y).sum().item()

        out[name] = {"steps": 10 / timed(epoch), "evaluate": 10_000 / timed(evaluate)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gtap", default="target/debug/gtap")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    portable = gtap_rates(a.gtap, False, a.seconds)
    fast = gtap_rates(a.gtap, True, a.seconds)
    plain = plain_rates(a.seconds)
    print(f"\nplain PyTorch: torch {plain['torch']}, {plain['threads']} threads")
    parts = sorted(portable["lenet5"]["steps"])
    print(f"{'model':<14} {'plain steps/s':>13} {'fast':>7} "
          + " ".join(f"{f'portable {p}p':>12}" for p in parts)
          + f" {'plain eval/s':>12} {'evaluate':>9} {'accuracy':>9}")
    for name in ("lenet-300-100", "lenet5"):
        p, g, f = plain[name], portable[name], fast[name]
        print(f"{name:<14} {p['steps']:>13.1f} {f['steps'][1] / p['steps']:>6.2f}x "
              + " ".join(f"{g['steps'][k] / p['steps']:>11.2f}x" for k in parts)
              + f" {p['evaluate']:>12.0f} {g['evaluate'] / p['evaluate']:>8.2f}x {g['accuracy'] / p['evaluate']:>8.2f}x")
    print("ratios: gtap / plain PyTorch; fast = gtap --fast-math (libtorch's defaults), one part;"
          " portable Np = the default numerics with N micro-batches per mini-batch")
    for name in ("lenet-300-100", "lenet5"):
        f = fast[name]["steps"][1]
        print(f"{name}: portable / --fast-math training: "
              + ", ".join(f"{k} part{'s' if k > 1 else ''} {portable[name]['steps'][k] / f:.2f}x" for k in parts))


if __name__ == "__main__":
    main()
