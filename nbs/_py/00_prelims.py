# %% [markdown]
# # Preliminaries
#
# > Notation, the machine we run on, and the few helpers every later chapter uses.

# %%
#| default_exp core

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import atexit, json, os, platform, random, re, shutil, sys, tempfile, time, warnings
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Sequence
import numpy as np
import torch

# %%
#| hide
import torch.nn.functional as F
from unittest import mock
from fastcore.test import test_eq, test_close, test_fail

# %%
#| exports
_t0 = time.perf_counter()  # the wall clock of a chapter starts when it imports us

# %% [markdown]
# By the end of this chapter you will know the handful of symbols the paper uses, which machine the
# notebooks picked to run on, and how every chapter shrinks itself to a CPU-sized configuration when no
# GPU is present.
#
# ## The notation of the paper
#
# CLIP is trained to tell, within a batch of pairs, which picture goes with which caption (§2.3; the
# [loss chapter](04_loss.ipynb) quotes it and takes it apart). The paper's Figure 3 writes the whole
# method in a dozen lines of pseudocode. We keep its names
# throughout, so that code, paper and OpenAI's checkpoints can be read side by side:
#
# | symbol | in the code | meaning |
# |---|---|---|
# | $N$ | `n` | pairs in a batch |
# | $I_f$, $T_f$ | `image_features`, `text_features` before projection | the encoders' outputs |
# | $W_i$, $W_t$ | `visual.proj`, `text_projection` | linear maps into the joint space |
# | $z_I = I_e$, $z_T = T_e$ | `encode_image(x)`, `encode_text(t)`, L2-normalised | embeddings of image and text |
# | $S_{ij} = \langle z_{I,i}, z_{T,j} \rangle$ | `image_features @ text_features.T` | cosine similarity of image $i$ and text $j$ |
# | $\tau$ | `1 / logit_scale.exp()` | the learned temperature |
# | logits $= S / \tau$ | `logits_per_image` | what the cross entropy sees |
#
# The temperature is stored as its log inverse, `logit_scale` $= \log(1/\tau)$, initialised so that
# $\tau = 0.07$ and clipped so the logits are never scaled by more than 100 (§2.5). A small worked
# example makes the table concrete: three images and three texts whose embeddings happen to coincide.

# %%
z_I = F.normalize(torch.randn(3, 8), dim=-1)   # [N, d] image embeddings
z_T = z_I.clone()                              # [N, d] text embeddings, here identical
S = z_I @ z_T.T                                # [N, N] cosine similarities S_ij
logit_scale = torch.tensor(1 / 0.07).log()     # log(1/tau) with tau = 0.07
logits = logit_scale.exp() * S
test_close(S.diagonal(), torch.ones(3))        # a pair matches itself perfectly
assert (S <= 1 + 1e-6).all() and (S >= -1 - 1e-6).all()
print(f"1/tau = {logit_scale.exp().item():.2f}; logits on the diagonal = {[round(x, 2) for x in logits.diagonal().tolist()]}")


# %% [markdown]
# ## The machine
#
# Every notebook runs top to bottom on one GPU, and on a CPU with smaller settings. Four helpers make
# that choice in one place: `get_device` picks the accelerator, `autocast_dtype` the reduced precision
# it supports (bfloat16 where the GPU has it, else float16; none on CPU, where we stay in float32),
# `autocast` the context that computes in it (training, zero-shot evaluation and the probes all use this
# one), and `pick` chooses between a GPU-sized and a CPU-sized value of any setting.

# %%
#| exports
def get_device(device: str | torch.device | None = None) -> torch.device:
    "The device to run on: `device` if given, else the first CUDA GPU, else the CPU."
    if device is not None: return torch.device(device)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


# %%
#| exports
def autocast_dtype(device: str | torch.device | None = None) -> torch.dtype | None:
    "The reduced precision for `torch.autocast` on `device`: bf16 if supported, fp16 on older GPUs, None on CPU."
    device = get_device(device)
    if device.type != 'cuda': return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# %%
#| exports
def autocast(device: str | torch.device | None = None, dtype: torch.dtype | str | None = 'auto'):
    "`torch.autocast` on `device` in `dtype` ('auto': `autocast_dtype(device)`), or a no-op context when that is None (float32)."
    device = get_device(device)
    if isinstance(dtype, str):
        if dtype != 'auto': raise ValueError(f"dtype must be a torch.dtype, None or 'auto', not {dtype!r}")
        dtype = autocast_dtype(device)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# %%
