"""`make gpu-check` without CUDA (issue #28): the whole script, end to end, with tiny sizes, so that it
cannot rot between the rare runs on a GPU.

`python -m clip_annotated.gpucheck --tiny` runs in a temporary folder with CUDA hidden; every part
must succeed, the JSON must say that CUDA was not used and why the sizes are tiny, both sides of both
benchmarks must have been timed, the killed run must have resumed to the uninterrupted run's
checkpoint, and the chapters must not show these figures (they are not a GPU's).
"""
from __future__ import annotations

import json, os, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_without_cuda(tmp_path):
    env = {**os.environ, 'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    env.pop('IN_TEST', None)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, '-m', 'clip_annotated.gpucheck', '--tiny', '--deadline', '150', '--out', str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    wall = time.perf_counter() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert res['cuda'] is False and res['sizes'] == 'tiny' and res['hardware'] and res['ok'], res
    assert any('no CUDA' in n for n in res['notes']) and any('torch.compile' in n for n in res['notes']), res['notes']
    parts = res['parts']
    assert list(parts) == ['pytest', 'nbdev', 'train_bench', 'eval_bench', 'train_run']
    assert all(p['status'] == 'ok' for p in parts.values()), {k: (p['status'], p['error']) for k, p in parts.items()}
    assert parts['pytest']['records'][0]['collected'] >= 1                    # the `cuda` marker selects something
    assert '14_efficiency.ipynb' in parts['nbdev']['records'][0]['chapters']
    for part in ('train_bench', 'eval_bench'):
        recs = parts[part]['records']
        assert recs[0]['ok'], recs[0]                                         # checked equal before timing
        timed = {(x['side'], x['batch_size']) for x in recs if x.get('status') == 'ok' and x['items_s'] > 0}
        assert {('ours', 4), ('open_clip', 4), ('ours', 16), ('open_clip', 16)} <= timed, recs
    run = {x['run']: x for x in parts['train_run']['records']}
    assert run['uninterrupted']['steps_per_s'] > 0 and run['uninterrupted']['device'] == 'cpu'
    assert run['killed']['returncode'] == -9 and run['killed']['checkpoint_step'] < run['uninterrupted']['steps']
    assert run['compare']['identical'] and run['compare']['same_losses'], run['compare']
    md = (tmp_path / 'gpu_check.md').read_text()
    assert 'CUDA used: no' in md and 'without CUDA' in md

    from clip_annotated.efficiency import gpu_check_results, gpu_check_table
    assert gpu_check_results(tmp_path / 'gpu_check.json') is None            # not a GPU's figures: chapters don't show them
    assert 'ours' in gpu_check_table(res)
    print(f"gpu-check with tiny sizes: {wall:.0f} s")
