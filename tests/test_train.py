"""Training runs of `clip_annotated.train`, end to end, in subprocesses (CPU, float32, deterministic).

* Kill and resume (pinned to the CPU, `--device cpu`, even where there is a GPU): a run killed with SIGKILL
  right after it wrote a checkpoint in the middle of an epoch, then resumed with the same command, ends with
  weights (and optimiser state) bit-identical to a run that was never interrupted; its metrics.jsonl holds
  each step exactly once, and running the finished run's command again leaves it unchanged.
* Data parallel: `torchrun --nproc_per_node=2` (gloo, with exact gradient accumulation in 2 chunks)
  runs a few steps, finishes, and only rank 0 writes: one checkpoint, one log line per step, a report.
* `retrieval_metrics` on hand-made features whose ranks are known.
* Checkpoints load with `torch.load(weights_only=True)`.
* The option checks and the resume policy live in their appendix (`options`, issue #27 item 10); `train` still
  answers for them, and a saved configuration that predates a field resumes at that field's default.
"""
from __future__ import annotations

import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import child_env
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(embed_dim=32, vision_layers=1, vision_width=64, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
# 256 scenes in batches of 32: 8 steps per epoch; checkpoints at steps 5, 10, 15, 20 and 24
TINY = ['--preset', 'scenes-tiny', '--model-overrides', json.dumps(TINY_MODEL), '--n-scenes', '256',
        '--batch-size', '32', '--steps', '24', '--warmup', '4', '--ckpt-every', '5', '--eval-every', '0',
        '--no-progress']


def _env(threads: int = 1) -> dict:
    return child_env(threads)


def _train_cmd(out: Path, *extra: str) -> list[str]:
    "The kill-and-resume run's command, on the CPU on any machine: bit-identical resumption is promised there, not on a GPU."
    return [sys.executable, '-m', 'clip_annotated.run', *TINY, '--device', 'cpu', '--threads', '1', '--out', str(out), *extra]


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
    assert a['config']['device'] == b['config']['device'] == 'cpu'
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


def test_the_book_places_the_resume_promise_where_the_test_runs():
    "The run-folder and training chapters name the kill-and-resume test and say it runs on the CPU, as `_train_cmd` pins it."
    cmd = _train_cmd(Path('run'))
    assert cmd[cmd.index('--device') + 1] == 'cpu'
    for twin in ('05e_run_folder.py', '06_train.py'):
        text = ' '.join(l.lstrip('#').strip() for l in (REPO/'nbs'/'_py'/twin).read_text().splitlines())
        assert 'test_sigkill_mid_epoch_then_resume_is_bit_identical' in text and 'The test runs on the CPU' in text, twin


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
    from clip_annotated.retrieval import retrieval_metrics
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


def test_two_processes_with_accumulation_equal_one_whole_batch(tmp_path):
    "torchrun, 2 ranks × 2 accumulation chunks of 8, against one process with the whole batch of 32: the same losses and weights."
    torchrun = Path(sys.executable).parent/'torchrun'
    if not torchrun.exists(): pytest.skip('torchrun not found next to the interpreter')
    args = [*TINY, '--steps', '4', '--ckpt-every', '4', '--threads', '1']
    ddp = subprocess.run([str(torchrun), '--standalone', '--nnodes=1', '--nproc_per_node=2', '-m', 'clip_annotated.run',
                          *args, '--accum', '2', '--out', str(tmp_path/'ddp')], env=_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, '-m', 'clip_annotated.run', *args, '--out', str(tmp_path/'one')], env=_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    # the ranks' batches b are the shares of the one process's batch b (DistributedSampler deals a shuffle
    # by rank), and the contrastive loss of a batch does not depend on the order of its pairs
    loss = lambda run: [r['loss'] for r in map(json.loads, (tmp_path/run/'metrics.jsonl').read_text().splitlines()) if 'loss' in r]
    assert len(loss('ddp')) == len(loss('one')) == 4
    torch.testing.assert_close(loss('ddp'), loss('one'), rtol=1e-5, atol=1e-6)
    a, b = _load(tmp_path/'ddp'/'checkpoint.pt')['model'], _load(tmp_path/'one'/'checkpoint.pt')['model']
    for k in a:      # 4 AdamW steps of lr ~1e-3 move a weight by ~1e-3; float noise in the sums stays below 1e-4
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=lambda m: f"{k}: {m}")


# ------------------------------------------------------------------ no host sync between log steps

_DATA_SIDE = {'clip_annotated.loader', 'clip_annotated.tokenizer', 'clip_annotated.data', 'clip_annotated.scenes',
              'clip_annotated.readers', 'clip_annotated.pretrained'}      # run in DataLoader workers on a GPU machine


