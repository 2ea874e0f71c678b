"""The contrastive loss of `clip_annotated.loss`: the definition, and the distributed gradient.

* `clip_loss` equals a double loop written straight from the paper's Figure 3 (random shapes, scales
  on both sides of the clip at 100), values and gradients.
* Two processes on the gloo backend, each holding half of a global batch and a
  `DistributedDataParallel` copy of a small model, give the loss (mean over ranks), the parameter
  gradients and the feature gradients of one process on the whole batch, within 1e-6 (in float64, so
  that float32 rounding, ~1e-6 on gradients of size 5, cannot hide a real difference).

The distributed test starts this file twice as a script (`python test_loss.py --worker ...`), so no
function has to be pickled and no port has to be free: the processes meet through a file store in
pytest's tmp_path.
"""
from __future__ import annotations

import math, os, subprocess, sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip_annotated.loss import ClipLoss, clip_loss

WORLD, N = 2, 12  # two ranks, a global batch of 12 pairs


def naive_clip_loss(I_f, T_f, t):
    "Figure 3 written as loops over Python floats: the reference."
    n, scale = len(I_f), min(math.exp(float(t)), 100.0)
    unit = lambda v: [x / math.sqrt(sum(y * y for y in v)) for x in v]
    I_e, T_e = [unit(v) for v in I_f.tolist()], [unit(v) for v in T_f.tolist()]
    s = [[scale * sum(a * b for a, b in zip(I_e[i], T_e[j])) for j in range(n)] for i in range(n)]
    per_image = [-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)]
    per_text = [-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)]
    return (sum(per_image) + sum(per_text)) / (2 * n)


def test_matches_double_loop():
    g = torch.Generator().manual_seed(0)
    for n, d in [(1, 4), (2, 3), (5, 16), (9, 7)]:
        for scale in (1.0, 1 / 0.07, 100.0, 400.0):
            I_f = torch.randn(n, d, generator=g, dtype=torch.float64)
            T_f = torch.randn(n, d, generator=g, dtype=torch.float64)
            t = torch.tensor(math.log(scale), dtype=torch.float64)
            got = clip_loss(I_f, T_f, t).item()
            want = naive_clip_loss(I_f, T_f, t)
            assert abs(got - want) < 1e-9 * max(1, abs(want)), (n, d, scale, got, want)
            assert ClipLoss()(I_f, T_f, t).item() == got


def test_gradient_matches_autograd_of_reference():
    "Gradients: clip_loss against the same definition written with explicit per-row softmaxes in torch."
    g = torch.Generator().manual_seed(1)
    I_f = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    T_f = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    clip_loss(I_f, T_f, t).backward()
    got = [x.grad.clone() for x in (I_f, T_f, t)]
    for x in (I_f, T_f, t): x.grad = None
    I_e, T_e = I_f / I_f.norm(dim=1, keepdim=True), T_f / T_f.norm(dim=1, keepdim=True)
    s = t.exp() * I_e @ T_e.T
    rows = sum(-s[i, i] + torch.logsumexp(s[i], 0) for i in range(6)) / 6
    cols = sum(-s[j, j] + torch.logsumexp(s[:, j], 0) for j in range(6)) / 6
    ((rows + cols) / 2).backward()
    for a, x in zip(got, (I_f, T_f, t)): torch.testing.assert_close(a, x.grad, rtol=1e-10, atol=1e-12)


def test_low_precision_features_are_upcast():
    I_f, T_f = torch.randn(4, 8), torch.randn(4, 8)
    t = torch.tensor(math.log(1 / 0.07))
    loss = clip_loss(I_f.bfloat16(), T_f.bfloat16(), t)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - clip_loss(I_f.bfloat16().float(), T_f.bfloat16().float(), t).item()) < 1e-6


# ---------------------------------------------------------------- two processes


class Small(nn.Module):
    "Two small MLP encoders and a temperature."
    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(10, 16), nn.GELU(), nn.Linear(16, 8))
        self.text = nn.Sequential(nn.Linear(7, 16), nn.GELU(), nn.Linear(16, 8))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x, y): return self.image(x), self.text(y), self.logit_scale


def _setup():
    "The same model and global batch in every process."
    torch.manual_seed(0)
    model = Small().double()
    with torch.no_grad(): model.logit_scale.fill_(math.log(20.0))
    X, Y = torch.randn(N, 10, dtype=torch.float64), torch.randn(N, 7, dtype=torch.float64)
    return model, X, Y


def _shard(rank: int) -> torch.Tensor:
    "Rows of the global batch that `rank` holds (interleaved, as DistributedSampler deals them)."
    return torch.arange(rank, N, WORLD)


def _step(rank: int, out: str):
    "One DDP step on `rank`'s shard; saves what the test compares."
    from torch.nn.parallel import DistributedDataParallel as DDP
    from clip_annotated.loss import mean_over_ranks
    model, X, Y = _setup()
    ddp = DDP(model)
    idx = _shard(rank)
    I_f, T_f, t = ddp(X[idx], Y[idx])
    I_f.retain_grad(); T_f.retain_grad()
    loss = clip_loss(I_f, T_f, t)
    loss.backward()                                    # DDP averages the parameter gradients here
    torch.save(dict(loss=mean_over_ranks(loss), local_loss=loss.detach(), idx=idx,
                    grads={k: p.grad for k, p in model.named_parameters()},
                    I_grad=I_f.grad, T_grad=T_f.grad), out)


def _worker(rank: int, store: str, out: str):
    import gc
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=WORLD)
    _step(rank, out)
    # DDP keeps its own reference to the gloo group: free it (and the graph holding it) before destroying
    # the group, and let neither process leave while the other still talks. Otherwise the group's threads
    # can die during interpreter shutdown ("terminate called without an active exception", seen once in CI).
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_equal_one(tmp_path):
    store = tmp_path/'store'
    from conftest import child_env
    env = child_env()
    procs = [subprocess.Popen([sys.executable, __file__, '--worker', str(r), str(store), str(tmp_path/f'rank{r}.pt')],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    ranks = [torch.load(tmp_path/f'rank{r}.pt', weights_only=True) for r in range(WORLD)]

    model, X, Y = _setup()                             # one process, the whole batch
    I_f, T_f, t = model(X, Y)
    I_f.retain_grad(); T_f.retain_grad()
    loss = clip_loss(I_f, T_f, t)
    loss.backward()

    for r in ranks:
        assert abs(r['loss'].item() - loss.item()) < 1e-6, (r['loss'], loss)
        for k, p in model.named_parameters():
            torch.testing.assert_close(r['grads'][k], p.grad, rtol=0, atol=1e-6, msg=f'gradient of {k}')
        # rank r's features receive g_r = W · dL/df_r (the sum over ranks), which DDP's averaging undoes
        torch.testing.assert_close(r['I_grad'] / WORLD, I_f.grad[r['idx']], rtol=0, atol=1e-6)
        torch.testing.assert_close(r['T_grad'] / WORLD, T_f.grad[r['idx']], rtol=0, atol=1e-6)
    # the ranks' own losses differ (different rows), their mean is the loss of the batch
    assert abs(ranks[0]['local_loss'].item() - ranks[1]['local_loss'].item()) > 1e-4
    # and both ranks ended with the same gradients, as DDP promises
    for k in ranks[0]['grads']: assert torch.equal(ranks[0]['grads'][k], ranks[1]['grads'][k])


if __name__ == '__main__' and len(sys.argv) == 5 and sys.argv[1] == '--worker':
    _worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
