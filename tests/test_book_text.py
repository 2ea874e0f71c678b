"""The book's text and committed outputs: what a reader sees is computed, and clean.

* **Numbers in prose are computed.** A markdown cell, a figure caption or alt text may not type a measured number: a percentage, a
  decimal, a count written with thousands separators, a time or a ratio. Such sentences are rendered
  by a cell of the same run (`display(Markdown(f"..."))`, source hidden). Exempt: quotes of the paper
  (lines starting with `>`), code and math, link targets, and a paragraph that cites the paper (§,
  Table N, Figure N, Radford et al.), which reports the paper's numbers, not ours. A number that is a
  fixed choice of the book, not a measurement (the 95% of an interval, 2,000 bootstrap replicates),
  is declared in the cell with an HTML comment, `<!-- fixed: 95% 2,000 -->`, which Quarto does not
  show (in a code cell whose caption or alt text holds it: a comment line `# fixed: 0.001`); every
  number declared in a markdown cell must occur in it.
* **Outputs are clean.** No progress bars, no warnings on stderr, no temporary or machine paths, no
  markdown output that injects a section heading into the page.
"""
from __future__ import annotations

import json, re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO/'nbs').glob('*.ipynb'))

MEASURED = re.compile(r"""(?x)
    ~\s?\d[\d,.]*                                          # an approximate figure
  | (?<![\w.§])\d+(?:\.\d+)?\s?%                           # a percentage
  | (?<![\w.§])\d[\d,]*(?:\.\d+)?\s?(?:ms|s|min|minutes?|seconds?|hours?|GiB|MiB|points?)\b   # a time, a size, points
  | (?<![\w.§])\d+(?:\.\d+)?\s?[x×](?!\w)                  # a ratio
  | (?<![\w.§])\d{1,3}(?:,\d{3})+(?!\d)                    # a count with thousands separators
  | (?<![\w.§/-])\d+\.\d+(?!\w|\.\d)                       # a decimal (not a version like 2.4.14)
""")
CITES_PAPER = re.compile(r"§|\bTables? \d|\bFigures? \d|Radford et al")
FIXED = re.compile(r"<!--\s*fixed:(.*?)-->", re.S)


def _cells(nb: Path) -> list[dict]: return json.loads(nb.read_text(encoding='utf-8'))['cells']


def _strip(md: str) -> str:
    "Markdown without what may hold numbers: code, math, link targets, HTML comments."
    for pat in (r"```.*?```", r"`[^`\n]*`", r"\$\$.*?\$\$", r"\$[^$\n]*\$", r"<!--.*?-->"):
        md = re.sub(pat, ' ', md, flags=re.S)
    return re.sub(r"\]\([^)]*\)", ']', md)


def typed_numbers(md: str) -> list[str]:
    "The measured-looking numbers a markdown cell types outside quotes, paper-citing paragraphs and its `fixed:` list."
    fixed = {t for m in FIXED.findall(md) for t in m.split()}
    found = []
    for para in re.split(r"\n\s*\n", md):
        text = _strip('\n'.join(l for l in para.splitlines() if not l.lstrip().startswith('>')))
        if CITES_PAPER.search(text): continue
        found += [t.strip() for t in MEASURED.findall(text) if t.strip() not in fixed]
    return found


def test_the_scanner():
    assert typed_numbers("Accuracy rose to 54.1% after 1,000 steps.") == ['54.1%', '1,000']
    assert typed_numbers("> the paper: 76.2% top-1") == []                        # a quote
    assert typed_numbers("ImageNet top-1 is 76.2% (Radford et al. 2021, Table 11).") == []
    assert typed_numbers("It took 4.6 min, about ~3,950 pictures, 3× faster.") == ['4.6 min', '~3,950', '3×']
    assert typed_numbers("a 95% interval <!-- fixed: 95% -->") == []
    assert typed_numbers("`x = 0.5` and $t = 0.07$ and [v2.4](https://x.org/2.4.1)") == []
    assert typed_numbers("nbdev 2.4.14, section 3, 20 occupations") == []
    assert typed_numbers("It peaks near 0.9.") == ['0.9']


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_no_typed_numbers(nb):
    bad = []
    for k, c in enumerate(_cells(nb)):
        if c['cell_type'] == 'code':                    # figure captions and alt text are prose too
            src = ''.join(c['source'])
            fixed = {t for m in re.findall(r"(?m)^#\s*fixed:(.*)$", src) for t in m.split()}
            opts = re.findall(r"(?m)^#\|\s*fig-(?:cap|alt):\s*(.*)$", src)
            bad += [f"cell {k} (caption or alt text): {t}" for o in opts for t in typed_numbers(o) if t not in fixed]
            continue
        if c['cell_type'] != 'markdown': continue
        md = ''.join(c['source'])
        bad += [f"cell {k}: {t}" for t in typed_numbers(md)]
        for m in FIXED.findall(md):
            bad += [f"cell {k}: declares {t} but does not use it" for t in m.split() if t not in _strip(md).replace('\n', ' ')]
    assert not bad, (f"{nb.name} types measured numbers in markdown (render them from a cell, or declare a fixed "
                     f"choice with <!-- fixed: ... -->): " + '; '.join(bad))