def _count_host_reads(monkeypatch) -> list:
    "Patch every way a tensor's value reaches Python; note each call made from the training side of our code."
    import inspect
    calls = []
    def counting(name, real):
        def wrapper(self, *a, **kw):
            frame = inspect.currentframe().f_back
            while frame is not None and not frame.f_globals.get('__name__', '').startswith('clip_annotated.'):
                frame = frame.f_back
            cpu_only = frame is not None and frame.f_code.co_name == 'encode_text' and self.device.type == 'cpu'
            if frame is not None and frame.f_globals['__name__'] not in _DATA_SIDE and not cpu_only:
                calls.append(f"{frame.f_globals['__name__']}:{frame.f_lineno} {name}")
            return real(self, *a, **kw)
        return wrapper
    for name in ('item', 'tolist', '__bool__', '__float__', '__int__', '__index__', 'numpy', 'cpu'):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    return calls


def _reads_in_run(tmp_path, monkeypatch, steps: int, log_every: int) -> list:
    from dataclasses import replace
    from clip_annotated.train import PRESETS, train
    cfg = replace(PRESETS['scenes-tiny'], model_overrides=TINY_MODEL, n_scenes=256, batch_size=32, steps=steps,
                  warmup=2, ckpt_every=10**6, eval_every=0, log_every=log_every, progress=False, threads=1,
                  out=str(tmp_path/f'run{steps}'))
    with monkeypatch.context() as m:
        calls = _count_host_reads(m)
        train(cfg)
    return calls


def test_no_host_sync_between_log_steps(tmp_path, monkeypatch):
    "Reads of a tensor's value from the training side: as many in 12 steps logged every 6 as in 6 steps logged every 3."
    few, many = _reads_in_run(tmp_path, monkeypatch, 6, 3), _reads_in_run(tmp_path, monkeypatch, 12, 6)
    assert len(many) == len(few), f"{len(many) - len(few)} more reads in the longer run: {sorted(set(many) - set(few))[:10]}"
    assert few, "the counter saw nothing: the patch is broken"


def test_text_encoder_reads_nothing_back_off_the_cpu():
    "The text encoder cuts the padding after [EOS] only for CPU tokens (the read the test above leaves out); on any other device it reads nothing: meta tensors, which have no values, go through."
    from clip_annotated.model import create_model
    from clip_annotated.tokenizer import tokenize
    model = create_model('MiniCLIP').eval()
    tokens = tokenize(['a cat', 'two red circles above a square'], context_length=model.context_length)
    with torch.no_grad(): want = model.encode_text(tokens)
    torch.testing.assert_close(model.encode_text(tokens[:, :12]), want)                 # fewer columns: the same
    assert model.to('meta').encode_text(tokens.to('meta')).shape == want.shape        # no value is read


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA: the CPU test above counts the reads instead')
def test_no_cuda_sync_between_log_steps(tmp_path):
    "On CUDA, torch's sync debug mode counts the synchronisations: the same number for 12 steps logged every 6 as for 6 logged every 3."
    import warnings
    from dataclasses import replace
    from clip_annotated.train import PRESETS, train
    def syncs(steps, log_every):
        cfg = replace(PRESETS['scenes-tiny'], model_overrides=TINY_MODEL, n_scenes=256, batch_size=32, steps=steps,
                      warmup=2, ckpt_every=10**6, eval_every=0, log_every=log_every, progress=False, device='cuda',
                      precision='bf16', workers=1, out=str(tmp_path/f'cuda{steps}'))
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter('always')
                train(cfg)
        finally: torch.cuda.set_sync_debug_mode('default')
        return [x for x in w if 'synchroniz' in str(x.message)]
    assert len(syncs(12, 6)) == len(syncs(6, 3))


def test_option_checks_live_in_their_appendix():
    from dataclasses import asdict, replace
    import clip_annotated.options as options, clip_annotated.train as train
    for name in ('check_config', 'check_resume', 'config_changes', 'check_device', 'check_template', 'FREE_ON_RESUME', 'SAVED_BEFORE'):
        assert getattr(train, name) is getattr(options, name), name            # older imports from train keep working
    saved = asdict(replace(train.TrainConfig(), lr=1e-3))
    del saved['lock_text']                                                     # a checkpoint from before the field existed
    assert train.config_changes(saved, replace(train.TrainConfig(), lr=1e-3)) == []
    assert train.config_changes(saved, train.TrainConfig()) == ["lr: 0.001 in the run, 0.0005 now"]
