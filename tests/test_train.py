"""Training runs of `clip_annotated.train`, end to end, in subprocesses (CPU, float32, deterministic).

* Kill and resume: a run killed with SIGKILL right after it wrote a checkpoint in the middle of an
  epoch, then resumed with the same command, ends with weights (and optimiser state) bit-identical to
  a run that was never interrupted; its metrics.jsonl holds each step exactly once, and running the
  finished run's command again leaves it unchanged.
* Data parallel: `torchrun --nproc_per_node=2` (gloo, with exact gradient accumulation in 2 chunks)
  runs a few steps, finishes, and only rank 0 writes: one checkpoint, one log line per step, a report.
* `retrieval_metrics` on hand-made features whose ranks are known.
* Checkpoints load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(embed_dim=32, vision_layers=1, vision_width=64, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
# 256 scenes in batches of 32: 8 steps per epoch; checkpoints at steps 5, 10, 15, 20 and 24
TINY = ['--preset', 'scenes-tiny', '--model-overrides', json.dumps(TINY_MODEL), '--n-scenes', '256',
        '--batch-size', '32', '--steps', '24', '--warmup', '4', '--ckpt-every', '5', '--eval-every', '0',
        '--no-progress']


def _env(threads: int = 1) -> dict:
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONHASHSEED': '0'}
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
    env.pop('IN_TEST', None)
    return env


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, '-m', 'clip_annotated.run', *TINY, '--threads', '1', '--out', str(out), *extra]


def _load(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    full, killed = tmp_path/'full', tmp_path/'killed'
    ref = subprocess.Popen(_train_cmd(full), env=_env(), cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(_train_cmd(killed), env=_env(), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed/'checkpoint.pt'
    deadline = time.time() + 120
    while not ckpt.exists():                           # the first checkpoint: step 5 of 8 in epoch 0
        assert victim.poll() is None, 'the run ended before writing a checkpoint'
        assert time.time() < deadline, 'no checkpoint after 120 s'
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    data = _load(ckpt)['data']
    assert data['step'] < 24 and data['step_in_epoch'] != 0, data     # killed mid-epoch, before the end
    assert not (killed/'report.md').exists()

    resumed = subprocess.run(_train_cmd(killed), env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out, _ = ref.communicate(timeout=180)
    assert ref.returncode == 0, out

    a, b = _load(full/'checkpoint.pt'), _load(killed/'checkpoint.pt')
    assert a['data'] == b['data'] and a['data']['step'] == 24
    assert a['model'].keys() == b['model'].keys()
    for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), f'{k} differs after resume'
    for i, s in a['optimizer']['state'].items():
        for k, v in s.items(): assert torch.equal(v, b['optimizer']['state'][i][k]), f'optimizer state {i}.{k}'
    assert a['scheduler'] == b['scheduler']
    records = lambda p: [r for r in map(json.loads, (p/'metrics.jsonl').read_text().splitlines()) if 'loss' in r]   # training steps, not evals
    steps = [r['step'] for r in records(killed)]
    assert steps == list(range(1, 25))                 # the steps after the kill were dropped and redone once
    losses = lambda p: [r['loss'] for r in records(p)]
    assert losses(full) == losses(killed)              # the same run, step for step
    assert (killed/'report.md').exists()

    # Running the finished run's command again trains nothing and leaves its log as it was.
    log = (full/'metrics.jsonl').read_text()
    again = subprocess.run(_train_cmd(full), env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (full/'metrics.jsonl').read_text() == log


def test_torchrun_two_processes(tmp_path):
    torchrun = Path(sys.executable).parent/'torchrun'
    if not torchrun.exists(): pytest.skip('torchrun not found next to the interpreter')
    out = tmp_path/'ddp'
    cmd = [str(torchrun), '--standalone', '--nnodes=1', '--nproc_per_node=2', '-m', 'clip_annotated.run',
           *TINY, '--steps', '6', '--ckpt-every', '3', '--accum', '2', '--out', str(out)]
    r = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ck = _load(out/'checkpoint.pt')                    # weights_only: plain data
    assert ck['data']['world_size'] == 2 and ck['data']['step'] == 6
    assert ck['data']['steps_per_epoch'] == 128 // 16  # each rank reads 128 of the 256 scenes, 16 at a time
    recs = [json.loads(l) for l in (out/'metrics.jsonl').read_text().splitlines()]
    assert [x['step'] for x in recs if 'loss' in x] == list(range(1, 7))   # rank 0 alone logs
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'checkpoint.pt', 'curves.png', 'metrics.jsonl', 'report.md']
    assert r.stdout.count('# Training run') == 1       # one report printed, by rank 0


def test_retrieval_metrics_hand_made():
    from clip_annotated.train import retrieval_metrics
    # image i's right caption is text i; cosine rows: picture 0 -> (1, .8, ...), picture 1 -> (0, .6, ...)
    img = torch.tensor([[1., 0.], [0., 1.], [-1., 0.1], [-1., -0.1]])
    txt = torch.tensor([[1., 0.], [0.8, 0.6], [-1., 0.2], [-1., -0.3]])
    r = retrieval_metrics(img, txt, ks=(1, 2, 10))
    assert (r['i2t_R@1'], r['t2i_R@1'], r['t2i_R@2']) == (1.0, 0.75, 1.0)
    assert r['i2t_chance@1'] == 0.25 and r['i2t_chance@10'] == 1.0 and r['t2i_chance@10'] == 1.0
    # a reversed order makes every image's right text the worst: R@1 = 0, R@4 = 1
    rev = retrieval_metrics(torch.eye(4), torch.eye(4).flip(0), ks=(1, 4))
    assert rev['i2t_R@1'] == 0.0 and rev['i2t_R@4'] == 1.0
    # ties count against the model
    assert retrieval_metrics(torch.ones(6, 3), torch.ones(6, 3))['t2i_R@1'] == 0.0
    # two pictures per caption: text->image hits if either is first; chance 1 - C(2, 1)... = 1/2 with 4 pictures
    shared = retrieval_metrics(torch.tensor([[1., 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]]), torch.tensor([[0., 1.], [1., 0.]]),
                               ks=(1,), image_to_text=torch.tensor([1, 1, 0, 0]))
    assert shared['i2t_R@1'] == 1.0 and shared['t2i_R@1'] == 1.0 and abs(shared['t2i_chance@1'] - 0.5) < 1e-12
    with pytest.raises(ValueError, match='image_to_text'): retrieval_metrics(torch.randn(3, 2), torch.randn(2, 2))
