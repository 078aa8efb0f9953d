"""Peers of gtap's coalition evaluation in plain PyTorch, measured beside gtap in one run.

Issue 12, item 4. The network is LeNet5 exactly as gtap builds it (conv 6@5x5 pad 2, ReLU,
max-pool 2, conv 16@5x5, ReLU, max-pool 2, dense 400-120-84-10; the players are the 400
flattened conv features and the 120 + 84 hidden units), with random weights and inputs: the work
does not depend on the values, and `gtap bench coalitions` uses random ones too. nu(C) is the
accuracy on E examples of the network with the activations of non-members zeroed.

- plain: the paper's Algorithm 2 written plainly: one full forward pass (convolutions included)
  per coalition, ν(C ∪ {i}) and ν(C \\ {i}) for a random C per player.
- expert: what a PyTorch-fluent researcher writes: conv features once, K coalitions folded into
  the first dense layer's weights ([E, 400] x [400, K*120], one GEMM), the rest batched. It has
  no incremental path, so walks (coalitions one toggle apart) cost it what any batch costs.

Run by `just bench-peers` (bench/peers/compare.py), with the project's virtualenv.
"""

import json
import sys
import time

import torch
import torch.nn.functional as F


class LeNet5:
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)

        def rand(*shape):
            return torch.randn(*shape, generator=g) * 0.1

        self.c1w, self.c1b = rand(6, 1, 5, 5), rand(6)
        self.c2w, self.c2b = rand(16, 6, 5, 5), rand(16)
        self.w1, self.b1 = rand(120, 400), rand(120)
        self.w2, self.b2 = rand(84, 120), rand(84)
        self.w3, self.b3 = rand(10, 84), rand(10)

    def features(self, x):
        h = F.max_pool2d(F.relu(F.conv2d(x.view(-1, 1, 28, 28), self.c1w, self.c1b, padding=2)), 2)
        return F.max_pool2d(F.relu(F.conv2d(h, self.c2w, self.c2b)), 2).flatten(1)

    def masked_logits(self, x, mask):
        """One coalition (mask: [604]), one full forward pass."""
        m0, m1, m2 = mask[:400], mask[400:520], mask[520:]
        h = self.features(x) * m0
        h = F.relu(h @ self.w1.T + self.b1) * m1
        h = F.relu(h @ self.w2.T + self.b2) * m2
        return h @ self.w3.T + self.b3

    def batched_logits(self, feats, masks):
        """K coalitions (masks: [K, 604]) on precomputed features: [E, K, 10]."""
        k, e = masks.shape[0], feats.shape[0]
        m0, m1, m2 = masks[:, :400], masks[:, 400:520], masks[:, 520:]
        folded = (self.w1.unsqueeze(0) * m0.unsqueeze(1)).permute(2, 0, 1).reshape(400, k * 120)
        h = F.relu((feats @ folded).view(e, k, 120) + self.b1) * m1
        h = F.relu(h @ self.w2.T + self.b2) * m2
        return h @ self.w3.T + self.b3


def accuracy(logits, y):
    """Per-coalition accuracy: logits [E, C] (one coalition) or [E, K, C]."""
    labels = y if logits.dim() == 2 else y.unsqueeze(1)
    return (logits.argmax(-1) == labels).float().mean(0)


def timed(seconds, f):
    """Seconds per call of f, after one warm-up call, over at least `seconds`."""
    f()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        f()
        calls += 1
    return (time.perf_counter() - start) / calls


def main():
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    examples = args.get("examples", 1000)
    batches = args.get("batches", [1, 8, 64, 256])
    seconds = args.get("seconds", 2.0)
    torch.manual_seed(0)
    net = LeNet5(0)
    x = torch.randn(examples, 784)
    y = torch.randint(0, 10, (examples,))
    g = torch.Generator().manual_seed(1)
    out = {"examples": examples, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    with torch.inference_mode():
        # The paper's Algorithm 2, plainly: a pair per player, one forward pass per coalition.
        pairs = 20

        def algorithm2():
            for i in torch.randint(0, 604, (pairs,), generator=g).tolist():
                c = (torch.rand(604, generator=g) < 0.5).float()
                c[i] = 1.0
                with_i = accuracy(net.masked_logits(x, c), y)
                c[i] = 0.0
                without_i = accuracy(net.masked_logits(x, c), y)
                _ = float(with_i - without_i)

        out["plain_algorithm2_per_second"] = 2 * pairs / timed(seconds, algorithm2)
        feats = net.features(x)
        rates = {}
        for k in batches:
            masks = (torch.rand(k, 604, generator=g) < 0.5).float()

            def batch():
                _ = accuracy(net.batched_logits(feats, masks), y).tolist()

            # Features once per coalition set, as a researcher re-running on the same probe would.
            rates[str(k)] = k / timed(seconds, batch)
        out["expert_batched_per_second"] = rates
        # Reduced precision (issue 12, item 2): the expert's batched loop in bfloat16 at 64
        # coalitions, its rate and how far its ν moves from float32's on the same coalitions.
        masks = (torch.rand(64, 604, generator=g) < 0.5).float()
        exact = accuracy(net.batched_logits(feats, masks), y)
        half = LeNet5(0)
        for name in ["w1", "b1", "w2", "b2", "w3", "b3"]:
            setattr(half, name, getattr(net, name).bfloat16())
        feats16, masks16 = feats.bfloat16(), masks.bfloat16()
        reduced = accuracy(half.batched_logits(feats16, masks16).float(), y)
        out["bf16_per_second_at_64"] = 64 / timed(
            seconds, lambda: accuracy(half.batched_logits(feats16, masks16).float(), y).tolist()
        )
        out["bf16_max_abs_accuracy_change"] = float((reduced - exact).abs().max())
        out["bf16_mean_abs_accuracy_change"] = float((reduced - exact).abs().mean())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
