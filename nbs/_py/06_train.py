# %% [markdown]
# # Training
#
# > The paper's training recipe as code: AdamW with decoupled weight decay, warm-up and cosine decay, mixed precision, the symmetric loss with its clipped temperature, one exact training step, and the loop that repeats it, can be killed and resumed, and says on held-out pairs whether it worked.

# %%
#| default_exp train

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import math, os, sys, time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import IterableDataset
from tqdm import tqdm
from clip_annotated.core import autocast, autocast_dtype, seed_everything, show_progress
from clip_annotated.model import CONFIGS, CLIP, CLIPConfig, config_from_state_dict, count_parameters, create_model, uses_quick_gelu
from clip_annotated.loss import MAX_LOGIT_SCALE, all_have, clip_loss, min_over_ranks, setup_distributed
from clip_annotated.pretrained import TRAIN_ZOOM
from clip_annotated.loader import (TrainBatches, cores_per_process, data_size, default_workers, describe_data, make_datasets,
                                   no_batch_reason, uneven_shards)
from clip_annotated.runfolder import (RunInUseError, RunLock, StepLog, append_record, forget_previous, keep_previous,
                                      load_checkpoint, rng_state, save_checkpoint, set_rng_state, truncate_metrics)
from clip_annotated.retrieval import evaluate_retrieval
from clip_annotated.options import check_config, check_resume
from clip_annotated.options import FREE_ON_RESUME, SAVED_BEFORE, check_device, check_template, config_changes  # read from here by older code

# %%
#| hide
from types import SimpleNamespace
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_close, test_fail
import matplotlib.pyplot as plt
from clip_annotated.core import footer, markdown_table
from clip_annotated.tokenizer import tokenize
from clip_annotated.data import DEFAULT_TEMPLATES, EmojiDataset
from dataclasses import fields as dataclass_fields

# %%
_ = seed_everything(0)

# %% [markdown]
# At the end of this chapter you know the paper's training recipe as code and can check each piece of it:
# the optimiser, the schedule, mixed precision, one training step with the symmetric loss of
# [chapter 4](04_loss.ipynb), and the loop that repeats it, alone or on several GPUs or processes under
# `torchrun`, kills and resumes (bit for bit on the CPU), and measures held-out retrieval. Only then comes the
# configuration that names a run. The machinery the loop leans on sits in appendices, each summarised
# here in a paragraph: [the input pipeline](05d_loader.ipynb) (batches), [run folders](05e_run_folder.ipynb)
# (checkpoints, the lock on a folder, the log) and [training options](05g_options.ipynb) (the checks of a
# configuration, and the refusal to resume a run with other settings). The next chapter,
# [A training run](06a_run.ipynb), runs it: one command,
# `python -m clip_annotated.run --preset mini-cpu --out runs/mini`, trains the model the rest of the
# book studies and writes `runs/mini/report.md`, which says how well it retrieves the captions of
# pictures it has never seen.
#
# ```{mermaid}
# flowchart LR
#   D["data: shard per rank<br/>order = f(seed, epoch)"] --> L["one step<br/>encode → clip_loss → backward"]
#   L --> O["AdamW · warm-up + cosine<br/>clamp logit_scale"] --> L
#   O --> K["checkpoint.pt<br/>(atomic)"]
#   O --> J[metrics.jsonl]
#   K --> E["held-out retrieval"] --> R[summary]
#   C[TrainConfig] -.-> L
# ```
#
# ## The recipe
#
# > "We train all models for 32 epochs. We use the Adam optimizer (Kingma & Ba, 2014) with decoupled
# > weight decay regularization (Loshchilov & Hutter, 2017) applied to all weights that are not gains or
# > biases, and decay the learning rate using a cosine schedule (Loshchilov & Hutter, 2016)." (Radford
# > et al. 2021, §2.5)
#
# > "We use a very large minibatch size of 32,768. Mixed-precision (Micikevicius et al., 2017) was used
# > to accelerate training and save memory." (§2.5)
#
# The numbers the paper does not put in its prose are in its Table 18, the hyperparameters common to
# every model: weight decay 0.2, 2,000 warm-up iterations, Adam $\beta_1 = 0.9$, and for the Vision
# Transformers $\beta_2 = 0.98$ and $\epsilon = 10^{-6}$ (the ResNets used 0.999 and $10^{-8}$), and a
# maximum temperature (logit scale) of 100. Tables 19 and 20 give each model's own settings (the
# ResNets' and the Vision Transformers'), such as the learning rate of $5 \times 10^{-4}$ for ViT-B/32
# (Table 20).
#
# The sections below take the recipe a piece at a time, each with a check: the optimiser and which
# weights it decays, the schedule, mixed precision, then one training step (the loss of chapter 4, the
# update, the temperature clipped at 100), then the loop. The functions read their settings from a run's
# configuration, `cfg`: `make_optimizer` its `lr`, `weight_decay`, `betas` and `eps`, `make_scheduler` its
# `warmup` and `steps`. Until the configuration is introduced, the checks pass these six as a plain
# namespace:

# %%
recipe = SimpleNamespace(lr=1e-3, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6, warmup=2, steps=10)   # six fields of a TrainConfig


# %% [markdown]
# ## The optimiser
#
# Decoupled weight decay (AdamW) shrinks each weight by `lr · weight_decay` every step, separately
# from the gradient. The paper applies it to weights that are "not gains or biases": decaying a
# LayerNorm gain pulls it towards zero and the normalisation with it, and decaying a bias has no
# regularising use. We also leave out the embeddings (token, positional and class embeddings: rows
# of a lookup table, most of them untouched by a batch, that decay would erase), and the temperature
# `logit_scale`, which decay would drive back towards a scale of 1. The rule: a parameter is decayed
# when it has at least two dimensions and is neither an embedding nor the temperature.

# %%
#| exports
def decays(name: str, p: torch.Tensor) -> bool:
    "Whether parameter `name` gets weight decay: matrices and kernels yes; gains, biases, embeddings, logit_scale no."
    return p.ndim >= 2 and 'embedding' not in name and name != 'logit_scale'

def make_optimizer(model: nn.Module, cfg) -> torch.optim.AdamW:
    "AdamW (PyTorch's fused kernel where the device has one) with two groups, decayed weights and the rest; `cfg`: a `TrainConfig` (below) or the recipe."
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [dict(params=[p for n, p in params if decays(n, p)], weight_decay=cfg.weight_decay),
              dict(params=[p for n, p in params if not decays(n, p)], weight_decay=0.0)]
    try: return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=True)
    except (RuntimeError, ValueError): return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


