"""`make preview`: the site as local HTML, without Quarto.

1. nbdev's processing of every notebook into _proc/ (what `nbdev_proc_nbs` does: strip export and hide
   cells, add show_doc output, turn the first heading into front matter), one notebook at a time so
   that one failure does not stop the rest, and without re-running cells that mix imports with other
   code (nbdev runs those; here they keep the outputs saved in the notebook).
2. Each processed notebook to _preview/<name>.html with nbconvert's bare `basic` template, honouring
   the Quarto cell options the site uses (include, echo, output, fig-cap, fig-alt), with $...$ and
   $$...$$ turned into MathML (no MathJax, no network; MathJax's named operators such as \\arg included,
   and LaTeX that would come out raw is an error), ```{mermaid} flowcharts drawn as inline SVG by
   .ci/flowchart.py (Quarto draws them with mermaid.js; the boxes, texts and edges are the same, the
   placement is ours), and a sidebar in the order and with the labels of _quarto.yml.
   Outputs are shown as saved, stderr included, as Quarto shows them: nothing is dropped to hide noise
   (tests/test_book_text.py keeps the saved outputs clean instead).

With Quarto installed, `nbdev_docs` renders the same notebooks into the real site.
"""
import argparse, ast, html, re, sys, time
from pathlib import Path
import nbformat, yaml
from latex2mathml.converter import convert as tex_to_mathml
from flowchart import render as flowchart_svg     # .ci/flowchart.py: Mermaid flowcharts as static SVG
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SITE = 'https://clip-annotated.github.io/clip_annotated/'   # nbdev writes doc links against doc_host + doc_baseurl


def process(src: Path, proc: Path) -> list[str]:
    "nbdev's docs processing of one notebook into `proc`; what went wrong, if anything."
    from nbdev.processors import FilterDefaults, exec_show_docs, _ast_contains
    from nbdev.serve_drv import exec_nb
    skipped = []
    class exec_docs_only(exec_show_docs):
        # nbdev also runs every cell that mixes imports with other code, replacing its saved outputs and
        # doing whatever it does (train the book model if runs/mini is missing, say). The preview keeps
        # the saved outputs: it runs only what show_doc needs.
        def __call__(self, cell):
            if (cell.cell_type == 'code' and not cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}
                    and (t := cell.parsed_()) and _ast_contains(t, (ast.Import, ast.ImportFrom)) and _ast_contains(t, (ast.Expr, ast.Assign))):
                skipped.append(cell); return
            return super().__call__(cell)
    class Procs(FilterDefaults):
        def base_procs(self): return [exec_docs_only if p is exec_show_docs else p for p in super().base_procs()]
    class NoExec(FilterDefaults):
        def base_procs(self): return [p for p in super().base_procs() if p is not exec_show_docs]
    notes = []
    try: exec_nb(src, proc/src.name, Procs)
    except Exception as e:                                     # keep the page, without show_doc output
        exec_nb(src, proc/src.name, NoExec)
        notes.append(f"show_doc output left out: nbdev could not execute a cell: {str(e).splitlines()[0]} "
                     f"({type(e.__cause__).__name__}: {e.__cause__})")
    if skipped: notes.append(f"{len(skipped)} cell(s) mix imports with other code: nbdev_docs runs them and replaces "
                             f"their saved outputs; this preview keeps the saved outputs")
    return notes


# ---- math: $...$ and $$...$$ outside code become placeholders, then MathML after nbconvert ----------
_code = re.compile(r'(```.*?```|~~~.*?~~~|`[^`\n]*`)', re.S)
_math = re.compile(r'\$\$(.+?)\$\$|(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\d$])', re.S)   # pandoc's rules

# MathJax's named operators; latex2mathml leaves some (\\arg, ...) as raw `\\arg` text, so those go through \\operatorname.
_OPERATORS = set('arccos arcsin arctan arg cos cosh cot coth csc deg det dim exp gcd hom inf ker lg lim liminf limsup '
                 'ln log max min Pr sec sin sinh sup tan tanh'.split())
_raw = re.compile(r'>(\\[A-Za-z]+|\\.)<')                 # a command latex2mathml passed through as text

