# %% [markdown]
# # The GPU check
#
# > `make gpu-check`: the tests with a CUDA path, our training step and zero-shot encoding against open_clip's in bfloat16, and a short run of the `vit-b32-gpu` preset killed and resumed, in one command with a deadline; tiny sizes where there is no GPU.

# %%
#| default_exp gpucheck

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import argparse, gc, json, os, platform, re, shutil, signal, statistics, subprocess, sys, time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import torch
import clip_annotated
from clip_annotated.core import CommandError, autocast, get_device, hardware, markdown_table, one_line, run_command, wants_debug
from clip_annotated.tokenizer import tokenize
from clip_annotated.model import CONFIGS, CLIPConfig, create_model
from clip_annotated.runfolder import read_metrics
from clip_annotated.train import resolve_precision
from clip_annotated.run import in_ipython, parse_args, runs_dir
from clip_annotated.efficiency import GPU_CHECK, gpu_check_table
from clip_annotated.objectives import clip_forward_flops, training_flops
from clip_annotated.bench import check_train_step, make_captions, open_clip_twin, train_sides

# %%
#| hide
import tempfile
from IPython.display import Markdown, display
from fastcore.test import test_eq
from clip_annotated.core import footer
from clip_annotated.efficiency import gpu_check_results

# %% [markdown]
# The book's figures come from a CPU. When a GPU is lent for a few minutes, one command should measure
# what the chapters can then show, and it must finish inside the loan. `make gpu-check` (or
# `python -m clip_annotated.gpucheck`) runs five parts, each in its own process group, each with a
# time limit, all under one overall `--deadline`; a part that runs out is killed with everything it
# started, and what it had measured by then is kept:
#
# 1. `pytest`: the tests with a CUDA path, marked `cuda` (`pytest -m cuda`);
# 2. `nbdev`: `nbdev_test` of the chapters whose settings depend on the device (those that call `pick`);
# 3. `train_bench`: one training step, ours against open_clip's (the [benchmark](99_bench.ipynb)
#    chapter's `train_sides`), bfloat16 autocast, ViT-B/32 at batch `256` and at the largest batch that
#    fits, `torch.compile` off and on: pictures per second, peak memory, and MFU;
# 4. `eval_bench`: the same for zero-shot encoding (a batch of pictures and a batch of captions);
# 5. `train_run`: the `vit-b32-gpu` preset for a few hundred steps through `clip-annotated train`: steps
#    per second and the share of the loop spent waiting for data; then the same run killed with SIGKILL
#    after its first checkpoint and resumed, whose final checkpoint must equal the uninterrupted one.
#
# Everything goes to one JSON file and a markdown summary in `runs/gpu-check/`, with the hardware and
# whether CUDA was used. The [efficiency](14_efficiency.ipynb) and benchmark chapters show that file's
# figures when it was measured on CUDA. Without a GPU the same script runs end to end with tiny sizes,
# in well under two minutes, and says so: that is how `make test` keeps it from rotting.
#
# ## The chip's peak, and sizes
#
# MFU (model FLOPs utilisation) is the FLOPs a step needs divided by its time and by the chip's dense
# bfloat16 peak. The FLOPs come from the scaling chapter's counter (`training_flops`: three forward
# passes' worth per pair; `clip_forward_flops` for encoding), counted for the captions up to their
# last end-of-text token, what our text tower computes; open_clip runs all `77` positions, so its extra
# work counts as waste. The peaks are the datasheets'; an unknown chip gets no MFU.

# %%
#| exports
PEAK_BF16_TFLOPS = (('H100 PCIe', 756), ('H100 NVL', 835), ('H100', 989), ('H200', 989), ('A100', 312))  # dense, first match wins

def peak_flops(device_name: str | None) -> float | None:
    "The dense bfloat16 peak (FLOP/s) of a GPU named `device_name` (as `torch.cuda.get_device_name` says it); None when unknown."
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if device_name and key in device_name), None)

TINY_VIT = dict(vision_layers=1, transformer_layers=1, image_resolution=32, vision_width=64, vision_patch_size=16,
                transformer_width=64, transformer_heads=1, embed_dim=32)