# %%
m = create_model('MiniCLIP')
no_decay = [n for n, p in m.named_parameters() if not decays(n, p)]
assert {'logit_scale', 'token_embedding.weight', 'positional_embedding', 'visual.class_embedding',
        'visual.positional_embedding', 'ln_final.weight', 'ln_final.bias'} <= set(no_decay)
assert all(decays(n, p) for n, p in m.named_parameters() if n.endswith(('in_proj_weight', 'c_fc.weight', 'conv1.weight')))
assert decays('text_projection', m.text_projection) and decays('visual.proj', m.visual.proj)
n_dec = sum(p.numel() for n, p in m.named_parameters() if decays(n, p))
print(f"MiniCLIP: {n_dec:,} of {count_parameters(m):,} parameters decayed; not decayed: "
      f"{len(no_decay)} tensors, e.g. {no_decay[:4]}")
vocab, width = m.token_embedding.weight.shape
print(f"the token embedding alone: {vocab:,} × {width} = {vocab * width:,} parameters, "
      f"{100 * vocab * width / count_parameters(m):.0f}% of the model, not decayed")
used = tokenize([t.format(r.name) for r in EmojiDataset('train', train=False).records for t in DEFAULT_TEMPLATES],
                context_length=77, truncate=True).unique()
print(f"rows the emoji training captions use: {len(used) - 1:,} of {vocab:,} ({100 * (len(used) - 1) / vocab:.0f}%; padding not counted)")


# %% [markdown]
# The token embedding is the largest tensor of MiniCLIP (its share is printed above): it keeps OpenAI's
# full vocabulary (Table 18 of the paper), so that one tokenizer serves every model. The rule therefore
# decides whether most of the model is decayed at all. Of its rows, the emoji captions use the few printed
# above; a row no caption uses never touches the output, decayed or not. Our reason is the rows in between:
# a rare word's row gets a gradient only in the steps whose batch holds that word, and decay would shrink
# it in all the steps between. Leaving the embeddings out departs from the paper's rule, which decays every
# weight that is not a gain or a bias; open_clip decays them too. The comparison with open_clip's trainer
# at the end of the [experiments chapter](16_experiments.ipynb) swaps open_clip's rule into our trainer
# and cannot tell the two apart (its interval includes zero), but it was measured on a short run that
# trained little, so it is weak evidence either way.
#
# PyTorch has three implementations of AdamW: a loop over parameters, a `foreach` version that
# updates lists of tensors at once (the default), and a `fused` kernel that does the whole update in
# one pass over memory, on GPUs and, since PyTorch 2.4, CPUs. The arithmetic is the same; the fused
# kernel reads and writes each tensor once instead of once per operation, which pays on a CPU too
# (the benchmark chapter times our training step, with the fused update, against open_clip's, which
# uses the default, and separates the optimiser's share). So `make_optimizer` asks for it and falls
# back to the default where a device has no fused kernel.
# <!-- fixed: 2.4 -->
#
# ## The learning-rate schedule
#
# Linear warm-up from zero to the peak over `warmup` steps (large batches and Adam's early, noisy
# second-moment estimates make the first steps fragile), then half a cosine down to zero at the last
# step. `lr_lambda` is the factor PyTorch's `LambdaLR` multiplies the peak by; the scheduler's state is
# then a few numbers, so it can go into a checkpoint as plain data.

# %%
#| exports
def lr_lambda(warmup: int, steps: int):
    "Factor on the peak learning rate at step s: linear warm-up over `warmup` steps, then cosine to 0 at `steps`."
    def factor(s: int) -> float:
        if s < warmup: return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, steps - warmup))))
    return factor

def make_scheduler(optimizer, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    "`LambdaLR` with warm-up and cosine decay, stepped once per optimiser step; `cfg`: a `TrainConfig` (below) or the recipe."
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup, cfg.steps))


# %%
#| fig-cap: "The learning rate at every step of the book's run: linear warm-up, then cosine decay to zero."
#| fig-alt: "A line plot of learning rate against step from 0 to 1000: it rises in a straight line to the peak learning rate over the first 100 steps, then falls along a half cosine to zero at the last step."
f = lr_lambda(warmup=10, steps=100)
test_close(f(0), 0.1); test_close(f(9), 1.0); test_close(f(10), 1.0); test_close(f(55), 0.5); test_close(f(100), 0.0)
assert all(f(s) >= f(s + 1) for s in range(10, 100))

fig, ax = plt.subplots(figsize=(5, 2.2))
cfg_plot = SimpleNamespace(lr=1e-3, warmup=100, steps=1000)        # the book's run (its preset is below)
ax.plot([cfg_plot.lr * lr_lambda(cfg_plot.warmup, cfg_plot.steps)(s) for s in range(cfg_plot.steps)])
ax.set(xlabel='step', ylabel='learning rate', title=f"warm-up over {cfg_plot.warmup} steps, then cosine to step {cfg_plot.steps}"); plt.tight_layout(); plt.show()


# %% [markdown]
# ## Mixed precision
#
# On a GPU the forward and backward passes run under `torch.autocast` in bfloat16 where the GPU has it
# and float16 otherwise; float16's narrow exponent range needs a `GradScaler`, which multiplies the
# loss before the backward pass so that small gradients do not underflow and divides them again before
# the step (skipping steps whose gradients overflowed). The weights and Adam's statistics stay float32
# (the paper also kept Adam's statistics in half precision to save memory, §2.5; we do not).
# On a CPU we train in float32 by default: bfloat16 autocast is available (`precision='bf16'`) and
# saves memory, but whether it is faster depends on the CPU, which [the efficiency
# chapter](14_efficiency.ipynb) measures. The loss itself is always
# computed in float32 (see the loss chapter). `resolve_precision` turns the `precision` option into a
# dtype, and the preliminaries' `autocast(device, dtype)` makes the context the training step runs in.

# %%
#| exports
def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    "The autocast dtype for `precision` on `device` ('auto': bf16/fp16 on CUDA, none on CPU); None = float32."
    if precision == 'auto': return autocast_dtype(device)
    table = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
    if precision not in table: raise ValueError(f"precision {precision!r}: choose 'auto', 'fp32', 'bf16' or 'fp16'")
    if table[precision] is torch.float16 and device.type != 'cuda':
        raise ValueError("precision 'fp16' needs a CUDA device (use 'bf16' or 'fp32' on CPU)")
    return table[precision]


# %%
test_eq(resolve_precision('auto', torch.device('cpu')), None)
test_eq(resolve_precision('bf16', torch.device('cpu')), torch.bfloat16)
test_fail(lambda: resolve_precision('fp16', torch.device('cpu')), contains="needs a CUDA device")