test_eq(get_device('cpu').type, 'cpu')
test_eq(autocast_dtype('cpu'), None)
test_eq(type(autocast('cpu')), nullcontext)                         # float32 on a CPU: nothing to do
with autocast('cpu', torch.bfloat16): assert torch.is_autocast_enabled('cpu')
print(f"this run: device={get_device()}, autocast dtype={autocast_dtype()}")


# %% [markdown]
# `nbdev_test` sets the environment variable `IN_TEST` while it executes a notebook. `pick` uses it to
# shrink a setting further than a CPU run would: a training cell that runs 2,000 steps on a GPU and 300
# on a laptop runs a handful in CI, so the cell is still executed and checked, only smaller.
# <!-- fixed: 2,000 -->

# %%
#| exports
def in_test() -> bool:
    "True while `nbdev_test` (or pytest via our tests) executes the code."
    return bool(os.environ.get('IN_TEST'))

def show_progress(wanted: bool = True) -> bool:
    "Whether to draw a progress bar: `wanted`, unless $CLIP_ANNOTATED_PROGRESS is 0 (`make execute` sets it, so saved outputs hold none)."
    return wanted and os.environ.get('CLIP_ANNOTATED_PROGRESS', '1') != '0'

def pick(gpu, cpu, test=None, device=None):
    "Choose a setting by where we run: `test` under `nbdev_test` (defaults to `cpu`), `gpu` on CUDA, else `cpu`."
    if in_test(): return cpu if test is None else test
    return gpu if get_device(device).type == 'cuda' else cpu


# %%
steps = pick(gpu=2000, cpu=300, test=5)
assert steps in (2000, 300, 5)
print(f"a training loop in this run would take {steps} steps (in_test={in_test()})")


# %% [markdown]
# ## Reproducibility
#
# Contrastive training draws random crops, caption templates and initial weights. `seed_everything`
# seeds every generator we use, so that two runs with the same seed are the same run.

# %%
#| exports
def seed_everything(seed: int = 0) -> int:
    "Seed Python, NumPy and PyTorch (all devices) with `seed`; returns it."
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
    return seed


# %%
seed_everything(42); a = torch.randn(3)
seed_everything(42); b = torch.randn(3)
test_eq(a, b)


# %% [markdown]
# ## Files that are whole or absent, and one cache
#
# Several chapters write files that a crash must not leave half-written: the emoji set rendered once
# and cached, a downloaded checkpoint, a training checkpoint. `atomic_write` is the one way they are
# written: the bytes go to a temporary file in the same folder, which is flushed and `fsync`ed, then
# renamed over the destination with `os.replace` (atomic on POSIX and Windows), and the folder is
# `fsync`ed so the rename itself survives a power cut. A failure removes the temporary file and leaves
# whatever was at the destination untouched. The file gets the permissions any new file would get
# (`0o666` less the umask), not the private `0o600` of `mkstemp`, so a shared cache stays readable.
#
# Downloads and rendered data share one cache folder, `cache_root()`: `$CLIP_ANNOTATED_CACHE` when
# that variable is set, else `~/.cache/clip_annotated`.

# %%
#| exports
def cache_root(path: str | os.PathLike | None = None) -> Path:
    "Where downloads and rendered data are cached: `path`, else $CLIP_ANNOTATED_CACHE, else ~/.cache/clip_annotated."
    return Path(path or os.environ.get('CLIP_ANNOTATED_CACHE') or '~/.cache/clip_annotated').expanduser()

def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], suffix: str = '.tmp') -> Path:
    "Write `path` whole or not at all: `write(f)` fills a temporary `.<name>.*<suffix>` beside it, which is fsynced and renamed over it."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=suffix)
    try:
        umask = os.umask(0); os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)                # mkstemp's 0600 would hide the file from others
        with os.fdopen(fd, 'wb') as f:
            write(f); f.flush(); os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True); raise
    if hasattr(os, 'O_DIRECTORY'):                   # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try: os.fsync(dfd)
        finally: os.close(dfd)
    return path


# %% [markdown]
# The check: a write that fails halfway leaves the old file as it was and no temporary file behind;
# and the cache follows the environment variable.

# %%
with tempfile.TemporaryDirectory() as d:
    target = Path(d) / 'cache' / 'numbers.txt'
    atomic_write(target, lambda f: f.write(b'1 2 3'))
    def broken(f): f.write(b'4 5'); raise OSError('the disk is full')
    test_fail(lambda: atomic_write(target, broken), contains='the disk is full')
    test_eq(target.read_bytes(), b'1 2 3')
    test_eq(os.listdir(target.parent), ['numbers.txt'])
    umask = os.umask(0); os.umask(umask)
    test_eq(target.stat().st_mode & 0o777, 0o666 & ~umask)           # as any new file, not mkstemp's 0o600
    with mock.patch.dict(os.environ, {'CLIP_ANNOTATED_CACHE': d}): test_eq(cache_root(), Path(d))
    test_eq(cache_root(target.parent), target.parent)                 # an argument wins

