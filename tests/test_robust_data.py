"""Bad data samples (issue #14, item 4): a bad row or sample is skipped and counted by reason, reading goes on,
and only a source with nothing usable left is an error, one that names the file (and the columns it has).

Every broken file is made here: written with the library's own writers (`write_csv`, `write_webdataset`), then
damaged. Small pictures and a handful of rows keep the whole file to a few seconds."""
from __future__ import annotations

import csv, io, socket, tarfile, threading, time, warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from clip_annotated import data as D
from clip_annotated import readers as R
from clip_annotated import pictures as P

SIZE = 16


@pytest.fixture(scope='module')
def pairs():
    "Eight distinct (uint8 picture [3, 16, 16], caption) pairs."
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8, generator=g), f'caption number {k}') for k in range(8)]


def _append(path: Path, *lines: bytes):
    with open(path, 'ab') as f:
        for line in lines: f.write(line + b'\n')


def _quiet(f):
    "f(), with the warnings it gives (checked elsewhere) silenced."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return f()


# ------------------------------------------------------------------ one bad row in a CSV: skipped, counted

BAD_ROWS = {                                      # one appended row -> the reason it is skipped for
    'too few fields': (b'images/000001.png', 'malformed row'),
    'extra field (an unquoted comma)': (b'images/000001.png,a cat, sitting on a mat', 'malformed row'),
    'missing picture': (b'images/nowhere.png,a missing picture', 'missing image'),
    'corrupt picture': (b'images/corrupt.png,a corrupt picture', 'corrupt image'),
    'empty caption': (b'images/000001.png,', 'empty caption'),
    'blank caption': (b'images/000001.png,"   "', 'empty caption'),
    'caption not UTF-8': (b'images/000001.png,caf\xe9', 'undecodable caption'),
    'empty image path': (b',a caption without a picture', 'missing image'),
}


@pytest.mark.parametrize('case', BAD_ROWS)
def test_one_bad_csv_row_is_skipped_and_counted(tmp_path, pairs, case):
    line, reason = BAD_ROWS[case]
    path = R.write_csv(pairs, tmp_path / 'pairs.csv')
    (tmp_path / 'images' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n not a picture')
    _append(path, line)
    ds = _quiet(lambda: R.CsvDataset(path, image_size=SIZE))
    assert len(ds) == len(pairs) + 1
    assert ds[len(pairs)] is None                                           # the bad row: None, the skip convention
    assert ds.skips.counts == {reason: 1} and ds.skips.good == 0
    assert [ds[i][1] for i in range(len(pairs))] == [c for _, c in pairs]    # every good row still reads
    assert ds.skips.report() == f'data: skipped 1 of {len(pairs) + 1} samples (1 {reason})'


def test_malformed_rows_are_named_in_one_warning(tmp_path, pairs):
    path = R.write_csv(pairs, tmp_path / 'pairs.csv')
    _append(path, b'images/000001.png', b'images/000002.png,a cat, sitting')   # lines 10 and 11
    with pytest.warns(UserWarning, match=r"pairs\.csv: 2 row\(s\) do not have the header's 2 fields \(the first on line 10"):
        R.CsvDataset(path, image_size=SIZE)


def test_a_batch_of_only_bad_rows_is_empty_not_a_crash(tmp_path, pairs):
    "Map-style: the dataset gives None for each bad row and counts it; collate turns an all-None batch into B = 0."
    path = R.write_csv(pairs[:2], tmp_path / 'pairs.csv')
    _append(path, b'images/000001.png', b'images/nowhere.png,gone', b'images/000000.png,')
    ds = _quiet(lambda: R.CsvDataset(path, image_size=SIZE))
    dl = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=D.collate)   # batch 2: rows 3-5, all bad
    sizes = [(images.shape[0], tokens.shape[0]) for images, tokens in dl]
    assert sizes == [(2, 2), (0, 0)]
    assert ds.skips.counts == {'malformed row': 1, 'missing image': 1, 'empty caption': 1} and ds.skips.good == 2


