"""Linear probes (`clip_annotated.probe`) and the picture shifts of `clip_annotated.robustness`, without the book model.

Probes, on synthetic unit features:
* well separated classes: the probe reaches (nearly) 100% on test;
* the C sweep returns a C from its grid, with a validation accuracy for every grid point, and its
  choice never depends on test data (scrambling the test labels changes the accuracy, not the C or the
  weights);
* k-shot draws contain exactly k examples of every class, from the pool they were asked for;
* every result repeats for a seed, and the stratified split is disjoint and keeps class proportions;
* the bootstrap resamples pictures once for every classifier (paired: a classifier against itself differs by
  zero in every replicate), its percentile interval allows open ends, and the worth's interval holds the
  point estimate and is open above when zero-shot beats every probe;
* a curve knows its majority-class baseline, and the table shows it beside chance.

Shifts, on random and constant pictures: shape, dtype and range are kept, for uint8 and float input,
single pictures and batches; grayscale has equal channels; rotation by 0 degrees is the identity; a
constant picture stays constant at low resolution, under blur and under rotation (its fill is white).

Robustness statistics, on made-up right answers: the paired bootstrap gives a model that answers the same
pictures in every condition a gap of exactly zero, identical models identical replicates, and each
replicate's line and effective robustness are those `fit_logit_line` and `effective_robustness` give on
that replicate's accuracies; the accuracy table ends with chance and the majority class.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clip_annotated.zeroshot import percentile_interval
from clip_annotated.probe import (DEFAULT_CS, fit_linear_probe, k_shot_curve, linear_probe_accuracy,
                                  probe_table, resample_accuracies, sample_k_shot, stratified_split, worth_interval,
                                  zero_shot_worth)


def clusters(n_per_class: int, noise: float, n_classes: int = 4, d: int = 12, seed: int = 0):
    "Unit features around orthogonal class directions."
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = np.eye(d)[y] * 3 + noise * rng.standard_normal((len(y), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def test_probe_separates_separable_features():
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (clusters(20, 0.3, seed=s) for s in (1, 2, 3))
    r = linear_probe_accuracy(Xtr, ytr, Xva, yva, Xte, yte)
    assert r['acc'] >= 0.99
    assert r['C'] in DEFAULT_CS
    assert set(r['val_acc']) == set(DEFAULT_CS)
    assert r['n_fit'] == len(ytr) + len(yva)


def test_sweep_uses_only_train_and_validation():
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (clusters(15, 1.2, seed=s) for s in (4, 5, 6))
    grid = (0.01, 0.1, 1.0, 10.0, 100.0)
    clf, C, val_acc = fit_linear_probe(Xtr, ytr, Xva, yva, Cs=grid)
    assert C in grid and list(val_acc) == sorted(grid)
    assert val_acc[C] == max(val_acc.values())
    assert all(val_acc[c] < val_acc[C] for c in grid if c < C)          # ties go to the smaller C
    a = linear_probe_accuracy(Xtr, ytr, Xva, yva, Xte, yte, Cs=grid)
    scrambled = np.random.default_rng(0).permutation(yte)
    b = linear_probe_accuracy(Xtr, ytr, Xva, yva, Xte, scrambled, Cs=grid)
    assert a['C'] == b['C'] == C
    np.testing.assert_array_equal(a['classifier'].coef_, b['classifier'].coef_)
    assert a['acc'] != b['acc']


def test_k_shot_sampling():
    y = np.repeat(np.arange(5), [7, 9, 11, 13, 40])
    for k in (1, 2, 4, 7):
        idx = sample_k_shot(y, k, seed=k)
        assert len(set(idx.tolist())) == len(idx)
        np.testing.assert_array_equal(np.bincount(y[idx], minlength=5), [k] * 5)
        np.testing.assert_array_equal(idx, sample_k_shot(y, k, seed=k))
    assert not np.array_equal(sample_k_shot(y, 4, seed=0), sample_k_shot(y, 4, seed=1))
    with pytest.raises(ValueError, match='fewer than k=8'):
        sample_k_shot(y, 8)


def test_stratified_split():
    y = np.repeat(np.arange(3), [10, 40, 50])
    parts = stratified_split(y, (0.5, 0.2, 0.3), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(np.bincount(y[parts[0]]), [5, 20, 25])
    np.testing.assert_array_equal(np.bincount(y[parts[1]]), [2, 8, 10])
    for a, b in zip(parts, stratified_split(y, (0.5, 0.2, 0.3), seed=3)): np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match='too few'):
        stratified_split(np.array([0, 0, 1, 1, 1, 1]), (0.5, 0.2, 0.3))


def test_k_shot_curve_is_deterministic_and_counts_k():
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (clusters(10, 1.0, seed=s) for s in (7, 8, 9))
    args = (Xtr, ytr, Xva, yva, Xte, yte)
    a = k_shot_curve(*args, draws=2, Cs=(0.1, 10.0), zero_shot=0.5, chance=0.25)
    b = k_shot_curve(*args, draws=2, Cs=(0.1, 10.0), zero_shot=0.5, chance=0.25)
    assert a.ks == [1, 2, 4, 8]                      # powers of two up to the smallest class (10)
    np.testing.assert_array_equal(a.accs, b.accs)
    np.testing.assert_array_equal(a.Cs, b.Cs)
    assert set(a.Cs.ravel()) <= {0.1, 10.0}
    assert a.full_k == (len(ytr) + len(yva)) / 4
    assert a.worth() == b.worth()


def test_zero_shot_worth():
    assert math.isclose(zero_shot_worth([1, 4, 16], [0.4, 0.6, 0.8], 0.7), 8.0)
    assert zero_shot_worth([1, 2], [0.5, 0.6], 0.4) == 0.0
    assert zero_shot_worth([1, 2], [0.5, 0.6], 0.7) == math.inf


def test_resample_accuracies_are_paired():
    rng = np.random.default_rng(0)
    a, b = rng.random(80) < 0.6, rng.random(80) < 0.4
    boots = resample_accuracies(np.stack([a, a, b]), n_boot=500, seed=1)
    assert boots.shape == (3, 500)
    np.testing.assert_array_equal(boots[0], boots[1])                          # same pictures in every replicate
    np.testing.assert_array_equal(resample_accuracies(b, 500, seed=1), boots[2])   # shared across calls for a seed
    assert not np.array_equal(resample_accuracies(b, 500, seed=2), boots[2])
    assert abs(boots[0].mean() - a.mean()) < 0.02
    np.testing.assert_array_equal(resample_accuracies(np.ones(30, bool), 50), np.ones(50))


def test_percentile_interval():
    assert percentile_interval(np.arange(1, 101), level=0.9) == (5.0, 95.0)
    assert percentile_interval([0.0, 1.0, 2.0, math.inf] * 10, level=0.4) == (1.0, 2.0)
    assert percentile_interval([0.0, 1.0, 2.0, math.inf] * 10, level=0.9) == (0.0, math.inf)


def _curve_with_zero_shot(zero_shot_right):
    (Xtr, ytr), (Xva, yva), (Xte, yte) = (clusters(10, 1.5, seed=s) for s in (11, 12, 13))
    return k_shot_curve(Xtr, ytr, Xva, yva, Xte, yte, draws=3, Cs=(0.1, 10.0), chance=0.25,
                        zero_shot_correct=zero_shot_right(yte), name='synthetic'), yte


def test_curve_keeps_right_answers_and_majority():
    c, yte = _curve_with_zero_shot(lambda y: np.arange(len(y)) % 2 == 0)
    assert c.correct.shape == (len(c.ks), 3, len(yte)) and c.correct.dtype == bool
    np.testing.assert_array_equal(c.correct.mean(-1), c.accs)
    assert c.zero_shot == 0.5 and c.majority == 0.25                      # balanced test set: majority is chance
    np.testing.assert_array_equal(c.full['correct'].mean(), c.full['acc'])
    ks, accs = c.points()
    assert ks == [*c.ks, c.full_k] and accs[-1] == c.full['acc']
    y = np.array([0, 0, 0, 1, 2, 2])                                     # an imbalanced test set
    X = np.eye(3, dtype=np.float32)[y]
    c2 = k_shot_curve(X, y, X, y, X, y, ks=[1], draws=1, Cs=(1.0,), full=False)
    assert c2.majority == 0.5


def test_worth_interval():
    c, _ = _curve_with_zero_shot(lambda y: np.arange(len(y)) % 2 == 0)
    iv = worth_interval(c, n_boot=300)
    assert iv['worth'] == c.worth() and iv['boot'].shape == (300,)
    assert iv['lo'] <= iv['worth'] <= iv['hi']
    again = worth_interval(c, n_boot=300)
    assert (again['lo'], again['hi']) == (iv['lo'], iv['hi'])              # repeats for a seed
    d, lo, hi = iv['full_minus_zero_shot']
    assert math.isclose(d, c.full['acc'] - c.zero_shot) and lo <= d <= hi
    perfect, _ = _curve_with_zero_shot(lambda y: np.ones(len(y), bool))  # zero-shot always right
    iv = worth_interval(perfect, n_boot=100)
    if perfect.full['acc'] < 1: assert iv['worth'] == math.inf and iv['hi'] == math.inf
    X, y = clusters(4, 1.0, seed=1)
    bare = k_shot_curve(X, y, X, y, X, y, ks=[1], draws=1, Cs=(1.0,), zero_shot=0.5)   # no per-picture zero-shot answers
    with pytest.raises(ValueError, match='right answers per picture'):
        worth_interval(bare)


def test_probe_table_shows_majority_and_interval():
    c, _ = _curve_with_zero_shot(lambda y: np.arange(len(y)) % 2 == 0)
    c.n = dict(test=40)
    iv = worth_interval(c, n_boot=200)
    table = probe_table([c], {c.name: iv})
    header, _, row = ([x.strip() for x in line.strip('|').split('|')] for line in table.strip().splitlines())
    cells = dict(zip(header, row))
    assert (cells['chance'], cells['majority class'], cells['zero-shot']) == ('25.0%', '25.0%', '50.0%')
    assert cells['95% interval'] == f"{iv['lo']:.1f} to {iv['hi']:.1f}" or '>' in cells['95% interval'] or '<' in cells['95% interval']
    assert table == probe_table([c], {c.name: iv})


# --- shifts ----------------------------------------------------------------------------------------

import clip_annotated.robustness as robustness                         # a failure to import is a failure


def pictures(dtype, batch=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 20, 20), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    return x if batch else x[0]


@pytest.mark.parametrize('name', list(robustness.SHIFTS))
@pytest.mark.parametrize('dtype', [torch.uint8, torch.float32])
@pytest.mark.parametrize('batch', [True, False])
def test_shifts_keep_shape_dtype_range(name, dtype, batch):
    x = pictures(dtype, batch)
    y = robustness.SHIFTS[name](x)
    assert y.shape == x.shape and y.dtype == x.dtype
    hi = 255 if dtype == torch.uint8 else 1.0
    assert y.min() >= 0 and y.max() <= hi


def test_grayscale_has_equal_channels():
    for x in (pictures(torch.uint8), pictures(torch.float32)):
        y = robustness.grayscale(x)
        assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_rotation_by_zero_is_identity():
    assert torch.equal(robustness.rotate(pictures(torch.uint8), 0), pictures(torch.uint8))
    torch.testing.assert_close(robustness.rotate(pictures(torch.float32), 0), pictures(torch.float32))


@pytest.mark.parametrize('dtype', [torch.uint8, torch.float32])
def test_constant_pictures_stay_constant(dtype):
    x = torch.full((2, 3, 48, 48), 200, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    for f in (lambda z: robustness.low_res(z, 12), lambda z: robustness.low_res(z, 16), robustness.blur):
        y = f(x)
        assert torch.allclose(y.float(), x.float(), atol=1e-5)
    white = torch.full_like(x, 255 if dtype == torch.uint8 else 1.0)
    assert torch.allclose(robustness.rotate(white, 37).float(), white.float(), atol=1e-5)
    assert torch.allclose(robustness.sketch(x).float(), white.float(), atol=1e-5)   # no edges: blank paper


def _fake_right(n=150, seed=0):
    g = np.random.default_rng(seed)
    conds = ['in distribution', *robustness.SHIFTS]
    right = {m: {c: g.random(n) < p - 0.1 * j * (c != 'in distribution') for c in conds}
             for j, (m, p) in enumerate([('zs', 0.7), ('cnn 1', 0.6), ('cnn 2', 0.75), ('cnn 3', 0.9)])}
    right['steady'] = {c: right['zs']['in distribution'] for c in conds}
    right['twin'] = right['cnn 1']
    return right, conds


def test_right_answers_and_accuracy():
    r = robustness.right_answers(torch.tensor([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    assert r.dtype == bool and r.tolist() == [True, True, False, True]
    assert robustness.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_robustness_bootstrap():
    right, conds = _fake_right()
    cnns = ['cnn 1', 'cnn 2', 'cnn 3']
    B = robustness.robustness_bootstrap(right, cnns, n_boot=100, seed=4)
    assert set(B) == set(right) and all(v.shape == (100,) for v in B['zs'].values())
    np.testing.assert_array_equal(B['steady']['gap'], np.zeros(100))           # nothing lost, in any replicate
    np.testing.assert_array_equal(B['twin']['er'], B['cnn 1']['er'])           # paired: same pictures for every model
    acc = {m: resample_accuracies(np.stack([right[m][c] for c in conds]), 100, seed=4) for m in right}   # [conds, 100]
    for r in (0, 57):
        line = robustness.fit_logit_line([acc[m][0, r] for m in cnns], [acc[m][1:, r].mean() for m in cnns])
        assert math.isclose(B['zs']['slope'][r], line[0], abs_tol=1e-9)
        er = robustness.effective_robustness(acc['zs'][0, r], acc['zs'][1:, r].mean(), line)
        assert math.isclose(B['zs']['er'][r], float(er), abs_tol=1e-9)
        assert math.isclose(B['zs']['gap'][r], acc['zs'][0, r] - acc['zs'][1:, r].mean(), abs_tol=1e-12)
    again = robustness.robustness_bootstrap(right, cnns, n_boot=100, seed=4)
    np.testing.assert_array_equal(again['zs']['er'], B['zs']['er'])


def test_robustness_table_has_chance_and_majority():
    res = {'a': {'in distribution': 0.8, 'gray': 0.6}, 'b': {'in distribution': 0.5, 'gray': 0.5}}
    lines = robustness.robustness_table(res, chance=0.2, majority=0.3).strip().splitlines()
    assert lines[-2].startswith('| chance | 20.0% | 20.0% | 20.0%')
    assert lines[-1].startswith('| majority class') and lines[-1].count('30.0%') == 3
    assert len(robustness.robustness_table(res).strip().splitlines()) == 4
