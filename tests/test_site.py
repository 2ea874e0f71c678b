"""The site: every figure has a caption and alt text, the sidebar lists every chapter in the order of
their numbers (each appendix right after the chapter it supports, as the landing page's table has them),
and `make preview` (.ci/preview.py) turns the notebooks into one offline HTML page each, with the math
and the Mermaid diagrams drawn as Quarto draws them, nothing left as raw LaTeX or diagram source.

Quarto reads `#| fig-cap` (the caption under a figure) and `#| fig-alt` (the img alt text a screen
reader speaks); a cell whose committed output holds an image needs both. The preview test runs the
real conversion (nbdev's processing, then nbconvert) into a temporary folder: about 30 s.
"""
from __future__ import annotations

import html, os, re, subprocess, sys
from pathlib import Path

import nbformat, pytest, yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'.ci'))
import flowchart, preview as preview_py                # noqa: E402  (.ci/ is not a package)

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

def sidebar_entries() -> list[tuple]:
    "[(section or None, file, its `text:` label or None)] in the order of _quarto.yml's sidebar."
    def walk(items, section=None):
        for it in items:
            if isinstance(it, str): yield section, it, None
            elif isinstance(it, dict):
                if 'href' in it: yield section, it['href'], it.get('text')
                yield from walk(it.get('contents', []), it.get('section', section))
    return list(walk(yaml.safe_load((NBS/'_quarto.yml').read_text())['website']['sidebar']['contents']))

def sidebar_files() -> list[str]: return [f for _, f, _ in sidebar_entries()]

def title(path: Path) -> str:
    "A chapter's title: its first heading, as nbdev turns it into the page title."
    first = next(c for c in nbformat.read(path, 4).cells if c.cell_type == 'markdown')
    return re.match(r'#\s+(.*)', first.source).group(1).strip()

def landing_table() -> list[tuple[str, bool]]:
    "[(notebook, marked appendix)] in the order of the landing page's chapter table."
    cell = next(c for c in nbformat.read(NBS/'index.ipynb', 4).cells if c.cell_type == 'markdown' and '## Chapters' in c.source)
    return [(m.group(1), '(appendix)' in m.group(2))
            for m in re.finditer(r'^\|[^|\n]*\|\s*\[[^\]]*\]\((\w+\.ipynb)\)([^|\n]*)\|', cell.source, re.M)]

def mermaid_blocks(path: Path) -> list[str]:
    return [m.group(1) for c in nbformat.read(path, 4).cells if c.cell_type == 'markdown'
            for m in preview_py._mermaid.finditer(c.source)]


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


def test_sidebar_in_the_order_of_the_chapter_numbers():
    # 02b (its text: "this appendix comes before the chapter that uses it") sits between 02 and 03, 05c-05e
    # before 06, 06b after 06a, 07b after 07a; 98, 99, 99a close the book. File names sort that way.
    listed = sidebar_files()
    assert listed[0] == 'index.ipynb', "the sidebar starts with the landing page"
    assert listed[1:] == sorted(listed[1:]), \
        f"_quarto.yml's sidebar is not in the order of the chapter numbers: {listed[1:]} should be {sorted(listed[1:])}"

def test_appendices_marked_alike_in_sidebar_and_landing_table():
    def is_appendix(section, file, text):
        return bool(section and section.startswith('Appendices')) or (text or title(NBS/file)).startswith('Appendix')
    side = {f: is_appendix(*e) for e in sidebar_entries() for f in [e[1]]}
    table = landing_table()
    assert len(table) > 20, "the landing page's chapter table was not found"
    order = [f for f in sidebar_files() if f in dict(table)]
    assert [f for f, _ in table] == order, f"the landing page's table is not in the sidebar's order: {[f for f, _ in table]}"
    differ = [f for f, apx in table if side.get(f) != apx]
    assert not differ, f"marked (appendix) in one of the landing table and the sidebar but not in the other: {differ}"


