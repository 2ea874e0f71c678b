"""The site: every figure has a caption and alt text, the sidebar lists every chapter, and
`make preview` (.ci/preview.py) turns the notebooks into one offline HTML page each.

Quarto reads `#| fig-cap` (the caption under a figure) and `#| fig-alt` (the img alt text a screen
reader speaks); a cell whose committed output holds an image needs both. The preview test runs the
real conversion (nbdev's processing, then nbconvert) into a temporary folder: about 30 s.
"""
from __future__ import annotations

import re, subprocess, sys
from pathlib import Path

import nbformat, pytest, yaml

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'
IMAGE = ('image/png', 'image/jpeg', 'image/svg+xml')
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))


def options(cell) -> dict:
    "The leading `#| key: value` options of a code cell, as Quarto reads them."
    opts = {}
    for line in cell.source.splitlines():
        if not line.startswith('#|'): break
        try: parsed = yaml.safe_load(line[2:])
        except yaml.YAMLError as e: raise AssertionError(f"unreadable cell option {line!r}: {e}")
        if isinstance(parsed, dict): opts.update(parsed)
    return opts

def figure_cells(nb):
    return [c for c in nb.cells if c.cell_type == 'code'
            and any(k in o.get('data', {}) for o in c.get('outputs', []) for k in IMAGE)]

def sidebar_files() -> list[str]:
    def walk(items):
        for it in items:
            if isinstance(it, str): yield it
            elif isinstance(it, dict):
                if 'href' in it: yield it['href']
                yield from walk(it.get('contents', []))
    return list(walk(yaml.safe_load((NBS/'_quarto.yml').read_text())['website']['sidebar']['contents']))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_figures_have_caption_and_alt(path):
    missing = []
    for cell in figure_cells(nbformat.read(path, 4)):
        o = options(cell)
        for key in ('fig-cap', 'fig-alt'):
            if not (isinstance(o.get(key), (str, list)) and o.get(key)):
                missing.append(f"{key} in the cell starting {cell.source.splitlines()[0][:70]!r}")
    assert not missing, f"{path.name}: figure cells need #| fig-cap and #| fig-alt:\n  " + '\n  '.join(missing)


def test_sidebar_lists_every_notebook():
    listed = sidebar_files()
    assert len(listed) == len(set(listed)), f"listed twice in _quarto.yml's sidebar: {sorted({f for f in listed if listed.count(f) > 1})}"
    have = {p.name for p in NOTEBOOKS}
    assert not have - set(listed), f"notebooks missing from _quarto.yml's sidebar: {sorted(have - set(listed))}"
    assert not set(listed) - have, f"_quarto.yml's sidebar lists notebooks that do not exist: {sorted(set(listed) - have)}"


@pytest.fixture(scope='module')
def preview(tmp_path_factory):
    "Run .ci/preview.py (as `make preview` does) into a temporary folder; {page stem: html}."
    tmp = tmp_path_factory.mktemp('site')
    r = subprocess.run([sys.executable, str(REPO/'.ci'/'preview.py'), '--proc', str(tmp/'proc'), '--out', str(tmp/'out')],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return {p.stem: p.read_text(encoding='utf-8') for p in (tmp/'out').glob('*.html')}

def test_preview_one_page_per_notebook(preview):
    assert sorted(preview) == sorted(p.stem for p in NOTEBOOKS)
    for stem, page in preview.items():
        assert 'href="index.html"' in page, f"{stem}.html has no link back to the index"
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', page), f"{stem}.html loads something from the network"

def test_preview_figures_math_and_options(preview):
    for path in NOTEBOOKS:
        page, cells = preview[path.stem], figure_cells(nbformat.read(path, 4))
        caps = sum(bool(options(c).get('fig-cap')) for c in cells)
        assert page.count('<figcaption>') == caps, f"{path.stem}.html: {page.count('<figcaption>')} captions, {caps} fig-cap"
        alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
        assert sum(bool(a) for a in alts) >= sum(bool(options(c).get('fig-alt')) for c in cells), f"{path.stem}.html: alt text lost"
        text = re.sub(r'<style>.*?</style>|<pre.*?</pre>|<code>.*?</code>', '', page, flags=re.S)
        assert '$$' not in text and 'MATHPH' not in text, f"{path.stem}.html: display math left raw"
        assert 'it/s]' not in page, f"{path.stem}.html: a tqdm progress bar was kept"
        assert '#|' not in text, f"{path.stem}.html: a cell option shows"
    assert preview['04_loss'].count('<math') > 20                        # the loss chapter's math, as MathML
    assert 'output: asis' not in preview['02_model'] and 'show_doc(' not in preview['02_model']   # echo: false
