# %% [markdown]
# # The input pipeline
#
# > Every kind of pairs (the emoji set, scenes, your CSV, tar shards) reaches the training loop the same way: decoded, augmented, tokenized and batched in `DataLoader` worker processes, pinned for the GPU; a map-style set's batches depend only on (seed, epoch), whatever the number of workers.

# %%
#| default_exp loader

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import os
import torch
import webdataset as wds
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from clip_annotated.tokenizer import tokenize
from clip_annotated.data import EmojiDataset
from clip_annotated.scenes import SceneDataset
from clip_annotated.readers import open_data, shard_sizes

# %%
#| hide
import time
from unittest import mock
from fastcore.test import test_eq, test_fail
from clip_annotated.data import collate


# %% [markdown]
# A GPU that trains a ViT-B/32 takes a few thousand pictures a second. One Python process that opens,
# decodes, crops and normalises 224-pixel JPEGs delivers a few hundred. So the work of making a batch
# cannot happen in the process that drives the GPU: it is spread over `DataLoader` worker processes,
# which decode, augment, tokenize and stack whole batches, and hand the training loop finished tensors
# (in page-locked memory on CUDA, so that the copy to the GPU overlaps the computation). The loop's
# only data work is to take the next batch.
#
# ```{mermaid}
# flowchart LR
#   S["sampler (main process)<br/>batches of (epoch, index)"] --> W1["worker 1<br/>decode, crop, tokenize, stack"]
#   S --> W2["worker 2"]
#   W1 --> L["training loop<br/>(images, tokens), pinned"]
#   W2 --> L
# ```
#
# This appendix is that machinery; [the training chapter](06_train.ipynb) uses it through one class,
# `TrainBatches`. Two properties matter more than speed. A map-style set's batches must not depend on
# how many workers made them, so that `--workers` is a setting of the machine and not of the run (a
# stream's do, as explained below, so a streamed run keeps its number of workers); and a run killed at
# any step must resume with exactly the batches it would have seen.

# %% [markdown]
# ## Captions to tokens, once
#
# A caption recurs every epoch (an emoji name in one of six templates), so `TokenCache` tokenizes each
# distinct caption once and afterwards only looks its row up. `PairCollate` is the `collate_fn` the
# workers run: it drops the samples a data set marked bad (`None`, already counted by its
# `SkipCounter`) and stacks the rest, as the data chapter's `collate` does, with one saving: the token
# rows are cut after the batch's last [EOS]. Attention in the text encoder is causal, so the padding
# after it changes nothing ([the model chapter](02_model.ipynb) cuts it too when the tokens are on the
# CPU, where finding the cut costs nothing; on a GPU, finding it would make the host wait for the
# device, so the model takes the columns it is given).

# %%
#| export
class TokenCache:
    "Token rows of captions seen before: `cache(captions) -> [B, context_length]`, each distinct caption tokenized once."
    def __init__(self, context_length: int = 77, max_size: int = 50_000):   # one per worker: at most ~30 MB each
        self.context_length, self.max_size, self.rows = context_length, max_size, {}
    def __call__(self, captions: list[str]) -> torch.Tensor:
        new = [c for c in dict.fromkeys(captions) if c not in self.rows]
        if new:
            if len(self.rows) + len(new) > self.max_size: self.rows.clear()       # web-scale captions rarely repeat
            self.rows.update(zip(new, tokenize(new, self.context_length, truncate=True)))
        return torch.stack([self.rows[c] for c in captions])