# %% [markdown]
# The small files a chapter writes for its checks (a stand-in run folder, a checkpoint to load back) go
# to a temporary folder from `scratch_dir`. The chapter's last cell calls `remove_scratch`, and so does
# the interpreter when it exits, so running the book again and again does not fill the disk.

# %%
#| exports
_SCRATCH: list[Path] = []

def scratch_dir(prefix: str = 'clip_annotated_') -> Path:
    "A new temporary folder for a chapter's small files; `remove_scratch` (the chapter's last cell, or exit) deletes it."
    path = Path(tempfile.mkdtemp(prefix=prefix)); _SCRATCH.append(path)
    return path

def remove_scratch() -> int:
    "Delete every folder `scratch_dir` made in this process, with what is in it; how many were deleted."
    n = 0
    while _SCRATCH: shutil.rmtree(_SCRATCH.pop(), ignore_errors=True); n += 1
    return n

atexit.register(remove_scratch)

# %%
a, b = scratch_dir(), scratch_dir('clip_annotated_check_')
(a / 'x.txt').write_text('x'); (b / 'deep').mkdir()
assert a.is_dir() and b.name.startswith('clip_annotated_check_')
test_eq(remove_scratch(), 2); assert not a.exists() and not b.exists()
test_eq(remove_scratch(), 0)


# %% [markdown]
# ## Tables
#
# Reports and chapters print their results as markdown tables; `markdown_table` writes them all, text
# columns aligned left and numbers right.

# %%
#| exports
def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    "A markdown table of `header` and `rows` (cells as `str`), a newline at the end; `align` has 'l' or 'r' per column (default: 'l' then 'r's)."
    align = align or 'l' + 'r' * (len(header) - 1)
    if len(align) != len(header) or set(align) - {'l', 'r'}:
        raise ValueError(f"align {align!r} must have 'l' or 'r' for each of the {len(header)} columns")
    line = lambda cells: '| ' + ' | '.join(map(str, cells)) + ' |'
    return '\n'.join([line(header), '|' + ''.join('---|' if a == 'l' else '---:|' for a in align), *map(line, rows)]) + '\n'


# %%
t = markdown_table(['model', 'top-1'], [['MiniCLIP', '41.0%'], ['chance', '20.0%']])
test_eq(t, '| model | top-1 |\n|---|---:|\n| MiniCLIP | 41.0% |\n| chance | 20.0% |\n')


# %% [markdown]
# A report written to a file (`report.md`, a model card) has its own headings. Shown inside a chapter,
# those headings would become sections of the chapter's page and of its table of contents, so a
# chapter shows such a report through `no_headings`, which turns each heading into a bold line.

# %%
#| exports
def no_headings(md: str) -> str:
    "Markdown with each ATX heading line ('## Results') turned into a bold line ('**Results**'), for showing a report inside a page."
    return re.sub(r'(?m)^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$', r'**\1**', md)


# %%
test_eq(no_headings('# Model card: `mini`\n\ntext with a # inside\n## Data ##\n'), '**Model card: `mini`**\n\ntext with a # inside\n**Data**\n')

# %% [markdown]
# ## When something is wrong
#
# Every command of this book (`clip-annotated train`, `eval`, ...) treats errors the same way. A
# mistake in what you gave it (a missing file, a negative batch size, a checkpoint that is not one)
# is one line naming the input and saying what to do, with exit status 2, as `argparse` uses for a
# bad option; a failure while working (the loss became NaN, the disk filled up, a download stopped) is
# one line with exit status 1. The traceback, which helps us more than you, is kept behind `--debug`.
# Library code raises ordinary exceptions (`ValueError`, `FileNotFoundError`, ...); `run_command` is
# the one place that turns them into that line. A warning on the way is one line too, naming the
# command, rather than Python's two lines with a source file. Under `torchrun`, whose own report of a
# failed process is a long traceback printed after everything the processes printed, rank 0 prints
# the line, every rank writes it to the file torchrun reads (`TORCHELASTIC_ERROR_FILE`), and torchrun's
# closing summary shows it as the failure's `traceback`: the last lines on the screen name the error.

# %%
#| exports
BAD_INPUT = (ValueError, LookupError, FileNotFoundError, NotADirectoryError, IsADirectoryError)  # exit status 2

class CommandError(SystemExit):
    "A command's one-line error: `str(e)` is the line; from the shell it is printed and the process exits with `status`."
    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status