def mathml(tex: str, display: str) -> str:
    "MathML for `tex`, as MathJax would render it; ValueError where it would show a raw command instead."
    out = tex_to_mathml(tex, display=display)
    if ops := {c[1:] for c in _raw.findall(out)} & _OPERATORS:
        tex = re.sub(r'\\(' + '|'.join(sorted(ops)) + r')(?![A-Za-z])', r'\\operatorname{\1}', tex)
        out = tex_to_mathml(tex, display=display)
    if raw := _raw.findall(out):
        raise ValueError(f"the preview cannot render {', '.join(sorted(set(raw)))} in ${tex}$ as MathJax would: "
                         f"use a command latex2mathml knows, or teach .ci/preview.py this one")
    return out

def hide_math(text: str, store: list) -> str:
    def sub(m):
        tex, display = (m.group(1), 'block') if m.group(1) is not None else (m.group(2), 'inline')
        store.append(mathml(tex.strip(), display)); return f'MATHPH{len(store) - 1}X'
    return ''.join(p if p.startswith(('`', '~~~')) else _math.sub(sub, p) for p in _code.split(text))


def hide_diagram(src: str, store: list) -> str:
    "A ```{mermaid} block's diagram, drawn now (.ci/flowchart.py), left as a placeholder paragraph."
    store.append(f'<div class="flowchart">{flowchart_svg(src, uid=f"fc{len(store)}")}</div>')
    return f'\n\nDIAGRAMPH{len(store) - 1}X\n\n'


# ---- cells -----------------------------------------------------------------------------------
_opt = re.compile(r'^#\|\s?(.*)$')
_mermaid = re.compile(r'^```\{mermaid\}[^\n]*\n(.*?)^```', re.S | re.M)

def cell_options(cell) -> dict:
    "Strip the leading `#| key: value` lines from a code cell; return them as a dict."
    lines = cell.source.split('\n'); n = 0
    while n < len(lines) and _opt.match(lines[n]): n += 1
    cell.source = '\n'.join(lines[n:]).strip('\n')
    opts = {}
    for line in lines[:n]:
        try: opts.update(yaml.safe_load(_opt.match(line).group(1)) or {})
        except (yaml.YAMLError, AttributeError, ValueError): pass
    return opts

def figure(data: dict, alt: str | None, cap: str | None) -> str:
    mime = next(m for m in ('image/png', 'image/jpeg', 'image/svg+xml') if m in data)
    src = data[mime] if mime == 'image/svg+xml' else f'data:{mime};base64,{data[mime].strip()}'
    img = data[mime] if mime == 'image/svg+xml' else f'<img src="{src}" alt="{html.escape(alt or "", quote=True)}">'
    return f'<figure class="figure">{img}' + (f'<figcaption>{html.escape(cap)}</figcaption>' if cap else '') + '</figure>'

def prepare(nb, math: list) -> dict:
    "Apply the Quarto cell options in place; return the front matter."
    fm, cells = {}, []
    for cell in nb.cells:
        if cell.cell_type == 'raw' and cell.source.startswith('---') and not fm:
            fm = yaml.safe_load(cell.source.strip().strip('-')) or {}; continue
        if cell.cell_type == 'markdown':
            src = _mermaid.sub(lambda m: hide_diagram(m.group(1), math), cell.source)
            cell.source = hide_math(src, math); cells.append(cell); continue
        if cell.cell_type != 'code': continue
        o = cell_options(cell)
        if o.get('include') is False: continue
        if o.get('echo') is False or not cell.source.strip(): cell.metadata['transient'] = {'remove_source': True}
        outs = [] if o.get('output') is False else cell.get('outputs', [])
        outs = [x for x in outs if not (x.output_type == 'stream' and not x.text.strip())]   # all else shows, as in Quarto
        imgs = [x for x in outs if any(m in x.get('data', {}) for m in ('image/png', 'image/jpeg', 'image/svg+xml'))]
        for k, x in enumerate(imgs):
            pick = lambda v: v[k] if isinstance(v, list) else (v if k == len(imgs) - 1 else None)
            alt = o.get('fig-alt'); alt = alt[k] if isinstance(alt, list) else alt
            x.data = {'text/html': figure(x.data, alt, pick(o.get('fig-subcap', o.get('fig-cap'))))}
        for x in outs:
            if 'text/markdown' in x.get('data', {}):
                md = re.sub(r'\[(\w+)\]\(([^)\s]*)\)\{[^}\n]*\}', r'<a class="source-link" href="\2">\1</a>',
                            x.data['text/markdown'])          # show_doc's [source](url){pandoc attributes}
                x.data = {'text/markdown': hide_math(md, math)}
        cell.outputs = outs
        if cell.source.strip() or outs: cells.append(cell)
    nb.cells = cells
    return fm