@dataclass
class Sizes:
    "How much each part does: `SIZES['full']` on a GPU, `SIZES['tiny']` to prove the machinery anywhere in seconds."
    model: str = 'ViT-B/32'                 # the benchmarked architecture, a name in CONFIGS ...
    overrides: dict = field(default_factory=dict)   # ... with these CLIPConfig fields replaced
    batch: int = 256                        # the batch both sides are timed at
    max_batch: int = 8192                   # the search for the largest batch that fits doubles up to here
    steps: int = 10                         # timed steps (their median), after `warmup` untimed ones
    warmup: int = 3
    compile: tuple = (False, True)          # torch.compile off, on
    run_steps: int = 200                    # the preset's run: steps, checkpoint interval, and how many steps
    run_ckpt_every: int = 100               # past its first checkpoint the second run is killed
    run_kill_after: int = 20
    run_args: tuple = ()                    # further `clip-annotated train` options
    run_tests: bool = True                  # run the selected tests and chapters (False: only list them)

    def clip_config(self) -> CLIPConfig: return replace(CONFIGS[self.model], **self.overrides)

SIZES = {'full': Sizes(),
         'tiny': Sizes(overrides=TINY_VIT, batch=4, max_batch=16, steps=2, warmup=1, compile=(False,), run_steps=16,
                       run_ckpt_every=4, run_kill_after=0, run_tests=False,
                       run_args=('--batch-size', '8', '--warmup', '2', '--threads', '1', '--model-overrides', json.dumps(TINY_VIT)))}
PARTS = {'pytest': 60, 'nbdev': 60, 'train_bench': 170, 'eval_bench': 70, 'train_run': 170}   # each part's time limit (s)

# %%
test_eq(peak_flops('NVIDIA H100 80GB HBM3'), 989e12)
test_eq(peak_flops('NVIDIA H100 PCIe'), 756e12)
test_eq(peak_flops('NVIDIA A100-SXM4-80GB'), 312e12)
test_eq([peak_flops('Tesla T4'), peak_flops(None)], [None, None])
assert sum(p.numel() for p in create_model(SIZES['tiny'].clip_config()).parameters()) < 5e6   # tiny: seconds on a CPU


# %% [markdown]
# ## Timing one configuration
#
# `clock` times a step the way the efficiency chapter's `time_steps` does (synchronised, warm-up first,
# median), and reads the peak of `torch.cuda.max_memory_allocated` over all the steps, the model,
# optimiser and batch included: each configuration is built, timed and freed before the next, so the
# peak is its own. On a CPU there is no such counter, and the peak is left empty. `train_step` is the
# benchmark chapter's training step on the device, `eval_step` encodes a batch of pictures and of
# captions with the same weights on both sides (`open_clip_twin`); `bench_one` runs one of them and
# turns a CUDA out-of-memory error into a row with status `oom`.

# %%
#| exports
def _sync(dev: torch.device):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)

def clock(step, items: int, dev: torch.device, steps: int, warmup: int) -> dict:
    "Median time of `steps` calls of `step()` after `warmup` untimed ones, `items` per call; peak memory in MiB on CUDA (else None)."
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(warmup + steps):
        _sync(dev); t = time.perf_counter(); step(); _sync(dev)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times[warmup:])
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == 'cuda' else None
    return dict(step_s=step_s, items_s=items / step_s, first_step_s=times[0], peak_mib=peak)

def _text_tokens(texts: torch.Tensor) -> int:
    "The positions our text tower computes: on a CPU up to the batch's last end-of-text token, elsewhere every column it is given."
    return int(texts.argmax(dim=-1).max()) + 1 if texts.device.type == 'cpu' else texts.shape[1]

def train_step(side: str, cfg: CLIPConfig, batch: int, dev, amp_dtype, compile: bool):
    "(one training step of `side`, its FLOPs): the benchmark chapter's step on `dev`."
    s = train_sides(cfg, batch, sides=(side,), device=dev, amp_dtype=amp_dtype, compile=compile)
    return s[side][0], training_flops(cfg, 1, batch, _text_tokens(s['batch'][1]))

def eval_step(side: str, cfg: CLIPConfig, batch: int, dev, amp_dtype, compile: bool):
    "(encoding `batch` pictures and `batch` captions with `side`'s model, its FLOPs); no gradients."
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    model = (open_clip_twin(model) if side == 'open_clip' else model).to(dev)
    images = torch.randn(batch, 3, cfg.image_resolution, cfg.image_resolution, device=dev)
    texts = tokenize(make_captions(batch), context_length=cfg.context_length, truncate=True).to(dev)
    enc_i, enc_t = (torch.compile(f) if compile else f for f in (model.encode_image, model.encode_text))
    def step():
        with torch.inference_mode(), autocast(dev, amp_dtype): enc_i(images), enc_t(texts)
    return step, batch * sum(clip_forward_flops(cfg, _text_tokens(texts)))

STEPS = {'train': train_step, 'eval': eval_step}