# %% [markdown]
# ## One training step
#
# A step encodes the batch, computes `clip_loss`, the symmetric cross entropy of [chapter 4](04_loss.ipynb) (which, with several processes, gathers the
# embeddings of every rank, so each rank's samples meet the whole global batch), back-propagates, and
# updates. The encoders are called through a small wrapper module, `Towers`, whose `forward` returns
# both embeddings and the temperature: `DistributedDataParallel` synchronises gradients only for work
# done inside the `forward` of the module it wraps.
#
# **Gradient accumulation, done exactly.** The usual trick for a batch that does not fit in memory
# (run it in chunks, add up the gradients) is wrong for a contrastive loss: each chunk would only see
# the negatives in its own chunk, so four chunks of 64 are not a batch of 256. Our `accum` option
# keeps the loss of the whole batch. It first encodes every chunk without building a graph, computes
# the loss on all the embeddings at once and back-propagates it *to the embeddings* only; then it
# encodes each chunk again, with a graph, and back-propagates the stored embedding gradients through
# the encoder: $\sum_j \langle f_j(\theta), \partial L / \partial f_j \rangle$ has exactly the
# parameter gradient of $L$. Memory is that of one chunk; the cost is one extra forward pass. (The
# idea is known as gradient caching, Gao et al. 2021. With BatchNorm, as in the ResNets, the running
# statistics are updated twice.) The other way to save memory, `grad_checkpointing` (the model chapter's
# `set_grad_checkpointing`), keeps the batch whole and recomputes each Transformer block's activations
# in the backward pass instead of storing them; the two combine.

# %%
#| exports
class Towers(nn.Module):
    "CLIP's two encoders and temperature as one forward: (image embeddings, text embeddings, logit_scale)."
    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model
    def forward(self, images: torch.Tensor, texts: torch.Tensor):
        return self.model.encode_image(images), self.model.encode_text(texts), self.model.logit_scale

def _no_sync(towers, skip: bool):
    "DDP's `no_sync()` (accumulate locally) when `skip`, else a no-op."
    return towers.no_sync() if skip and hasattr(towers, 'no_sync') else nullcontext()

def forward_backward(towers: nn.Module, images, texts, accum: int = 1, amp=None, scaler=None) -> torch.Tensor:
    "Loss of the whole batch and its gradients in the parameters, in `accum` chunks; returns the loss."
    amp = amp or nullcontext()
    scale = (lambda l: l) if scaler is None else scaler.scale
    if accum == 1:
        with amp: I_f, T_f, t = towers(images, texts)
        loss = clip_loss(I_f, T_f, t)
        scale(loss).backward()
        return loss.detach()
    chunks = list(zip(images.chunk(accum), texts.chunk(accum)))
    with torch.no_grad(), amp: outs = [towers(i, t) for i, t in chunks]           # 1. embeddings, no graph
    I_f = torch.cat([o[0] for o in outs]).requires_grad_()                         # [n, d]
    T_f = torch.cat([o[1] for o in outs]).requires_grad_()
    t = outs[0][2].detach().requires_grad_()
    loss = clip_loss(I_f, T_f, t)
    scale(loss).backward()                                                         # 2. dL/d(embeddings)
    g_I, g_T = I_f.grad.chunk(accum), T_f.grad.chunk(accum)
    for j, (i, tx) in enumerate(chunks):                                           # 3. through the encoders
        last = j == accum - 1
        with _no_sync(towers, skip=not last), amp:
            a, b, s = towers(i, tx)
            surrogate = (a.float() * g_I[j].float()).sum() + (b.float() * g_T[j].float()).sum()
            if last: surrogate = surrogate + s * t.grad                            # the temperature, once
        surrogate.backward()
    return loss.detach()


# %% [markdown]
# The check: two and four chunks give the loss and the gradients of the whole batch at once. The model is
# untrained and its temperature is the initial one, so its loss on eight pairs sits near $\ln 8$, the loss
# of a model that ranks the eight captions at random (chapter 4's lesson; a larger scale would spread the
# random similarities further and raise it).

# %%
def grads_after(accum, model, images, texts):
    model.zero_grad()
    loss = forward_backward(Towers(model), images, texts, accum=accum)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

small_cfg = replace(CONFIGS['MiniCLIP'], vision_layers=2, transformer_layers=2)   # two layers a tower
small = create_model(small_cfg)
imgs = torch.randn(8, 3, 48, 48)
txts = tokenize([f"a photo of {w}" for w in "a cat;a dog;two cats;a red car;the sea;a tree;my hat;snow".split(';')],
                context_length=32)
loss1, g1 = grads_after(1, small, imgs, txts)
for accum in (2, 4):
    loss_k, g_k = grads_after(accum, small, imgs, txts)
    test_close(loss_k, loss1, eps=1e-6)
    worst = max(((g_k[n] - g1[n]).abs().max() / g1[n].abs().max().clamp(min=1e-12)).item() for n in g1)
    assert worst < 1e-4, worst
    print(f"accum={accum}: loss {loss_k.item():.6f} (whole batch {loss1.item():.6f}), worst relative gradient difference {worst:.1e}")
print(f"untrained, at the initial scale exp(logit_scale) = {small.logit_scale.exp().item():.1f}: loss {loss1.item():.3f}, "
      f"ln 8 = {math.log(8):.3f}")


# %% [markdown]
# The update that follows: unscale (for float16), clip the gradient norm if asked, step,
# advance the schedule, and clamp the temperature: the paper clips it so that the logits are never
# scaled by more than 100 (§2.5, quoted in [the loss chapter](04_loss.ipynb)).
#
# The loss already never *uses* a scale above 100; clamping the parameter as well keeps it from
# drifting upwards unseen, so that it can come back down as soon as the gradient asks.

# %%
#| exports
def optimizer_step(model: CLIP, optimizer, scheduler, scaler=None, grad_clip: float = 0.0) -> torch.Tensor | None:
    "Clip (optional), step, advance the schedule, clamp logit_scale to [0, ln 100]; returns the gradient norm (on the device) if clipped."
    norm = None
    if grad_clip > 0:
        if scaler is not None: scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)        # stays on the device: no wait
    if scaler is not None: scaler.step(optimizer); scaler.update()
    else: optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad(): model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
    return norm