def test_flowcharts_keep_every_box_edge_and_label():
    blocks = [(p.stem, b) for p in NOTEBOOKS for b in mermaid_blocks(p)]
    assert len(blocks) >= 10
    for stem, src in blocks:
        direction, nodes, edges = flowchart.parse(src)
        svg = flowchart.render(src)
        texts = re.findall(r'<text[^>]*>([^<]*)</text>', svg)
        want = [l for lines, _ in nodes.values() for l in lines] + [e[3] for e in edges if e[3]]
        assert sorted(html.unescape(t) for t in texts) == sorted(html.unescape(w) for w in want), f"{stem}: texts differ"
        lines = len(re.findall(r'<path d="[^"]*" fill="none"', svg))
        assert lines == len(edges), f"{stem}: {lines} lines drawn for {len(edges)} edges"
    with pytest.raises(ValueError): flowchart.render('sequenceDiagram\n  A->>B: hi')   # not drawn wrongly: refused
    with pytest.raises(ValueError): flowchart.render('flowchart LR\n  A{{odd}} --> B')

def test_latex_the_preview_cannot_render_is_an_error():
    assert '<mo>arg</mo>' in preview_py.mathml(r'\arg\max_c x_c', 'inline')      # MathJax's \arg, as an operator name
    with pytest.raises(ValueError): preview_py.mathml(r'\notacommand x', 'inline')


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

def test_preview_leaves_no_raw_latex_or_diagram_source(preview):
    for path in NOTEBOOKS:
        page = preview[path.stem]
        text = re.sub(r'<style>.*?</style>|<pre.*?</pre>|<code>.*?</code>', '', page, flags=re.S)
        raw = re.findall(r'\\[A-Za-z]+', ''.join(re.findall(r'<math.*?</math>', page, flags=re.S)))
        assert not raw, f"{path.stem}.html: LaTeX left raw inside the math: {sorted(set(raw))}"
        assert not re.search(r'\\(arg|max|frac|sum|mathrm|text)\b', text), f"{path.stem}.html: LaTeX left raw in the text"
        assert not re.search(r'\{mermaid\}|flowchart (LR|RL|TD|TB|BT)|Mermaid source|DIAGRAMPH', page), \
            f"{path.stem}.html: a Mermaid block reached the page undrawn"
        n, drawn = len(mermaid_blocks(path)), page.count('<svg class="flowchart"')
        assert drawn == n, f"{path.stem}.html: {drawn} diagrams drawn, {n} in the notebook"
    assert '<mo>arg</mo>' in preview['07_zeroshot']                      # $\arg\max_c ...$ of the zero-shot chapter
    nav = re.search(r'<nav class="sidebar">.*?</nav>', preview['index'], re.S).group(0)
    shown = re.findall(r'href="(\w+)\.html"', nav)[1:]
    assert shown == [Path(f).stem for f in sidebar_files()], "the preview's sidebar is not in _quarto.yml's order"
    assert '>Appendix: checkpoints</a>' in nav and '>Appendix: readers for your own data</a>' in nav


DOCS_RUN = """
import sys
from pathlib import Path
from execnb.nbio import read_nb
from nbdev.processors import FilterDefaults
for p in sys.argv[1:]:
    try: FilterDefaults()(read_nb(p))
    except Exception as e: print(f"{Path(p).name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
"""


def test_the_docs_build_processes_every_notebook():
    "`nbdev_docs` runs each notebook's import, export and show_doc cells (nbdev's processors): none may fail (the preview only warns)."
    nbs = sorted(p.name for p in (REPO / 'nbs').glob('*.ipynb'))
    r = subprocess.run([sys.executable, '-W', 'ignore', '-c', DOCS_RUN, *nbs], cwd=REPO / 'nbs', capture_output=True, text=True,
                       timeout=1800, env={**os.environ, 'CLIP_ANNOTATED_PROGRESS': '0'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert not r.stdout.strip(), r.stdout