def bench_one(kind: str, side: str, sz: Sizes, batch: int, compile: bool, dev, amp_dtype, peak: float | None) -> dict:
    "One row: `kind` ('train' or 'eval') of `side` at `batch`, timed by `clock`, with MFU against `peak`; status 'oom' if it does not fit."
    row = dict(kind=kind, side=side, batch_size=batch, compile=compile, status='ok')
    def work():
        step, flops = STEPS[kind](side, sz.clip_config(), batch, dev, amp_dtype, compile)
        r = clock(step, batch, dev, sz.steps, sz.warmup)
        return {**r, 'flops_per_step': flops, 'mfu': flops / r['step_s'] / peak if peak else None}
    try: row.update(work())
    except (torch.cuda.OutOfMemoryError, RuntimeError) as e:     # compiled kernels may report it as a RuntimeError
        if 'out of memory' not in str(e).lower(): raise
        row['status'] = 'oom'
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache()
    return row


# %%
r = clock(lambda: torch.ones(64, 64) @ torch.ones(64, 64), 8, torch.device('cpu'), steps=3, warmup=1)
assert r['step_s'] > 0 and r['items_s'] == 8 / r['step_s'] and r['peak_mib'] is None
r = bench_one('eval', 'ours', replace(SIZES['tiny'], steps=1), 2, False, torch.device('cpu'), torch.bfloat16, peak=None)
test_eq((r['status'], r['mfu']), ('ok', None)); assert r['flops_per_step'] > 0


# %% [markdown]
# The largest batch that fits is found by doubling from the common batch until a step runs out of
# memory or the bound `max_batch` is reached (on a CPU, where nothing runs out, the bound is what stops
# it). `largest_batch` takes the test as a function, so the search can be checked without a GPU:

# %%
#| exports
def largest_batch(fits, start: int, bound: int) -> tuple[int, bool]:
    "The largest of `start`, 2·start, 4·start, ... up to `bound` for which `fits(batch)` holds (`start` is taken to fit); and whether one failed."
    b = start
    while b * 2 <= bound:
        if not fits(b * 2): return b, True
        b *= 2
    return b, False


# %%
test_eq(largest_batch(lambda b: b <= 1500, 256, 8192), (1024, True))
test_eq(largest_batch(lambda b: True, 4, 16), (16, False))
test_eq(largest_batch(lambda b: False, 256, 256), (256, False))

# %% [markdown]
# ## The benchmark parts
#
# Both parts first check that the two sides compute the same thing, in float32 on the device (loss and
# gradients of a training step; the image and text features), and stop if they do not, so a fast wrong
# answer is never timed. Then they time both sides at the common batch, compile off and on, then search
# each side's largest batch and time it. Every row is written out as soon as it is measured.

# %%
#| exports
AMP = torch.bfloat16

def check_sides(kind: str, sz: Sizes, dev, batch: int = 8) -> dict:
    "Before timing: ours against open_clip's in float32 on `dev`, one batch of `batch` (training: loss and gradients; eval: features)."
    cfg = sz.clip_config()
    if kind == 'train':
        s = train_sides(cfg, batch, device=dev)
        la, lb, worst = check_train_step(s['ours'][1], s['open_clip'][1], *s['batch'])
        return dict(kind=kind, check='loss and gradients', loss=la, open_clip_loss=lb, max_err=worst,
                    ok=abs(la - lb) <= 1e-4 * abs(lb) and worst <= 1e-3)
    torch.manual_seed(0)
    ours = create_model(cfg).to(dev).eval()
    ref = open_clip_twin(ours).to(dev)
    images = torch.randn(batch, 3, cfg.image_resolution, cfg.image_resolution, device=dev)
    texts = tokenize(make_captions(batch), context_length=cfg.context_length, truncate=True).to(dev)
    with torch.inference_mode():
        pairs = [(ours.encode_image(images), ref.encode_image(images)), (ours.encode_text(texts), ref.encode_text(texts))]
    worst = max(((a - b).abs().max() / b.norm(dim=-1).max()).item() for a, b in pairs)
    return dict(kind=kind, check='image and text features', max_err=worst, ok=worst <= 1e-3)