def test_labelled_csv_skips_bad_rows(tmp_path, pairs):
    path = R.write_csv(pairs[:3], tmp_path / 'pairs.csv')
    rows = [b'filepath,label', b'images/000000.png,cat', b'images/000001.png,', b'images/000002.png,zebra,extra',
            b'images/000001.png,caf\xe9', b'images/nowhere.png,cat', b'images/000002.png,dog']
    (tmp_path / 'labels.csv').write_bytes(b'\n'.join(rows) + b'\n')
    ds = _quiet(lambda: P.LabelledCsv(tmp_path / 'labels.csv'))
    assert ds.classes == ['cat', 'dog'] and len(ds) == 6
    items = [ds[i] for i in range(len(ds))]
    assert [x is None for x in items] == [False, True, True, True, True, False]
    assert [y for _, y in filter(None, items)] == [0, 1]
    assert ds.skips.counts == {'missing image': 1, 'malformed row': 1, 'undecodable label': 1, 'empty label': 1}
    (tmp_path / 'nolabel.csv').write_text('filepath,label\nimages/000000.png,\nimages/000001.png,  \n')
    with pytest.raises(ValueError, match=r"nolabel\.csv: no row has a label in column 'label' \(2 empty label\)"):
        P.LabelledCsv(tmp_path / 'nolabel.csv')


def test_caption_pairs_give_no_caption_for_a_bad_row(tmp_path, pairs):
    path = R.write_csv(pairs[:2], tmp_path / 'pairs.csv')
    _append(path, b'images/000001.png', b'images/000000.png,caf\xe9', b'images/000001.png, spaced ')
    paths, captions = _quiet(lambda: P.caption_pairs(path))
    assert captions == [c for _, c in pairs[:2]] + ['', '', 'spaced']      # '' : the command line skips the row
    assert paths[:2] == [tmp_path / 'images' / '000000.png', tmp_path / 'images' / '000001.png']
    names, _ = _quiet(lambda: P.image_paths(path))
    assert names == ['images/000000.png', 'images/000001.png', '', 'images/000000.png', 'images/000001.png']


# ------------------------------------------------------------------ a file that is not UTF-8

def _latin1_csv(tmp_path, pairs) -> Path:
    R.write_csv(pairs[:2], tmp_path / 'ok.csv')                             # the pictures
    text = 'filepath,title\nimages/000000.png,café au lait\nimages/000001.png,crème brûlée\n'
    (tmp_path / 'latin.csv').write_bytes(text.encode('latin-1'))
    return tmp_path / 'latin.csv'


def test_latin1_csv_says_it_is_not_utf8(tmp_path, pairs):
    path = _latin1_csv(tmp_path, pairs)
    want = r"latin\.csv is not UTF-8 text: line 2 has the byte 0xe9, which is not UTF-8; save the file again as UTF-8"
    with pytest.raises(ValueError, match=r"latin\.csv: no valid sample among 2 rows \(2 undecodable caption\); .*" + want), \
         pytest.warns(UserWarning, match=want):
        R.CsvDataset(path, image_size=SIZE)
    ds = R.CsvDataset(path, image_size=SIZE, encoding='latin-1')            # or say what it is
    assert [ds[i][1] for i in range(2)] == ['café au lait', 'crème brûlée']


def test_latin1_csv_in_the_evaluation_readers(tmp_path, pairs):
    path = _latin1_csv(tmp_path, pairs)
    with pytest.warns(UserWarning, match=r'latin\.csv is not UTF-8 text: line 2'):
        assert P.caption_pairs(path)[1] == ['', '']                         # was a bare UnicodeDecodeError
    assert P.caption_pairs(path, encoding='latin-1')[1] == ['café au lait', 'crème brûlée']
    (tmp_path / 'labels.csv').write_bytes('filepath,label\nimages/000000.png,café\nimages/000001.png,tea\n'.encode('cp1252'))
    with pytest.warns(UserWarning, match=r'labels\.csv is not UTF-8 text: line 2 has the byte 0xe9'):
        ds = P.LabelledCsv(tmp_path / 'labels.csv')
    assert ds.classes == ['tea'] and ds[0] is None and ds.skips.counts == {'undecodable label': 1}
    assert P.LabelledCsv(tmp_path / 'labels.csv', encoding='cp1252').classes == ['café', 'tea']