# %%
with torch.no_grad(): small.logit_scale.fill_(math.log(500.0))
opt = make_optimizer(small, recipe); sched = make_scheduler(opt, recipe)
forward_backward(Towers(small), imgs, txts)
optimizer_step(small, opt, sched, grad_clip=1.0)
test_close(small.logit_scale.exp().item(), 100.0, eps=1e-3)
test_close(opt.param_groups[0]['lr'], 1e-3)                 # step 1 of a 2-step warm-up reaches the peak

# %% [markdown]
# Steps in a row, on one batch: the eight pairs above, forty times. A model that can be trained at all must
# learn to tell eight pairs apart, so the loss has to fall far below $\ln 8$; this is the smallest check that
# the loss, the gradients, the update and the schedule fit together.

# %%
torch.manual_seed(0)
tiny = create_model(small_cfg)
opt = make_optimizer(tiny, recipe); sched = make_scheduler(opt, SimpleNamespace(warmup=5, steps=40))
losses = []
for s in range(40):
    losses.append(forward_backward(Towers(tiny), imgs, txts).item())
    optimizer_step(tiny, opt, sched)
print(f"40 steps on the same 8 pairs: loss {losses[0]:.3f} at the first step (ln 8 = {math.log(8):.3f}), "
      f"{losses[-1]:.3f} at the last")
assert losses[-1] < 0.5 * math.log(8), losses


# %% [markdown]
# ## The loop
#
# `train` repeats the step over a data set. It sets up the process group when `torchrun` started it (gloo on
# CPUs, NCCL on GPUs), builds the model with the run's seed on every rank and wraps it in
# `DistributedDataParallel`, restores the last checkpoint of the run directory if there is one, and
# then loops over steps; every `ckpt_every` steps and at the end rank 0 writes the checkpoint. When the
# steps are done it measures held-out retrieval and returns a summary; the curves and `report.md` are
# drawn from it by [the next chapter](06a_run.ipynb). Only rank 0 writes files. The data comes from
# `make_datasets` of [the input pipeline appendix](05d_loader.ipynb): your pairs when `cfg.train_data`
# names a CSV file or shards, else the emoji set or scenes, as `cfg.data` says. Or pass
# `datasets=(train set, held-out set)`, map-style or streaming data sets of (image, caption) pairs: the
# bias chapter trains on a deliberately skewed copy of the emoji set that way. A run's data is not in
# its checkpoint, so resume with the same data.
#
# One rule shapes the loop: **it never waits for the GPU between log steps.** A GPU runs the kernels a
# step queues while Python prepares the next step; reading a value back (`loss.item()`, a gradient
# norm, the temperature) makes Python wait until the GPU has caught up, and the GPU then idles while
# Python logs. So the loss, the temperature and the gradient norm of each step stay on the device, and
# every `log_every` steps (and at every evaluation and checkpoint) `StepLog.flush` (of [the run-folder
# appendix](05e_run_folder.ipynb)) reads them all back
# at once, averaged over ranks, and writes one `metrics.jsonl` record per step. A loss that became NaN
# or infinite is found there, before any checkpoint is written, and the run stops naming the first
# bad step; the checkpoint on disk is the last good one. nanoGPT and open_clip read values back on
# their log steps only, for the same reason. (A killed run may have logged steps after its last
# checkpoint; on resume those lines are dropped, so `metrics.jsonl` always describes the run that
# produced the weights. A fresh run, `--no-resume`, in the folder of an earlier one sets that run's
# checkpoint and log aside until its own first checkpoint is written: see [Run folders](05e_run_folder.ipynb).)

# %% [markdown]
# What the loop leans on, in one paragraph each:
#
# - **Batches, rank by rank** ([the input pipeline](05d_loader.ipynb)). `TrainBatches` deals a map-style set
#   out to the ranks, each pair to one rank once per epoch, or streams tar shards by rank and by worker;
#   `DataLoader` workers decode, augment, tokenize and stack whole batches. The order is a function of
#   (seed, epoch) and an item's augmentation of (seed, epoch, index), so the position in the data is just
#   (epoch, batches done) and resuming needs no saved iterator. Before each step the ranks agree, over the
#   CPUs, on whether every one has a batch and how many good samples the smallest holds
#   (`min_over_ranks` of [the loss chapter](04_loss.ipynb)), so a rank whose shards ran out never leaves
#   another waiting in the gradient all-reduce; an epoch in which some rank has no batch ends the run with a
#   checkpoint and a message naming each rank's share of shards.
# - **Checkpoints you can kill** ([run folders](05e_run_folder.ipynb)). `save_checkpoint` writes atomically
#   (a kill leaves the old checkpoint or the new one, never half of one), and a checkpoint is complete: the
#   model, AdamW's moments, the schedule's position, the float16 loss scaler, every random generator and
#   the position in the data. A test, `test_sigkill_mid_epoch_then_resume_is_bit_identical` in
#   `tests/test_train.py`, kills a run with SIGKILL in the middle of an epoch, resumes it, and requires
#   weights bit-identical to a run that was never interrupted. The test runs on the CPU, and that is where
#   the promise holds: GPU kernels need not be deterministic, so on a GPU the resumed run continues the
#   same run without a promise of the same bits. `RunLock` keeps one run per folder.
# - **Resuming only the same run** ([training options](05g_options.ipynb)). `check_config` refuses, with
#   one line naming the option, a configuration that cannot train as asked, before any data is read;
#   `check_resume` refuses to continue a run with settings other than its own (a new learning rate is a new
#   run: `--pretrained` starts one from the old run's weights).
# - **Did it learn anything?** ([retrieval](05f_retrieval.ipynb)). The training loss says how well the
#   model tells apart the pairs of a batch it trained on; `evaluate_retrieval` asks whether it matches
#   pictures and captions it has never seen, recall at $k$ in both directions beside chance, with the
#   held-out loss. The loop calls it every `eval_every` steps and at the end.

# %%
#| exports
def train(cfg, datasets: tuple | None = None) -> dict:
    "Train CLIP as `cfg` (a `TrainConfig`, defined below) says (resuming from cfg.out/checkpoint.pt if present); `datasets`: your own (train, held-out) pair."
    check_config(cfg)
    rank, world, device = setup_distributed(cfg.device)
    lock, busy = RunLock(cfg.out), None
    if rank == 0:
        try: lock.__enter__()
        except RunInUseError as e: busy = e
    if not all_have(busy is None):                      # every rank stops, not only the one that knows why
        raise busy or RunInUseError(f"{cfg.out} is in use by another run (rank 0 could not lock it)")
    try: return _run(cfg, datasets, rank, world, device)
    finally: lock.__exit__(*sys.exc_info())