def part_bench(kind: str, sz: Sizes, emit, until: float, out: Path):
    "The `train_bench` or `eval_bench` part: check, then time both sides at the common batch and at their largest."
    dev = get_device()
    peak = peak_flops(torch.cuda.get_device_name(dev)) if dev.type == 'cuda' else None
    emit(check := check_sides(kind, sz, dev))
    if not check['ok']: raise AssertionError(f"{kind}: ours differs from open_clip's by {check['max_err']:.1e}; nothing was timed")
    for compile in sz.compile:
        for side in ('ours', 'open_clip'): emit(bench_one(kind, side, sz, sz.batch, compile, dev, AMP, peak))
    probe = replace(sz, steps=1, warmup=1)
    for side in ('ours', 'open_clip'):
        tried = []
        def fits(b):
            tried.append(bench_one(kind, side, probe, b, False, dev, AMP, peak)['status'])
            return tried[-1] == 'ok'
        big, stopped = largest_batch(fits, sz.batch, sz.max_batch)
        emit(dict(kind=kind, side=side, largest_batch=big, out_of_memory_at=2 * big if stopped else None, bound=sz.max_batch))
        if big > sz.batch:
            for compile in sz.compile: emit(bench_one(kind, side, sz, big, compile, dev, AMP, peak))


# %% [markdown]
# ## The tests and chapters
#
# A test with a CUDA path carries the `cuda` marker (registered in `pyproject.toml`): the peak-memory
# test of gradient checkpointing, which runs only on a GPU, and the fuzzed options whose devices and
# precisions differ there. The chapters that pick their settings by device are found by reading the
# notebooks for a call of `pick`. With tiny sizes the tests are only collected and the chapters only
# listed: without a GPU they run as they always do, under `make test`.

# %%
#| exports
def repo_root() -> Path | None:
    "The checkout this package was imported from (it has settings.ini, tests/ and nbs/), or None for an installed copy."
    root = Path(clip_annotated.__file__).resolve().parents[1]
    return root if all((root / p).exists() for p in ('settings.ini', 'tests', 'nbs')) else None

def gpu_chapters(nbs: Path) -> list[Path]:
    "The notebooks in `nbs` whose code calls `pick(` (the prelims, which define it, aside): their settings depend on the device."
    found = []
    for nb in sorted(Path(nbs).glob('*.ipynb')):
        code = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        if re.search(r'(?<![\w.])pick\(', code) and 'def pick(' not in code: found.append(nb)
    return found

def cuda_test_files(tests: Path) -> list[Path]:
    "The test files in `tests` that mark a test `cuda` (so pytest imports only those)."
    return [f for f in sorted(Path(tests).glob('test_*.py')) if re.search(r'pytest\.mark\.cuda\b', f.read_text())]

def _left(until: float) -> float: return max(1.0, until - time.time())

def run_tool(cmd: list[str], what: str, until: float, **kw) -> subprocess.CompletedProcess:
    "`subprocess.run(cmd)` with text output captured, stopped at `until` with a one-line TimeoutError naming `what`."
    try: return subprocess.run(cmd, capture_output=True, text=True, timeout=_left(until), env=_child_env(), **kw)
    except subprocess.TimeoutExpired: raise TimeoutError(f"{what} ran past the part's time limit") from None

def _last_line(text: str) -> str: return next((l.strip() for l in reversed(text.splitlines()) if l.strip()), '')

def part_pytest(sz: Sizes, emit, until: float, out: Path):
    "The `pytest` part: `pytest -m cuda` over the test files that use the marker (with tiny sizes: only collected)."
    files = [str(f.relative_to(repo_root())) for f in cuda_test_files(repo_root() / 'tests')]
    cmd = [sys.executable, '-m', 'pytest', '-q', '-m', 'cuda', '-p', 'no:cacheprovider', *files, *([] if sz.run_tests else ['--collect-only'])]
    r = run_tool(cmd, 'pytest -m cuda', until, cwd=repo_root())
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)', r.stdout)}
    if (m := re.search(r'(\d+)(?:/\d+)? tests? collected', r.stdout)): counts['collected'] = int(m[1])
    emit(dict(command=' '.join(['pytest', *cmd[3:]]), ran=sz.run_tests, returncode=r.returncode, summary=_last_line(r.stdout), **counts))
    if r.returncode: raise RuntimeError(f"pytest -m cuda: {_last_line(r.stdout) or _last_line(r.stderr)}")

def part_nbdev(sz: Sizes, emit, until: float, out: Path):
    "The `nbdev` part: `nbdev_test` of each chapter whose settings depend on the device (with tiny sizes: only listed)."
    chapters, failed = gpu_chapters(repo_root() / 'nbs'), []
    emit(dict(chapters=[nb.name for nb in chapters], ran=sz.run_tests,
              why=None if sz.run_tests else 'tiny sizes: without CUDA they run under make test'))
    for nb in chapters if sz.run_tests else []:
        t = time.perf_counter()
        r = run_tool([str(Path(sys.executable).parent / 'nbdev_test'), '--path', str(nb)], f'nbdev_test of {nb.name}', until, cwd=repo_root())
        emit(dict(chapter=nb.name, ran=True, returncode=r.returncode, wall_s=time.perf_counter() - t,
                  error=None if r.returncode == 0 else (r.stdout + r.stderr)[-2000:]))
        if r.returncode: failed.append(nb.name)
    if failed: raise RuntimeError(f"nbdev_test failed on {', '.join(failed)}")