def test_one_latin1_row_in_a_utf8_file_is_skipped_and_named(tmp_path, pairs):
    path = R.write_csv(pairs[:3], tmp_path / 'pairs.csv')
    _append(path, 'images/000000.png,naïve'.encode('utf-8'), 'images/000001.png,déjà vu'.encode('latin-1'))
    with pytest.warns(UserWarning, match=r'pairs\.csv is not UTF-8 text: line 6 has the byte 0xe9'):
        ds = R.CsvDataset(path, image_size=SIZE)
    assert ds[3][1] == 'naïve' and ds[4] is None and ds.skips.counts == {'undecodable caption': 1}


# ------------------------------------------------------------------ a caption longer than csv's field limit

def test_caption_longer_than_the_csv_field_limit(tmp_path, pairs):
    R.write_csv(pairs[:1], tmp_path / 'ok.csv')
    long = 'a very long caption ' * 10_000                                   # 200,000 characters > 131,072
    with open(tmp_path / 'long.csv', 'w', newline='', encoding='utf-8') as f:
        w = csv.writer(f); w.writerow(['filepath', 'title']); w.writerow(['images/000000.png', long])
    before = csv.field_size_limit()
    ds = R.CsvDataset(tmp_path / 'long.csv', image_size=SIZE)
    assert ds[0][1] == long.strip() and ds.skips.good == 1
    assert csv.field_size_limit() == before                                 # the process-wide limit is put back
    images, tokens = D.collate([ds[0]])
    assert tokens.shape == (1, 77)                                          # the tokenizer cuts it, as any caption
    assert P.caption_pairs(tmp_path / 'long.csv')[1] == [long.strip()]


# ------------------------------------------------------------------ files with nothing to read: errors naming them

def test_empty_header_only_and_wrong_columns(tmp_path, pairs):
    (tmp_path / 'empty.csv').write_bytes(b'')
    (tmp_path / 'blank.csv').write_bytes(b'\xef\xbb\xbf\n  \n')                 # a BOM and blank lines: empty too
    (tmp_path / 'header.csv').write_text('filepath,title\n')
    (tmp_path / 'cols.tsv').write_text('image\tcaption\nx.png\thello\n')
    for name in ('empty.csv', 'blank.csv'):
        with pytest.raises(ValueError, match=rf"{name} is empty: expected a header line with the columns \['filepath', 'title'\]"):
            R.CsvDataset(tmp_path / name)
        with pytest.raises(ValueError, match=rf"{name} is empty: expected a header line with the columns \['filepath', 'label'\]"):
            P.LabelledCsv(tmp_path / name)
    with pytest.raises(ValueError, match=r'header\.csv has a header but no rows'):
        R.CsvDataset(tmp_path / 'header.csv')
    (tmp_path / 'header_l.csv').write_text('filepath,label\n')
    with pytest.raises(ValueError, match=r'header_l\.csv has a header but no rows'):
        P.LabelledCsv(tmp_path / 'header_l.csv')
    cols = r"cols\.tsv: expected columns \['filepath', 'title'\] \(separator '\\t'\), missing \['filepath', 'title'\]; " \
           r"the file has columns \['image', 'caption'\]"
    with pytest.raises(ValueError, match=cols):
        R.CsvDataset(tmp_path / 'cols.tsv')
    with pytest.raises(ValueError, match=cols):
        P.caption_pairs(tmp_path / 'cols.tsv')
    with pytest.raises(ValueError, match=r"cols\.tsv: .*missing \['filepath', 'label'\]; the file has columns"):
        P.LabelledCsv(tmp_path / 'cols.tsv')
    with pytest.raises(ValueError, match=r"cols\.tsv: .*missing \['filepath'\]; the file has columns"):
        P.image_paths(tmp_path / 'cols.tsv')
    with pytest.raises(FileNotFoundError, match=r'no CSV file at .*nowhere\.csv'):
        P.caption_pairs(tmp_path / 'nowhere.csv')


