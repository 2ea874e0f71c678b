"""The input-pipeline benchmark (issue #25, appendix 99c) with tiny sizes, ours alone, so that it cannot rot
between the rare runs of `make bench-loader` against open_clip's loader.

No timing is asserted: only that every (data, workers) pair was measured, that the table has its shape,
that the files are made once, and that the saved results read back.
"""
from __future__ import annotations

import json

from clip_annotated.loaderbench import bench_loader, loader_results, loader_table

HEAD = ['data', 'workers', 'ours pictures/s', 'open_clip pictures/s', 'ours / open_clip',
        'ours main CPU ms/batch', 'open_clip main CPU ms/batch']


def test_loader_bench_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('OPEN_CLIP_TRAIN_PYTHON', raising=False)
    folder, saved = tmp_path / 'files', tmp_path / 'bench_loader.json'
    res = bench_loader(repeats=1, pictures=32, batch_size=8, workers=(0, 1), image_size=64, size=(64, 64), shards=4,
                       folder=folder, save=saved)
    out = capsys.readouterr().out
    assert out.count("open_clip's loader is not timed") == 1
    assert [(r['kind'], r['workers']) for r in res['rows']] == [('csv', 0), ('csv', 1), ('webdataset', 0), ('webdataset', 1)]
    for r in res['rows']:
        assert r['ours_pictures_s'] > 0 and r['ours_cpu_ms'] > 0, r
        assert r['open_clip_pictures_s'] is None and r['ratio'] is None and r['open_clip_cpu_ms'] is None, r
    assert all(run['side'] == 'ours' and run['shape'] == [8, 3, 64, 64] and run['pictures'] == 8 * run['batches']
               for run in res['runs'])
    assert {run['batches'] for run in res['runs']} == {3}          # 4 batches of 8, the first untimed

    table = loader_table(res)
    lines = table.splitlines()
    assert lines[0] == '| ' + ' | '.join(HEAD) + ' |' and lines[1] == '|---|' + '---:|' * 6
    body = lines[2:6]
    assert all(line.count('|') == len(HEAD) + 1 for line in body) and lines[6] == ''
    assert [line.split(' | ')[3] for line in body] == ['–'] * 4     # open_clip's column is empty
    assert "open_clip's loader was not timed" in lines[7] and 'load average' in lines[7]
    assert table in out

    assert loader_results(saved) == json.loads(json.dumps(res))    # saved, read back
    stamp = (folder / 'images' / '000000.jpg').stat().st_mtime_ns
    bench_loader(repeats=1, pictures=32, batch_size=8, workers=(0,), image_size=64, size=(64, 64), shards=4, folder=folder)
    assert (folder / 'images' / '000000.jpg').stat().st_mtime_ns == stamp   # the files are made once