class PairCollate:
    "A DataLoader's `collate_fn`: (images [B, 3, S, S], tokens [B, ≤ context_length]) from (image, caption) samples, bad ones (None) dropped."
    def __init__(self, context_length: int = 77, cut: bool = True): self.tokens, self.cut = TokenCache(context_length), cut
    def __call__(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        samples = [s for s in samples if s is not None]
        if not samples: return torch.empty(0, 3, 0, 0), torch.empty(0, self.tokens.context_length, dtype=torch.long)
        images, captions = zip(*samples)
        tokens = self.tokens(list(captions))
        if self.cut: tokens = tokens[:, :int(tokens.argmax(-1).max()) + 1]      # up to the batch's last [EOS]
        return torch.stack(images), tokens


# %%
ds = SceneDataset(40, seed=0, image_size=48, train=True)
pairs = [ds[i] for i in range(8)]
mine, ref = PairCollate(32)([None, *pairs]), collate(pairs, context_length=32)
n = mine[1].shape[1]
assert torch.equal(mine[0], ref[0]) and torch.equal(mine[1], ref[1][:, :n])     # what the data chapter's collate makes,
assert n < 32 and (ref[1][:, n:] == 0).all()                                   # less the padding after the last [EOS]
test_eq(PairCollate(32)([None, None])[1].shape, (0, 32))                          # a batch of bad samples only
test_eq(PairCollate(32, cut=False)(pairs)[1], ref[1])                             # cut=False: whole rows


# %% [markdown]
# ## Map-style sets: batches of (epoch, index)
#
# Each process reads its own share of a map-style set (the emoji set, scenes, a CSV) through a
# `DistributedSampler`: for epoch $e$ every rank shuffles the indices with the same seed, `seed + e`,
# and takes every $W$-th one, so the shares are disjoint and equally long, which the gather of the loss
# requires (`drop_last` makes them equal by leaving out up to $W - 1$ items an epoch rather than
# repeating some; each rank also leaves out its last partial batch). With one process the same code
# gives a plain shuffle. The order's seed is `seed + e`, so seed 1's first epoch is seed 0's second:
# runs paired by seed see the same orders, shifted by an epoch.
#
# The sampler runs in the main process and sends each worker a list of keys to fetch. The keys are
# `(epoch, index)` pairs, not bare indices: a worker that lives across epochs (`persistent_workers`,
# which saves restarting the workers every epoch) holds its own copy of the data set, and the key tells
# that copy which epoch's augmentation to draw. Every item of this book's data sets draws its crop and
# template from a generator seeded by (seed, epoch, index), so a batch is the same whichever worker
# makes it, and the position in the data is just (epoch, batches done): resuming needs no saved
# iterator.

# %%
#| export
class EpochItems(Dataset):
    "`dataset` read by (epoch, index) keys: this process's copy is set to the key's epoch before item `index` is read."
    def __init__(self, dataset: Dataset): self.dataset = dataset
    def __len__(self): return len(self.dataset)
    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        if hasattr(self.dataset, 'set_epoch') and getattr(self.dataset, 'epoch', None) != epoch: self.dataset.set_epoch(epoch)
        return self.dataset[i]

class EpochBatches(Sampler):
    "This rank's batches of (epoch, index) keys, from batch `start` of epoch `epoch` (set with `at`) to the epoch's end."
    def __init__(self, sampler: DistributedSampler, batch_size: int):
        self.sampler, self.batch_size, self.epoch, self.start = sampler, batch_size, 0, 0
    def at(self, epoch: int, start: int = 0) -> 'EpochBatches':
        self.epoch, self.start = epoch, start
        return self
    def __len__(self): return len(self.sampler) // self.batch_size - self.start
    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        order, n = list(self.sampler), self.batch_size
        for b in range(self.start, len(order) // n): yield [(self.epoch, i) for i in order[b * n:(b + 1) * n]]


# %%
shares = [DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0, drop_last=True) for r in range(2)]
for s in shares: s.set_epoch(1)
idx = [list(s) for s in shares]
assert not set(idx[0]) & set(idx[1]) and len(idx[0]) == len(idx[1]) == 20     # disjoint, equal, complete
keys = list(EpochBatches(shares[0], 8).at(epoch=1))
test_eq(len(keys), 2); test_eq(keys[0], [(1, i) for i in idx[0][:8]])
test_eq(list(EpochBatches(shares[0], 8).at(1, start=1)), keys[1:])               # resume mid-epoch


# %% [markdown]
# ## Streams: batched in the pipeline
#
# Web-scale pairs do not fit a map-style set: they come as tar shards that each process streams, split
# by rank and by worker (the readers appendix, [`ShardDataset`](05c_readers.ipynb)). A stream has no
# index to send, so each worker reads its own shards and groups its own samples into full batches, with
# the `webdataset` library's `batched` stage; only finished batches cross from a worker to the loop.
# Each worker drops its own short tail. With workers, a batch therefore holds the samples of one
# worker's shards (with none, of all this rank's shards in turn), so the number of workers is part of
# a streamed run's data order, and a resumed run keeps it (`--workers` is checked on resume for
# streams).

# %%
#| export
class StreamBatches(IterableDataset):
    "The full batches (collated by `collate`) of an iterable data set's good samples, grouped where the samples are made: in each worker."
    def __init__(self, dataset: IterableDataset, batch_size: int, collate):
        self.dataset, self.batch_size, self.collate = dataset, batch_size, collate
    def __iter__(self):
        good = (s for s in self.dataset if s is not None)                    # None: a bad sample (counted)
        return iter(wds.batched(self.batch_size, collation_fn=self.collate, partial=False)(good))


# %% [markdown]
# ## One class for the loop
#
# `TrainBatches` puts the two together behind one interface: `batches.epoch(e, start)` yields this
# rank's `(batch index, images, tokens)` of epoch `e` from batch `start` on. `workers=0` makes the
# batches in the training process, the simplest thing for debugging and on a CPU. How many workers by
# default: `default_workers` gives each process, on CUDA, one worker per CPU core it has beyond the one
# that drives the GPU, at most 8; on a CPU none, because the model's own matrix products already use
# every core and a worker would only compete with them (the book's emoji batches cost a few
# milliseconds against a step of a few hundred). A process's cores are the machine's divided among the
# run's processes *on that machine* (torchrun's `LOCAL_WORLD_SIZE`), not among all of them: eight GPUs
# on each of four machines leave each process an eighth of its machine, not a thirty-second.

# %%
#| export
def local_world_size(world: int = 1) -> int:
    "The run's processes on this machine: torchrun's LOCAL_WORLD_SIZE, else `world` (all of them)."
    return max(1, int(os.environ.get('LOCAL_WORLD_SIZE') or world))

def cores_per_process(world: int = 1) -> int:
    "This machine's CPU cores shared among the run's processes on this machine (not those of all machines), at least 1."
    return max(1, (os.cpu_count() or 1) // local_world_size(world))

def default_workers(device: torch.device | str = 'cpu', world: int = 1) -> int:
    "DataLoader workers per process when --workers is not given: CUDA, the process's cores less one (at most 8); CPU, none."
    if torch.device(device).type != 'cuda': return 0
    return max(1, min(8, cores_per_process(world) - 1))

class TrainBatches:
    "This rank's training batches, epoch by epoch: `epoch(e, start)` yields (batch index, images, tokens), made by `workers` DataLoader processes."
    def __init__(self, dataset, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0, workers: int = 0,
                 context_length: int = 77, pin_memory: bool = False, prefetch: int | None = None, limit: int | None = None,
                 cut: bool = True):
        self.dataset, self.batch_size, self.limit, self.collate = dataset, batch_size, limit, PairCollate(context_length, cut)
        self.streaming = isinstance(dataset, IterableDataset)
        self.kw = dict(num_workers=workers, pin_memory=pin_memory, **({'prefetch_factor': prefetch} if workers and prefetch else {}))
        if not self.streaming:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
            self.sampler = EpochBatches(sampler, batch_size)
            self.loader = DataLoader(EpochItems(dataset), batch_sampler=self.sampler, collate_fn=self.collate,
                                     persistent_workers=workers > 0, **self.kw)

    @property
    def per_epoch(self) -> int | None:
        "Batches per epoch: known for a map-style set; for a stream, `limit` (--train-num-samples) or None."
        return self.limit if self.streaming else len(self.sampler.sampler) // self.batch_size

    def epoch(self, epoch: int, start: int = 0):
        "Yield (batch index, images, tokens) of `epoch` for this rank, from batch `start` on; a stream's batches before `start` are read and dropped."
        if not self.streaming:
            self.sampler.at(epoch, start)                                   # read by the loader when it starts the epoch
            yield from ((b, *batch) for b, batch in enumerate(self.loader, start))
            return
        self.dataset.set_epoch(epoch)                                     # before the workers are made: they copy it
        loader = DataLoader(StreamBatches(self.dataset, self.batch_size, self.collate), batch_size=None, **self.kw)
        for b, batch in enumerate(loader):
            if self.limit is not None and b >= self.limit: return
            if b >= start: yield b, *batch


# %%
with mock.patch.dict(os.environ, {'LOCAL_WORLD_SIZE': '2', 'WORLD_SIZE': '8'}), mock.patch('os.cpu_count', return_value=16):
    test_eq(default_workers('cuda', world=8), 7)          # 2 processes on this machine of 16 cores, of 8 in all
    test_eq(cores_per_process(world=8), 8); test_eq(default_workers('cpu', world=8), 0)

# %% [markdown]
# The checks: the batches are the ones `collate` makes from the sampler's items, identical with two
# workers and with none, and a run that resumes at batch 1 gets batch 1.

# %%
pipe = TrainBatches(ds, 8, rank=0, world=2, seed=0, context_length=32)
got = list(pipe.epoch(1))
test_eq(pipe.per_epoch, 2); test_eq([b for b, *_ in got], [0, 1]); test_eq(got[0][1].shape, (8, 3, 48, 48))
ref = collate([ds[i] for i in idx[0][:8]], context_length=32)
assert torch.equal(got[0][1], ref[0]) and torch.equal(got[0][2], ref[1][:, :got[0][2].shape[1]])
two = list(TrainBatches(ds, 8, rank=0, world=2, seed=0, workers=2, context_length=32).epoch(1))
test_eq(len(two), len(got))
assert all(torch.equal(x[1], y[1]) and torch.equal(x[2], y[2]) for x, y in zip(two, got))   # workers change nothing
test_eq([b for b, *_ in pipe.epoch(1, start=1)], [1]); assert torch.equal(next(pipe.epoch(1, start=1))[1], got[1][1])


# %% [markdown]
# A stream with a bad sample in every seven gives full batches of its good ones, its short tail dropped:

# %%
class _Stream(IterableDataset):                      # a toy stream of n scenes with every 7th one bad (None)
    def __init__(self, n): self.ds, self.n = SceneDataset(n, seed=0, image_size=48, train=True), n
    def set_epoch(self, epoch): self.ds.set_epoch(epoch)
    def __iter__(self): return (self.ds[i] if i % 7 else None for i in range(self.n))
stream = TrainBatches(_Stream(40), 8, context_length=32)
got = list(stream.epoch(0))
test_eq([b for b, *_ in got], [0, 1, 2, 3]); test_eq(got[0][1].shape, (8, 3, 48, 48))    # 34 good: 4 full batches
test_eq([b for b, *_ in stream.epoch(0, start=2)], [2, 3])
test_eq(len(list(TrainBatches(_Stream(40), 8, context_length=32, limit=1).epoch(0))), 1)


# %% [markdown]
# ### Shards of unequal size
#
# Without `--dataset-resampled`, each rank reads whole shards, a different share every epoch, and the
# ranks agree before every step to go on only while every rank has a batch (the training chapter's
# loop). A rank whose shards of an epoch hold fewer samples than one batch therefore ends the epoch at
# once for everybody, and an epoch without a single step ends the run. When the shard sizes are known
# (`shard_sizes` of the readers appendix), `epoch_batches` counts the full batches each rank will get
# in an epoch (each worker drops its own short tail), and `uneven_shards` looks ahead over the epochs
# a run will need and says, before training, which epoch would leave which rank without a batch;
# `rank_shares` names each rank's shards when it happens.

# %%
#| export
def epoch_batches(sizes: dict[str, int], shares: list[list[str]], workers: int, batch_size: int) -> list[int]:
    "Full batches of `batch_size` each rank gets in an epoch where rank r reads shards `shares[r]` split among `workers` (all samples good)."
    w = max(1, workers)
    return [sum(sum(sizes[u] for u in share[k::w]) // batch_size for k in range(w)) for share in shares]

def rank_shares(dataset, world: int, sizes: dict[str, int] | None = None) -> str:
    "Each rank's shards of the dataset's current epoch, and their samples when `sizes` knows them: 'rank 0: 2 shards (100 samples), …'."
    parts = []
    for r in range(world):
        share = dataset.shards_for(r, world)
        n = f", {sum(sizes[u] for u in share):,} samples" if sizes else ''
        parts.append(f"rank {r}: {len(share)} shard{'s' * (len(share) != 1)}{n}")
    return '; '.join(parts)

def no_batch_reason(out, ds, epoch: int, empty: list[int], world: int, workers: int, local_bs: int,
              saved: int | None, skips) -> str:
    "Why epoch `epoch` gave ranks `empty` no full batch, and what to do: the message that stops a run whose data ran dry (run folder `out`)."
    shards = len(ds.shards) if hasattr(ds, 'shards_for') and not ds.resampled else 0
    why = ("too little data" if not shards else
           f"fewer shards ({shards}) than ranks × workers ({world} × {max(1, workers)})" if shards < world * max(1, workers) else
           f"its shards this epoch hold too few samples ({rank_shares(ds, world, shard_sizes(ds.shards))}), as shards of unequal size can")
    bad = f", or bad samples ({skips.report('training data')})" if skips is not None and skips.skipped else ''
    kept = f"the checkpoint of step {saved} in {out} is kept" if saved else "no checkpoint was written"
    who = f"rank {', '.join(map(str, empty))}" if empty else "a rank"         # none empty-handed: bad samples only there
    do = ". Use --dataset-resampled with --train-num-samples, more shards or shards of about equal size" if shards else ''
    return f"epoch {epoch} gave no full batch of {local_bs} to {who} of {world}: {why}{bad}; {kept}{do}"

def uneven_shards(dataset, world: int, workers: int, batch_size: int, steps: int, epoch: int = 0,
                  sizes: dict[str, int] | None = None, most_epochs: int = 1000) -> str | None:
    "A warning naming the first epoch (of those `steps` need) whose shards leave a rank without a full batch; None if none does or sizes are unknown."
    if not hasattr(dataset, 'shards_for') or dataset.resampled or not dataset.split: return None
    sizes = sizes or shard_sizes(dataset.shards)
    if sizes is None: return None
    was = dataset.epoch
    try:
        for e in range(epoch, epoch + most_epochs):
            dataset.set_epoch(e)
            got = epoch_batches(sizes, [dataset.shards_for(r, world) for r in range(world)], workers, batch_size)
            if min(got) == 0:
                return (f"the {len(sizes)} shards hold {min(sizes.values()):,} to {max(sizes.values()):,} samples, and epoch {e} "
                        f"would leave rank {got.index(0)} without a full batch of {batch_size} ({rank_shares(dataset, world, sizes)}"
                        f"{f', each split among {workers} workers' if workers > 1 else ''}): the run would stop there. Use "
                        f"--dataset-resampled with --train-num-samples, or shards of about equal size")
            steps -= min(got)
            if steps <= 0: return None
    finally: dataset.set_epoch(was)
    return None


# %% [markdown]
# Three shards of 50, 50 and 7 samples on two ranks with batches of 8: an epoch that deals one rank
# only the shard of 7 has no full batch for it.

# %%
class _Shards:                                           # what uneven_shards needs of a ShardDataset, without files
    resampled, split, epoch = False, True, 0
    def __init__(self, shards, order): self.shards, self.order = shards, order
    def set_epoch(self, e): self.epoch = e
    def shards_for(self, rank, world): return self.order[self.epoch % len(self.order)][rank::world]
sizes = {'a': 50, 'b': 50, 'c': 7}
test_eq(epoch_batches(sizes, [['a', 'b'], ['c']], workers=0, batch_size=8), [12, 0])
test_eq(epoch_batches(sizes, [['a', 'c'], ['b']], workers=2, batch_size=8), [6, 6])   # each worker drops its own tail
plan = _Shards(list(sizes), [['a', 'b', 'c'], ['a', 'c', 'b']])             # rank 1 gets b, then c alone
test_eq(uneven_shards(plan, world=2, workers=0, batch_size=8, steps=6, sizes=sizes), None)   # epoch 0 is enough
warning = uneven_shards(plan, world=2, workers=0, batch_size=8, steps=100, sizes=sizes)
assert warning.startswith('the 3 shards hold 7 to 50 samples, and epoch 1 would leave rank 1 without a full batch of 8 '
                          '(rank 0: 2 shards, 100 samples; rank 1: 1 shard, 7 samples)'), warning
test_eq(plan.epoch, 0)                                                          # the data set is left at its epoch


# %% [markdown]
# ## Which data: `make_datasets`
#
# The training loop gets its pairs from `make_datasets`: your pairs when `cfg.train_data` names a CSV
# file or shards (read by `open_data` of [the readers appendix](05c_readers.ipynb)), else the emoji set
# or scenes, as `cfg.data` says. `describe_data` records what a run trained and was measured on, for
# its report, results and model card.

# %%
#| export
def make_datasets(cfg, image_size: int):
    "(training set with augmentation, held-out set with plain captions or None) for `cfg.train_data`/`val_data`, else `cfg.data`."
    if cfg.train_data:
        kw = dict(dataset_type=cfg.dataset_type, image_size=image_size, seed=cfg.seed, zoom=tuple(cfg.zoom), csv_img_key=cfg.csv_img_key,
                  csv_caption_key=cfg.csv_caption_key, csv_separator=cfg.csv_separator)
        return (open_data(cfg.train_data, train=True, resampled=cfg.dataset_resampled, **kw),
                open_data(cfg.val_data, train=False, split=False, **kw) if cfg.val_data else None)
    if cfg.data == 'emoji':
        return (EmojiDataset('train', image_size=image_size, train=True, templates=cfg.templates, seed=cfg.seed, zoom=tuple(cfg.zoom)),
                EmojiDataset('test', image_size=image_size, train=False, seed=cfg.seed))
    if cfg.data == 'scenes':
        return (SceneDataset(cfg.n_scenes, seed=cfg.seed, image_size=image_size, train=True),
                SceneDataset(cfg.n_scenes // 4, seed=cfg.seed + 1_000_003, image_size=image_size, train=False))
    raise ValueError(f"--data {cfg.data!r}: the built-in sets are 'emoji' and 'scenes'; "
                     f"for your own pairs use --train-data (a CSV/TSV file or tar shards)")

def data_size(dataset) -> int | None:
    "Items of a map-style data set; None for a stream, whose size nobody knows before reading it."
    return None if isinstance(dataset, IterableDataset) else len(dataset)

def describe_data(cfg, train_ds, test_ds, given: bool = False) -> dict:
    "What a run trained and was measured on (source, counts, skips), for its report, results and model card."
    builtin = {'emoji': ('the emoji set (OpenMoji drawings named by Unicode)', 'the emoji test split'),
               'scenes': ('procedural scenes', 'held-out procedural scenes')}
    if cfg.train_data: source, held = cfg.train_data, cfg.val_data
    elif given: source, held = f"{type(train_ds).__name__} given to train()", test_ds and f"{type(test_ds).__name__} given to train()"
    else: source, held = builtin[cfg.data]
    d = dict(source=source, held_out=held, train_items=data_size(train_ds),
             held_out_items=None if test_ds is None else data_size(test_ds))
    if isinstance(train_ds, IterableDataset) and hasattr(train_ds, 'skips'): d['samples_read'] = train_ds.skips.good
    for name, ds in (('train_skipped', train_ds), ('held_out_skipped', test_ds)):
        if getattr(ds, 'skips', None) is not None and ds.skips.skipped: d[name] = ds.skips.counts
    if cfg.pretrained: d['pretrained'] = cfg.pretrained
    return d

# %% [markdown]
# How fast the pipeline delivers pictures, from a CSV of JPEGs and from shards, with 0, 1 and 2
# workers, against open_clip's own data loader on the same files, is measured in
# [the input-pipeline appendix](99c_loader_bench.ipynb).