PROGRESS = re.compile(r"\r|\d+(?:\.\d+)?\s?(?:it/s|s/it)\]|\|\s*\d+/\d+\s*\[")
PATHS = re.compile(r"(?<![\w.])/(?:tmp|root|home|work|private|var/folders)/|[A-Z]:\\\\Users")
WARNING = re.compile(r"Warning\b|warnings\.warn|WARNING")


def output_problems(nb: Path) -> list[str]:
    bad, repo = [], str(REPO)
    for k, c in enumerate(_cells(nb)):
        for o in c.get('outputs', []):
            if o['output_type'] == 'stream':
                text = ''.join(o['text'])
                if o['name'] == 'stderr' and WARNING.search(text): bad.append(f"cell {k}: a warning on stderr")
            elif o['output_type'] == 'error': bad.append(f"cell {k}: an error"); continue
            else:
                data = o.get('data', {})
                text = ''.join(data.get('text/plain', '')) + ''.join(data.get('text/markdown', '')) + ''.join(data.get('text/html', ''))
                if re.search(r"(?m)^#{1,6} ", ''.join(data.get('text/markdown', ''))): bad.append(f"cell {k}: markdown output with a heading")
            if PROGRESS.search(text): bad.append(f"cell {k}: a progress bar")
            if PATHS.search(text) or repo in text: bad.append(f"cell {k}: a machine path ({PATHS.search(text) or repo})")
    return bad


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_clean_outputs(nb):
    bad = output_problems(nb)
    assert not bad, f"{nb.name}: " + '; '.join(bad)


def test_the_output_scan(tmp_path):
    outs = [{'output_type': 'stream', 'name': 'stderr', 'text': ['100%|██| 5/5 [00:01<00:00, 4.2it/s]\r']},
            {'output_type': 'stream', 'name': 'stderr', 'text': ['/x/y.py:3: UserWarning: careful\n']},
            {'output_type': 'display_data', 'data': {'text/markdown': ['## Results\n', 'fine']}},
            {'output_type': 'stream', 'name': 'stdout', 'text': ['saved to /tmp/abc/run\n']},
            {'output_type': 'stream', 'name': 'stderr', 'text': ['Note: a notice for people\n']}]
    nb = tmp_path/'x.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': [], 'outputs': [o]} for o in outs]}))
    got = output_problems(nb)
    assert [g.split(':')[0] for g in got] == ['cell 0', 'cell 1', 'cell 2', 'cell 3'], got


def _quoted_sentences(nb: Path) -> set[str]:
    "Sentences (40+ characters) of the paper quoted in a notebook's markdown blockquotes (`> \"...\"`), normalised."
    out = set()
    for c in _cells(nb):
        if c['cell_type'] != 'markdown': continue
        for block in re.findall(r'(?m)((?:^>.*\n?)+)', ''.join(c['source'])):
            text = ' '.join(l.lstrip('> ').strip() for l in block.splitlines())
            if not text.startswith(('"', '“')): continue                       # a chapter's summary, not a quote
            for s in re.split(r'(?<=[.!?])\s+', text):
                s = re.sub(r'\W+', ' ', s).strip().lower()
                if len(s) >= 40: out.add(s[:80])
    return out


def test_a_paper_quote_appears_once():
    "Issue #27 item 11: a passage of the paper is quoted in one chapter; the others point to it."
    seen, twice = {}, []
    for nb in NOTEBOOKS:
        for s in _quoted_sentences(nb) - {''}:
            if s in seen and seen[s] != nb.stem: twice.append(f"{seen[s]} and {nb.stem}: {s!r}")
            seen.setdefault(s, nb.stem)
    assert not twice, "quoted in two chapters:\n" + '\n'.join(twice)


HEADING_IN_CODE = re.compile(r'^# #{1,4} \S', re.M)   # '# ## What we measured' inside a code cell: a section that never renders


def test_no_section_heading_swallowed_by_a_code_cell():
    "A markdown heading written as a comment at the end of a code cell (a missing `# %% [markdown]`) hides its section."
    bad = [f"{nb.name} cell {i}: {m.group(0)}" for nb in sorted((REPO / 'nbs').glob('*.ipynb'))
           for i, c in enumerate(json.loads(nb.read_text(encoding='utf-8'))['cells'])
           if c['cell_type'] == 'code' for m in HEADING_IN_CODE.finditer(''.join(c['source']))]
    assert not bad, bad