def test_csv_where_no_row_is_usable_names_the_reasons(tmp_path, pairs):
    R.write_csv(pairs[:1], tmp_path / 'ok.csv')
    (tmp_path / 'bad.csv').write_text('filepath,title\nimages/000000.png\nimages/nowhere.png,x\nimages/000000.png,\n')
    with pytest.raises(ValueError, match=r'bad\.csv: no valid sample among 3 rows \(1 malformed row, 1 missing image, 1 empty caption\)'), \
         warnings.catch_warnings():
        warnings.simplefilter('ignore')
        R.CsvDataset(tmp_path / 'bad.csv')


# ------------------------------------------------------------------ earlier fixes, kept (regression)

def test_csv_with_a_bom_is_read_by_every_reader(tmp_path, pairs):
    ok = R.write_csv(pairs[:2], tmp_path / 'ok.csv')
    (tmp_path / 'bom.csv').write_bytes(b'\xef\xbb\xbf' + ok.read_bytes())
    ds = R.CsvDataset(tmp_path / 'bom.csv', image_size=SIZE)
    assert [ds[i][1] for i in range(2)] == [c for _, c in pairs[:2]]
    assert P.caption_pairs(tmp_path / 'bom.csv')[1] == [c for _, c in pairs[:2]]
    (tmp_path / 'bom_l.csv').write_bytes(b'\xef\xbb\xbffilepath,label\nimages/000000.png,cat\n')
    assert P.LabelledCsv(tmp_path / 'bom_l.csv').classes == ['cat']


@pytest.fixture
def shards(tmp_path, pairs):
    "A shard of all eight pairs (its members: 000000000.png, 000000000.txt, …) and two more of four each."
    big = R.write_webdataset(pairs, tmp_path / 'big', samples_per_shard=8)[0]
    more = R.write_webdataset(pairs[:4], tmp_path / 'more', samples_per_shard=2)
    return big, more


def _cut(src: Path, dst: Path, at: int) -> Path:
    dst.write_bytes(src.read_bytes()[:at]); return dst


