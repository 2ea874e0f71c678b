"""Visualisation helpers (`clip_annotated.viz`), fast, on hand-made tensors and a random-weight MiniCLIP.

* Attention rollout: rows sum to 1; identity maps roll out to the identity; uniform maps to ((U + I) / 2)^L.
* `cls_attention` shapes and that it reads row 0 (the [class] token) without the [class] column.
* `modality_gap` on hand-made vectors (two orthogonal cones, one shared cloud); `neighbour_share` on two
  far-apart clouds and on one randomly labelled cloud; the bootstrap intervals contain their estimates.
* `project_2d` is deterministic for a seed and rejects an unknown method.
* Recording attention with `capture_attention` does not change `encode_image`; the maps are probabilities.
"""
from __future__ import annotations

import matplotlib
matplotlib.use('Agg')
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip_annotated.model import capture_attention, create_model
from clip_annotated.viz import attention_rollout, cls_attention, modality_gap, overlay, project_2d


def _random_maps(layers=3, b=2, h=2, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, h, n, n, generator=g).softmax(-1) for _ in range(layers)]


def test_rollout_rows_sum_to_one():
    R = attention_rollout(_random_maps())
    torch.testing.assert_close(R.sum(-1), torch.ones(2, 5))
    assert (R >= 0).all()


def test_rollout_identity_and_uniform():
    n = 17
    eye = [torch.eye(n).expand(3, 2, n, n).clone() for _ in range(4)]
    torch.testing.assert_close(attention_rollout(eye), torch.eye(n).expand(3, n, n))
    uni = [torch.full((1, 2, n, n), 1 / n) for _ in range(2)]
    step = (torch.full((n, n), 1 / n) + torch.eye(n)) / 2
    torch.testing.assert_close(attention_rollout(uni)[0], step @ step)


def test_rollout_order_last_layer_on_the_left():
    maps = _random_maps(layers=2, b=1, h=1, n=4, seed=1)
    step = [(m[0, 0] + torch.eye(4)) / (m[0, 0] + torch.eye(4)).sum(-1, keepdim=True) for m in maps]
    torch.testing.assert_close(attention_rollout(maps)[0], step[1] @ step[0])


def test_cls_attention_shape_and_values():
    maps = _random_maps(layers=3, b=2, h=4, n=1 + 16)
    ca = cls_attention(maps, 4)
    assert ca.shape == (3, 2, 4, 4, 4)
    torch.testing.assert_close(ca[1, 0, 2].flatten(), maps[1][0, 2, 0, 1:])
    with pytest.raises(ValueError, match='tokens'):
        cls_attention(maps, 3)


def test_modality_gap_hand_made():
    e = torch.eye(3)
    g = modality_gap(e[[0, 0]], e[[1, 1]])
    assert g['centroid_distance'] == pytest.approx(2 ** 0.5)
    assert g['cos_within_image'] == pytest.approx(1.0) and g['cos_within_text'] == pytest.approx(1.0)
    assert g['cos_between'] == pytest.approx(0.0) and g['cos_paired'] == pytest.approx(0.0)
    x = torch.randn(20, 6)
    g = modality_gap(x, x)
    assert g['centroid_distance'] == pytest.approx(0.0, abs=1e-6)
    assert g['cos_paired'] == pytest.approx(1.0)
    u = F.normalize(x, dim=-1)
    assert g['cos_unpaired'] == pytest.approx((((u @ u.T).sum() - 20) / (20 * 19)).item(), abs=1e-6)   # the pairs themselves left out
    assert modality_gap(e[[0, 0]], e[[1, 1]])['cos_unpaired'] == pytest.approx(0.0)
    assert 'cos_paired' not in modality_gap(x, x[:5])          # unpaired sets of different size


def test_project_2d_deterministic():
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    a, b = project_2d(x, 'tsne', seed=3, max_iter=250), project_2d(x, 'tsne', seed=3, max_iter=250)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match='tsne'):
        project_2d(x, 'pca')


def test_overlay_draws():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    overlay(torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8), torch.rand(4, 4), ax)
    assert len(ax.images) == 2 and ax.images[1].get_array().shape == (48, 48)
    plt.close(fig)


def test_recording_attention_does_not_change_encode_image():
    torch.manual_seed(0)
    m = create_model('MiniCLIP').eval()
    x = torch.randn(3, 3, m.visual.input_resolution, m.visual.input_resolution)
    with torch.no_grad():
        plain = m.encode_image(x)
        with capture_attention(m.visual) as maps:
            recorded = m.encode_image(x)
        after = m.encode_image(x)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after, plain)                    # recording is switched off again
    assert len(maps) == m.visual.transformer.layers
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(maps[0].shape[:-1]))
    grid = m.visual.input_resolution // m.visual.conv1.kernel_size[0]
    assert cls_attention(maps, grid).shape == (len(maps), 3, maps[0].shape[1], grid, grid)


def test_neighbour_share_apart_and_mixed():
    from clip_annotated.viz import neighbour_share
    g = torch.Generator().manual_seed(0)
    apart = torch.cat([torch.randn(30, 6, generator=g) * 0.1 + 4, torch.randn(30, 6, generator=g) * 0.1 - 4])
    assert neighbour_share(apart, ['a'] * 30 + ['b'] * 30, k=5).tolist() == [1.0] * 60
    mixed = torch.randn(500, 6, generator=g)
    assert abs(neighbour_share(mixed, torch.randint(2, (500,), generator=g).tolist()).mean() - 0.5) < 0.05
    pairs = torch.cat([mixed[:250], mixed[:250] + 0.01])     # each point's pair beside it, with the other label
    labels = [0] * 250 + [1] * 250
    assert neighbour_share(pairs, labels, k=1).mean() == 0.0
    assert abs(neighbour_share(pairs, labels, k=1, partner=[*range(250, 500), *range(250)]).mean() - 0.5) < 0.1


def test_bootstrap_mean_and_gap_bootstrap():
    from clip_annotated.viz import bootstrap_mean, gap_bootstrap
    mu, lo, hi = bootstrap_mean([0.0] * 40 + [1.0] * 60)
    assert mu == pytest.approx(0.6) and lo < 0.6 < hi
    e = torch.eye(4)
    b = gap_bootstrap(e[[0] * 10] + 0.01 * torch.randn(10, 4), e[[1] * 10] + 0.01 * torch.randn(10, 4), n_boot=30)
    assert set(b) == {'centroid_distance', 'image_minus_between', 'text_minus_between'}
    assert b['centroid_distance'][0] == pytest.approx(2 ** 0.5, abs=0.05)
    assert all(lo <= v <= hi for v, lo, hi in b.values()) and b['image_minus_between'][1] > 0.9
    g = torch.Generator().manual_seed(1)                     # one shared cloud, each caption nearly its picture:
    x = torch.randn(200, 16, generator=g)                    # the pairs' own cosines (about 1) must not count as between
    b = gap_bootstrap(x, x + 0.1 * torch.randn(200, 16, generator=g), n_boot=100)
    assert all(lo < 0 < hi for k, (v, lo, hi) in b.items() if k != 'centroid_distance'), b