# ---- pages -----------------------------------------------------------------------------------
def sidebar_order() -> list:
    "[(section or None, notebook stem, its `text:` label or None)] in the order of _quarto.yml's sidebar."
    cfg = yaml.safe_load((NBS/'_quarto.yml').read_text())
    out = []
    def walk(items, section=None):
        for it in items:
            if isinstance(it, str): out.append((section, Path(it).stem, None))
            elif isinstance(it, dict) and 'contents' in it: walk(it['contents'], it.get('section'))
            elif isinstance(it, dict) and 'href' in it: out.append((section, Path(it['href']).stem, it.get('text')))
    walk(cfg['website']['sidebar']['contents'])
    return out

CSS = """
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529; }
nav.sidebar { position: fixed; top: 0; bottom: 0; left: 0; width: 250px; overflow-y: auto; padding: 1rem 1.2rem;
  background: #f6f8fa; border-right: 1px solid #dde2e6; font-size: 14px; box-sizing: border-box; }
nav.sidebar .site { font-weight: 700; font-size: 17px; display: block; margin-bottom: .8rem; color: #2c3e50; }
nav.sidebar .section { margin: .9rem 0 .2rem; font-weight: 600; color: #6c757d; text-transform: uppercase; font-size: 12px; }
nav.sidebar a { display: block; padding: .15rem 0; color: #2f6db5; text-decoration: none; }
nav.sidebar a.current { font-weight: 700; color: #212529; }
main { margin-left: 250px; padding: 1.5rem 2.5rem 4rem; max-width: 980px; }
h1.title { margin-top: .2rem; } p.description { color: #555; font-size: 1.1rem; }
a.anchor-link { display: none; }
pre { background: #f7f7f9; padding: .6rem .8rem; overflow-x: auto; font-size: 13px; line-height: 1.4; border-radius: 4px; }
.output_area pre, .output_subarea pre { background: #fff; border-left: 3px solid #dde2e6; }
.output_stderr pre { background: #fff6f6; }
div.input_area pre { border-left: 3px solid #7a8ca3; white-space: pre-wrap; }   /* _quarto.yml: code-overflow: wrap */
.output_stdout pre { white-space: pre-wrap; overflow-wrap: anywhere; }   /* styles.css: .cell-output-stdout pre */
a.source-link { float: right; font-size: smaller; }
table { border-collapse: collapse; margin: .6rem 0; font-size: 14px; display: block; overflow-x: auto; }
th, td { border: 1px solid #dde2e6; padding: .25rem .55rem; text-align: left; }
th { background: #f0f3f6; }
img { max-width: 100%; height: auto; }
figure.figure { margin: .8rem 0; } figure.figure img { display: block; margin: 0 auto; }
figcaption { text-align: center; color: #444; font-size: 14px; font-style: italic; margin-top: .3rem; }
math[display="block"] { margin: .6rem 0; font-size: 1.1em; }
div.flowchart { margin: 1rem 0; text-align: center; }
footer.pager { margin-top: 3rem; display: flex; justify-content: space-between; border-top: 1px solid #dde2e6; padding-top: 1rem; }
"""

def page(title, desc, body, nav, prev, nxt, css) -> str:
    pager = '<footer class="pager">' + ''.join(
        f'<a href="{p[0]}.html">{lab}{html.escape(p[1])}</a>' if p else '<span></span>'
        for p, lab in ((prev, '← '), (nxt, '→ '))) + '</footer>'
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)} – clip_annotated</title><style>{css}</style></head>\n<body>{nav}<main>'
            f'<h1 class="title">{html.escape(title)}</h1>' + (f'<p class="description">{html.escape(desc)}</p>' if desc else '')
            + body + pager + '</main></body></html>\n')

