"""The end-to-end harness of appendix 99b (`make bench-e2e`), its pieces only: no training, no open_clip venv.

open_clip itself (a development dependency of this venv) checks the model config the harness writes for
it, and the shapes and names of its model against ours; its training script's parser checks the options
the harness gives it. The shards, the data options of our arms, and the judge's loader are checked on
tiny inputs.
"""
from __future__ import annotations

import json, warnings

import pytest
import torch

from clip_annotated.e2e import (E2E_MODEL_NAME, E2E_SETTINGS, bench_e2e, e2e_config, load_trained, open_clip_train_argv,
                                ours_data_options, ours_train_argv, parse_e2e_arm, write_emoji_shards, write_open_clip_config)
from clip_annotated.model import create_model
from clip_annotated.pretrained import TRAIN_ZOOM
from clip_annotated.readers import open_data


def test_shards_written(tmp_path):
    shards = write_emoji_shards(tmp_path, per_shard=4, limit=10)
    for split in ('train', 'test'):
        assert shards[split] == f"{tmp_path / split}/{{00000..00002}}.tar"
        assert len(list((tmp_path / split).glob('*.tar'))) == 3
        items = list(open_data(shards[split]))
        assert len(items) == 10 and all(x.shape == (3, 48, 48) and isinstance(c, str) and c for x, c in items)


def test_open_clip_builds_our_model_from_the_config(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import open_clip
    cfg = e2e_config()
    path = write_open_clip_config(cfg, tmp_path / 'configs')
    open_clip.add_model_config(path.parent)
    torch.manual_seed(0)
    theirs = open_clip.create_model(E2E_MODEL_NAME, precision='fp32')
    ours = create_model(cfg)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    # their checkpoint, as open_clip_train saves it, loads into our CLIP (strictly) for the judge
    (tmp_path / 'run' / 'checkpoints').mkdir(parents=True)
    state = {'module.' + k: v for k, v in theirs.state_dict().items()}
    torch.save(dict(epoch=1, name='run', state_dict=state), tmp_path / 'run' / 'checkpoints' / 'epoch_1.pt')
    loaded = load_trained(tmp_path / 'run', cfg)
    assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_both_trainers_get_the_same_settings():
    from clip_annotated.run import parse_args
    shards = {'train': 'e2e/shards/train/{00000..00012}.tar'}
    ours = parse_args(ours_train_argv(shards, 'e2e/ours_s1', 1, 250))
    s = E2E_SETTINGS
    assert (ours.model, ours.model_overrides, ours.steps, ours.batch_size, ours.train_num_samples, ours.warmup) == \
           (s['model'], s['model_overrides'], 250, s['batch_size'], 250 * s['batch_size'], 25)
    assert (ours.lr, ours.weight_decay, tuple(ours.betas), ours.eps, ours.precision, ours.threads, ours.workers, ours.seed) == \
           (s['lr'], s['weight_decay'], s['betas'], s['eps'], s['precision'], s['threads'], s['workers'], 1)
    params = pytest.importorskip('open_clip_train.params')
    theirs = params.parse_args(open_clip_train_argv(shards, 'e2e/open_clip_s1', 1, 250))
    assert (theirs.model, theirs.train_data, theirs.train_num_samples, theirs.epochs, theirs.batch_size, theirs.warmup) == \
           (E2E_MODEL_NAME, shards['train'], 250 * s['batch_size'], 1, s['batch_size'], 25)
    assert (theirs.lr, theirs.wd, (theirs.beta1, theirs.beta2), theirs.eps, theirs.precision, theirs.workers, theirs.seed) == \
           (s['lr'], s['weight_decay'], s['betas'], s['eps'], s['precision'], s['workers'], 1)
    assert (theirs.logs, theirs.name, theirs.lr_scheduler) == ('e2e', 'open_clip_s1', 'cosine')


def test_arm_options_reach_our_training_shards(tmp_path):
    import clip_annotated.loader as loader
    shards = write_emoji_shards(tmp_path, per_shard=4, limit=8)
    arm = parse_e2e_arm('ours+buffer=256+zoom=1.0:1.2')     # chapter 3's earlier range, not TRAIN_ZOOM
    with ours_data_options(arm['shuffle_buffer'], arm['zoom']):
        train = loader.open_data(shards['train'], train=True)
        held = loader.open_data(shards['test'], train=False)
    assert (train.shuffle_buffer, train.zoom, train.augment.zoom) == (256, (1.0, 1.2), (1.0, 1.2))
    assert (held.shuffle_buffer, held.zoom) == (0, TRAIN_ZOOM)         # the held-out shards are left alone
    assert loader.open_data is open_data                                # put back
    with pytest.raises(ValueError, match='runs as it is'): parse_e2e_arm('open_clip+zoom=1:1')


def test_without_open_clip_python_only_our_arms_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('OPEN_CLIP_TRAIN_PYTHON', raising=False)
    res = bench_e2e(seeds=(0,), steps=5, arms=('open_clip',), folder=tmp_path, save=tmp_path / 'e2e.json')
    assert "open_clip's trainer is not run" in capsys.readouterr().out
    assert res['arms'] == {} and res['settings']['steps'] == 5 and not (tmp_path / 'results.jsonl').exists()
    assert json.loads((tmp_path / 'e2e.json').read_text()) == json.loads(json.dumps(res))
    assert (tmp_path / 'open_clip_configs' / f'{E2E_MODEL_NAME}.json').is_file()