def _run(cfg: TrainConfig, datasets, rank: int, world: int, device: torch.device) -> dict:
    "The body of `train`, in a run folder this process holds."
    if device.type == 'cpu': torch.set_num_threads(cfg.threads or cores_per_process(world))
    if cfg.batch_size % (world * cfg.accum):
        raise ValueError(f"batch_size {cfg.batch_size} must divide into {world} ranks × {cfg.accum} chunks")
    local_bs = cfg.batch_size // world
    if world > 1 and rank == 0:
        print(f"--batch-size {cfg.batch_size} is the global batch: {local_bs} per process on {world} processes "
              f"(open_clip's --batch-size is per GPU)", file=sys.stderr)
    out = Path(cfg.out); ckpt_path, metrics_path = out/'checkpoint.pt', out/'metrics.jsonl'
    amp_dtype = resolve_precision(cfg.precision, device)
    resuming = cfg.resume and ckpt_path.exists()
    ck = load_checkpoint(ckpt_path) if resuming else None
    if ck is not None: check_resume(ck, cfg, ckpt_path)
    seed_everything(cfg.seed)
    model, mcfg = initial_model(cfg, ck)
    model = model.to(device)
    lock_towers(model, image=cfg.lock_image, text=cfg.lock_text)
    if cfg.grad_checkpointing: model.set_grad_checkpointing()
    towers = Towers(model)
    if world > 1:
        towers = nn.parallel.DistributedDataParallel(towers, device_ids=[device.index] if device.type == 'cuda' else None)
    optimizer, scaler = make_optimizer(model, cfg), None
    scheduler = make_scheduler(optimizer, cfg)
    if amp_dtype is torch.float16: scaler = torch.amp.GradScaler('cuda')
    train_ds, test_ds = datasets or make_datasets(cfg, mcfg.image_resolution)
    streaming, limit = isinstance(train_ds, IterableDataset), None
    if streaming:                                  # steps per epoch: fixed by --train-num-samples, else the shortest rank's
        if cfg.dataset_resampled and not cfg.train_num_samples:
            raise ValueError("--dataset-resampled needs --train-num-samples (the samples that make one epoch)")
        limit = cfg.train_num_samples // cfg.batch_size if cfg.train_num_samples else None
        if limit == 0: raise ValueError(f"--train-num-samples {cfg.train_num_samples} is less than one batch of {cfg.batch_size}")
    workers = cfg.workers if cfg.workers is not None else default_workers(device, world)
    batches = TrainBatches(train_ds, local_bs, rank, world, cfg.seed, workers, mcfg.context_length,
                           pin_memory=device.type == 'cuda', prefetch=cfg.prefetch, limit=limit)
    per_epoch = batches.per_epoch
    if not streaming and per_epoch == 0: raise ValueError(f"{len(train_ds)} training items are fewer than one batch of {cfg.batch_size}")
    if ck is not None and streaming and max(1, ck['data'].get('workers', workers)) != max(1, workers):
        raise ValueError(f"{ckpt_path} streamed its shards through {ck['data']['workers']} worker(s) per process and this run "
                         f"has {workers}: a stream's batches depend on it, so resume with --workers {ck['data']['workers']}")
    step, epoch, start, wall_before = 0, 0, 0, 0.0
    if ck is not None:                                                     # continue the same run
        model.load_state_dict(ck['model']); optimizer.load_state_dict(ck['optimizer'])
        scheduler.load_state_dict(ck['scheduler'])
        if scaler is not None and ck['scaler']: scaler.load_state_dict(ck['scaler'])
        set_rng_state(ck['rng'])
        step, wall_before = ck['data']['step'], ck['wall_s']
        epoch, start = ck['data']['epoch'], ck['data']['step_in_epoch']
        if rank == 0: truncate_metrics(metrics_path, step)
    elif rank == 0 and (kept := keep_previous(out)):                         # a fresh run: the old one's files set aside
        print(f"{out}: the previous run's {' and '.join(kept)} are kept as .previous-* until this run writes its first "
              f"checkpoint", file=sys.stderr)
    if rank == 0 and streaming and (risk := uneven_shards(train_ds, world, workers, local_bs, cfg.steps - step, epoch)):
        print(f"--train-data {cfg.train_data or '(given)'}: {risk}", file=sys.stderr)
    last_ckpt = step or None                                               # the step of the checkpoint on disk

    def checkpoint(step, epoch, done, probe):
        nonlocal last_ckpt
        check_finite(0.0, model, step, cfg, last_ckpt, probe)              # never overwrite a good checkpoint with NaNs
        save_checkpoint(dict(config=asdict(cfg), model_config=asdict(mcfg), quick_gelu=uses_quick_gelu(model),
                             model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             scaler=scaler.state_dict() if scaler is not None else {}, rng=rng_state(),
                             data=dict(step=step, epoch=epoch, step_in_epoch=done, sampler_seed=cfg.seed,
                                       steps_per_epoch=per_epoch, world_size=world, workers=workers),
                             wall_s=wall_before + time.perf_counter() - t_loop), ckpt_path)
        if last_ckpt is None: forget_previous(out)                       # this run's first checkpoint: the old one's files go
        last_ckpt = step

    amp = autocast(device, amp_dtype)
    bar = tqdm(total=cfg.steps, initial=step, disable=not show_progress(cfg.progress) or rank != 0, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 15.0, desc=out.name)
    log = StepLog(metrics_path if rank == 0 else None)
    skips = getattr(train_ds, 'skips', None)           # the data set's count of bad samples, by reason
    t_loop = time.perf_counter()
    waited, timer = 0.0, dict(t=t_loop, steps=0, waited=0.0)   # seconds waiting for batches; since the last flush

    def flush():
        "Read the pending steps back (the loop's one host sync), log them, stop on a non-finite loss."
        now = time.perf_counter()
        n, dt = timer['steps'], max(now - timer['t'], 1e-9)
        last = dict(samples_per_s=n * cfg.batch_size / dt, data_wait=(waited - timer['waited']) / dt)
        if skips is not None and skips.skipped: last['skipped'] = skips.counts
        recs, bad = log.flush(last)
        timer.update(t=now, steps=0, waited=waited)
        if bad is not None: check_finite(bad['loss'], None, bad['step'], cfg, last_ckpt)
        if recs:
            r = recs[-1]
            bar.set_postfix(loss=f"{r['loss']:.3f}", lr=f"{r['lr']:.2e}", τ=f"{r['temperature']:.4f}",
                            samples_s=f"{last['samples_per_s']:.0f}", refresh=False)

    was_finished = step >= cfg.steps                   # resuming a finished run: its final eval is logged already
    epoch_steps = []                                   # batches this process read in each epoch it finished
    probe = None                                       # the last batch stepped on: checks the weights before a checkpoint
    model.train()
    while step < cfg.steps:
        it, done, stepped = batches.epoch(epoch, start), start, 0
        while step < cfg.steps:
            t0 = time.perf_counter()
            batch = next(it, None)
            waited += time.perf_counter() - t0
            has, n = min_over_ranks([batch is not None, 0 if batch is None else len(batch[1])])   # equal batches on every rank
            if not has: mine = batch is not None; break
            b, images, tokens = batch
            done = b + 1                                              # position in the epoch: the next batch to read
            if n == 0: continue                                       # a batch of bad samples only (on some rank)
            images, tokens = images[:n].to(device, non_blocking=True), tokens[:n].to(device, non_blocking=True)
            lr = optimizer.param_groups[0]['lr']
            loss = forward_backward(towers, images, tokens, cfg.accum, amp, scaler)
            norm = optimizer_step(model, optimizer, scheduler, scaler, cfg.grad_clip)
            probe = (images[:8], tokens[:8])
            step, stepped, timer['steps'] = step + 1, stepped + 1, timer['steps'] + 1
            log.add(dict(step=step, epoch=epoch, lr=lr, wall_s=wall_before + time.perf_counter() - t_loop),
                    loss, model.logit_scale, norm)
            bar.update()
            evaluate = bool(cfg.eval_every) and step % cfg.eval_every == 0 and step < cfg.steps and test_ds is not None
            save = step % cfg.ckpt_every == 0 or step == cfg.steps
            if step % cfg.log_every == 0 or evaluate or save: flush()
            if evaluate and rank == 0:
                append_record(metrics_path, dict(step=step, eval=evaluate_retrieval(model, test_ds, device=device, loss_batch=cfg.batch_size)))
            ends_epoch = per_epoch is not None and done == per_epoch
            if rank == 0 and save:
                checkpoint(step, *((epoch + 1, 0) if ends_epoch else (epoch, done)), probe)
            if ends_epoch: break
        if stepped == 0 and start == 0:                   # an epoch without a step: stop, keeping the steps done
            empty = [r for r, had in enumerate(min_over_ranks([mine if r == rank else 1 for r in range(world)])) if not had]
            flush()
            if rank == 0 and probe is not None and last_ckpt != step: checkpoint(step, epoch, 0, probe)
            raise ValueError(no_batch_reason(cfg.out, train_ds, epoch, empty, world, workers, local_bs, step or None, skips))
        if step < cfg.steps or (per_epoch is not None and done == per_epoch):
            epoch_steps.append(done); epoch, start = epoch + 1, 0
    flush()
    bar.close()
    train_s = time.perf_counter() - t_loop
    summary = dict(name=out.name, steps=cfg.steps, world_size=world, device=str(device),
                   parameters=count_parameters(model), train_items=data_size(train_ds), steps_per_epoch=per_epoch,
                   epoch_steps=epoch_steps, train_wall_s=wall_before + train_s, workers=workers,
                   data_wait_s=waited, data_wait_share=waited / max(train_s, 1e-9), dir=str(out))
    if rank == 0:
        if test_ds is not None:
            summary['test'] = evaluate_retrieval(model, test_ds, device=device, loss_batch=cfg.batch_size)
            if not was_finished: append_record(metrics_path, dict(step=step, eval=summary['test']))
        summary['data'] = describe_data(cfg, train_ds, test_ds, given=datasets is not None)
        summary['total_wall_s'] = wall_before + time.perf_counter() - t_loop
    if world > 1: dist.barrier()
    return summary


