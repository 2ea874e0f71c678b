# %% [markdown]
# # Run folders
#
# > What a training run keeps in its folder, and how it keeps it safe: checkpoints written atomically and complete enough to resume bit for bit, one run per folder under a lock, and the log of every step, read back from the device every few steps.

# %%
#| default_exp runfolder

# %%
#| hide
from nbdev.showdoc import show_doc

# %%
#| export
from __future__ import annotations
import errno, json, math, os, pickle, random, re, socket, sys, time, warnings
from pathlib import Path
import numpy as np
import torch
from clip_annotated.core import atomic_write, one_line
from clip_annotated.checkpoints import CheckpointError
from clip_annotated.loss import mean_over_ranks

# %%
#| hide
import shutil, tempfile
from unittest import mock
from fastcore.test import test_eq, test_fail
from clip_annotated.core import remove_scratch, scratch_dir
from clip_annotated.model import CONFIGS, create_model

# %%
scratch = scratch_dir('clip_annotated_05e_')


# %% [markdown]
# A training run lives in one folder, `--out`: `checkpoint.pt` (everything needed to continue),
# `metrics.jsonl` (one record per step and per evaluation), and, once it ends, the curves and the
# report that [the run chapter](06a_run.ipynb) draws. [The training chapter](06_train.ipynb) decides
# *what* goes into them; this appendix is *how* they are written so that nothing is lost when a run is
# killed at any instant, and so that two runs never write into one folder.

# %% [markdown]
# ## Checkpoints you can kill
#
# A long run will be interrupted: a preempted job, a full disk, a Ctrl-C. Two properties make that
# harmless. **Atomic**: a checkpoint is written with the preliminaries' `atomic_write`: to a temporary
# file in the same directory, flushed and `fsync`ed to disk, and only then renamed over the old one
# (`os.replace` is atomic on POSIX file systems), so a kill at any instant leaves either the old
# checkpoint or the new one, never half of one. **Complete**: it holds everything the next step depends on: the model, AdamW's moments, the
# schedule's position, the float16 loss scaler, every random number generator (Python, NumPy,
# PyTorch and CUDA), and the position in the data (epoch, batches done in that epoch, the seed of the
# sampler's order). Resuming then continues the very same run: a test
# (`test_sigkill_mid_epoch_then_resume_is_bit_identical` in `tests/test_train.py`) kills a run with
# SIGKILL in the middle of an epoch, resumes it, and requires weights bit-identical to a run that was
# never interrupted. The test runs on the CPU, and that is where the promise holds: GPU kernels need not
# be deterministic, so on a GPU a resumed run continues the same run without a promise of the same bits.
#
# Everything is stored as tensors, numbers, strings, lists and dicts, so the file loads with
# `torch.load(weights_only=True)`, which refuses to unpickle code (keep torch current: older versions
# had a way around it). The random generators' states are converted accordingly. A checkpoint resumed
# on a machine with another number of GPUs gets back the CUDA generators of the devices both have,
# with a warning that the run is then no longer bit-identical.

# %%
#| exports
def rng_state() -> dict:
    "The states of Python's, NumPy's and PyTorch's (CPU and CUDA) generators, as tensors and plain values."
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(python=dict(version=version, state=torch.tensor(mt, dtype=torch.int64), gauss=gauss),
                numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos), has_gauss=int(has_gauss),
                           cached_gaussian=float(cached)),
                torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])

