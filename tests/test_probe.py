"""Linear probes (`clip_annotated.probe`) and the picture shifts of `clip_annotated.robustness`, without the book model.

Probes, on synthetic unit features:
* well separated classes: the probe reaches (nearly) 100% on test;
* the C sweep returns a C from its grid, with a validation accuracy for every grid point, and its
  choice never depends on test data (scrambling the test labels changes the accuracy, not the C or the
  weights);
* k-shot draws contain exactly k examples of every class, from the pool they were asked for;
* every result repeats for a seed, and the stratified split is disjoint and keeps class proportions.

Shifts, on random and constant pictures: shape, dtype and range are kept, for uint8 and float input,
single pictures and batches; grayscale has equal channels; rotation by 0 degrees is the identity; a
constant picture stays constant at low resolution, under blur and under rotation (its fill is white).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clip_annotated.probe import (DEFAULT_CS, fit_linear_probe, k_shot_curve, linear_probe_accuracy, sample_k_shot,
                                  stratified_split, zero_shot_worth)


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