# %% [markdown]
# ## The configuration
#
# A run is named by one plain dataclass, `TrainConfig`: the recipe's numbers above, the model, the data,
# and the machinery's settings (where the run lives, threads, workers, how often to log, evaluate and
# checkpoint, your own pairs, fine-tuning). Each field carries the one line of help that the command line's
# `--help` shows. The presets name the runs this book makes:

# %%
#| export
#| hide
def option(default, help: str):
    "A `TrainConfig` field: its default and the one line `--help` shows for it."
    if isinstance(default, (dict, list)): return field(default_factory=lambda: type(default)(default), metadata=dict(help=help))
    return field(default=default, metadata=dict(help=help))

@dataclass
class TrainConfig:
    "Everything that defines a training run; `PRESETS` holds the named ones. Each field's help is what `--help` shows."
    model: str = option('MiniCLIP', "architecture, a name in CONFIGS (MiniCLIP, ViT-B/32, RN50, ...)")
    model_overrides: dict = option({}, 'JSON object of CLIPConfig fields to change, e.g. \'{"vision_layers": 6}\'')
    data: str = option('emoji', "built-in pairs: emoji (test split held out) or scenes (for your own pairs use --train-data)")
    n_scenes: int = option(4096, "training pictures with --data scenes (and a quarter as many held out)")
    templates: list | None = option(None, "caption templates for the emoji set, e.g. '{}' 'an emoji of {}.' (default: the data chapter's)")
    zoom: tuple = option(TRAIN_ZOOM, "the training crop's zoom range LOW HIGH: short side resized to size×z, z ~ U(LOW, HIGH), a square cut at random (chapter 3)")
    batch_size: int = option(128, "global batch: over all processes and accumulation chunks (open_clip's --batch-size is per GPU)")
    steps: int = option(1000, "optimiser steps")
    lr: float = option(5e-4, "peak learning rate (ViT-B/32: 5e-4, Table 20)")
    warmup: int = option(100, "linear warm-up steps (paper: 2,000 at batch 32,768, Table 18)")
    weight_decay: float = option(0.2, "AdamW weight decay, Table 18 (not on gains, biases, embeddings, logit_scale)")
    betas: tuple = option((0.9, 0.98), "Adam betas, Table 18 for ViTs (ResNets: β2 0.999)")
    eps: float = option(1e-6, "Adam epsilon, Table 18 for ViTs (ResNets: 1e-8)")
    precision: str = option('auto', "auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16")
    grad_clip: float = option(0.0, "max gradient norm (0: no clipping)")
    accum: int = option(1, "split every batch into this many chunks: the same loss and gradients in less memory")
    grad_checkpointing: bool = option(False, "recompute activations in the backward pass: less memory, more time")
    seed: int = option(0, "random seed (weights, data order, augmentation)")
    out: str = option('runs/mini', "run folder: checkpoint, metrics, curves, report (default: the preset's name under $CLIP_ANNOTATED_RUNS or runs/)")
    ckpt_every: int = option(250, "checkpoint every N steps (and at the end)")
    eval_every: int = option(0, "held-out retrieval every N steps (0: only at the end)")
    resume: bool = option(True, "continue the run in --out if it has a checkpoint (default: yes)")
    threads: int = option(0, "CPU threads per process (0: the cores of this machine / its processes of the run; set it when "
                                 "another run shares the machine)")
    workers: int | None = option(None, "DataLoader worker processes per process, decoding and batching (default: on CUDA the process's cores less one, at most 8; on CPU 0)")
    prefetch: int | None = option(None, "batches each worker prepares ahead (default 2)")
    log_every: int = option(100, "read the loss, temperature and gradient norm back from the device and log them every N steps")
    device: str | None = option(None, "cpu, cuda or cuda:N (default: CUDA if available)")
    progress: bool = option(True, "progress bar (default: yes)")
    # your own pairs (open_clip's option names): used instead of `data` when train_data is set
    train_data: str | None = option(None, "your training pairs: a CSV/TSV file, or webdataset shards (list, {000..009} range, glob, folder, pipe:, URL)")
    val_data: str | None = option(None, "held-out pairs for retrieval, in the same forms (default: none)")
    dataset_type: str = option('auto', "auto (.csv/.tsv/.tab: csv, else webdataset), csv or webdataset")
    csv_img_key: str = option('filepath', "CSV column of image paths, relative to the CSV's folder")
    csv_caption_key: str = option('title', "CSV column of captions")
    csv_separator: str | None = option(None, "CSV separator (default: tab for .tsv/.tab, else comma)")
    train_num_samples: int | None = option(None, "shards: samples in one epoch (needed with --dataset-resampled)")
    dataset_resampled: bool = option(False, "shards: draw them with replacement, so every process runs the same steps")
    # fine-tuning
    pretrained: str | None = option(None, "start from these weights: a released name (ViT-B/32), a checkpoint, a Hugging Face or open_clip folder, or a run folder")
    lock_image: bool = option(False, "freeze the image tower (LiT-style fine-tuning)")
    lock_text: bool = option(False, "freeze the text tower")

    def clip_config(self) -> CLIPConfig:
        "The model's `CLIPConfig`: `CONFIGS[model]` with `model_overrides` applied."
        if self.model not in CONFIGS: raise KeyError(f"unknown model {self.model!r}; choose one of {list(CONFIGS)}")
        return replace(CONFIGS[self.model], **self.model_overrides)