# %% [markdown]
# ## The training run, killed and resumed
#
# The run goes through the command line, `clip-annotated train --preset vit-b32-gpu`, with fewer steps
# and no evaluation along the way, in a subprocess that hands back `train`'s summary. Its steps per
# second come from `metrics.jsonl`'s clock, after the first tenth of the steps; the share of the loop
# spent waiting for data from the summary's `data_wait_s` and `train_wall_s`, where the training loop
# reports them (empty otherwise). A second, identical run is killed with SIGKILL `run_kill_after` steps
# past its first checkpoint, then started again with the same command, which resumes it;
# `same_checkpoints` then compares its final checkpoint with the uninterrupted run's, tensor for tensor.

# %%
#| exports
CLI_RUNNER = ("import json, sys; from clip_annotated.cli import main; "
              "s = main(sys.argv[2:]); open(sys.argv[1], 'w').write(json.dumps(s, default=str))")

def _child_env() -> dict:
    "The environment of the processes we start: this checkout first on the path, hashes seeded, not under nbdev_test."
    env = {**os.environ, 'PYTHONHASHSEED': '0'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(Path(clip_annotated.__file__).resolve().parents[1]), env.get('PYTHONPATH')) if p)
    env.pop('IN_TEST', None)
    return env

def train_argv(sz: Sizes, out: Path) -> list[str]:
    "`clip-annotated train` arguments of the check's run of the vit-b32-gpu preset into `out`."
    return ['train', '--preset', 'vit-b32-gpu', '--steps', str(sz.run_steps), '--ckpt-every', str(sz.run_ckpt_every),
            '--eval-every', '0', '--no-progress', *sz.run_args, '--out', str(out)]

def cli_train(sz: Sizes, out: Path, until: float) -> dict:
    "Run (or resume) the check's training run into `out` through the command line, in a subprocess; `train`'s summary."
    summary = out.parent / f'{out.name}.summary.json'
    r = run_tool([sys.executable, '-c', CLI_RUNNER, str(summary), *train_argv(sz, out)], f'the run into {out.name}', until)
    if r.returncode: raise RuntimeError(f"clip-annotated train into {out.name} failed: {_last_line(r.stderr)}")
    return json.loads(summary.read_text())

def _last_step(metrics: Path) -> int:
    "The last training step logged in `metrics` (0 before any)."
    return max((r['step'] for r in read_metrics(metrics) if 'loss' in r), default=0)

