"""The prompt helpers of `clip_annotated.prompts` on a random-weight MiniCLIP (fast; no training).

* `template_embeddings` returns unit vectors [T, C, d], in template-major order.
* An ensemble of one template is the zero-shot chapter's single-template classifier, and the ensemble
  of all templates is its ensemble classifier.
* `template_sweep` returns one well-formed row per template, each equal to `evaluate` with that
  template alone; `ensemble_curve` starts at single templates and ends, whatever the order, at the
  full ensemble.
* `template_predictions` agrees with the sweep; `paired_bootstrap` gives 0 for a template against
  itself and an interval around the observed difference.
* `probability_ensemble` of one template, or of copies of one template, is that template's softmax.
* The chapter's committed readings label training-caption prompts (issue #27): every table of an accuracy
  says how many of its prompts are training captions, a † is explained where it is used, and no figure
  caption calls a set of templates that includes training captions zero-shot.
"""
from __future__ import annotations

import json, re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clip_annotated.model import create_model
from clip_annotated.zeroshot import paired_bootstrap
from clip_annotated.prompts import (ensemble_curve, ensemble_weights, probability_ensemble, task_features,
                                    template_embeddings, template_predictions, template_sweep, template_text)
from clip_annotated.tasks import Task
from clip_annotated.zeroshot import evaluate, zero_shot_classifier, zero_shot_logits

CLASSES = ['cat', 'dog', 'red apple']
TEMPLATES = ['a photo of a {}.', 'an emoji of {}.', '{}', lambda c: f'{c} emoji']


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return create_model('MiniCLIP').eval()


@pytest.fixture(scope='module')
def task(model):
    g = torch.Generator().manual_seed(1)
    res = model.visual.input_resolution
    return Task('toy', [(torch.randn(3, res, res, generator=g), i % 3) for i in range(9)], CLASSES, TEMPLATES)


def test_template_embeddings_shape_and_order(model):
    E = template_embeddings(model, CLASSES, TEMPLATES)
    assert E.shape == (len(TEMPLATES), len(CLASSES), model.text_projection.shape[1])
    torch.testing.assert_close(E.norm(dim=-1), torch.ones(len(TEMPLATES), len(CLASSES)))
    with torch.no_grad():   # entry (t, c) is the sentence of template t and class c
        from clip_annotated.tokenizer import tokenize
        e = F.normalize(model.encode_text(tokenize(['dog emoji'], context_length=model.context_length)), dim=-1)[0]
    torch.testing.assert_close(E[3, 1], e, atol=1e-5, rtol=0)
    assert template_text(TEMPLATES[3]) == '{} emoji' and template_text('a {}.') == 'a {}.'
    with pytest.raises(ValueError, match='at least one'): template_embeddings(model, [], TEMPLATES)


def test_ensemble_of_one_is_single_template(model):
    E = template_embeddings(model, CLASSES, TEMPLATES)
    for i, t in enumerate(TEMPLATES):
        torch.testing.assert_close(ensemble_weights(E, [i]), zero_shot_classifier(model, CLASSES, [t]), atol=1e-5, rtol=0)
    torch.testing.assert_close(ensemble_weights(E), zero_shot_classifier(model, CLASSES, TEMPLATES), atol=1e-5, rtol=0)
    W = ensemble_weights(E, [0, 2])
    assert W.shape == (E.shape[-1], len(CLASSES))
    torch.testing.assert_close(W.norm(dim=0), torch.ones(len(CLASSES)))


def test_template_sweep_rows(model, task):
    feats = task_features(model, task)
    rows = template_sweep(model, task, features=feats)
    assert len(rows) == len(TEMPLATES)
    for row, t in zip(rows, TEMPLATES):
        assert set(row) == {'task', 'template', 'top1', 'recall'} and row['task'] == 'toy'
        assert row['template'] == template_text(t)
        assert 0 <= row['top1'] <= 1 and 0 <= row['recall'] <= 1
        ref = evaluate(model, task.dataset, CLASSES, [t], ks=(1,))
        assert row['top1'] == pytest.approx(ref['top1']) and row['recall'] == pytest.approx(ref['mean_per_class_recall'])
    # the features argument changes nothing but the work done
    assert [r['top1'] for r in template_sweep(model, task)] == pytest.approx([r['top1'] for r in rows])


