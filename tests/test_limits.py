"""The building blocks of chapter 12 (`clip_annotated.limits`), fast and without training.

* `ShuffledCaptions` moves exactly round(fraction·n) captions (none to itself), keeps every image in
  place and in order, loses no caption, is deterministic for a seed and differs between seeds.
* `noise_run` trains (two steps here) on the preset's data with shuffled training captions, clean held-out set.
* The caption edits swap colours, shapes and the relation correctly on hand-made scenes, and the controls
  replace a colour or a shape with an absent one, or turn the relation to the other axis.
* `binding_reading` calls a swap uninformative where its control is not won beyond luck (above the coin
  and the answer without the picture), a binding cost where the control beats the swap on the same scenes.
* The counting task's labels are the counts of the scenes' own descriptions.
* `wilson_difference` gives Newcombe's worked example, straddles zero for equal shares and stays in [-1, 1];
  `binding_reading`'s share intervals are Wilson's (never past 100%).
"""
from __future__ import annotations

import pytest
from torch.utils.data import Dataset

from clip_annotated.scenes import Scene, SceneObject, scene_caption
import torch

from clip_annotated.limits import (BINDING_TESTS, CAPTION_EDITS, ShuffledCaptions, binding_reading, per_class_accuracy,
                                   replace_color, replace_shape, reverse_relation, swap_colors, swap_shapes, turn_relation,
                                   wilson_difference)
from clip_annotated.zeroshot import wilson_interval
from clip_annotated.tasks import scene_task


class Toy(Dataset):
    "Item i is (i, 'caption i'): the image is its own index."
    def __init__(self, n=200): self.n, self.epoch = n, None
    def __len__(self): return self.n
    def __getitem__(self, i): return i, f'caption {i}'
    def set_epoch(self, e): self.epoch = e


@pytest.mark.parametrize('fraction', [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
def test_shuffles_exactly_the_fraction(fraction):
    w = ShuffledCaptions(Toy(), fraction, seed=1)
    items = [w[i] for i in range(len(w))]
    assert [x for x, _ in items] == list(range(200))                       # images in place and in order
    moved = [i for i, (_, c) in enumerate(items) if c != f'caption {i}']
    assert len(moved) == round(fraction * 200)
    assert sorted(moved) == sorted(w.shuffled.tolist())
    assert sorted(c for _, c in items) == sorted(f'caption {i}' for i in range(200))   # a permutation


def test_deterministic_and_seeded():
    a, b, c = (ShuffledCaptions(Toy(), 0.5, seed=s) for s in (7, 7, 8))
    assert [a[i] for i in range(200)] == [b[i] for i in range(200)]
    assert a.source.tolist() != c.source.tolist()


def test_single_item_edge_and_range():
    assert len(ShuffledCaptions(Toy(100), 0.01).shuffled) == 2              # one item cannot move alone
    with pytest.raises(ValueError): ShuffledCaptions(Toy(), 1.5)


def test_set_epoch_forwarded():
    base = Toy(); ShuffledCaptions(base, 0.5).set_epoch(3)
    assert base.epoch == 3


def test_noise_run_trains_on_shuffled_captions_only(tmp_path, monkeypatch):
    import clip_annotated.limits as L
    seen, real = {}, L.train
    def spy(cfg, datasets):                                   # what noise_run hands to train
        seen['train'], seen['test'] = datasets
        return real(cfg, datasets=datasets)
    monkeypatch.setattr(L, 'train', spy)
    r = L.noise_run(0.5, root=tmp_path, steps=2, warmup=1, n_scenes=64, batch_size=16, ckpt_every=2, threads=1,
                    model_overrides=dict(vision_layers=1, transformer_layers=1))
    assert r['steps'] == 2 and r['train_items'] == 64 and r['test']['n_images'] == 16
    assert (L.noise_run_dir(0.5, tmp_path) / 'checkpoint.pt').exists()
    tr, te = seen['train'], seen['test']
    assert isinstance(tr, ShuffledCaptions) and not isinstance(te, ShuffledCaptions)      # held-out captions stay clean
    shuffled = set(tr.shuffled.tolist())
    assert len(shuffled) == 32                                                         # half of the 64 training pairs
    for i in range(64):                                    # the training captions were shuffled, and only those
        j = int(tr.source[i])
        assert (j != i) == (i in shuffled) and tr[i][1] == tr.base[j][1]


def test_caption_edits():
    a = SceneObject('triangle', 'yellow', 'large', 3, 'left of'); b = SceneObject('star', 'black', 'small', 1)
    s = Scene((a, b), scene_caption([a, b]))
    assert s.caption == 'three large yellow triangles left of a small black star'
    assert swap_colors(s) == 'three large black triangles left of a small yellow star'
    assert swap_shapes(s) == 'three large yellow stars left of a small black triangle'
    assert reverse_relation(s) == 'three large yellow triangles right of a small black star'
    assert replace_color(s) == 'three large red triangles left of a small black star'
    assert replace_shape(s) == 'three large yellow circles left of a small black star'
    assert turn_relation(s) == 'three large yellow triangles above a small black star'
    same = Scene((SceneObject('circle', 'red', 'small', 1, 'above'), SceneObject('square', 'blue', 'small', 1)), '')
    assert swap_colors(same) == 'a small blue circle above a small red square'


def test_count_labels_match_descriptions():
    t = scene_task('count', n=40)
    ds = t.dataset
    for k in range(len(ds)):
        objs = ds.base.describe(ds.indices[k]).objects
        assert len(objs) == 1 and objs[0].count == ds.labels[k] + 1
    assert t.classnames == ['a', 'two', 'three', 'four']


def test_per_class_accuracy():
    assert per_class_accuracy([[1, 1], [0, 4]]).tolist() == [0.5, 1.0]


def test_every_binding_test_pairs_a_swap_with_its_control():
    for swap, control in BINDING_TESTS.values():
        assert swap in CAPTION_EDITS and control in CAPTION_EDITS and 'control' in control and 'control' not in swap


def test_binding_reading():
    g = torch.Generator().manual_seed(1)
    coin = torch.rand(500, generator=g) < 0.5
    seen = torch.ones(500, dtype=torch.bool)
    r = binding_reading(coin, seen)
    assert r['verdict'] == 'binding cost' and r['seen'] and r['gap']['lo'] > 0
    assert binding_reading(coin, torch.rand(500, generator=g) < 0.5)['verdict'] == 'uninformative'
    assert binding_reading(seen, seen)['verdict'] == 'no binding cost'
    assert binding_reading(seen, torch.rand(500, generator=g) < 0.8, blind=0.85)['verdict'] == 'uninformative'   # text alone wins more


def test_wilson_difference():
    lo, hi = wilson_difference(56, 70, 48, 80)                          # Newcombe (1998), method 10
    assert abs(lo - 0.0524) < 1e-4 and abs(hi - 0.3339) < 1e-4
    lo, hi = wilson_difference(1, 103, 1, 103); assert lo < 0 < hi
    for k1, k2 in [(0, 10), (10, 0), (1, 9), (0, 0)]:
        lo, hi = wilson_difference(k1, 10, k2, 10); assert -1 <= lo <= hi <= 1


def test_binding_reading_uses_wilson():
    r = binding_reading(torch.ones(400), torch.ones(400))
    assert r['control_ci'] == wilson_interval(400, 400) and r['control_ci'][1] == 1.0 and r['swap_ci'][0] > 0.99
