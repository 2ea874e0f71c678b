"""Zero-shot evaluation (`clip_annotated.zeroshot`) and the command line (`clip-annotated eval / predict / reproduce`).

* The classifier equals a naive per-class, per-template loop, on a model trained for a few steps.
* Metrics on hand-made logits; the nearest-prompt rule on hand-made embeddings.
* `clip-annotated eval` and `predict`, run as the installed console script in a subprocess, offline, on
  a checkpoint written by a short training run: an embedded task, a fake CIFAR-10 in its real format,
  and the errors for a missing data root and a missing picture.
* `clip-annotated reproduce` on a few steps: the report gains the zero-shot section, results.json is written.
"""
from __future__ import annotations

import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from conftest import child_env
import torch
import torch.nn.functional as F

from clip_annotated.tokenizer import tokenize
from clip_annotated.zeroshot import classification_metrics, encode_texts, fill_template, zero_shot_classifier
from clip_annotated.tasks import (caption_prompts, emoji_task, nearest_prompt_logits, scene_task, training_caption_set,
                                  zero_shot_templates)

REPO = Path(__file__).resolve().parents[1]
TINY = ['--model-overrides', json.dumps(dict(vision_layers=1, transformer_layers=1, vision_patch_size=12)),
        '--steps', '4', '--warmup', '1', '--batch-size', '32', '--eval-every', '0', '--no-progress', '--threads', '1']


def _env() -> dict:
    return child_env()


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / 'clip-annotated'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'from clip_annotated.cli import main; main()']
    return subprocess.run([*cmd, *map(str, args)], env=_env(), cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    "A MiniCLIP trained for 4 steps on the emoji set by `clip-annotated reproduce`."
    out = tmp_path_factory.mktemp('run') / 'mini'
    r = _cli('reproduce', *TINY, '--out', out, cwd=out.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def test_reproduce_writes_report_with_zero_shot(run_dir):
    report = (run_dir / 'report.md').read_text()
    assert '## Held-out retrieval' in report and '## Zero-shot classification of held-out emoji' in report
    assert '## Intended use' in (run_dir / 'model_card.md').read_text()
    res = json.loads((run_dir / 'results.json').read_text())
    assert res['steps'] == 4 and {r['task'] for r in res['zeroshot']} == {'emoji skin_tone', 'emoji gender', 'emoji category'}
    tone = next(r for r in res['zeroshot'] if r['task'] == 'emoji skin_tone')
    assert tone['chance'] == 0.2 and set(tone['prompts']) == {'zero_shot', 'single', 'ensemble', 'captions_mean', 'captions_nearest', 'unseen_nearest'}
    assert tone['own_captions']['unseen_nearest'] == 0 and tone['vs_majority']['reading'].endswith('majority class')


def test_classifier_equals_naive_loop(run_dir):
    from clip_annotated.run import load_run
    model, _ = load_run(run_dir)
    classes = ['health worker, dark skin tone', 'dog', 'flag of france']
    templates = ['{}', 'an emoji of {}.', lambda c: f'a picture of {c}']
    W = zero_shot_classifier(model, classes, templates)
    cols = []
    with torch.no_grad():
        for c in classes:
            e = [F.normalize(model.encode_text(tokenize([t(c) if callable(t) else t.format(c)], context_length=32)), dim=-1)[0]
                 for t in templates]
            m = torch.stack(e).mean(0)
            cols.append(m / m.norm())
    torch.testing.assert_close(W, torch.stack(cols, 1), rtol=0, atol=1e-5)


def test_metrics_hand_made():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.6, 0.4], [0.3, 0.3, 0.4]])
    m = classification_metrics(logits, torch.tensor([0, 1, 2, 2]), ks=(1, 2))
    assert m['top1'] == 0.75 and m['top2'] == 1.0                # item 2 is wrong at top-1, right at top-2
    assert abs(m['mean_per_class_recall'] - (1 + 1 + 0.5) / 3) < 1e-12
    assert m['chance_top1'] == 1 / 3 and m['classes'] == 3 and m['n'] == 4
    # a constant classifier: accuracy = frequency of its class, per-class recall = 1/C
    const = classification_metrics(torch.tensor([[1., 0.]] * 4), torch.tensor([0, 0, 0, 1]), ks=(1,))
    assert const['top1'] == 0.75 and const['mean_per_class_recall'] == 0.5
    assert (const['majority_top1'], const['majority_class']) == (0.75, 0)    # the majority baseline: here, that classifier


