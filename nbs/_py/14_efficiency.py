# %% [markdown]
# # Efficiency
#
# > What a training step costs on the machine at hand: throughput and memory against batch size, float32 against bfloat16 and float16 autocast, `torch.compile`, and the seeds' efficiency table (epoch time, memory, peak throughput) redone for this hardware.

# %%
#| default_exp efficiency

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import json, os, re, statistics, subprocess, sys, tempfile, time
from dataclasses import asdict
from pathlib import Path
import torch
from clip_annotated.core import autocast, get_device, markdown_table
from clip_annotated.data import EmojiDataset, collate
from clip_annotated.model import CONFIGS, CLIPConfig, create_model
from clip_annotated.train import TrainConfig, Towers, forward_backward, make_optimizer, make_scheduler, optimizer_step
from clip_annotated.run import runs_dir

# %%
#| hide
import matplotlib.pyplot as plt
from dataclasses import replace
from IPython.display import Markdown, display
from fastcore.test import test_eq, test_fail
from clip_annotated.core import footer, hardware, in_test, pick
from clip_annotated.train import PRESETS

# %% [markdown]
# > "The largest ResNet model, RN50x64, took 18 days to train on 592 V100 GPUs while the largest Vision
# > Transformer took 12 days on 256 V100 GPUs." (Radford et al. 2021, §2.5)
#
# CLIP's results were bought with compute, and the paper spends a paragraph on how it saved some
# (§2.5; [the training chapter](06_train.ipynb) quotes its first sentence): mixed precision, gradient checkpointing, half-precision optimiser statistics. Whether a trick pays
# depends on the hardware: bfloat16 halves the bytes everywhere, but only runs faster where there are
# units that multiply bfloat16 (recent GPUs, CPUs with AMX or AVX-512 BF16); `torch.compile` fuses the
# small element-wise operations between matrix products, which matters most where those operations,
# not the products, take the time. So this chapter measures rather than assumes. At the end you can
# time a training step of any configuration at any batch size and precision, with and without
# compilation, read its memory, and turn that into the epoch time of a data set.
#
# Every figure below was measured by the cells of this chapter on the machine named in its footer.
# With a GPU the same cells pick GPU settings (larger batches, ViT-B/32, float16 as well).
# <!-- Under nbdev_test they shrink to a few tiny steps that prove the machinery. -->
#
# ## One training step, measured
#
# What we time is the whole step of the training chapter: both encoders forward, the contrastive loss,
# backward, AdamW's update and the scheduler (`forward_backward` and `optimizer_step`), on a batch of
# real emoji pictures and their captions, so that the text encoder sees captions of realistic length.
# (The text encoder stops at the batch's last end-of-text token, so random 77-token inputs would time
# a different, slower model.) The first steps are warm-up and not timed: they allocate AdamW's moments
# and, with `torch.compile`, compile. Then we take the median of `steps` timed steps.
#
# Memory is the extra memory the steps need beyond the model, its optimiser and the batch: activations
# kept for backward, gradients, AdamW's two moments. On a GPU that is `torch.cuda.max_memory_allocated`
# after resetting it. On a CPU PyTorch keeps no such count, so we read the kernel's: the resident-memory
# high-water mark (Linux `VmHWM`, reset through `/proc/self/clear_refs`) minus the resident memory
# before the first step. That only works if nothing else ran in the process before, which is why on a
# CPU each measurement runs in a fresh Python process (`measure`).

# %%
#| exports
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

