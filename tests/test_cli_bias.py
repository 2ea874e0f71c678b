"""`clip-annotated reproduce` on the emoji set with a tiny model: the bias section and its run, and `--no-bias`."""
from __future__ import annotations

import contextlib, io, json, os

import pytest
import torch

TINY_MODEL = dict(embed_dim=32, vision_layers=1, vision_width=64, transformer_width=64, transformer_heads=1,
                  transformer_layers=1)
TINY = ['--model-overrides', json.dumps(TINY_MODEL), '--batch-size', '32', '--steps', '2', '--warmup', '1',
        '--eval-every', '0', '--ckpt-every', '2', '--threads', '1', '--no-progress']


@pytest.fixture(autouse=True)
def _not_in_test(monkeypatch):
    monkeypatch.delenv('IN_TEST', raising=False)


def _reproduce(*argv):
    from clip_annotated.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        summary = main(['reproduce', *argv])
    return summary, out.getvalue()


def test_reproduce_writes_the_bias_section_then_no_bias_skips_it(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / 'mini'
    summary, printed = _reproduce(*TINY, '--out', str(out))
    twin = tmp_path / 'bias-captions'
    ck = torch.load(twin / 'checkpoint.pt', map_location='cpu', weights_only=True)
    assert ck['data']['step'] == 2 and ck['model_config']['vision_layers'] == 1        # the main run's configuration
    report = (out / 'report.md').read_text()
    assert '## Bias: does the probe find a skew put into the captions?' in report and 'excess: skewed − others' in report
    assert "Reading: the twin's excess minus this run's" in report and 'One seed is one seed' in report and report in printed
    res = json.loads((out / 'results.json').read_text())
    for model in ('balanced', 'captions'):
        for part in ('skewed', 'control', 'excess'):
            r = res['bias'][model][part]
            assert r['lo'] <= r['gap'] <= r['hi'] and isinstance(r['excludes_zero'], bool)
    assert res['bias']['run'] == str(twin) and 'excess man-or-woman separation' in res['bias']['summary']
    assert res['bias']['skewed_occupations'][0] == 'judge' and isinstance(res['bias']['found'], bool)
    p = res['bias']['paired']                                                      # twin − this run, same pictures
    assert p['lo'] <= p['gap'] <= p['hi'] and res['bias']['found'] == (p['excludes_zero'] and p['gap'] < 0)
    assert len(res['bias']['occupations']) == 16 and 'teacher' not in res['bias']['occupations']   # trained in every form
    assert all(z['ensembling']['lo'] <= z['ensembling']['diff'] <= z['ensembling']['hi'] for z in res['zeroshot'])
    assert res['hardware'] and 'CPU' in res['hardware']
    assert summary['bias']['summary'] == res['bias']['summary']
    assert '## Zero-shot classification' in report and (out / 'model_card.md').exists()

    stamp = (twin / 'checkpoint.pt').stat().st_mtime_ns
    _reproduce(*TINY, '--out', str(out), '--no-bias')                                 # finished: no training
    res = json.loads((out / 'results.json').read_text())
    assert 'bias' not in res and 'hardware' in res and 'zeroshot' in res
    assert '## Bias' not in (out / 'report.md').read_text()
    assert (twin / 'checkpoint.pt').stat().st_mtime_ns == stamp                        # the twin left alone


def test_no_bias_makes_no_twin(tmp_path):
    _reproduce(*TINY, '--out', str(tmp_path / 'a'), '--no-bias')
    assert not (tmp_path / 'bias-captions').exists() and (tmp_path / 'a' / 'report.md').exists()