def kill_mid_run(sz: Sizes, out: Path, until: float) -> dict:
    "Start the check's run into `out` and SIGKILL it `sz.run_kill_after` steps past its first checkpoint; where it stood."
    p = subprocess.Popen([sys.executable, '-c', CLI_RUNNER, os.devnull, *train_argv(sz, out)], env=_child_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, metrics = out / 'checkpoint.pt', out / 'metrics.jsonl'
    try:
        while not (ckpt.exists() and (sz.run_kill_after == 0 or _last_step(metrics) >= sz.run_ckpt_every + sz.run_kill_after)):
            if p.poll() is not None: raise RuntimeError(f"the run into {out.name} ended (status {p.returncode}) before it was killed")
            if time.time() > until: raise TimeoutError(f"the run into {out.name} wrote no checkpoint before the deadline")
            time.sleep(0.002)
        p.send_signal(signal.SIGKILL); p.wait()
    finally:
        if p.poll() is None: p.kill(); p.wait()
    return dict(run='killed', returncode=p.returncode, checkpoint_step=torch.load(ckpt, weights_only=True)['data']['step'],
                last_logged_step=_last_step(metrics))

def same_checkpoints(a: Path, b: Path) -> dict:
    "Whether checkpoints `a` and `b` hold equal weights and optimiser state (tensor for tensor), scheduler and data position."
    A, B = (torch.load(p, map_location='cpu', weights_only=True) for p in (a, b))
    pairs = [(f'model.{k}', v, B['model'].get(k)) for k, v in A['model'].items()]
    pairs += [(f'optimizer.{i}.{k}', v, B['optimizer']['state'].get(i, {}).get(k))
              for i, s in A['optimizer']['state'].items() for k, v in s.items()]
    differ = [n for n, x, y in pairs if y is None or x.shape != y.shape or not torch.equal(x, y)]
    worst = max(((x.double() - y.double()).abs().max().item() for _, x, y in pairs
                 if y is not None and x.shape == y.shape and x.numel()), default=0.0)
    same = dict(data=A['data'] == B['data'], scheduler=A['scheduler'] == B['scheduler'], keys=A['model'].keys() == B['model'].keys())
    return dict(step=A['data']['step'], tensors=len(pairs), differing=len(differ), first_differing=differ[:5],
                max_abs_diff=worst, **{f'same_{k}': v for k, v in same.items()}, identical=not differ and all(same.values()))

def run_speed(metrics: list[dict], skip: float = 0.1) -> float | None:
    "Training steps per second by metrics.jsonl's clock, leaving out the first `skip` of the steps (at least one: warm-up)."
    recs = [r for r in metrics if 'loss' in r]
    recs = recs[max(1, int(skip * len(recs))):]
    return (recs[-1]['step'] - recs[0]['step']) / (recs[-1]['wall_s'] - recs[0]['wall_s']) if len(recs) > 1 else None

def part_train_run(sz: Sizes, emit, until: float, out: Path):
    "The `train_run` part: the preset's run, then the same run killed and resumed, and the two final checkpoints compared."
    full, killed = out / 'run-full', out / 'run-killed'
    for d in (full, killed): shutil.rmtree(d, ignore_errors=True)
    cfg = parse_args(train_argv(sz, full)[1:])
    t = time.perf_counter(); s = cli_train(sz, full, until)
    wait, wall = s.get('data_wait_s'), s.get('train_wall_s')
    amp = resolve_precision(cfg.precision, torch.device(s['device']))
    emit(dict(run='uninterrupted', preset='vit-b32-gpu', model=cfg.model, model_overrides=cfg.model_overrides, steps=cfg.steps,
              batch_size=cfg.batch_size, precision=str(amp).removeprefix('torch.') if amp else 'fp32', device=s['device'],
              wall_s=time.perf_counter() - t,
              steps_per_s=run_speed(read_metrics(full / 'metrics.jsonl')), train_wall_s=wall, data_wait_s=wait,
              data_wait_share=wait / wall if wait is not None and wall else None))
    emit(kill_mid_run(sz, killed, until))
    t = time.perf_counter(); cli_train(sz, killed, until)
    emit(dict(run='resumed', wall_s=time.perf_counter() - t))
    losses = lambda d: [r['loss'] for r in read_metrics(d / 'metrics.jsonl') if 'loss' in r]
    emit(c := dict(run='compare', **same_checkpoints(full / 'checkpoint.pt', killed / 'checkpoint.pt'), same_losses=losses(full) == losses(killed)))
    if not c['identical']: raise AssertionError(f"the resumed run's checkpoint differs from the uninterrupted one's in {c['differing']} of {c['tensors']} tensors")


# %%
test_eq(run_speed([dict(step=i, loss=1.0, wall_s=9.0 + 0.5 * i) for i in range(1, 21)]), 2.0)
test_eq(run_speed([dict(step=1, loss=1.0, wall_s=1.0)]), None)
with tempfile.TemporaryDirectory() as d:
    ck = dict(model={'w': torch.ones(2)}, optimizer={'state': {0: {'exp_avg': torch.zeros(2)}}}, scheduler={}, data=dict(step=4))
    torch.save(ck, f'{d}/a.pt'); torch.save(ck, f'{d}/b.pt')
    test_eq(same_checkpoints(f'{d}/a.pt', f'{d}/b.pt')['identical'], True)
    ck['model']['w'] = torch.tensor([1.0, 1.5]); torch.save(ck, f'{d}/b.pt')
    r = same_checkpoints(f'{d}/a.pt', f'{d}/b.pt')
    test_eq((r['identical'], r['first_differing'], r['max_abs_diff']), (False, ['model.w'], 0.5))
chapters = [nb.name for nb in gpu_chapters(Path('.'))]
assert '14_efficiency.ipynb' in chapters and '00_prelims.ipynb' not in chapters, chapters
if repo_root(): assert 'test_model.py' in [f.name for f in cuda_test_files(repo_root() / 'tests')]
test_eq(train_argv(SIZES['full'], Path('x'))[:3], ['train', '--preset', 'vit-b32-gpu'])

# %% [markdown]
# ## One command, one deadline
#
# `gpu_check` runs the parts one after the other, each as `python -m clip_annotated.gpucheck --part
# NAME` in a new process group (`start_new_session`), given the lesser of its own limit and what is left
# of the deadline. A part writes each result as a line of JSON the moment it has it; a part that runs
# past its time is killed with its whole group (the tests, a training run), and its lines so far are
# kept. After every part the JSON file is rewritten, so even a check that is itself cut short leaves
# what it measured. Without CUDA the sizes are `SIZES['tiny']` and the JSON says why. The default
# limits (`PARTS`) add up to less than the default deadline, which fits a ten-minute loan of a GPU; they
# are estimates, not measurements, and `--limit PART=SECONDS` changes one.

# %%
#| exports
TIMED_OUT = 124                              # a part's exit status when it ran out of time (as `timeout` says it)
PART_FUNCS = {'pytest': part_pytest, 'nbdev': part_nbdev,
              'train_bench': lambda *a: part_bench('train', *a), 'eval_bench': lambda *a: part_bench('eval', *a),
              'train_run': part_train_run}

def run_part(name: str, out: Path, until: float, limit: float, tiny: bool) -> dict:
    "Run part `name` in its own process group for at most `limit` s and not past `until`; its status, records and wall time."
    log, left = out / 'parts' / f'{name}.jsonl', until - time.time()
    log.unlink(missing_ok=True)
    if left < 5: return dict(status='skipped', why='the overall deadline was reached', limit_s=limit, records=[])
    timeout = min(limit, left)
    cmd = [sys.executable, '-m', 'clip_annotated.gpucheck', '--part', name, '--out', str(out),
           '--until', str(time.time() + timeout), *(['--tiny'] if tiny else [])]
    t = time.perf_counter()
    with open(out / 'parts' / f'{name}.log', 'w') as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=_child_env())
        try: status = {0: 'ok', TIMED_OUT: 'timed out'}.get(p.wait(timeout=timeout + 10), 'failed')
        except subprocess.TimeoutExpired: status = 'timed out'
        try: os.killpg(p.pid, signal.SIGKILL)                 # the part, if still running, and whatever it left behind
        except ProcessLookupError: pass
        p.wait()
    error = _last_line((out / 'parts' / f'{name}.log').read_text()) if status != 'ok' else None
    return dict(status=status, error=error, wall_s=time.perf_counter() - t, limit_s=timeout, records=read_metrics(log))   # any JSON lines; a line torn by the kill is dropped