def test_ensemble_curve(model, task):
    feats = task_features(model, task)
    curve = ensemble_curve(model, task, orders=6, seed=3, features=feats)
    assert curve.shape == (6, len(TEMPLATES)) and curve.dtype == torch.float64
    assert ((curve >= 0) & (curve <= 1)).all()
    singles = {round(r['top1'], 9) for r in template_sweep(model, task, features=feats)}
    assert {round(v, 9) for v in curve[:, 0].tolist()} <= singles
    full = evaluate(model, task.dataset, CLASSES, TEMPLATES, ks=(1,))['top1']
    torch.testing.assert_close(curve[:, -1], torch.full((6,), full, dtype=torch.float64))
    torch.testing.assert_close(curve, ensemble_curve(model, task, orders=6, seed=3, features=feats))   # seeded


def test_probability_ensemble(model):
    E = template_embeddings(model, CLASSES, TEMPLATES)
    feats = F.normalize(torch.randn(7, E.shape[-1], generator=torch.Generator().manual_seed(2)), dim=-1)
    single = zero_shot_logits(feats, zero_shot_classifier(model, CLASSES, [TEMPLATES[1]])).softmax(-1)
    torch.testing.assert_close(probability_ensemble(feats, E, [1]), single, atol=1e-5, rtol=0)
    torch.testing.assert_close(probability_ensemble(feats, E[[1, 1, 1, 1]]), single, atol=1e-5, rtol=0)
    torch.testing.assert_close(probability_ensemble(feats, E, [1, 1]), single, atol=1e-5, rtol=0)
    p = probability_ensemble(feats, E, scale=10.0)
    assert p.shape == (7, len(CLASSES))
    torch.testing.assert_close(p.sum(-1), torch.ones(7, dtype=p.dtype))


def test_predictions_and_paired_bootstrap(model, task):
    feats, labels = task_features(model, task)
    E = template_embeddings(model, CLASSES, TEMPLATES)
    preds = template_predictions(feats, E)
    assert preds.shape == (len(TEMPLATES), len(labels))
    acc = (preds == labels).double().mean(1).tolist()
    assert acc == pytest.approx([r['top1'] for r in template_sweep(model, task, features=(feats, labels))])
    ok = preds[0] == labels
    assert paired_bootstrap(ok, ok) == dict(diff=0.0, lo=0.0, hi=0.0, excludes_zero=False, n=len(ok))
    ones, zeros = torch.ones(50, dtype=torch.bool), torch.zeros(50, dtype=torch.bool)
    assert paired_bootstrap(ones, zeros) == dict(diff=1.0, lo=1.0, hi=1.0, excludes_zero=True, n=len(ones))
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(400, generator=g) < 0.7, torch.rand(400, generator=g) < 0.5
    r = paired_bootstrap(a, b, n_boot=500)
    assert r['lo'] < r['diff'] < r['hi'] and r['diff'] == pytest.approx(a.double().mean().item() - b.double().mean().item())


CHAPTER = Path(__file__).resolve().parents[1] / 'nbs' / '09_prompt_engineering.ipynb'


def test_chapter_labels_training_caption_prompts():
    cells = json.loads(CHAPTER.read_text(encoding='utf-8'))['cells']
    for c in cells:
        if c['cell_type'] != 'code': continue
        for cap in re.findall(r"(?m)^#\|\s*fig-cap:\s*(.*)$", ''.join(c['source'])):
            assert not cap.strip('"').lower().startswith('zero-shot'), cap
        for o in c.get('outputs', []):
            md = ''.join(o.get('data', {}).get('text/markdown', ''))
            if not md.lstrip().startswith('|'): continue
            if re.search(r'majority', md) and '%' in md:                        # a table of accuracies
                assert re.search(r'training[ -]caption', md), md[:300]
            if '†' in md: assert re.search(r'† the \w+ fills to a training caption', md), md[:300]