def _member(shard: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(shard) as tf: return tf.getmember(name)


def _read(ds) -> tuple[list[str], list[str]]:
    "(captions read, messages of the warnings given)."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        got = [c for _, c in ds]
    return got, [str(w.message) for w in caught if w.category is UserWarning]


def test_shard_cut_inside_a_member_is_counted_and_the_next_read(tmp_path, pairs, shards):
    big, more = shards
    m = _member(big, '000000003.png')
    ds = R.ShardDataset([_cut(big, tmp_path / 'cut.tar', m.offset_data + m.size // 2), *more], image_size=SIZE)
    got, warned = _read(ds)
    assert got == [c for _, c in pairs[:3]] + [c for _, c in pairs[:4]]
    assert ds.skips.counts == {'unreadable shard': 1} and ds.skips.good == 7
    assert len(warned) == 1 and 'unreadable shard' in warned[0] and 'cut.tar' in warned[0]


# ------------------------------------------------------------------ a shard cut on a 512-byte block boundary

@pytest.mark.parametrize('before,kept', [('000000003.txt', 3),      # between a picture and its caption
                                         ('000000004.png', 4)])     # between two whole samples
def test_shard_cut_on_a_block_boundary_is_an_unreadable_shard(tmp_path, pairs, shards, before, kept):
    big, more = shards
    at = _member(big, before).offset                                      # a header starts on a block boundary
    assert at % 512 == 0
    ds = R.ShardDataset([_cut(big, tmp_path / 'cut.tar', at), *more], image_size=SIZE)
    got, warned = _read(ds)
    assert got == [c for _, c in pairs[:kept]] + [c for _, c in pairs[:4]]   # before the cut, then the next shards
    assert ds.skips.counts == {'unreadable shard': 1}                       # not 'missing caption'
    assert len(warned) == 1 and f"unreadable shard {tmp_path / 'cut.tar'}" in warned[0] and 'unexpected end of data' in warned[0]


def test_shard_cut_on_a_block_boundary_inside_a_long_member(tmp_path, pairs):
    shard = R.write_webdataset([(pairs[0][0], 'x' * 3000), pairs[1]], tmp_path / 'long')[0]
    m = _member(shard, '000000000.txt')
    at = m.offset_data + 1024                                              # 1,024 of its 3,000 bytes
    ds = R.ShardDataset([_cut(shard, tmp_path / 'cut.tar', at)], image_size=SIZE)
    with pytest.raises(ValueError, match=r'cut\.tar breaks off after 0 samples \(unexpected end of data'), \
         pytest.warns(UserWarning, match=r'unreadable shard .*cut\.tar'):
        list(ds)


def test_block_boundary_cut_through_a_pipe(tmp_path, pairs, shards):
    big, more = shards
    cut = _cut(big, tmp_path / 'cut.tar', _member(big, '000000003.txt').offset)
    ds = R.ShardDataset([f'pipe:cat {cut}', f'pipe:cat {more[0]}'], image_size=SIZE)
    got, warned = _read(ds)
    assert got == [c for _, c in pairs[:3]] + [c for _, c in pairs[:2]]
    assert ds.skips.counts == {'unreadable shard': 1} and len(warned) == 1 and 'cut.tar' in warned[0]


def test_whole_shards_are_not_flagged_and_a_real_missing_caption_still_counts(tmp_path, pairs, shards):
    big, more = shards
    with tarfile.open(big, 'a') as tf:                                      # a complete archive, one caption short
        R._add_member(tf, 'lonely.png', R._png_bytes(pairs[0][0]))
    ds = R.ShardDataset([big, *more, f'pipe:cat {more[0]}'], image_size=SIZE)
    got, warned = _read(ds)
    assert len(got) == 8 + 4 + 2 and warned == []
    assert ds.skips.counts == {'missing caption': 1}
    with tarfile.open(big) as src, tarfile.open(tmp_path / 'small.tar.gz', 'w:gz') as dst:   # compressed: not checked,
        for m in src.getmembers()[:4]: dst.addfile(m, src.extractfile(m))                     # still read
    ds = R.ShardDataset(tmp_path / 'small.tar.gz', image_size=SIZE)
    assert _read(ds) == ([c for _, c in pairs[:2]], []) and ds.skips.counts == {}


def test_every_shard_bad_is_one_error_naming_each(tmp_path, pairs, shards):
    big, _ = shards
    m = _member(big, '000000000.png')
    assert m.size > 100
    inside = _cut(big, tmp_path / 'inside.tar', m.offset_data + 100)               # cut in its first member
    boundary = _cut(big, tmp_path / 'boundary.tar', _member(big, '000000000.txt').offset)   # picture, no caption
    (tmp_path / 'zip.tar').write_bytes(b'PK\x03\x04' + b'\0' * 600)
    with tarfile.open(tmp_path / 'junk.tar', 'w') as tf: R._add_member(tf, 'a.png', b'not a png'); R._add_member(tf, 'a.txt', b'hi')
    names = ['inside.tar', 'boundary.tar', 'zip.tar', 'junk.tar']
    ds = R.ShardDataset([tmp_path / n for n in names], image_size=SIZE)
    with pytest.raises(ValueError) as e, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        list(ds)
    msg = str(e.value)
    assert msg.startswith('no valid sample in shard(s) ') and all(str(tmp_path / n) in msg for n in names)
    assert f"{tmp_path / 'inside.tar'} breaks off after 0 samples" in msg
    assert f"{tmp_path / 'boundary.tar'} breaks off after 0 samples" in msg
    assert f"{tmp_path / 'zip.tar'} is not a tar archive" in msg
    assert '1 corrupt image' in msg and '3 unreadable shards' in msg



# ------------------------------------------------------------------ http(s) shards that never answer (#26 item 4)

def _within(seconds: float, f):
    "f()'s result or the exception it raised, from a thread given `seconds` to finish; a hang fails the test instead."
    out = {}
    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try: out['value'] = f()
            except Exception as e: out['error'] = e
        out['warned'] = [str(w.message) for w in caught if w.category is UserWarning]
    t0, thread = time.monotonic(), threading.Thread(target=run, daemon=True)
    thread.start(); thread.join(seconds)
    assert not thread.is_alive(), f'still waiting after {seconds} s'
    return out, time.monotonic() - t0


@pytest.fixture
def dead_urls(monkeypatch, shards):
    "URLs of three shards on loopback that cannot be read: a server that accepts and never answers, one that stalls mid-shard, a refused port."
    for var in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'): monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1')
    half = shards[0].read_bytes()[:1024]                                  # a header and the start of a picture
    replies = {'silent': b'', 'stalls': b'HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s' % (10 * len(half), half)}
    listeners, held, stop = {}, [], threading.Event()
    for name in replies:
        listeners[name] = socket.socket(); listeners[name].bind(('127.0.0.1', 0)); listeners[name].listen(4)
        listeners[name].settimeout(0.1)
    refused = socket.socket(); refused.bind(('127.0.0.1', 0))               # bound, never listening: refused
    def serve():                                                            # bounded: 30 s at most
        end = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < end:
            for name, sock in listeners.items():
                try: conn, _ = sock.accept()
                except OSError: continue
                held.append(conn); conn.sendall(replies[name])              # then nothing more, ever
    thread = threading.Thread(target=serve, daemon=True); thread.start()
    port = lambda s: s.getsockname()[1]
    yield {name: f'http://127.0.0.1:{port(s)}/{name}.tar' for name, s in [*listeners.items(), ('refused', refused)]}
    stop.set(); thread.join(5)
    for s in [*listeners.values(), refused, *held]: s.close()


@pytest.mark.parametrize('case,cause', [('silent', r'no answer within 1 s; a slow server needs a longer read_timeout'),
                                        ('stalls', r'no answer within 1 s after '),
                                        ('refused', r'connection refused')])
def test_http_shard_that_does_not_answer_is_a_prompt_error_naming_url_and_cause(dead_urls, case, cause):
    url = dead_urls[case]
    out, took = _within(15, lambda: list(R.ShardDataset(url, image_size=SIZE, read_timeout=1)))
    assert isinstance(out.get('error'), ValueError), out
    assert f'{url}: {cause}' in str(out['error']) and 'not a tar archive' not in str(out['error'])
    assert took < 10 and out['warned'] == [f'unreadable shard {url} ({str(out["error"]).split(f"{url}: ")[-1]}); going on with the next shard']


def test_dead_http_shards_beside_a_good_one_are_skipped_and_counted(dead_urls, shards, pairs):
    big, _ = shards
    urls = [dead_urls['silent'], dead_urls['refused'], str(big), dead_urls['stalls']]
    ds = R.open_data(urls, image_size=SIZE, read_timeout=1)
    out, took = _within(20, lambda: [c for _, c in ds])
    assert out.get('value') == [c for _, c in pairs], out
    assert ds.skips.counts == {'unreadable shard': 3} and took < 15
    for name, warned in zip(['silent', 'refused', 'stalls'], out['warned']):
        assert warned.startswith(f'unreadable shard {dead_urls[name]} (') and ('refused' in warned) == (name == 'refused')
    with pytest.raises(ValueError, match=r"read_timeout=0 for .*silent\.tar.*: expected seconds > 0"):
        R.ShardDataset(dead_urls['silent'], read_timeout=0)


# ------------------------------------------------------------------ a quote that is never closed (#26 item 10)

def _csv_with(tmp_path, pairs, edits: dict[int, str], name='pairs.csv') -> Path:
    "A CSV of the eight pairs (rows on lines 2-9), with the given lines replaced."
    path = R.write_csv(pairs, tmp_path / name)
    lines = path.read_text(encoding='utf-8').splitlines()
    for n, text in edits.items(): lines[n - 1] = text
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8'); return path


def test_unclosed_quote_is_named_and_the_rows_before_it_load(tmp_path, pairs):
    path = _csv_with(tmp_path, pairs, {5: 'images/000003.png,"caption number 3'})   # line 5 opens a quote
    with pytest.warns(UserWarning) as caught:
        ds = R.CsvDataset(path, image_size=SIZE)
    msg = [str(w.message) for w in caught]
    assert msg == [f"{path}: the quote opened on line 5 is never closed, so lines 5-9 were read as one row; close the "
                   f"quote or remove it. The row is skipped and counted as 'malformed row'"]
    assert len(ds) == 4 and [ds[i][1] for i in range(3)] == [c for _, c in pairs[:3]] and ds[3] is None
    assert ds.skips.counts == {'malformed row': 1}


def test_quote_closed_only_by_a_later_row_is_named_and_the_rows_after_load(tmp_path, pairs):
    path = _csv_with(tmp_path, pairs, {3: 'images/000001.png,"caption number 1',
                                       6: 'images/000004.png,"caption, number 4"'})   # its quote closes line 3's
    with pytest.warns(UserWarning, match=r"pairs\.csv: the quote opened on line 3 is closed only on line 6, so lines "
                                         r"3-6 were read as one row"):
        rows = R.read_csv(path, ['filepath', 'title'])
    assert rows == [('images/000000.png', 'caption number 0'), None] + [(f'images/{k:06d}.png', f'caption number {k}') for k in (5, 6, 7)]


def test_unclosed_quote_in_the_first_row_is_an_error_naming_file_and_line(tmp_path, pairs):
    path = _csv_with(tmp_path, pairs, {2: 'images/000000.png,"caption number 0'})
    with pytest.raises(ValueError, match=rf"^{path}: the quote opened on line 2 is never closed, so lines 2-9 were read "
                                         r"as one row; close the quote or remove it$"):
        R.CsvDataset(path, image_size=SIZE)


def test_quoted_captions_over_several_lines_are_not_taken_for_an_open_quote(tmp_path, pairs):
    path = _csv_with(tmp_path, pairs, {3: 'images/000001.png,"two\nlines"', 4: 'images/000002.png,"a list,\nof things"'})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        rows = R.read_csv(path, ['filepath', 'title'])
    assert [r[1] for r in rows[1:3]] == ['two\nlines', 'a list,\nof things'] and len(rows) == 8


# ------------------------------------------------------------------ the counts reach the run's report

def test_skip_counts_reach_report_md(tmp_path, pairs):
    from clip_annotated.train import PRESETS
    from clip_annotated.run import train_and_report
    tiny = dict(embed_dim=32, image_resolution=24, vision_layers=1, vision_width=64, vision_patch_size=12,
                transformer_width=64, transformer_heads=1, transformer_layers=1)      # as tests/test_own_data.py
    data = R.write_csv(pairs, tmp_path / 'data' / 'train.csv')
    _append(data, b'images/nowhere.png,gone', b'images/000001.png')          # 10 rows, 2 bad
    held = R.write_csv(pairs[:4], tmp_path / 'data' / 'held.csv')
    _append(held, b'images/000000.png,')
    cfg = replace(PRESETS['mini-cpu'], model_overrides=tiny, train_data=str(data), val_data=str(held), batch_size=5,
                  steps=2, warmup=0, ckpt_every=1000, eval_every=0, progress=False, threads=1, out=str(tmp_path / 'run'))
    _quiet(lambda: train_and_report(cfg))
    report = (tmp_path / 'run' / 'report.md').read_text()
    assert '(skipped: 1 missing image, 1 malformed row)' in report            # training data, one epoch of 10 rows
    assert 'held out: ' in report and '(skipped: 1 empty caption)' in report