def summary_markdown(res: dict) -> str:
    "The check as markdown: machine, CUDA or not, notes, each part's status, and the measured figures."
    lines = [f"# GPU check\n", f"Ran on {res['hardware']}; CUDA used: {'yes' if res['cuda'] else 'no'}; sizes: {res['sizes']}; "
             f"{res['wall_s']:.0f} s of a {res['deadline_s']:.0f} s deadline.\n", *(f"- {n}" for n in res['notes']), '']
    rows = [(name, p['status'], f"{p.get('wall_s', 0):.0f}", f"{p['limit_s']:.0f}", p.get('error') or p.get('why') or '')
            for name, p in res['parts'].items()]
    return '\n'.join(lines) + '\n' + markdown_table(['part', 'status', 'seconds', 'limit (s)', 'error'], rows, align='llrrl') + '\n' + gpu_check_table(res)

def gpu_check(out: str | os.PathLike | None = None, deadline: float = 540, limits: dict | None = None,
              parts: list[str] | None = None, tiny: bool | None = None) -> dict:
    "Run the parts of the GPU check under `deadline` seconds; write gpu_check.json and gpu_check.md to `out` (default runs/gpu-check)."
    t0, dev = time.perf_counter(), get_device()
    cuda, tiny = dev.type == 'cuda', dev.type != 'cuda' if tiny is None else tiny
    out = Path(out) if out is not None else runs_dir() / Path(GPU_CHECK).parent
    (out / 'parts').mkdir(parents=True, exist_ok=True)
    limits, until, sz = {**PARTS, **(limits or {})}, time.time() + deadline, SIZES['tiny' if tiny else 'full']
    gpu = torch.cuda.get_device_name(dev) if cuda else None
    notes = [] if cuda else ['no CUDA: tiny sizes on the CPU; peak memory and MFU are not measured']
    if tiny: notes += ['tiny sizes (a one-layer ViT at 32 pixels, small batches, a few steps): the figures prove the machinery and measure nothing',
                       'torch.compile not timed with tiny sizes (on a CPU compiling takes minutes)',
                       'tests only collected and chapters only listed with tiny sizes (make test runs them on a CPU)']
    res = dict(cuda=cuda, device=str(dev), gpu=gpu, hardware=hardware(), peak_bf16_flops=peak_flops(gpu), precision='bfloat16 autocast',
               sizes='tiny' if tiny else 'full', size_settings=asdict(sz), compile='off and on' if True in sz.compile else 'off only: not timed with tiny sizes (compiling takes minutes on a CPU)',
               torch=torch.__version__, python=platform.python_version(), started=time.strftime('%Y-%m-%d %H:%M:%S'),
               deadline_s=deadline, notes=notes, parts={}, wall_s=0.0, ok=False)
    for name in parts or list(PARTS):
        if name not in PARTS: raise ValueError(f"part {name!r}: choose from {', '.join(PARTS)}")
        res['parts'][name] = run_part(name, out, until, limits[name], tiny)
        res.update(wall_s=time.perf_counter() - t0, ok=all(p['status'] == 'ok' for p in res['parts'].values()))
        (out / Path(GPU_CHECK).name).write_text(json.dumps(res, indent=1, default=str))
    (out / 'gpu_check.md').write_text(summary_markdown(res))
    return res