def one_line(e: BaseException) -> str:
    "An exception's message on one line (a KeyError's without the quotes Python adds)."
    msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
    return ' '.join(str(msg).split()) or type(e).__name__

def wants_debug(argv: list[str]) -> tuple[list[str], bool]:
    "(argv without `--debug`, whether to show tracebacks: `--debug` given or $CLIP_ANNOTATED_DEBUG set to non-0)."
    debug = '--debug' in argv or os.environ.get('CLIP_ANNOTATED_DEBUG', '0') not in ('', '0')
    return [a for a in argv if a != '--debug'], debug

def tell_torchrun(message: str) -> bool:
    "Under torchrun, write `message` where its closing summary of failures shows it (TORCHELASTIC_ERROR_FILE); whether this process should print it too (rank 0, or no torchrun)."
    path = os.environ.get('TORCHELASTIC_ERROR_FILE')
    if path:
        try: Path(path).write_text(json.dumps(dict(message=message, timestamp=int(time.time()))))
        except OSError: pass
    return not path or os.environ.get('RANK', '0') == '0'

def run_command(prog: str, fn, argv: list[str], from_shell: bool = False, debug: bool = False):
    "`fn(argv)`, with any error as a one-line `CommandError` naming `prog` (status 2: bad input, 1: failure); from the shell, printed and exited."
    try:
        with warnings.catch_warnings():
            if from_shell and not debug:                  # a warning is one line naming the command, not a source line
                warnings.showwarning = lambda message, *_, **__: print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)
            try: return fn(argv)
            except CommandError: raise
            except KeyboardInterrupt:
                if debug: raise
                raise CommandError(f"{prog}: interrupted", 130) from None
            except Exception as e:
                if debug: raise
                raise CommandError(f"{prog}: {one_line(e)}", 2 if isinstance(e, BAD_INPUT) else 1) from None
    except CommandError as e:
        if not from_shell: raise
        if tell_torchrun(str(e)): print(e, file=sys.stderr)
        raise SystemExit(e.status) from None


# %%
def _bad(argv): raise FileNotFoundError(f"no such file: {argv[0]}")
def _broken(argv): raise RuntimeError("the loss is nan at step 3")
for fn, status in ((_bad, 2), (_broken, 1)):
    try: run_command('demo', fn, ['x.csv'])
    except CommandError as e: print(f"exit {e.status}: {e}"); test_eq(e.status, status)
with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {'TORCHELASTIC_ERROR_FILE': f'{d}/error.json', 'RANK': '1'}):
    assert not tell_torchrun('demo: the loss is nan at step 3')             # rank 1: torchrun's summary says it
    test_eq(json.loads(Path(d, 'error.json').read_text())['message'], 'demo: the loss is nan at step 3')
test_eq(one_line(KeyError('no column "title"')), 'no column "title"')
test_eq(wants_debug(['--steps', '3', '--debug'])[0], ['--steps', '3'])


# %% [markdown]
# ## Saying what ran where
#
# Numbers in this book come from cells that computed them, on hardware the chapter names. Each
# chapter therefore ends with `footer()`: the machine, the library versions and the wall time of the
# run since the chapter imported `clip_annotated`.

# %%
#| exports
def _cpu_name() -> str:
    "The CPU's model name and widest vector units, from /proc/cpuinfo where there is one."
    try: info = Path('/proc/cpuinfo').read_text()
    except OSError: return platform.processor() or platform.machine()
    name = next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('model name')), platform.machine())
    flags = next((l.split(':', 1)[1].split() for l in info.splitlines() if l.startswith('flags')), [])
    simd = next((u for u in ('amx_tile', 'avx512f', 'avx2', 'avx') if u in flags), None)
    return name + (f", {simd.split('_')[0].upper().replace('512F', '-512')}" if simd else '')

def hardware() -> str:
    "A one-line description of the machine: the GPU when present, the CPU (model, cores usable here) and memory."
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30 if hasattr(os, 'sysconf') else None
    cpu = f"{cores} CPU cores ({_cpu_name()})" + (f", {mem:.0f} GiB RAM" if mem else '')
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} + {cpu}"
    return cpu

def footer(t0: float | None = None) -> str:
    "Hardware, versions and wall time since `t0` (default: since `clip_annotated.core` was imported)."
    wall = time.perf_counter() - (_t0 if t0 is None else t0)
    s = (f"Ran on {hardware()}, Python {platform.python_version()}, torch {torch.__version__}; "
         f"wall time {wall:.1f} s.")
    print(s)
    return s


# %%
assert 'CPU cores' in hardware()
_ = footer()
