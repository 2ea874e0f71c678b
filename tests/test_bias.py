"""The bias probe (`clip_annotated.bias`): the bootstrap interval, the control, the probe's pictures, the skewed data, the FairFace reader and probe on a fake."""
from __future__ import annotations

import numpy as np
import torch
import pytest

from clip_annotated.bias import OCCUPATIONS, SKEWED, WithoutPictures, gap_ci, people_pictures
from clip_annotated.data import EmojiDataset


def _scores(shift: dict, seed: int = 0, n: int = 6, occs='abcdefgh') -> dict:
    rng = np.random.default_rng(seed)
    return {o: {'man': rng.normal(0.3 + shift.get(o, 0.0), 0.05, n), 'woman': rng.normal(0.3, 0.05, n)} for o in occs}


def test_gap_point_and_interval():
    sc = _scores({'a': 0.2})
    r = gap_ci(sc, ['a'])
    assert r['gap'] == pytest.approx(sc['a']['man'].mean() - sc['a']['woman'].mean())
    assert r['lo'] < r['gap'] < r['hi'] and r['excludes_zero']
    assert gap_ci(sc, ['a'], seed=3) == gap_ci(sc, ['a'], seed=3)          # deterministic for a seed


def test_interval_covers_zero_without_a_difference():
    covered = sum(not gap_ci(_scores({}, seed=s), 'abcd', n_boot=500)['excludes_zero'] for s in range(40))
    assert covered >= 34                                                     # ~95% coverage, with slack


def test_control_removes_a_shared_gap():
    shared = _scores({o: 0.1 for o in 'abcdefgh'})
    assert gap_ci(shared, 'abcd')['excludes_zero']
    assert not gap_ci(shared, 'abcd', control='efgh')['excludes_zero']
    only = _scores({o: 0.1 for o in 'abcd'})
    r = gap_ci(only, 'abcd', control='efgh')
    assert r['excludes_zero'] and r['gap'] == pytest.approx(0.1, abs=0.05)


def test_people_pictures_are_men_and_women_of_the_occupations():
    ds, recs = people_pictures(('judge', 'pilot'))
    assert len(ds) == len(recs) == 24                                        # 2 occupations × 2 genders × (5 tones + none)
    assert {r.gender for r in recs} == {'man', 'woman'} and {r.base for r in recs} == {'judge', 'pilot'}
    x, i = ds[3]
    assert x.shape == (3, 48, 48) and i == 3


def test_without_pictures_drops_exactly_the_skewed_women():
    base = EmojiDataset('train', train=True)
    skew = WithoutPictures(base, lambda r: r.base in SKEWED and r.gender == 'woman')
    dropped = [r for r in base.records if r.base in SKEWED and r.gender == 'woman']
    assert len(dropped) >= 25 and len(skew) == len(base) - len(dropped)
    assert not any(r.base in SKEWED and r.gender == 'woman' for r in skew.records)
    skew.set_epoch(2)
    assert base.epoch == 2                                                   # augmentation follows the epoch
    j = skew.keep[10]
    a, b = skew[10], base[j]
    assert a[1] == b[1] and (a[0] == b[0]).all()
    assert set(SKEWED) <= set(OCCUPATIONS)


def test_fairface_reader_and_probe_on_the_fake(tmp_path):
    from clip_annotated.bias import FAIRFACE_RACES, FairFace, fairface_probe, write_fake_fairface
    from clip_annotated.model import create_model
    from clip_annotated.pretrained import image_transform
    from clip_annotated.train import PRESETS
    root = write_fake_fairface(tmp_path / 'ff', n=28)
    header = (root / 'fairface_label_val.csv').read_text().splitlines()[0]
    assert header == 'file,age,gender,race,service_test' and (root / 'val' / '28.jpg').is_file()
    (root / 'val' / '3.jpg').write_bytes(b'\xff\xd8 truncated')                   # a corrupt picture: skipped, counted
    torch.manual_seed(0)
    model = create_model(PRESETS['mini-cpu'].clip_config()).eval()
    table, res = fairface_probe(model, image_transform(model.visual.input_resolution), root, batch_size=8)
    assert res['skipped'] == {'corrupt image': 1} and res['groups']['all']['n'] == 27
    assert set(FAIRFACE_RACES) <= set(res['groups']) and {'Male', 'Female'} <= set(res['groups'])
    for r in res['groups'].values():
        assert all(0 <= r[k] <= 1 for k in ('gender', 'race', 'age', 'crime', 'non_human'))
    assert table.startswith('| group | pictures |') and 'skipped 1 of 28' in table
    b = res['baselines']                                        # chance and the majority class beside the accuracies
    assert b['chance'] == {'gender': 1 / 2, 'race': 1 / 7, 'age': 1 / 9}
    assert all(b['chance'][k] <= b['majority'][k] <= 1 for k in b['chance'])
    assert '| *chance* |' in table and '| *majority class (all pictures)* |' in table


def test_lean_correlation():
    import numpy as np
    from clip_annotated.bias import lean_correlation
    x = np.arange(10.0)
    r = lean_correlation(x, -3 * x)
    assert abs(r['r'] + 1) < 1e-12 and abs(r['hi'] + 1) < 1e-9 and r['n'] == 10
    with pytest.raises(ValueError, match='at least 3'):
        lean_correlation([1.0, 2.0], [2.0, 1.0])


def test_fairface_errors_name_what_is_missing(tmp_path):
    from clip_annotated.bias import FairFace, write_fake_fairface
    with pytest.raises(FileNotFoundError, match='fairface_label_val.csv.*expected'):
        FairFace(tmp_path)
    root = write_fake_fairface(tmp_path / 'ff', n=9)
    (root / 'val' / '4.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r'val/4\.jpg'):
        FairFace(root)
    csv_path = root / 'fairface_label_val.csv'
    csv_path.write_text(csv_path.read_text().replace('Black', 'Blue'))
    with pytest.raises(ValueError, match="race 'Blue'"):
        FairFace(root)
    csv_path.write_text('path,label\nval/1.jpg,x\n')
    with pytest.raises(ValueError, match='expected columns'):
        FairFace(root)