# %% [markdown]
# ## The command line
#
# `python -m clip_annotated.gpucheck [--out DIR] [--deadline SECONDS] [--limit PART=SECONDS ...] [--parts
# PART ...] [--tiny]`; `make gpu-check` runs it with the defaults. It prints the markdown summary and
# exits with status 1 when a part failed or ran out of time. `--part` and `--until` are how the check
# calls itself for one part.

# %%
#| exports
def _limit(text: str) -> tuple[str, float]:
    "An argparse type: PART=SECONDS."
    name, _, secs = text.partition('=')
    if name not in PARTS or not re.fullmatch(r'\d+(\.\d+)?', secs):
        raise argparse.ArgumentTypeError(f"{text!r} is not PART=SECONDS with PART one of {', '.join(PARTS)}")
    return name, float(secs)

def _main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog='python -m clip_annotated.gpucheck', description="The GPU check: tests with a CUDA path, "
                                "benchmarks against open_clip, and a killed-and-resumed training run, under one deadline.")
    p.add_argument('--out', metavar='DIR', help="where gpu_check.json and gpu_check.md go (default: runs/gpu-check)")
    p.add_argument('--deadline', type=float, default=540, help="seconds for the whole check (default 540)")
    p.add_argument('--limit', type=_limit, action='append', default=[], metavar='PART=SECONDS',
                   help=f"a part's time limit (defaults: {', '.join(f'{k}={v}' for k, v in PARTS.items())})")
    p.add_argument('--parts', nargs='+', choices=list(PARTS), help="run only these parts")
    p.add_argument('--tiny', action='store_true', help="tiny sizes even with CUDA (the default without it)")
    p.add_argument('--part', choices=list(PARTS), help=argparse.SUPPRESS)
    p.add_argument('--until', type=float, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.part:                                        # one part, in the process gpu_check started for it
        out, sz = Path(a.out), SIZES['tiny' if a.tiny or get_device().type != 'cuda' else 'full']
        def emit(rec: dict):
            line = json.dumps(rec, default=str)
            with open(out / 'parts' / f'{a.part}.jsonl', 'a') as f: f.write(line + '\n')
            print(line, flush=True)
        try: PART_FUNCS[a.part](sz, emit, a.until or time.time() + PARTS[a.part], out)
        except TimeoutError as e: raise CommandError(f"gpu-check {a.part}: {one_line(e)}", TIMED_OUT) from None
        return {}
    res = gpu_check(a.out, a.deadline, dict(a.limit), a.parts, True if a.tiny else None)
    print(summary_markdown(res))
    if not res['ok']: raise RuntimeError(f"parts not ok: {', '.join(n for n, q in res['parts'].items() if q['status'] != 'ok')}")
    return res

def main(argv: list[str] | None = None) -> dict:
    "Command line entry point: `python -m clip_annotated.gpucheck` (one-line errors, status 1 when a part failed)."
    from_shell = argv is None
    argv, debug = wants_debug(sys.argv[1:] if from_shell else list(argv))
    return run_command('gpu-check', _main, argv, from_shell=from_shell, debug=debug)

if __name__ == '__main__' and not in_ipython(): main()

# %% [markdown]
# ## What the last check measured
#
# The figures of the last `make gpu-check` on a GPU, when there has been one (the efficiency and
# benchmark chapters show the same table):

# %%
gpu = gpu_check_results()
if gpu: display(Markdown(gpu_check_table(gpu)))
else: print("No GPU figures have been measured yet: `make gpu-check` on a machine with CUDA writes them to runs/gpu-check/gpu_check.json.")

# %%
_ = footer()