# %% [markdown]
# `mini-cpu` is the run this book reports: MiniCLIP on the emoji pictures of the data
# chapter, sized to finish within minutes on two CPU cores (the run appendix prints how long it took).
# It cuts the 48-pixel pictures into 12-pixel patches instead of MiniCLIP's 8, so the image tower
# reads 16 patches instead of 36: a cheaper step, which buys the steps that held-out accuracy needs
# (the efficiency chapter times this step on the machine at hand). `vit-b32-gpu` is the paper's
# smallest ViT with the paper's learning rate for it (Table 20), for one GPU: a batch that fits one, and
# gradient clipping at norm 1, which the paper does not mention (a guard for the smaller batch; open_clip's
# trainer offers the same as `--grad-clip-norm`). `scenes-tiny` is the toy of the next
# chapter.

# %%
#| exports
PRESETS: dict[str, TrainConfig] = {
    'mini-cpu': TrainConfig(model='MiniCLIP', model_overrides=dict(vision_patch_size=12), data='emoji', batch_size=128,
                            steps=1000, lr=1e-3, warmup=100, ckpt_every=250, eval_every=250, out='runs/mini'),
    'vit-b32-gpu': TrainConfig(model='ViT-B/32', data='emoji',
                               batch_size=512, steps=3000, lr=5e-4, warmup=300, precision='auto', grad_clip=1.0,
                               ckpt_every=500, eval_every=500, out='runs/vit-b32'),
    'scenes-tiny': TrainConfig(model='MiniCLIP', model_overrides=dict(vision_layers=2, transformer_layers=2),
                               data='scenes', n_scenes=2048, batch_size=64, steps=150, lr=1e-3, warmup=20,
                               ckpt_every=50, out='runs/scenes'),
}

# %% [markdown]
# The fields this chapter uses, with the values of the book's run:

# %%
#| echo: false
RECIPE_FIELDS = ('model', 'model_overrides', 'data', 'batch_size', 'steps', 'lr', 'warmup', 'weight_decay', 'betas', 'eps',
                 'precision', 'accum', 'seed', 'out')
shown = [f for f in dataclass_fields(TrainConfig) if f.name in RECIPE_FIELDS]
display(Markdown(markdown_table(['field', 'mini-cpu', 'what it sets'],
                                [(f'`{f.name}`', f'`{getattr(PRESETS["mini-cpu"], f.name)!r}`', f.metadata['help']) for f in shown],
                                align='lll')))
display(Markdown(f"The other {len(dataclass_fields(TrainConfig)) - len(shown)} fields are listed with their help in "
                 f"[A training run](06a_run.ipynb#every-option)."))

# %%
test_eq(PRESETS['mini-cpu'].clip_config(), replace(CONFIGS['MiniCLIP'], vision_patch_size=12))
test_eq(PRESETS['scenes-tiny'].clip_config(), small_cfg)                       # the model of the checks above
test_eq((PRESETS['mini-cpu'].lr, PRESETS['mini-cpu'].warmup, PRESETS['mini-cpu'].steps), (cfg_plot.lr, cfg_plot.warmup, cfg_plot.steps))
test_fail(lambda: TrainConfig(model='ViT-Z/99').clip_config(), contains='unknown model')

# %% [markdown]
# `check_config` of [training options](05g_options.ipynb) passes the presets and refuses broken settings, each
# with one line that names the option:

# %%
for preset in PRESETS.values(): test_eq(check_config(preset), preset)                  # every preset passes its own checks
for change, says in [(dict(batch_size=-4), '--batch-size -4: must be a whole number ≥ 1'), (dict(accum=0), '--accum 0'),
                     (dict(steps=0), '--steps 0'), (dict(weight_decay=-1.0), '--weight-decay -1.0'),
                     (dict(device='banana'), '--device'), (dict(model_overrides={'nope': 1}), "unknown field(s) ['nope']"),
                     (dict(model_overrides={'transformer_heads': 7}), 'one head per 64 channels'),
                     (dict(model_overrides={'patch_size': 7}), "unknown field(s) ['patch_size']"),
                     (dict(templates=['{x}']), "template '{x}' has braces other than one '{}'"),
                     (dict(templates=['an emoji']), "template 'an emoji' has no '{}'"),
                     (dict(templates=['a {} of a {}']), "template 'a {} of a {}' has 2 '{}'"),
                     (dict(model_overrides={'vocab_size': 1000}), "smaller than the tokenizer's 49,408 tokens"),
                     (dict(model_overrides={'context_length': 2}), "no room for a word between [SOS] and [EOS]")]:
    test_fail(lambda: check_config(replace(PRESETS['mini-cpu'], **change)), contains=says)