def test_nearest_prompt_is_max_over_prompts(monkeypatch):
    import clip_annotated.tasks as tasks, clip_annotated.zeroshot as zs
    vec = {'a cat': [1., 0.], 'cat!': [0., 1.], 'a dog': [0.6, 0.8], 'dog!': [0.8, -0.6]}
    fake = lambda model, texts, *a, **k: torch.tensor([vec[t] for t in texts])
    for module in (tasks, zs): monkeypatch.setattr(module, 'encode_texts', fake)
    feats = torch.tensor([[0., 1.], [0.8, -0.6]])                  # picture 0 = 'cat!', picture 1 = 'dog!'
    logits = nearest_prompt_logits(None, feats, ['cat', 'dog'], ['a {}', '{}!'], scale=1.0)
    # each class scores its best prompt: picture 0 -> cat max(0, 1) = 1, dog max(.8, -.6) = .8
    torch.testing.assert_close(logits, torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
    # the mean rule on the same prompts: unit means (.71, .71) for cat and (.99, .14) for dog
    W = zs.zero_shot_classifier(None, ['cat', 'dog'], ['a {}', '{}!'])
    torch.testing.assert_close(feats @ W, torch.tensor([[0.7071, 0.1414], [0.1414, 0.7071]]), rtol=0, atol=1e-4)


def test_emoji_tasks_are_held_out():
    tone = emoji_task('skin_tone')
    test_names = {tone.dataset.base.records[i].name for i in tone.dataset.indices}
    assert len(tone.dataset) >= 300 and tone.classnames[0] == 'light' and len(tone.caption_templates) > 100
    # caption-form prompts are shapes of *training* names: each, filled with some tone, is a training caption.
    # Filled with every tone they also spell held-out combinations (composing a seen person with a seen tone
    # is the ability measured), but no prompt comes from a held-out name alone.
    from clip_annotated.data import EmojiDataset
    train_names = {r.name for r in EmojiDataset('train', train=False).records}
    assert all(any(t.format(c) in train_names for c in tone.classnames) for t in tone.caption_templates)
    assert test_names - train_names == test_names                  # the test pictures' names are not training names


def test_cli_eval_embedded_task(run_dir):
    r = _cli('eval', '--model', run_dir, '--dataset', 'emoji-skin-tone', '--json', '--device', 'cpu', cwd=run_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m['classes'] == 5 and m['n'] >= 300 and 0 <= m['top1'] <= 1 and m['chance_top1'] == 0.2


def test_cli_eval_fake_cifar_and_missing_root(run_dir, tmp_path):
    from clip_annotated.evalsets import write_fake
    root = tmp_path / 'cifar'
    write_fake('cifar10', root, n_per_class=2)
    r = _cli('eval', '--model', run_dir / 'checkpoint.pt', '--dataset', 'cifar10', '--root', root, '--templates', 'single',
             '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'cifar10 (20 pictures, 10 classes, 1 template)' in r.stdout and 'top1' in r.stdout
    missing = tmp_path / 'nowhere'
    r = _cli('eval', '--model', run_dir, '--dataset', 'cifar100', '--root', missing, cwd=tmp_path)
    assert r.returncode != 0 and f'--root {missing}: no such folder' in r.stderr and 'Traceback' not in r.stderr
    (tmp_path / 'empty').mkdir()                                      # there, but without the set's files
    r = _cli('eval', '--model', run_dir, '--dataset', 'cifar100', '--root', tmp_path / 'empty', cwd=tmp_path)
    assert r.returncode != 0 and 'CIFAR-100 not found in' in r.stderr and 'Traceback' not in r.stderr


def test_cli_predict(run_dir, tmp_path):
    from clip_annotated.data import EmojiDataset
    from PIL import Image
    ds = EmojiDataset('test', train=False)
    Image.fromarray(ds.images[0].permute(1, 2, 0).numpy()).save(tmp_path / 'emoji.png')
    r = _cli('predict', tmp_path / 'emoji.png', ds.records[0].name, 'dog', 'flag of france', '--model', run_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert 'surveillance' in r.stderr                                # the safety notice comes first, on stderr
    assert len(lines) == 3 and abs(sum(float(l.split('%')[0]) for l in lines) - 100) < 0.1
    r = _cli('predict', tmp_path / 'missing.png', 'a cat', '--model', run_dir, cwd=tmp_path)
    assert r.returncode != 0 and 'missing.png' in r.stderr


@pytest.mark.parametrize('make,attribute', [(emoji_task, 'skin_tone'), (emoji_task, 'gender'), (emoji_task, 'category'),
                                            (scene_task, 'color'), (scene_task, 'shape'), (scene_task, 'count')])
def test_zero_shot_templates_fill_to_no_training_caption(make, attribute):
    "What the book calls zero-shot (issue #27): no prompt of the zero-shot templates is a training caption of its model."
    task = make(attribute) if make is emoji_task else make(attribute, n=20)
    captions = training_caption_set(task.trained_on)
    temps = zero_shot_templates(task)
    prompts = [fill_template(t, c) for t in temps for c in task.classnames]
    assert temps and not set(prompts) & captions, set(prompts) & captions
    assert caption_prompts(task, temps) == 0 and caption_prompts(task) > 0      # the full template list has some


def test_training_captions_hold_the_training_data():
    from clip_annotated.data import DEFAULT_TEMPLATES, EmojiDataset
    from clip_annotated.scenes import SceneDataset
    emoji = training_caption_set('emoji')
    rec = EmojiDataset('train', train=False).records[0]
    assert {t.format(rec.name) for t in DEFAULT_TEMPLATES} <= emoji and 'an emoji of man.' in emoji
    ds = SceneDataset(200, seed=0, train=True)            # the scenes model's training data (seed 0)
    single = [ds[i][1] for i in range(len(ds)) if len(ds.describe(i).objects) == 1]
    assert single and set(single) <= training_caption_set('scenes')
