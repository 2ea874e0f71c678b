"""Training on your own pairs (CSV and webdataset shards), fine-tuning and resume safety, end to end on CPU.

* Uneven shards (50, 50 and 7 samples) under `torchrun --nproc_per_node=2` (gloo), with a batch that divides
  none of them: the run finishes (bounded by a timeout here) and both ranks run the same steps in every
  epoch, with resampling (fixed epochs) and without (the ranks agree to stop when the first runs out).
* A CSV run on two ranks hands every pair to exactly one rank, once per epoch.
* Fine-tuning from a run: the new learning rate is logged from the first step, a locked tower stays
  bit-identical; resuming a run with a changed learning rate is refused, naming the field.
"""
from __future__ import annotations

import json, os, subprocess, sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import child_env
import torch
from PIL import Image

from clip_annotated import readers as R
from clip_annotated.runfolder import load_checkpoint, read_metrics
from clip_annotated.train import PRESETS, train
from clip_annotated.run import train_and_report

REPO = Path(__file__).resolve().parents[1]
TINY = dict(embed_dim=32, image_resolution=24, vision_layers=1, vision_width=64, vision_patch_size=12,
            transformer_width=64, transformer_heads=1, transformer_layers=1)
OPTS = ['--model-overrides', json.dumps(TINY), '--warmup', '2', '--ckpt-every', '1000', '--eval-every', '0',
        '--no-progress', '--threads', '1']


def _pairs(n: int, start: int = 0):
    "n distinct (picture, caption) pairs: a coloured square and its number."
    rng = np.random.default_rng(start)
    for k in range(start, start + n):
        yield Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)), f"pair number {k}"


def _env() -> dict:
    return child_env()