def nav_html(order, titles, current) -> str:
    out, section = ['<nav class="sidebar"><a class="site" href="index.html">clip_annotated</a>'], None
    for sec, stem, label in order:
        if sec != section and sec: out.append(f'<div class="section">{html.escape(sec)}</div>')
        section = sec
        cls = ' class="current"' if stem == current else ''
        out.append(f'<a href="{stem}.html"{cls}>{html.escape(label or titles.get(stem, stem))}</a>')
    return ''.join(out) + '</nav>'

def build(proc: Path, out: Path, names=(), run_nbdev=True) -> list[str]:
    "Process (unless `run_nbdev` is False) and render the notebooks; the names of the pages written."
    t0 = time.perf_counter()
    srcs = [p for p in sorted(NBS.glob('*.ipynb')) if not p.name.startswith('_') and (not names or p.stem in names)]
    if run_nbdev:
        proc.mkdir(parents=True, exist_ok=True)
        if not names:
            for old in proc.glob('*.ipynb'): old.unlink()          # no pages for notebooks that are gone
        for src in srcs:
            for note in process(src, proc): print(f"{src.name}: {note}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    order = sidebar_order()
    exporter = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True)
    css = HtmlFormatter(style='default').get_style_defs('.highlight') + CSS + (NBS/'styles.css').read_text()
    pages = {}
    for src in sorted(proc.glob('*.ipynb')):
        nb, math = nbformat.read(src, 4), []
        try: fm = prepare(nb, math)
        except ValueError as e: raise SystemExit(f"{src.name}: {e}")
        body = exporter.from_notebook_node(nb)[0] if not names or src.stem in names else ''
        body = re.sub(r'(?:<p>)?DIAGRAMPH(\d+)X(?:</p>)?', lambda m: math[int(m.group(1))], body)
        pages[src.stem] = (fm, re.sub(r'MATHPH(\d+)X', lambda m: math[int(m.group(1))], body))
    files = {fm.get('output-file', f'{s}.html'): s for s, (fm, _) in pages.items()}   # Quarto's page name -> ours
    titles = {s: fm.get('title', s) for s, (fm, _) in pages.items()}
    def local(m):
        target, anchor = m.group(2), m.group(3) or ''
        stem = files.get(target, Path(target).stem) if target.endswith('.html') else Path(target).stem
        return f'{m.group(1)}{stem}.html{anchor}"'
    in_nav = {s for _, s, _ in order}
    seq = [s for _, s, _ in order if s in pages] + sorted(s for s in pages if s not in in_nav)
    written = [s for s in seq if not names or s in names]
    for stem in written:
        i, (fm, body) = seq.index(stem), pages[stem]
        body = re.sub(r'(href=")(?:' + re.escape(SITE) + r')?([\w.-]+\.(?:ipynb|html))(#[^"]*)?"', local, body)
        prev = (seq[i - 1], titles[seq[i - 1]]) if i else None
        nxt = (seq[i + 1], titles[seq[i + 1]]) if i + 1 < len(seq) else None
        (out/f'{stem}.html').write_text(page(titles[stem], fm.get('description', ''), body,
                                             nav_html(order, titles, stem), prev, nxt, css), encoding='utf-8')
    print(f"{len(written)} pages in {out}/ ({time.perf_counter() - t0:.0f} s); open {out}/index.html")
    return written

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('names', nargs='*', help='notebook names without .ipynb (default: all)')
    ap.add_argument('--no-proc', action='store_true', help='render the processed notebooks already in --proc')
    ap.add_argument('--proc', type=Path, default=ROOT/'_proc', help='where processed notebooks go (default: _proc)')
    ap.add_argument('--out', type=Path, default=ROOT/'_preview', help='where pages go (default: _preview)')
    a = ap.parse_args()
    build(a.proc, a.out, a.names, run_nbdev=not a.no_proc)

if __name__ == '__main__': main()