def set_rng_state(s: dict) -> None:
    "Restore the generators from `rng_state()`'s dict."
    random.setstate((s['python']['version'], tuple(s['python']['state'].tolist()), s['python']['gauss']))
    n = s['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['cached_gaussian']))
    torch.set_rng_state(s['torch'])
    if s['cuda'] and torch.cuda.is_available():
        here = torch.cuda.device_count()
        if len(s['cuda']) != here:                    # another machine: the devices both have get their state back
            warnings.warn(f"the checkpoint holds the CUDA generators of {len(s['cuda'])} device(s) and this machine has "
                          f"{here}: restored those of the first {min(here, len(s['cuda']))}; random draws on the others "
                          f"start afresh, so the resumed run is not bit-identical to an uninterrupted one")
        for i, state in enumerate(s['cuda'][:here]): torch.cuda.set_rng_state(state, i)

class _Sink:
    "A file for torch.save that keeps the OSError of a failed write (torch itself reports only 'file write failed')."
    def __init__(self, f): self.f, self.error = f, None
    def write(self, b):
        try: return self.f.write(b)
        except OSError as e: self.error = e; raise
    def flush(self): self.f.flush()

def save_checkpoint(obj: dict, path: str | Path) -> Path:
    "Write `obj` to `path` with `atomic_write`; a failed write (a full disk) names the file and leaves the previous one."
    def write(f):
        sink = _Sink(f)
        try: torch.save(obj, sink); f.flush(); os.fsync(f.fileno())
        except (RuntimeError, OSError) as e:
            err = sink.error or (e if isinstance(e, OSError) else None)
            if err is None: raise
            raise OSError(err.errno, f"{os.strerror(err.errno or errno.EIO).lower()} while writing {path} "
                                     f"(the previous checkpoint, if any, is intact)") from None
    return atomic_write(path, write)

def load_checkpoint(path: str | Path) -> dict:
    "Load a checkpoint with `weights_only=True` (plain data only, no code), onto the CPU; `CheckpointError` naming it if it can't be."
    try: ck = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError: raise
    except pickle.UnpicklingError as e:            # torch's message would suggest turning the safety off: we don't
        code = re.search(r'GLOBAL (\S+)', str(e))
        raise CheckpointError(f"{path} " + (f"needs code to load ({code[1]}), so it was not loaded" if code else
                              "is not a checkpoint (not a file torch.save wrote)") + ": it is not a checkpoint of this "
                              "book; move it away, or start afresh with --no-resume or another --out") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        with open(path, 'rb') as f: zipped = f.read(4) == b'PK\x03\x04'       # torch.save writes a zip archive
        raise CheckpointError(f"{path} is " + (f"not a readable checkpoint ({one_line(e).split('. ')[0][:160]}): it may "
                              "be cut short or damaged; restore a copy" if zipped else "not a checkpoint (not a file "
                              "torch.save wrote); move it away") + ", or start afresh with --no-resume or another --out") from None
    if not (isinstance(ck, dict) and {'config', 'model_config', 'model', 'data'} <= set(ck)):
        raise CheckpointError(f"{path} is not a training checkpoint of this book (no config, model and data entries)")
    return ck


# %%
s0 = rng_state()
a = (random.random(), np.random.rand(), torch.rand(1).item())
set_rng_state(s0)
test_eq((random.random(), np.random.rand(), torch.rand(1).item()), a)       # the generators rewound
p = save_checkpoint(dict(rng=s0, model=create_model(CONFIGS['MiniCLIP']).state_dict(), config={}, model_config={}, data={}), scratch/'ckpt.pt')
back = load_checkpoint(p)                                                     # weights_only: plain data
set_rng_state(back['rng'])
test_eq((random.random(), np.random.rand(), torch.rand(1).item()), a)
with mock.patch('torch.cuda.is_available', return_value=True), mock.patch('torch.cuda.device_count', return_value=1), \
     mock.patch('torch.cuda.set_rng_state') as restored, warnings.catch_warnings(record=True) as said:
    warnings.simplefilter('always')
    set_rng_state({**s0, 'cuda': [torch.get_rng_state()] * 2})             # saved on two GPUs, resumed on one
test_eq(restored.call_count, 1); assert 'of 2 device(s) and this machine has 1' in str(said[0].message)
test_eq(sorted(q.name for q in scratch.iterdir()), ['ckpt.pt'])               # no temp file left behind
(scratch/'cut.pt').write_bytes(p.read_bytes()[:1000])                        # a checkpoint cut short
test_fail(lambda: load_checkpoint(scratch/'cut.pt'), contains='cut.pt is not a readable checkpoint')
(scratch/'cut.pt').unlink()

# %% [markdown]
# ## One run per folder
#
# Two runs writing to one `--out` would interleave their `metrics.jsonl` and overwrite each other's
# checkpoints, and both would report success. So a run holds a lock on its folder, `out/.lock` (an
# operating-system lock through `fcntl.flock`, which the kernel releases when the process ends,
# however it ends), and a second run refuses while the first holds it. A process forked from the run
# (a `DataLoader` worker) would share the lock and keep it after the run is killed, until it noticed
# its parent had gone; so a forked child closes its copy of the lock file first thing (`os.register_at_fork`),
# and the lock goes with the run itself. A run that was killed leaves
# the file behind with its process id in it, but not the lock: the next run notices, says so, clears
# the temporary files of the checkpoint write that was cut short, and goes on. (On a network file
# system `flock` may not reach other machines; one folder per run is then up to you.)
#
# The folder is the user's to name, so nothing in it is trusted. `check_run_folder` refuses, before
# anything is written, a folder that is not empty and holds none of a run's files (training would
# overwrite and delete what is there), and any of a run's files that is a symbolic link: git stores
# links, so a cloned `runs/mini/.lock` could point at a file of yours, which the lock would empty and
# the log would append to. The lock file is opened with `O_NOFOLLOW` as well, and what it says about
# its holder is repeated in a message only when it is the line a run writes. A run that fails before
# training leaves no folder behind that it made itself.

# %%
#| exports
RUN_FILES = ('.lock', 'checkpoint.pt', 'metrics.jsonl', 'report.md', 'curves.png', 'results.json', 'model_card.md')
_HOLDER = re.compile(r'pid \d+ on [\w.-]{1,255}, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d')

def check_run_folder(out: str | Path) -> Path:
    "`out` as a Path if a run may use it (missing, empty, or a run's folder, none of a run's files a link); else a ValueError naming it."
    out = Path(out)
    if out.exists() and not out.is_dir(): raise NotADirectoryError(f"--out {out} is a file, not a folder: give a folder for the run")
    if not out.exists(): return out
    links = [out/f for f in RUN_FILES if (out/f).is_symlink()]
    if links: raise ValueError(f"{links[0]} is a symbolic link: a run folder holds only its own files; remove the link, or train into another --out")
    names = [q.name for q in out.iterdir() if not q.name.startswith('.')]   # .lock, cut-short writes, .DS_Store, .gitkeep
    if names and not set(names) & set(RUN_FILES):
        raise ValueError(f"--out {out} is not empty and is not a run folder (no checkpoint.pt or metrics.jsonl; it holds "
                         f"{', '.join(sorted(names)[:3])}{', …' if len(names) > 3 else ''}): training would overwrite what is "
                         f"there; train into a new or empty folder")
    return out

def _holder(text: str) -> str:
    "Who holds a lock, as its file says: the line a run writes, else 'another process' (a file's contents are not repeated)."
    m = _HOLDER.fullmatch(text.strip())
    return m[0] if m else 'another process'

class RunInUseError(RuntimeError):
    "Another process is training in this run folder."

_HELD: set[int] = set()                             # file descriptors of the run locks this process holds

def _close_held():
    "In a forked child (a DataLoader worker): close the copies of the run locks, so they end with the run that holds them."
    for fd in _HELD:
        try: os.close(fd)
        except OSError: pass
    _HELD.clear()

if hasattr(os, 'register_at_fork'): os.register_at_fork(after_in_child=_close_held)

class RunLock:
    "Hold run folder `out` for this process (a lock on out/.lock); refuses with `RunInUseError` while another holds it."
    def __init__(self, out: str | Path): self.path, self.file, self.stale, self.made = Path(out)/'.lock', None, None, False
    def __enter__(self):
        folder = check_run_folder(self.path.parent)
        self.made = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try: fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP: raise ValueError(f"{self.path} is a symbolic link: remove it, or train into another --out") from None
            raise
        f = os.fdopen(fd, 'r+')
        try:
            import fcntl
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError: pass                                            # no flock (Windows): no lock
        except BlockingIOError:                                              # held by another process
            holder = _holder(f.read(4096)); f.close()
            raise RunInUseError(f"{folder} is in use by another run ({holder}): wait for it to end, "
                                f"or train into another --out") from None
        except OSError as e:                                                 # a file system without locks (some NFS)
            print(f"{folder}: cannot lock the run folder ({e.strerror}); make sure no other run writes to it",
                  file=sys.stderr)
        f.seek(0); self.stale = f.read(4096).strip() or None               # the lock of a run that was killed
        f.seek(0); f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"); f.flush()
        self.file, self.cleared = f, [t.name for t in folder.glob('.*.tmp')]
        _HELD.add(f.fileno())
        for t in folder.glob('.*.tmp'): t.unlink(missing_ok=True)         # cut-short checkpoint writes
        if self.stale:
            print(f"{folder}: the run before ({_holder(self.stale)}) ended without releasing its lock (killed?); "
                  f"cleared{f' {len(self.cleared)} temporary file(s)' if self.cleared else ' it'}", file=sys.stderr)
        return self
    def __exit__(self, error_type=None, *exc):
        if self.file is None: return
        _HELD.discard(self.file.fileno())
        self.file.seek(0); self.file.truncate(); self.file.close(); self.file = None   # empty: ended cleanly
        folder = self.path.parent
        if error_type is not None and self.made and [q.name for q in folder.iterdir()] == ['.lock']:   # failed before writing
            self.path.unlink(missing_ok=True); folder.rmdir()


# %%
with RunLock(scratch/'locked') as held:
    test_fail(lambda: RunLock(scratch/'locked').__enter__(), contains='is in use by another run (pid')
with RunLock(scratch/'locked') as again: assert again.stale is None       # released cleanly: nothing stale
test_eq((scratch/'locked'/'.lock').read_text(), '')
try:
    with RunLock(scratch/'made'): raise ValueError('no data')               # a run that fails before it writes anything
except ValueError: pass
assert not (scratch/'made').exists()                                        # the folder it made is removed again
with RunLock(scratch/'forked') as held:
    fd = held.file.fileno()
    if (pid := os.fork()) == 0:                                             # a forked child (a DataLoader worker)
        try: os.fstat(fd); os._exit(1)                                      # still has the lock file open: wrong
        except OSError: os._exit(0)                                         # closed at the fork: the lock is the run's
    test_eq(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 0)

# %% [markdown]
# What a run refuses: a folder of someone else's files, a lock file that is a link (the file it points
# to is left as it was), and a file given as the folder.

# %%
(scratch/'photos').mkdir(); (scratch/'photos'/'cat.jpg').write_bytes(b'not mine to delete')
test_fail(lambda: RunLock(scratch/'photos').__enter__(), contains='is not empty and is not a run folder')
(scratch/'secret').write_text('do not touch'); (scratch/'linked').mkdir()
(scratch/'linked'/'.lock').symlink_to(scratch/'secret')
test_fail(lambda: RunLock(scratch/'linked').__enter__(), contains='.lock is a symbolic link')
test_eq((scratch/'secret').read_text(), 'do not touch')
test_fail(lambda: check_run_folder(scratch/'secret'), contains='is a file, not a folder')
test_eq(_holder('pid 12 on host-1, since 2026-12-06 10:00:00\n'), 'pid 12 on host-1, since 2026-12-06 10:00:00')
test_eq(_holder('my password'), 'another process')


# %% [markdown]
# ## The log
#
# `metrics.jsonl` holds one JSON record per line: the training loop appends the records of its steps
# (`append_records`) and of its evaluations. A line cut short by a kill is skipped when the log is
# read, and a resumed run first drops the records of the steps after its checkpoint
# (`truncate_metrics`), so the log always describes the run that produced the weights.

# %%
#| exports
def append_records(path: str | Path, records: list[dict]) -> None:
    "Append `records` to the JSON-lines file `path`, one line each."
    with open(path, 'a') as f: f.write(''.join(json.dumps(r) + '\n' for r in records))

def append_record(path: str | Path, record: dict) -> None:
    "Append one record to the JSON-lines file `path`."
    append_records(path, [record])

def read_metrics(path: str | Path) -> list[dict]:
    "The records of a metrics.jsonl (a torn last line, from a kill, is skipped)."
    out = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try: out.append(json.loads(line))
            except json.JSONDecodeError: pass
    return out

def truncate_metrics(path: str | Path, step: int) -> None:
    "Keep only the records of steps up to `step` (those the resumed weights have seen)."
    keep = [r for r in read_metrics(path) if r.get('step', 0) <= step]
    Path(path).write_text(''.join(json.dumps(r) + '\n' for r in keep))

PREVIOUS = '.previous-'                             # the files of a run that --no-resume replaces, until the new one's first checkpoint

def keep_previous(out: str | Path) -> list[str]:
    "Before a fresh run in `out`: move the last run's checkpoint.pt and metrics.jsonl aside (PREVIOUS + name); the names moved."
    out = Path(out); ckpt, log = out/'checkpoint.pt', out/'metrics.jsonl'
    aside = lambda f: out/(PREVIOUS + f.name)
    if not ckpt.exists():                           # nothing trained to keep: the log of a fresh run that stopped early
        if log.exists() and aside(ckpt).exists() and not aside(log).exists(): os.replace(log, aside(log))   # cut between the moves
        else: log.unlink(missing_ok=True)
        return []
    forget_previous(out)                            # older ones: the run now replaced wrote its first checkpoint
    moved = [f.name for f in (ckpt, log) if f.exists()]
    for f in (ckpt, log):                           # the checkpoint first: without it the next run starts afresh too
        if f.exists(): os.replace(f, aside(f))
    return moved

def forget_previous(out: str | Path) -> None:
    "Remove the files `keep_previous` set aside (once the new run has written its first checkpoint)."
    for name in ('checkpoint.pt', 'metrics.jsonl'): (Path(out)/(PREVIOUS + name)).unlink(missing_ok=True)


# %%
log = scratch/'metrics.jsonl'
append_records(log, [dict(step=1, loss=2.0), dict(step=2, loss=1.5)]); append_record(log, dict(step=3, loss=1.2))
with open(log, 'a') as f: f.write('{"step": 4, "lo')                   # a kill in the middle of a line
test_eq([r['step'] for r in read_metrics(log)], [1, 2, 3])
truncate_metrics(log, 2)
test_eq(read_metrics(log), [dict(step=1, loss=2.0), dict(step=2, loss=1.5)])


# %% [markdown]
# ### Read back every few steps
#
# The training loop never waits for the GPU between log steps (see [the loop](06_train.ipynb#the-loop)):
# `StepLog` keeps each step's loss, temperature and gradient norm on the device, as tensors, and `flush`
# reads all of them back at once, the losses averaged over ranks (`mean_over_ranks` of the loss chapter),
# then appends one record per step to `metrics.jsonl`. It stops at the first step whose loss is NaN or
# infinite and returns that step's record apart: the steps from there on are not logged, so the log never
# holds a step the checkpoint on disk has not survived.

# %%
#| exports
class StepLog:
    "The loop's per-step values, kept on the device until `flush` reads them all back at once (one host sync) and logs them."
    def __init__(self, path: Path | None = None):
        self.path, self.pending = path, []                             # path None: keep nothing on disk (ranks > 0)
    def add(self, record: dict, loss: torch.Tensor, logit_scale: torch.Tensor, grad_norm: torch.Tensor | None = None):
        "Note one step: host values in `record`, device values as tensors (nothing is read back)."
        self.pending.append((record, loss.detach().float(), logit_scale.detach().float().exp(),
                             None if grad_norm is None else grad_norm.detach().float()))
    def flush(self, last: dict | None = None) -> tuple[list[dict], dict | None]:
        "(records of the pending steps up to the first non-finite loss, that step's record or None); writes the good ones, `last` added to the final one."
        if not self.pending: return [], None
        recs, losses, scales, norms = zip(*self.pending)
        self.pending = []
        values = torch.stack([mean_over_ranks(torch.stack(losses)), torch.stack(scales),
                              torch.stack([n if n is not None else torch.zeros_like(l) for n, l in zip(norms, losses)])])
        out, bad = [], None
        for rec, (loss, scale, norm), has_norm in zip(recs, values.T.tolist(), (n is not None for n in norms)):   # the one sync
            rec = dict(rec, loss=loss, logit_scale=scale, temperature=1 / scale, **({'grad_norm': norm} if has_norm else {}))
            if not math.isfinite(loss): bad = rec; break
            out.append(rec)
        if out and last: out[-1].update(last)
        if self.path is not None and out: append_records(self.path, out)
        return out, bad


# %%
log_path = scratch / 'log-check.jsonl'
slog = StepLog(log_path)
for k, v in enumerate([2.0, 1.5, math.nan, 1.0]): slog.add(dict(step=k + 1), torch.tensor(v), torch.tensor(0.0))
recs, bad = slog.flush(last=dict(samples_per_s=10.0))
test_eq([r['step'] for r in recs], [1, 2]); test_eq(bad['step'], 3); test_eq(recs[-1]['samples_per_s'], 10.0)
test_eq([r['step'] for r in read_metrics(log_path)], [1, 2])          # the NaN step and what follows are not logged
test_eq(recs[0]['temperature'], 1.0)

# %% [markdown]
# A fresh run (`--no-resume`) in a folder that holds a finished or interrupted run must not destroy that
# run before it has something to put in its place: a fresh run stopped in its first steps would
# otherwise leave the old checkpoint beside a log of its own few steps, and the next plain run would
# resume the old weights over the wrong log. So `keep_previous` moves the old `checkpoint.pt` and
# `metrics.jsonl` aside, to `.previous-checkpoint.pt` and `.previous-metrics.jsonl` (names with a dot,
# which a run folder may hold), and the training loop calls `forget_previous` once its own first
# checkpoint is on disk. A fresh run that stops before then leaves the folder without a checkpoint,
# so the next run starts afresh as well, and the old run's two files are still there to move back.

# %%
old_run = scratch/'again'; old_run.mkdir()
(old_run/'checkpoint.pt').write_bytes(b'old weights'); append_record(old_run/'metrics.jsonl', dict(step=500, loss=0.5))
test_eq(keep_previous(old_run), ['checkpoint.pt', 'metrics.jsonl'])
append_record(old_run/'metrics.jsonl', dict(step=1, loss=4.0))             # the fresh run's first step, then a kill
test_eq(keep_previous(old_run), [])                                          # the next fresh run: nothing new to keep
test_eq(sorted(q.name for q in old_run.iterdir()), ['.previous-checkpoint.pt', '.previous-metrics.jsonl'])
test_eq(read_metrics(old_run/'.previous-metrics.jsonl'), [dict(step=500, loss=0.5)])   # the old log, whole
(old_run/'checkpoint.pt').write_bytes(b'new weights'); forget_previous(old_run)         # its first checkpoint
test_eq(sorted(q.name for q in old_run.iterdir()), ['checkpoint.pt'])

# %%
#| hide
_ = remove_scratch()