def emoji_batch(config: CLIPConfig, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "(images, tokens) of `batch_size` training emoji at the model's resolution, as the training loop sees them."
    ds = EmojiDataset('train', image_size=config.image_resolution, train=True, seed=seed)
    return collate([ds[i % len(ds)] for i in range(batch_size)], context_length=config.context_length)

def _kib(key: str) -> int:
    "A field of /proc/self/status in KiB (VmRSS, VmHWM)."
    with open('/proc/self/status') as f: return int(re.search(key + r':\s+(\d+)', f.read()).group(1))

def _reset_cpu_peak() -> int | None:
    "Reset the kernel's resident high-water mark and return the resident memory now (KiB); None where Linux's /proc is missing."
    try:
        base = _kib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return base
    except OSError: return None


# %%
#| exports
def time_steps(model: str | CLIPConfig = 'MiniCLIP', batch_size: int = 128, precision: str = 'fp32',
               compile: bool = False, steps: int = 5, warmup: int = 2, device: str | None = None,
               seed: int = 0) -> dict:
    "Time `steps` training steps (after `warmup` untimed ones) of CLIP `model` in this process; with memory the steps need."
    config = CONFIGS[model] if isinstance(model, str) else model
    if precision not in PRECISIONS: raise ValueError(f"precision {precision!r}: choose one of {list(PRECISIONS)}")
    dev = get_device(device)
    cuda = dev.type == 'cuda'
    torch.manual_seed(seed)
    net = create_model(config).to(dev).train()
    cfg = TrainConfig(lr=1e-4, warmup=1, steps=10**6)
    opt = make_optimizer(net, cfg); sched = make_scheduler(opt, cfg)
    towers = torch.compile(Towers(net)) if compile else Towers(net)
    images, texts = (x.to(dev) for x in emoji_batch(config, batch_size, seed))
    dtype = PRECISIONS[precision]
    amp = autocast(dev, dtype)
    scaler = torch.amp.GradScaler('cuda') if cuda and dtype is torch.float16 else None
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    def step():
        forward_backward(towers, images, texts, amp=amp, scaler=scaler)
        optimizer_step(net, opt, sched, scaler=scaler)
    if cuda: torch.cuda.reset_peak_memory_stats(dev); base = torch.cuda.memory_allocated(dev)
    else: base = _reset_cpu_peak()
    times = []
    for i in range(warmup + steps):
        sync(); t = time.perf_counter(); step(); sync()
        times.append(time.perf_counter() - t)
    if cuda: mib = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else: mib = None if base is None else (_kib('VmHWM') - base) / 1024
    step_s = statistics.median(times[warmup:])
    return dict(model=model if isinstance(model, str) else 'custom', batch_size=batch_size, precision=precision,
                compile=compile, device=str(dev), threads=torch.get_num_threads(), step_s=step_s,
                first_step_s=times[0], pairs_per_s=batch_size / step_s, memory_mib=mib)


# %% [markdown]
# A tiny check that the machinery runs and returns sane numbers: a one-layer MiniCLIP, two steps.

# %%
tiny = replace(CONFIGS['MiniCLIP'], vision_layers=1, transformer_layers=1)
r = time_steps(tiny, batch_size=4, steps=2, warmup=1, device='cpu')
assert r['step_s'] > 0 and r['pairs_per_s'] == 4 / r['step_s'] and (r['memory_mib'] is None or r['memory_mib'] >= 0)
test_fail(lambda: time_steps(tiny, batch_size=4, precision='fp8'), contains="precision 'fp8'")
print(f"{r['step_s'] * 1000:.1f} ms a step, {r['pairs_per_s']:.0f} pairs/s, peak memory {r['memory_mib'] if r['memory_mib'] is None else round(r['memory_mib'], 1)} MiB")


# %% [markdown]
# On a CPU, `measure` runs `time_steps` in a fresh Python process, so that memory peaks, allocator
# caches and compiled graphs of one measurement never leak into the next (Inductor's on-disk cache is
# pointed at an empty folder, so a compilation is always timed cold); on a GPU it runs in this
# process (the GPU's counters can be reset). A failure in the child is raised here with its message.

# %%
#| exports
def measure(model: str | CLIPConfig = 'MiniCLIP', batch_size: int = 128, precision: str = 'fp32',
            compile: bool = False, steps: int = 5, warmup: int = 2, device: str | None = None,
            isolate: bool | None = None) -> dict:
    "`time_steps` with these settings; in a fresh process where `isolate` (default: on a CPU)."
    kw = dict(model=model if isinstance(model, str) else asdict(model), batch_size=batch_size, precision=precision,
              compile=compile, steps=steps, warmup=warmup, device=device)
    if isolate is None: isolate = get_device(device).type != 'cuda'
    if not isolate:
        return time_steps(**{**kw, 'model': model})
    code = ("import json, sys; from clip_annotated.efficiency import _child; _child(json.loads(sys.argv[1]))")
    with tempfile.TemporaryDirectory() as cache:      # a cold compile: Inductor's on-disk cache would hide its cost
        env = {**os.environ, 'TORCHINDUCTOR_CACHE_DIR': cache}
        r = subprocess.run([sys.executable, '-c', code, json.dumps(kw)], capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(f"measure({kw}) failed in its process:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def _child(kw: dict):
    "Entry point of `measure`'s fresh process: run time_steps and print its result as the last line of JSON."
    import warnings; warnings.filterwarnings('ignore')
    torch.set_num_threads(torch.get_num_threads())
    if isinstance(kw['model'], dict): kw['model'] = CLIPConfig(**kw['model'])
    print(json.dumps(time_steps(**kw)))


# %%
r = measure(tiny, batch_size=4, steps=2, warmup=1, device='cpu')
assert r['memory_mib'] is not None and r['memory_mib'] > 0, r      # the fresh process sees its own peak
test_fail(lambda: measure(tiny, batch_size=0, steps=1, warmup=0), contains="failed in its process")
print(f"{r['step_s'] * 1000:.1f} ms a step, {r['pairs_per_s']:.0f} pairs/s, peak memory {r['memory_mib'] if r['memory_mib'] is None else round(r['memory_mib'], 1)} MiB")

# %% [markdown]
# ## Throughput and memory against batch size
#
# The book's MiniCLIP as `make reproduce` trains it (the `mini-cpu` preset: 48-pixel pictures in
# 12-pixel patches). A larger batch gives the matrix products more rows to share the cost of reading
# the weights, so pairs per second rise until the machine is saturated; the memory of activations
# grows in proportion to the batch, while that of the gradients and AdamW's moments does not.
# The contrastive loss adds an $N \times N$ similarity matrix, which stays small at these sizes.

# %%
book = PRESETS['mini-cpu'].clip_config()
on_gpu = get_device().type == 'cuda'
sizes = pick(gpu=[32, 64, 128, 256, 512, 1024, 2048], cpu=[8, 16, 32, 64, 128, 256, 512], test=[4, 8])
model_for_sweep = book if not in_test() else tiny
sweep_steps = pick(gpu=20, cpu=8, test=1)
sweep = [measure(model_for_sweep, b, steps=sweep_steps, warmup=pick(gpu=3, cpu=2, test=1)) for b in sizes]
for r in sweep:
    print(f"batch {r['batch_size']:5}   {r['step_s']*1e3:8.1f} ms/step   {r['pairs_per_s']:8.0f} pairs/s   "
          f"memory of the steps {r['memory_mib']:7.0f} MiB")

# %%
#| fig-cap: "Training-step throughput (left) and the memory the steps need (right) against batch size, for the book's MiniCLIP on this machine."
#| fig-alt: "Two line plots with batch size on a logarithmic x axis. Left: image-text pairs per second rise with the batch and then level off. Right: memory in MiB on a logarithmic axis, flat for small batches and then growing in proportion to the batch size."
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
bs = [r['batch_size'] for r in sweep]
a1.plot(bs, [r['pairs_per_s'] for r in sweep], 'o-')
a2.plot(bs, [r['memory_mib'] for r in sweep], 'o-', color='C1')
for ax, label in ((a1, 'pairs per second'), (a2, 'memory of the steps (MiB)')):
    ax.set_xscale('log', base=2); ax.set_xticks(bs, [str(b) for b in bs]); ax.set(xlabel='batch size', ylabel=label)
    ax.grid(alpha=0.3)
a2.set_yscale('log', base=2)      # memory ∝ batch shows as a straight line of slope 1 once activations dominate
fig.suptitle(f"MiniCLIP (mini-cpu) training step, float32, {hardware()}", fontsize=10)
fig.tight_layout(); plt.show()

# %%
best = max(sweep, key=lambda r: r['pairs_per_s'])
grow = (sweep[-1]['memory_mib'] - sweep[0]['memory_mib']) / (sweep[-1]['batch_size'] - sweep[0]['batch_size'])
print(f"peak throughput {best['pairs_per_s']:.0f} pairs/s at batch {best['batch_size']}; "
      f"from batch {sweep[0]['batch_size']} to {sweep[-1]['batch_size']}: throughput x{sweep[-1]['pairs_per_s'] / sweep[0]['pairs_per_s']:.2f}, "
      f"memory x{sweep[-1]['memory_mib'] / sweep[0]['memory_mib']:.1f} ({grow * 1024:.0f} KiB per extra pair)")
if not in_test(): assert sweep[-1]['memory_mib'] > sweep[0]['memory_mib']     # activations grow with the batch


# %% [markdown]
# ## Precision: float32, bfloat16 and float16 autocast
#
# Under `torch.autocast` the matrix products and convolutions run in the lower precision while the
# weights, the loss and AdamW's statistics stay float32 (see the training chapter). On a GPU with tensor
# cores that is the paper's speed-up; float16 also needs the `GradScaler`, which `time_steps` uses. On
# a CPU the answer depends on the instruction set: the name of this machine's CPU in the footer says
# which vector units it has, and the measurement below says what they make of half precision. (The
# training loop refuses float16 on a CPU; here we time it anyway, without a scaler, to show why.)

# %%
#| exports
def bf16_instructions() -> list[str]:
    "The CPU's bfloat16 instruction sets named in /proc/cpuinfo (AVX-512 BF16, AMX BF16); empty where none or no such file."
    try: info = Path('/proc/cpuinfo').read_text()
    except OSError: return []
    flags = next((l.split(':', 1)[1].split() for l in info.splitlines() if l.startswith('flags')), [])
    return [f for f in ('avx512_bf16', 'amx_bf16') if f in flags]

def bf16_reading(by_precision: list[dict]) -> str:
    "One sentence: how fast bfloat16 ran against float32 in `by_precision`, beside the bfloat16 instructions this machine has."
    fp32 = next(r for r in by_precision if r['precision'] == 'fp32')
    bf16 = next((r for r in by_precision if r['precision'] == 'bf16'), None)
    if bf16 is None: return "bfloat16 was not measured here."
    speed = fp32['step_s'] / bf16['step_s']
    where = (f"on {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else
             f"on this CPU, which has bfloat16 instructions ({', '.join(bf16_instructions())})" if bf16_instructions() else
             "on this CPU, which has no bfloat16 instructions")
    return (f"bfloat16 ran at {speed:.2f}x the speed of float32 {where}: " +
            ("faster, so here half precision pays in time as well as memory." if speed > 1 else
             "not faster, so here half precision pays in memory only."))


# %%
slow_bf16 = [dict(precision='fp32', step_s=1.0), dict(precision='bf16', step_s=2.0)]
assert bf16_reading(slow_bf16).startswith('bfloat16 ran at 0.50x') and 'memory only' in bf16_reading(slow_bf16)
assert 'in time as well' in bf16_reading([dict(precision='fp32', step_s=1.0), dict(precision='bf16', step_s=0.5)])

# %%
prec_batch = pick(gpu=256, cpu=128, test=4)
prec_model = model_for_sweep
precisions = pick(gpu=['fp32', 'bf16', 'fp16'], cpu=['fp32', 'bf16', 'fp16'], test=['fp32', 'bf16'])
by_precision = [measure(prec_model, prec_batch, precision=p, warmup=1,
                        steps=pick(gpu=20, cpu=8 if p == 'fp32' else 3, test=1)) for p in precisions]
fp32, compiled = by_precision[0], None          # `compiled` is measured by the next (slow) cell
rows = ['| precision | ms per step | pairs/s | vs float32 | memory of the steps (MiB) |', '|---|---:|---:|---:|---:|']
for r in by_precision:
    rows.append(f"| {r['precision']} | {r['step_s']*1e3:.0f} | {r['pairs_per_s']:.0f} | "
                f"{fp32['step_s'] / r['step_s']:.2f}x | {r['memory_mib']:.0f} |")
display(Markdown('\n'.join(rows)))
again = next((r for r in sweep if r['batch_size'] == prec_batch), None)
if again: print(f"the same float32 setting, measured twice in this run: {again['pairs_per_s']:.0f} pairs/s in the sweep, "
                f"{fp32['pairs_per_s']:.0f} here ({abs(fp32['pairs_per_s'] / again['pairs_per_s'] - 1):.0%} apart)")
slowest = min(by_precision, key=lambda r: fp32['step_s'] / r['step_s'])
print(f"fastest: {max(by_precision, key=lambda r: r['pairs_per_s'])['precision']}; slowest: {slowest['precision']}, "
      f"{slowest['step_s'] / fp32['step_s']:.1f}x the time of float32 for {slowest['memory_mib'] / fp32['memory_mib']:.2f}x its memory")
print(bf16_reading(by_precision))

# %% [markdown]
# The first line printed above is a measure of the noise: on a shared machine two measurements of the
# same setting differ, so read the sweep's shape (a rise, then a plateau), not the zigzag of single
# points. Half precision always saves memory: the activations kept for backward are half the size. Whether it
# saves time is the hardware's answer, and the last line above gives this machine's. A CPU without
# bfloat16 instructions (AVX2, or AVX-512 without its BF16 extension) has no instruction that multiplies
# bfloat16 or float16: each product is converted to float32 and back, and the kernels for it are far
# slower than the tuned float32 ones. A CPU with AVX-512 BF16 or AMX can multiply bfloat16 directly,
# but having the instructions does not make a given model's step faster: the line above says whether
# it did here, for this model at this batch. On a GPU with tensor cores half precision is the fast path. That
# is why the training chapter's `precision='auto'` means float32 on a CPU and bfloat16 or float16 on
# a GPU.
#
# ## `torch.compile`
#
# `torch.compile` traces the model's forward (and, through AOTAutograd, its backward) into graphs and
# has Inductor generate fused kernels for them: C++ with OpenMP on a CPU, Triton on a GPU. The text
# encoder cuts its sequence at the batch's last end-of-text token, a length read from the data, so
# the graph breaks there and each new length can recompile (after the second, Dynamo marks it dynamic).
# Compilation is paid once, in the first step, which we report separately.
# <!-- Compiling makes this cell slow, so nbdev_test skips it (a slow cell). -->

# %%
#| slow
compiled = measure(prec_model, prec_batch, compile=True, steps=pick(gpu=20, cpu=8), warmup=2)
eager = measure(prec_model, prec_batch, steps=pick(gpu=20, cpu=8), warmup=2)
print(f"eager    {eager['step_s']*1e3:7.1f} ms/step, memory {eager['memory_mib']:.0f} MiB")
print(f"compiled {compiled['step_s']*1e3:7.1f} ms/step, memory {compiled['memory_mib']:.0f} MiB "
      f"(first step, with compilation: {compiled['first_step_s']:.0f} s); speed-up {eager['step_s'] / compiled['step_s']:.2f}x")
saved = eager['step_s'] - compiled['step_s']
print(f"compilation pays for itself after {compiled['first_step_s'] / saved:.0f} steps" if saved > 0 else
      "compilation does not pay here: the compiled step is not faster")

# %% [markdown]
# The book's training loop stays eager: set the break-even point printed above against the length of
# the book's run (1,000 steps), add the recompiles that new caption lengths can cause, and remember
# that eager code is the code a reader can step through. On a GPU, where the element-wise work between the matrix
# products is a larger share of the step, the same cell is the place to find out whether it pays.
# <!-- fixed: 1,000 -->

# %% [markdown]
# ## The efficiency table, for this machine
#
# Efficiency tables for CLIP (epoch time, memory, peak throughput) are usually given for GPUs that are
# not here. This is such a table, measured on this machine: for each model, the best batch of the sweep
# (or a batch that fits), its throughput, the memory of its steps, and the time of one epoch of the
# emoji training set (its size is in the last column's heading) at that throughput. ViT-B/32 is the
# paper's smallest Vision Transformer at 224 pixels; on a CPU only a small batch of it is timed, with
# few steps.

# %%
n_train = len(EmojiDataset('train', image_size=8 if in_test() else book.image_resolution, train=True))
vit = 'ViT-B/32' if not in_test() else replace(CONFIGS['ViT-B/32'], vision_layers=1, transformer_layers=1,
                                                image_resolution=64, vision_width=64, transformer_width=64, embed_dim=32)
vit_batch = pick(gpu=256, cpu=32, test=2)
vit_r = measure(vit, vit_batch, precision=pick(gpu='bf16', cpu='fp32'), steps=pick(gpu=10, cpu=2, test=1), warmup=1)
table = [('MiniCLIP (mini-cpu)', best)] + ([('MiniCLIP, compiled', compiled)] if compiled else []) + [('ViT-B/32', vit_r)]
rows = [f'| model | precision | batch | pairs/s | memory of the steps | epoch of {n_train:,} pairs |', '|---|---|---:|---:|---:|---:|']
for name, r in table:
    rows.append(f"| {name} | {r['precision']} | {r['batch_size']} | {r['pairs_per_s']:,.0f} | {r['memory_mib']:,.0f} MiB | "
                f"{n_train / r['pairs_per_s']:,.1f} s |")
display(Markdown('\n'.join(rows) + f"\n\nMeasured on {hardware()}, {torch.get_num_threads()} threads, torch {torch.__version__}."))

# %% [markdown]
# The table's epoch time counts only the steps. The book's real run also renders and augments the
# pictures, evaluates on the held-out set every 250 steps and writes checkpoints; its own summary says
# what an epoch cost in practice, read here from `runs/mini` when that run exists:

# %%
summary = runs_dir() / 'mini' / 'results.json'
if summary.exists() and not in_test():
    s = json.loads(summary.read_text())
    per_epoch = s['train_wall_s'] / (s['steps'] / s['steps_per_epoch'])
    print(f"runs/mini: {s['steps']} steps of {PRESETS['mini-cpu'].batch_size}, {s['train_wall_s']:.0f} s of training, "
          f"{per_epoch:.1f} s per epoch in practice against {n_train / best['pairs_per_s']:.1f} s of steps at the sweep's best batch")
else: print("no runs/mini/results.json here: run `make reproduce` to compare with a real run")

# %% [markdown]
# ## On a GPU
#
# Everything above was measured on the machine in the footer. The same questions on a GPU (pictures per
# second and peak memory of a ViT-B/32 training step in bfloat16 at batch `256` and at the largest batch
# that fits, the share of the chip's peak it reaches, with and without `torch.compile`, ours beside
# open_clip; the same for zero-shot encoding; and a short run of the `vit-b32-gpu` preset, killed and
# resumed) are answered by `make gpu-check`, the [GPU check](99a_gpucheck.ipynb) appendix, which writes
# `runs/gpu-check/gpu_check.json`. `gpu_check_results` reads that file, but only when it was measured on
# CUDA at full size (on a CPU the check runs with tiny sizes that prove the machinery and measure
# nothing); `gpu_check_table` turns it into a table with the hardware named.

# %%
#| exports
GPU_CHECK = 'gpu-check/gpu_check.json'    # where `make gpu-check` writes, under runs_dir()

def gpu_check_results(path: str | os.PathLike | None = None) -> dict | None:
    "The results of `make gpu-check` (default runs/gpu-check/gpu_check.json), or None when missing or not measured on CUDA at full size."
    path = Path(path) if path is not None else runs_dir() / GPU_CHECK
    if not path.is_file(): return None
    res = json.loads(path.read_text())
    return res if res.get('cuda') and res.get('sizes') == 'full' else None

def _num(x, spec: str) -> str: return '–' if x is None else format(x, spec)

def gpu_check_table(res: dict) -> str:
    "Markdown: a gpu-check result's throughput rows (per task, code, batch and compilation), its training run, and the machine."
    parts, rows = res.get('parts', {}), []
    for part, task in (('train_bench', 'training step'), ('eval_bench', 'zero-shot encoding')):
        for r in parts.get(part, {}).get('records', []):
            if 'items_s' in r:
                rows.append((task, r['side'], r['batch_size'], 'yes' if r['compile'] else 'no', _num(r['items_s'], ',.0f'),
                             _num(r.get('peak_mib'), ',.0f'), _num(r.get('mfu'), '.1%')))
    head = ['task', 'code', 'batch', 'torch.compile', 'pictures/s', 'peak memory (MiB)', 'MFU']
    text = markdown_table(head, rows, align='llrlrrr') if rows else 'No throughput was measured.\n'
    run = {r.get('run'): r for r in parts.get('train_run', {}).get('records', [])}
    if 'uninterrupted' in run:
        u, c = run['uninterrupted'], run.get('compare', {})
        text += (f"\nThe `{u['preset']}` preset, {u['steps']} steps of {u['batch_size']}: {_num(u['steps_per_s'], '.2f')} steps/s, "
                 f"waiting for data {_num(u.get('data_wait_share'), '.1%')} of the loop; killed and resumed: "
                 + ('the same checkpoint, tensor for tensor.' if c.get('identical') else
                    f"{c.get('differing', '?')} of {c.get('tensors', '?')} tensors differ." if c else 'not measured.') + '\n')
    return text + (f"\nMeasured by `make gpu-check` on {res['hardware']}, {res['precision']}, torch {res['torch']}"
                   f"{'' if res.get('cuda') else ', without CUDA'}.\n")


# %%
gpu = gpu_check_results()
if gpu: display(Markdown(gpu_check_table(gpu)))
else: print("No GPU figures have been measured yet: `make gpu-check` on a machine with CUDA writes them to runs/gpu-check/gpu_check.json.")

# %% [markdown]
# ## What we measured
#
# Printed above, on the machine named below: the step time, throughput and memory of the book's
# MiniCLIP at each batch size; float32 against bfloat16 and float16 autocast at one batch size; the
# step with and without `torch.compile` and the one-off cost of compiling it; the efficiency table
# with the epoch time of the emoji set for MiniCLIP and ViT-B/32; and the GPU check's figures, where
# `make gpu-check` has measured them on a GPU.

# %%
_ = footer()