def _torchrun(out: Path, *args: str, timeout: int = 300) -> list[dict]:
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nnodes=1', '--nproc_per_node=2',
           str(REPO / 'tests' / '_own_data_worker.py'), *OPTS, '--out', str(out), *args]
    r = subprocess.run(cmd, env=_env(), cwd=out.parent, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [json.loads((out / f'rank{k}.json').read_text()) for k in range(2)]


@pytest.fixture(scope='module')
def uneven_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp('shards')
    sizes = (50, 50, 7)
    for k, n in enumerate(sizes):
        written = R.write_webdataset(_pairs(n, start=1000 * k), folder / f'part{k}', samples_per_shard=n)
        written[0].rename(folder / f'{k:05d}.tar')
    return str(folder / '{00000..00002}.tar'), sizes


@pytest.mark.parametrize('resampled', [False, True])
def test_uneven_shards_two_ranks_same_steps(tmp_path, uneven_shards, resampled):
    spec, sizes = uneven_shards
    extra = ['--dataset-resampled', '--train-num-samples', '80'] if resampled else []
    ranks = _torchrun(tmp_path / 'run', '--train-data', spec, '--batch-size', '8', '--steps', '30', *extra)
    assert ranks[0]['epoch_steps'] == ranks[1]['epoch_steps'], ranks
    steps = [r for r in read_metrics(tmp_path / 'run' / 'metrics.jsonl') if 'loss' in r]
    assert [r['step'] for r in steps] == list(range(1, 31))                      # every step once, to the end
    if resampled: assert ranks[0]['epoch_steps'] == [10, 10, 10]                  # 80 samples / batch 8
    else:                                                    # each epoch: as many batches as the shorter rank has
        assert all(1 <= n <= (sum(sizes) - 7) // 4 for n in ranks[0]['epoch_steps']), ranks


def test_csv_two_ranks_each_pair_once_per_epoch(tmp_path):
    csv_path = R.write_csv(_pairs(48), tmp_path / 'data' / 'pairs.csv')
    ranks = _torchrun(tmp_path / 'run', '--record', '--train-data', str(csv_path), '--batch-size', '8', '--steps', '12')
    assert ranks[0]['epoch_steps'] == ranks[1]['epoch_steps'] == [6, 6]           # 48 pairs / batch 8 per epoch
    for epoch in (0, 1):
        seen = [c for r in ranks for e, c in r['seen'] if e == epoch]
        assert sorted(seen) == sorted(f"pair number {k}" for k in range(48))      # all of them, none twice
        assert not {c for e, c in ranks[0]['seen'] if e == epoch} & {c for e, c in ranks[1]['seen'] if e == epoch}


def _cfg(out: Path, data: Path, **kw):
    return replace(PRESETS['mini-cpu'], model_overrides=TINY, train_data=str(data), batch_size=8, steps=3, warmup=0,
                   ckpt_every=1000, eval_every=0, progress=False, threads=1, out=str(out), **kw)


def test_fine_tune_new_lr_from_first_step_and_locked_tower(tmp_path):
    data = R.write_csv(_pairs(32), tmp_path / 'data' / 'pairs.csv')
    base = _cfg(tmp_path / 'base', data, lr=1e-3)
    train(base)
    tuned = _cfg(tmp_path / 'tuned', data, lr=1e-4, pretrained=str(tmp_path / 'base'), lock_image=True, seed=1)
    summary = train_and_report(tuned)
    first = [r for r in read_metrics(tmp_path / 'tuned' / 'metrics.jsonl') if 'loss' in r][0]
    assert first['step'] == 1 and first['lr'] == pytest.approx(1e-4)
    a, b = load_checkpoint(tmp_path / 'base' / 'checkpoint.pt'), load_checkpoint(tmp_path / 'tuned' / 'checkpoint.pt')
    for k, v in a['model'].items():
        if k.startswith('visual.'): assert torch.equal(v, b['model'][k]), k                     # locked: untouched
    assert not torch.equal(a['model']['text_projection'], b['model']['text_projection'])      # the text tower trained
    report = (tmp_path / 'tuned' / 'report.md').read_text()
    assert f"from {tmp_path / 'base'}" in report and 'locked: image tower' in report and str(data) in report
    assert summary['data']['train_items'] == 32


def test_resume_with_changed_lr_is_refused(tmp_path):
    data = R.write_csv(_pairs(16), tmp_path / 'data' / 'pairs.csv')
    train(_cfg(tmp_path / 'run', data, lr=1e-3))
    with pytest.raises(ValueError, match=r"lr: 0\.001 in the run, 0\.0001 now.*--pretrained .*run --out .*run-finetuned"):
        train(_cfg(tmp_path / 'run', data, lr=1e-4))
    r = subprocess.run([sys.executable, '-m', 'clip_annotated.run', *OPTS, '--train-data', str(data), '--batch-size', '8',
                        '--steps', '3', '--warmup', '0', '--out', str(tmp_path / 'run'), '--lr', '1e-4'],
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert 'lr: 0.001 in the run' in r.stderr


def test_runs_dir_is_honoured_by_train(tmp_path, monkeypatch):
    from clip_annotated.run import parse_args
    monkeypatch.setenv('CLIP_ANNOTATED_RUNS', str(tmp_path))
    assert Path(parse_args([]).out) == tmp_path / 'mini'
    assert parse_args(['--out', 'x']).out == 'x'


def test_data_option_names_train_data(capsys):
    from clip_annotated.run import parse_args
    with pytest.raises(SystemExit):
        parse_args(['--data', 'data/train.csv'])
    assert "invalid choice: 'data/train.csv'" in capsys.readouterr().err


# ------------------------------------------------------------------ #26 items 15, 16: a rank left without a batch, under torchrun

@pytest.fixture(scope='module')
def lopsided_shards(tmp_path_factory):
    "Shards of 40, 40 and 3 pairs: with seed 0, epoch 1 deals rank 1 only the shard of 3, less than its batch of 8."
    folder = tmp_path_factory.mktemp('lopsided')
    for k, n in enumerate((40, 40, 3)):
        R.write_webdataset(_pairs(n, start=1000 * k), folder / f'part{k}', samples_per_shard=n)[0].rename(folder / f'{k:05d}.tar')
    return str(folder / '{00000..00002}.tar')


def test_rank_without_a_batch_stops_with_a_checkpoint_naming_each_rank(tmp_path, lopsided_shards):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nnodes=1', '--nproc_per_node=2',
           '-m', 'clip_annotated.run', *OPTS, '--train-data', lopsided_shards, '--batch-size', '16', '--steps', '60',
           '--out', str(out)]
    r = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, r.stderr[-3000:]
    shares = 'rank 0: 2 shards, 80 samples; rank 1: 1 shard, 3 samples'
    warned = [l for l in r.stderr.splitlines() if l.startswith('--train-data ')]        # before training: the shard sizes say so
    assert len(warned) == 1 and 'epoch 1 would leave rank 1 without a full batch of 8' in warned[0] and shares in warned[0], r.stderr
    said = [l for l in r.stderr.splitlines() if l.startswith('clip-annotated train: ')]
    assert len(said) == 1, r.stderr[-3000:]                                         # rank 0's line only, not one per rank
    assert said[0].startswith(f'clip-annotated train: epoch 1 gave no full batch of 8 to rank 1 of 2: its shards this epoch '
                              f'hold too few samples ({shares})'), said
    assert 'fewer shards than ranks' not in said[0] and 'the checkpoint of step 5' in said[0], said
    ck = load_checkpoint(out / 'checkpoint.pt')                                      # the steps done are kept
    steps = [rec['step'] for rec in read_metrics(out / 'metrics.jsonl') if 'loss' in rec]
    assert ck['data']['step'] == 5 and (ck['data']['epoch'], ck['data']['step_in_epoch']) == (1, 0) and steps == [1, 2, 3, 4, 5]
    tail = r.stderr[r.stderr.rindex('Root Cause'):]                                   # torchrun's summary, the last lines
    assert f'traceback : {said[0]}' in tail, tail                                    # the one line, last on the screen
    assert sorted(p.name for p in tmp_path.iterdir()) == ['run']