# %% [markdown]
# ## When training diverges
#
# A learning rate far too high turns the loss into `inf` and then `NaN` within a few steps, and NaN is treacherous downstream: every comparison with NaN is
# false, so a ranking that counts "how many captions score higher than the right one" counts none, and
# a model of NaNs retrieves perfectly. So the loop checks the loss of every step when it reads the
# steps back (every `log_every` steps and before every checkpoint: see the loop above) and the weights
# before every checkpoint. When either is not finite it stops with `TrainingDiverged`, naming the
# first bad step, before a checkpoint overwrites the last good one (the weights in memory have taken
# the bad steps by then; the file on disk has not); and `retrieval_metrics` of [Retrieval](05f_retrieval.ipynb) refuses NaN features
# outright.

# %%
#| exports
class TrainingDiverged(RuntimeError):
    "The loss or the weights became NaN or infinite; the last good checkpoint is kept."

def _features_finite(model: CLIP, batch) -> bool:
    was_training = model.training; model.eval()                          # a ResNet's BatchNorm statistics stay as they are
    try:
        with torch.no_grad():
            return bool(torch.isfinite(model.encode_image(batch[0])).all() and torch.isfinite(model.encode_text(batch[1])).all())
    finally: model.train(was_training)

def check_finite(loss: float, model: nn.Module | None, step: int, cfg: TrainConfig, last_ckpt: int | None, batch=None):
    "Raise `TrainingDiverged` when `loss`, a weight of `model`, or its features of `batch` (images, tokens) are NaN or infinite."
    what = (f"the loss is {loss}" if not math.isfinite(loss) else None if model is None else
            "the weights hold NaN or infinite values" if not all(torch.isfinite(p).all() for p in model.parameters()) else
            "the features of the last batch are NaN or infinite" if batch is not None and not _features_finite(model, batch)
            else None)
    if what is None: return
    kept = f"the checkpoint of step {last_ckpt} in {cfg.out} is kept" if last_ckpt else "no checkpoint was written"
    raise TrainingDiverged(f"training diverged: {what} at step {step} (lr {cfg.lr:g}); {kept}. Lower --lr, set "
                           f"--grad-clip 1.0, or use --precision fp32, and train again with --no-resume")


# %%
check_finite(2.3, small, step=5, cfg=TrainConfig(), last_ckpt=None)                       # all finite: nothing
test_fail(lambda: check_finite(math.nan, None, 7, TrainConfig(lr=1e30, out='runs/x'), 5),
          contains='the loss is nan at step 7 (lr 1e+30); the checkpoint of step 5 in runs/x is kept')

# %% [markdown]
# ## Fine-tuning: starting from weights
#
# A run need not start from random weights. `--pretrained` takes anything the
# [released weights](03_pretrained.ipynb) chapter's `load` reads (a released model's name, an OpenAI,
# Hugging Face or open_clip checkpoint, or one of our run folders), and the architecture follows the
# checkpoint, not `--model`. Everything else is fresh: the optimiser state, the warm-up and cosine
# schedule, and the learning rate given on the command line, which is what fine-tuning means.
# Locking a tower freezes it: LiT (Zhai et al. 2022) showed that a frozen, well-trained image tower
# with a text tower trained to match it is a strong recipe. A frozen parameter gets no gradient and is
# left out of the optimiser, so weight decay cannot move it either.

# %%
#| exports
TEXT_TOWER = ('token_embedding', 'positional_embedding', 'transformer', 'ln_final', 'text_projection')

def model_from_checkpoint(ck: dict, weights: bool = True) -> tuple[CLIP, CLIPConfig]:
    "(model, CLIPConfig) that a training checkpoint describes, with its weights (or only its shape)."
    mcfg = CLIPConfig(**ck['model_config'])
    model = create_model(mcfg, quick_gelu=ck.get('quick_gelu', True))
    if weights: model.load_state_dict(ck['model'])
    return model, mcfg

def initial_model(cfg: TrainConfig, ck: dict | None = None) -> tuple[CLIP, CLIPConfig]:
    "(model, its CLIPConfig) to start from: resumed checkpoint `ck`'s shape, `cfg.pretrained`'s weights, or `cfg.model` at random."
    if ck is not None: return model_from_checkpoint(ck, weights=False)       # resuming: its weights are loaded later
    if cfg.pretrained and Path(cfg.pretrained, 'checkpoint.pt').is_file():   # one of our runs: its exact configuration
        return model_from_checkpoint(load_checkpoint(Path(cfg.pretrained, 'checkpoint.pt')))
    if cfg.pretrained:
        from clip_annotated.pretrained import load
        model, _ = load(cfg.pretrained, device='cpu', dtype=torch.float32)
        return model.train(), config_from_state_dict(model.state_dict())
    mcfg = cfg.clip_config()
    return create_model(mcfg), mcfg

def lock_towers(model: CLIP, image: bool = False, text: bool = False) -> CLIP:
    "Freeze the image tower (`visual`) and/or the text tower (`TEXT_TOWER`); `logit_scale` stays trainable."
    for name, p in model.named_parameters():
        top = name.split('.')[0]
        if (image and top == 'visual') or (text and top in TEXT_TOWER): p.requires_grad_(False)
    return model


# %%
m = lock_towers(create_model('MiniCLIP'), image=True)
frozen = {n.split('.')[0] for n, p in m.named_parameters() if not p.requires_grad}
test_eq(frozen, {'visual'})
test_eq({n.split('.')[0] for n, p in lock_towers(create_model('MiniCLIP'), text=True).named_parameters()
         if not p.requires_grad}, set(TEXT_TOWER))
opt = make_optimizer(m, recipe)
assert not any(p is q for g in opt.param_groups for p in g['params'] for q in m.visual.parameters())   # not optimised

# %% [markdown]
# ## What comes next
#
# That is the recipe and the loop: `train` leaves a checkpoint and `metrics.jsonl` in its run folder,
# resumes exactly after a kill, and returns a summary. [A training run](06a_run.ipynb) runs it: first on
# the toy scenes, then on the emoji set (the run every later chapter studies), with the curves and the
# report a person reads, and the command line, alone or under `torchrun`.

# %%
_ = footer()
