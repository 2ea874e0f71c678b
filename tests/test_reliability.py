"""Adversarial checks of training and the command line (issue #14): nothing wrong is reported as right,
no input hangs, no two runs mix.

1. Divergence: a loss that becomes NaN stops training with `TrainingDiverged` naming the step, before the
   bad update, keeping the last good checkpoint; no metric counts NaN as a hit (retrieval, zero-shot,
   predict).
2. Every nonsense training option is refused up front, one line naming it, exit status 2; the hang of
   `--batch-size -4` is bounded by a timeout.
3. One run per folder: a second run refuses while the first holds the folder; a killed run's lock and
   its half-written checkpoint are cleared by the next run.
4. A batch whose samples are all bad is skipped (and counted in metrics.jsonl); data with no usable
   sample at all is a clear error.
6. A corrupt checkpoint on resume is a `CheckpointError` naming the file, which is left in place.
7. Stale `.tmp` checkpoint files of a killed run are removed.
8. The command line: one line, exit status 2 for bad input, 1 for a failure, the traceback only with
   `--debug`; a full disk says so, naming the file, and keeps the previous checkpoint.
"""
from __future__ import annotations

import contextlib, errno, io, json, math, os, pickle, signal, subprocess, sys, time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import child_env
import torch

from clip_annotated.core import CommandError
from clip_annotated.scenes import SceneDataset
from clip_annotated.data import SkipCounter
from clip_annotated.checkpoints import CheckpointError
from clip_annotated.run import train_and_report
from clip_annotated.runfolder import RunInUseError, RunLock, load_checkpoint, read_metrics, save_checkpoint
from clip_annotated.train import PRESETS, TrainingDiverged, check_config, train
from clip_annotated.retrieval import retrieval_metrics

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / 'clip-annotated')            # the console script, as a user runs it
TINY_MODEL = dict(embed_dim=16, vision_layers=1, vision_width=64, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
TINY = replace(PRESETS['scenes-tiny'], model_overrides=TINY_MODEL, n_scenes=64, batch_size=16, steps=3, warmup=1,
               ckpt_every=1, eval_every=0, progress=False, threads=1)
TINY_ARGV = ['--preset', 'scenes-tiny', '--model-overrides', json.dumps(TINY_MODEL), '--n-scenes', '64',
             '--batch-size', '16', '--steps', '3', '--warmup', '1', '--eval-every', '0', '--no-progress', '--threads', '1']


def _env() -> dict:
    env = child_env(progress=False)
    env.pop('CLIP_ANNOTATED_DEBUG', None)
    return env


def _cli(*argv: str, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *argv], env=_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _quiet(fn, *a, **kw):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        return fn(*a, **kw), err.getvalue()


# ------------------------------------------------------------------ 1. divergence

@pytest.mark.parametrize('steps', [1, 6])
def test_huge_lr_stops_training_and_writes_no_broken_checkpoint(tmp_path, steps):
    "lr 1e30: the first update makes the features NaN (the weights stay finite); that is caught at the checkpoint or the next loss."
    cfg = replace(TINY, lr=1e30, steps=steps, out=str(tmp_path / 'run'))
    with pytest.raises(TrainingDiverged, match=r'training diverged: (the loss is nan|the features of the last batch are NaN '
                                               r'or infinite) at step \d+ \(lr 1e\+30\); no checkpoint was written'):
        _quiet(train, cfg)
    assert not (tmp_path / 'run' / 'checkpoint.pt').exists()                    # no checkpoint of a broken model
    assert not (tmp_path / 'run' / 'report.md').exists()                          # no report of one either
    assert all(math.isfinite(r['loss']) for r in read_metrics(tmp_path / 'run' / 'metrics.jsonl') if 'loss' in r)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    "Weights that turn NaN at step 4 of a run checkpointed every 2 steps: it stops, and step 2's checkpoint stays as it was."
    import clip_annotated.train as T
    real, calls = T.optimizer_step, []
    def poisoned(model, *a, **kw):
        out = real(model, *a, **kw); calls.append(1)
        if len(calls) == 3:
            with torch.no_grad(): next(model.visual.parameters()).fill_(math.nan)
        return out
    monkeypatch.setattr(T, 'optimizer_step', poisoned)
    with pytest.raises(TrainingDiverged, match=r'the loss is nan at step 4 \(lr 0\.001\); the checkpoint of step 2 in .*run is kept'):
        _quiet(train, replace(TINY, steps=6, ckpt_every=2, out=str(tmp_path / 'run')))
    ck = load_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    assert ck['data']['step'] == 2 and all(torch.isfinite(v).all() for v in ck['model'].values())
    assert [r['step'] for r in read_metrics(tmp_path / 'run' / 'metrics.jsonl')] == [1, 2, 3]


def test_diverged_run_from_the_shell_is_one_line_exit_1(tmp_path):
    r = _cli('train', *TINY_ARGV, '--lr', '1e30', '--out', str(tmp_path / 'run'))
    assert r.returncode == 1, r.stderr
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr
    assert r.stderr.startswith('clip-annotated train: training diverged: the loss is nan at step')
    assert '100' not in r.stdout and not (tmp_path / 'run' / 'report.md').exists()


def test_nan_weights_are_not_checkpointed(tmp_path, monkeypatch):
    "A finite loss but NaN weights after the step (an update that overflowed): the checkpoint is refused."
    import clip_annotated.train as T
    real = T.optimizer_step
    def poisoned(model, *a, **kw):
        out = real(model, *a, **kw)
        with torch.no_grad(): next(model.visual.parameters()).fill_(math.nan)
        return out
    monkeypatch.setattr(T, 'optimizer_step', poisoned)
    with pytest.raises(TrainingDiverged, match='the weights hold NaN or infinite values at step 1'):
        _quiet(train, replace(TINY, out=str(tmp_path / 'run')))
    assert not (tmp_path / 'run' / 'checkpoint.pt').exists()


@pytest.mark.parametrize('bad', [math.nan, math.inf])
def test_no_metric_counts_nan_as_a_hit(bad):
    from clip_annotated.zeroshot import classification_metrics
    feats = torch.randn(4, 8); feats[1, 3] = bad
    with pytest.raises(ValueError, match='NaN or infinite'): retrieval_metrics(feats, torch.randn(4, 8))
    with pytest.raises(ValueError, match='NaN or infinite'): retrieval_metrics(torch.randn(4, 8), feats)
    with pytest.raises(ValueError, match='NaN or infinite'):
        classification_metrics(torch.full((3, 2), bad), torch.tensor([0, 1, 0]))


def test_predict_with_a_nan_model_is_an_error_not_nan_percent(tmp_path):
    from PIL import Image
    from clip_annotated.model import create_model
    from clip_annotated.pretrained import image_transform
    from clip_annotated.zeroshot import predict
    model = create_model(replace(PRESETS['mini-cpu'].clip_config(), **TINY_MODEL)).eval()
    with torch.no_grad(): model.visual.proj.fill_(math.nan)
    Image.new('RGB', (40, 40), 'red').save(tmp_path / 'p.png')
    with pytest.raises(ValueError, match='NaN or infinite'):
        predict(model, image_transform(model.visual.input_resolution), tmp_path / 'p.png', ['a', 'b'])


# ------------------------------------------------------------------ 2. options checked up front

BAD_OPTIONS = [
    (['--batch-size', '-4'], '--batch-size -4'), (['--batch-size', '0'], '--batch-size 0'), (['--accum', '0'], '--accum 0'),
    (['--ckpt-every', '0'], '--ckpt-every 0'), (['--steps', '0'], '--steps 0'), (['--steps', '-1'], '--steps -1'),
    (['--threads', '-1'], '--threads -1'), (['--device', 'banana'], "--device 'banana'"),
    (['--model-overrides', '[1]'], '--model-overrides [1]'), (['--model-overrides', '{"nope": 1}'], "unknown field(s) ['nope']"),
    (['--model-overrides', '{"vision_layers": "two"}'], 'vision_layers must be a positive whole number'),
    (['--model-overrides', '{"transformer_heads": 3}'], 'one head per 64 channels'),
    (['--templates', '{x}'], "template '{x}'"), (['--templates', 'an emoji'], "template 'an emoji'"),
    (['--weight-decay', '-1'], '--weight-decay -1.0'), (['--grad-clip', '-1'], '--grad-clip -1.0'),
    (['--warmup', '-5'], '--warmup -5'), (['--lr', '0'], '--lr 0.0'), (['--lr', 'nan'], '--lr nan'),
    (['--eps=-1e-6'], '--eps'), (['--betas', '0.9', '1.5'], '--betas'), (['--workers', '-2'], '--workers -2'),
    (['--prefetch', '-1'], '--prefetch -1'), (['--train-num-samples', '0'], '--train-num-samples 0'),
    (['--seed', '-3'], '--seed -3'), (['--accum', '64'], 'cannot split a batch of 16'),
    (['--precision', 'fp8'], '--precision'), (['--csv-separator', ';;'], '--csv-separator'),
    (['--model', 'ViT-Z/99'], '--model'), (['--n-scenes', '0'], '--n-scenes 0'),
    (['--log-every', '0'], '--log-every 0'),
    # #26 item 9: overrides the tokenizer cannot honour
    (['--model-overrides', '{"vocab_size": 1000}'], "vocab_size 1000 is smaller than the tokenizer's 49,408 tokens"),
    (['--model-overrides', '{"context_length": 2}'], 'context_length 2 leaves no room for a word'),
    # #26 item 14: open_clip's options that mean something else here, refused with the translation
    (['--epochs', '3'], '--epochs is open_clip\'s: this trainer counts optimiser steps: use --steps ≈ epochs × training pairs'),
    (['--accum-freq', '4'], 'use --batch-size B×N --accum N'), (['--save-frequency', '1'], 'use --ckpt-every STEPS'),
    (['--lr-scheduler', 'const'], 'one schedule, linear warm-up then cosine'), (['--beta1', '0.9'], '--betas BETA1 BETA2')]


@pytest.mark.parametrize('extra, says', BAD_OPTIONS, ids=[' '.join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_refused_up_front(tmp_path, extra, says):
    from clip_annotated.cli import main
    out = tmp_path / 'run'
    with pytest.raises(CommandError) as e: _quiet(main, ['train', *TINY_ARGV, '--out', str(out), *extra])
    assert e.value.status == 2 and says in str(e.value) and '\n' not in str(e.value), str(e.value)
    assert str(e.value).startswith('clip-annotated train: ')
    assert not out.exists()                                                      # refused before anything was written


def test_open_clip_spellings_are_accepted(tmp_path):
    "#26 item 14: open_clip's names for the same settings train as ours (--wd, --precision amp_bf16, --local-loss, --logs/--name)."
    from clip_annotated.run import parse_args
    cfg = parse_args([*TINY_ARGV, '--wd', '0.05', '--precision', 'amp_bf16', '--local-loss', '--gather-with-grad',
                      '--lr-scheduler', 'cosine', '--logs', str(tmp_path), '--name', 'oc', '--grad-clip-norm', '1.0'])
    assert (cfg.weight_decay, cfg.precision, cfg.out, cfg.grad_clip) == (0.05, 'bf16', str(tmp_path / 'oc'), 1.0)
    assert parse_args(['--precision', 'amp']).precision == 'fp16'


def test_negative_batch_size_from_the_shell_ends_at_once(tmp_path):
    r = _cli('train', *TINY_ARGV, '--batch-size', '-4', '--out', str(tmp_path / 'run'), timeout=60)   # it used to spin
    assert r.returncode == 2 and r.stderr == 'clip-annotated train: --batch-size -4: must be a whole number ≥ 1\n'


def test_good_presets_pass_the_check():
    for name, cfg in PRESETS.items(): assert check_config(cfg) is cfg, name


# ------------------------------------------------------------------ 3. one run per folder

def test_second_run_refuses_while_the_first_holds_the_folder(tmp_path):
    out = tmp_path / 'run'
    with RunLock(out):
        with pytest.raises(RunInUseError, match=rf'{out} is in use by another run \(pid {os.getpid()} on '):
            _quiet(train, replace(TINY, out=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ['.lock']                  # nothing written by the refused run


def test_two_processes_in_one_folder(tmp_path):
    "A real first run holds the folder; a second process refuses (exit 1, one line) and the first finishes alone."
    out = tmp_path / 'run'
    argv = [*TINY_ARGV, '--steps', '400', '--ckpt-every', '100', '--out', str(out)]
    first = subprocess.Popen([CLI, 'train', *argv], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / 'metrics.jsonl').exists():
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() is not None else 'slow'
            time.sleep(0.05)
        second = _cli('train', *argv)
        if first.poll() is None:                       # still running: the normal case
            assert second.returncode == 1, second.stderr
            assert second.stderr.startswith(f'clip-annotated train: {out} is in use by another run (pid {first.pid} ')
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    steps = [r['step'] for r in read_metrics(out / 'metrics.jsonl') if 'loss' in r]
    assert steps == list(range(1, 401))                                          # one run's log, not two interleaved


def test_killed_runs_lock_and_temp_files_are_cleared(tmp_path):
    out = tmp_path / 'run'
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from clip_annotated.runfolder import RunLock; '
                               f'lock = RunLock({str(out)!r}).__enter__(); print("held", flush=True); time.sleep(600)'],
                              env=_env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(RunInUseError): _quiet(train, replace(TINY, out=str(out)))
    holder.send_signal(signal.SIGKILL); holder.wait()
    (out / '.checkpoint.pt.x1y2.tmp').write_bytes(b'half a checkpoint')       # a save cut short by the kill
    summary, err = _quiet(train, replace(TINY, out=str(out)))
    assert summary['steps'] == 3
    assert f'(pid {holder.pid} on ' in err and 'ended without releasing its lock' in err and '1 temporary file' in err
    assert not list(out.glob('.*.tmp')) and (out / '.lock').read_text() == ''


# ------------------------------------------------------------------ 4. bad samples in a map-style set

class _Holes(torch.utils.data.Dataset):
    "Scenes whose items in `bad` are unreadable (None), counted as a data set of this book counts them."
    def __init__(self, n: int, bad):
        self.ds, self.bad, self.skips = SceneDataset(n, seed=0, image_size=48, train=True), set(bad), SkipCounter()
    def __len__(self): return len(self.ds)
    def set_epoch(self, e): self.ds.set_epoch(e)
    def __getitem__(self, i):
        if i in self.bad: self.skips.add('corrupt image'); return None
        self.skips.add(None); return self.ds[i]


def test_all_bad_batch_is_skipped_and_counted(tmp_path):
    ds = _Holes(64, bad=range(2, 64))                  # 2 good items: of the 4 batches of an epoch, 2 or more are all bad
    summary, _ = _quiet(train_and_report, replace(TINY, steps=6, out=str(tmp_path / 'run')), datasets=(ds, None))
    recs = [r for r in read_metrics(tmp_path / 'run' / 'metrics.jsonl') if 'loss' in r]
    assert summary['steps'] == 6 and len(recs) == 6
    assert max(r['epoch'] for r in recs) >= 2                                   # at most 2 steps an epoch
    assert recs[-1]['skipped']['corrupt image'] > 0                             # the count reaches metrics.jsonl
    assert 'corrupt image' in (tmp_path / 'run' / 'report.md').read_text()      # and the report


def test_no_usable_sample_is_a_clear_error(tmp_path):
    ds = _Holes(64, bad=range(64))
    with pytest.raises(ValueError, match=r'epoch 0 gave no full batch .* bad samples \(training data: skipped 64 of 64'):
        _quiet(train, replace(TINY, out=str(tmp_path / 'run')), datasets=(ds, None))


# ------------------------------------------------------------------ 6. corrupt checkpoint on resume

def test_corrupt_resume_checkpoint_names_the_file_and_keeps_it(tmp_path):
    out = tmp_path / 'run'
    _quiet(train, replace(TINY, out=str(out)))
    ckpt = out / 'checkpoint.pt'
    ckpt.write_bytes(ckpt.read_bytes()[:4096])                                 # cut short (a copy that stopped)
    cut = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=rf'{ckpt} is not a readable checkpoint \(.*central directory\): it may be '
                                              r'cut short or damaged; restore a copy, or start afresh with --no-resume'):
        _quiet(train, replace(TINY, out=str(out), steps=5))
    assert ckpt.read_bytes() == cut                                            # left for the user to rescue
    r = _cli('train', *TINY_ARGV, '--steps', '5', '--out', str(out))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and str(ckpt) in r.stderr


def test_checkpoint_with_code_is_refused_without_suggesting_unsafe_loading(tmp_path):
    class Payload:
        def __reduce__(self): return (print, ('pwned',))
    bad = tmp_path / 'checkpoint.pt'
    torch.save({'config': Payload()}, bad)
    with pytest.raises(CheckpointError) as e: load_checkpoint(bad)
    assert str(bad) in str(e.value) and 'weights_only' not in str(e.value)
    assert 'needs code to load (print), so it was not loaded' in str(e.value)


def test_other_file_named_checkpoint_is_refused(tmp_path):
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'checkpoint.pt')
    with pytest.raises(CheckpointError, match='not a training checkpoint of this book'):
        load_checkpoint(tmp_path / 'checkpoint.pt')
    (tmp_path / 'random.pt').write_bytes(bytes(range(256)) * 12)                  # bytes that are no checkpoint
    with pytest.raises(CheckpointError, match=r'random.pt is not a checkpoint \(not a file torch.save wrote\)') as e:
        load_checkpoint(tmp_path / 'random.pt')
    assert 'unsafe' not in str(e.value) and 'weights_only' not in str(e.value)


# ------------------------------------------------------------------ 8. the command line, and a full disk

def test_library_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / 'pairs.csv').write_text('filepath,title\nnowhere.png,a cat\n')
    argv = ['train', *TINY_ARGV, '--train-data', str(tmp_path / 'pairs.csv'), '--out', str(tmp_path / 'run')]
    r = _cli(*argv)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith('clip-annotated train: ')
    d = _cli(*argv, '--debug')
    assert d.returncode == 1 and 'Traceback (most recent call last)' in d.stderr
    d2 = _cli('--debug', *argv)                                                 # before the command, too
    assert 'Traceback (most recent call last)' in d2.stderr


def test_argparse_and_help_keep_their_codes():
    assert _cli('train', '--batch-size', 'many').returncode == 2
    assert _cli('train', '--help').returncode == 0
    r = _cli('fly')
    assert r.returncode == 2 and r.stderr == "clip-annotated: unknown command 'fly'; choose one of train, reproduce, eval, predict, embed, export, download\n"
    from clip_annotated import __version__
    r = _cli('--version')                                                    # #26 item 11
    assert r.returncode == 0 and r.stdout == f"clip-annotated {__version__}\n" and r.stderr == ''
    assert '--version' in _cli('--help').stdout


def test_disk_full_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'checkpoint.pt'
    save_checkpoint({'x': torch.arange(10)}, path)
    before = path.read_bytes()
    real = os.fdopen
    class Full:                                   # a file on a disk with 1,000 bytes left
        def __init__(self, f): self.f, self.n = f, 0
        def write(self, b):
            self.n += len(b)
            if self.n > 1000: raise OSError(errno.ENOSPC, 'No space left on device')
            return self.f.write(b)
        def __getattr__(self, k): return getattr(self.f, k)
        def __enter__(self): return self
        def __exit__(self, *a): self.f.close()
    monkeypatch.setattr(os, 'fdopen', lambda fd, *a, **kw: Full(real(fd, *a, **kw)))
    with pytest.raises(OSError, match=rf'no space left on device while writing {path} \(the previous checkpoint, if any, is intact\)'):
        save_checkpoint({'x': torch.zeros(100_000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.pt']


def test_run_folder_links_are_refused_and_their_targets_untouched(tmp_path):
    "#26 item 1: a run file that is a symbolic link (a cloned runs/x/.lock pointing at a dotfile) is refused, exit 2, naming it."
    secret = tmp_path / 'secret'; secret.write_text('my password\n')
    for name in ('.lock', 'metrics.jsonl', 'report.md'):
        out = tmp_path / f'run-{name.strip(".")}'; out.mkdir()
        (out / name).symlink_to(secret)
        r = _cli('train', *TINY_ARGV, '--out', str(out))
        assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
        assert f'{out / name} is a symbolic link' in r.stderr and 'my password' not in r.stderr + r.stdout
        assert secret.read_text() == 'my password\n' and sorted(q.name for q in out.iterdir()) == [name]


def test_a_folder_of_other_files_is_not_trained_into(tmp_path):
    "#26 item 2: a non-empty folder that is not a run is refused, exit 2, naming it, and nothing in it changes; a file as --out too."
    out = tmp_path / 'photos'; out.mkdir(); (out / 'cat.jpg').write_bytes(b'jpeg'); (out / '.x.tmp').write_bytes(b'mine')
    r = _cli('train', *TINY_ARGV, '--out', str(out))
    assert r.returncode == 2 and f'--out {out} is not empty and is not a run folder' in r.stderr, r.stderr
    assert sorted(q.name for q in out.iterdir()) == ['.x.tmp', 'cat.jpg'] and (out / '.x.tmp').read_bytes() == b'mine'
    r = _cli('train', *TINY_ARGV, '--out', str(out / 'cat.jpg'))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'cat.jpg is a file, not a folder' in r.stderr, r.stderr


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path):
    "#26 item 12: a run refused after taking the lock (here: no data) removes the folder it made, .lock and all."
    out = tmp_path / 'new-run'
    r = _cli('train', *TINY_ARGV, '--train-data', str(tmp_path / 'missing.csv'), '--out', str(out))
    assert r.returncode == 2 and 'missing.csv' in r.stderr, r.stderr
    assert not out.exists()


def test_file_system_without_locks_warns_and_trains(tmp_path, monkeypatch):
    "flock failing with ENOLCK (an NFS mount without lock support) is not 'in use': the run goes on, with a warning."
    import fcntl
    def no_locks(f, op): raise OSError(errno.ENOLCK, 'No locks available')
    monkeypatch.setattr(fcntl, 'flock', no_locks)
    summary, err = _quiet(train, replace(TINY, out=str(tmp_path / 'run')))
    assert summary['steps'] == 3 and 'cannot lock the run folder (No locks available)' in err


# ------------------------------------------------------------------ #26 item 8: --no-resume keeps the old run until it has a checkpoint

def test_interrupted_no_resume_keeps_the_old_run(tmp_path):
    out = tmp_path / 'run'
    old, _ = _quiet(train, replace(TINY, out=str(out), steps=3))
    old_ckpt, old_log = (out / 'checkpoint.pt').read_bytes(), (out / 'metrics.jsonl').read_text()
    fresh = replace(TINY, out=str(out), steps=6, ckpt_every=4, resume=False)
    ds = SceneDataset(64, seed=0, image_size=48, train=True)
    class Stop(torch.utils.data.Dataset):                       # stops after 2 steps of the fresh run (before its checkpoint at 4)
        def __init__(self): self.n = 0
        def __len__(self): return len(ds)
        def set_epoch(self, e): ds.set_epoch(e)
        def __getitem__(self, i):
            self.n += 1
            if self.n > 2 * fresh.batch_size: raise KeyboardInterrupt('killed')
            return ds[i]
    with pytest.raises(KeyboardInterrupt): _quiet(train, fresh, datasets=(Stop(), None))
    assert not (out / 'checkpoint.pt').exists()                                  # nothing to resume by mistake
    assert (out / '.previous-checkpoint.pt').read_bytes() == old_ckpt           # the old run, whole
    assert (out / '.previous-metrics.jsonl').read_text() == old_log
    again, err = _quiet(train, replace(TINY, out=str(out), steps=5, ckpt_every=2))   # a plain run: starts afresh
    assert again['steps'] == 5 and load_checkpoint(out / 'checkpoint.pt')['data']['step'] == 5
    assert [r['step'] for r in read_metrics(out / 'metrics.jsonl') if 'loss' in r] == [1, 2, 3, 4, 5]
    assert not list(out.glob('.previous-*'))                                    # gone with the new run's first checkpoint
    assert [p.name for p in tmp_path.iterdir()] == ['run']                      # nothing written outside the run folder


def test_no_resume_says_what_it_kept(tmp_path):
    out = tmp_path / 'run'
    _quiet(train, replace(TINY, out=str(out)))
    _, err = _quiet(train, replace(TINY, out=str(out), resume=False))
    assert f"{out}: the previous run's checkpoint.pt and metrics.jsonl are kept as .previous-* until" in err
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'checkpoint.pt', 'metrics.jsonl']


# ------------------------------------------------------------------ review (a): the lock goes with the trainer, not its workers

def test_killed_trainer_with_workers_releases_the_lock_at_once(tmp_path):
    out = tmp_path / 'run'
    argv = [*TINY_ARGV, '--steps', '2000', '--ckpt-every', '1000', '--workers', '2', '--out', str(out)]
    first = subprocess.Popen([CLI, 'train', *argv], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / 'metrics.jsonl').exists():                              # training, with its workers started
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() is not None else 'slow'
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL); first.wait()
        with RunLock(out) as lock: assert lock.stale is not None              # free at once: the workers hold no copy
    finally:
        if first.poll() is None: first.kill()
