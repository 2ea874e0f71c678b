"""Mermaid flowcharts drawn as static SVG at build time, for the offline preview (.ci/preview.py).

The Quarto site draws a ```{mermaid} block with mermaid.js in the browser. The preview has no network
and no JavaScript renderer, so it draws the same graph itself: the same boxes with the same text, the
same edges (solid, dotted, thick) with their labels and arrowheads, in the direction the block asks for,
in Mermaid's default colours. Only the placement is ours (a layered layout like dagre's, which
mermaid.js uses: ranks by longest path, cycles broken by depth-first search, one bend point per rank a
long edge crosses, rank order by barycentre sweeps), so a box can sit a little elsewhere than on the site.

Only the flowchart syntax the book uses is read: `flowchart`/`graph` with LR, RL, TD, TB or BT; nodes
`id`, `id[text]`, `id["text"]`, `id(text)`, `id("text")`; edges `-->`, `-.->`, `==>`, `---`, `-.-`, each
optionally with `|label|` or `|"label"|`, chained (`a --> b --> c`); `<br/>` in texts; `%%` comments.
Anything else raises ValueError, so that the preview fails instead of drawing a wrong diagram.
"""
from __future__ import annotations

import html, re
from functools import lru_cache

FONT = 16                                            # Mermaid's default fontSize
FAMILY = '"trebuchet ms", verdana, arial, sans-serif'
NODE_FILL, NODE_STROKE, TEXT, LINE, LABEL_BG = '#ECECFF', '#9370DB', '#333', '#333333', 'rgba(232,232,232,0.8)'
PAD_X, PAD_Y, LINE_H = 15, 15, 1.5 * FONT           # box padding and line height (px)
RANK_SEP, NODE_SEP, DUMMY_SEP = 50, 50, 20          # Mermaid's rankSpacing and nodeSpacing

_head = re.compile(r'^(?:flowchart|graph)\s+(LR|RL|TD|TB|BT)\s*;?\s*$')
_node = re.compile(r'([A-Za-z_]\w*)\s*(?:\["(.*?)"\]|\[([^\]"]*)\]|\("(.*?)"\)|\(([^)"]*)\))?')
_edge = re.compile(r'\s*(-\.->|-->|==>|-\.-|---)\s*(?:\|"(.*?)"\||\|([^|"]*)\|)?\s*')
_br = re.compile(r'<br\s*/?>', re.I)


@lru_cache(maxsize=None)
def _font():
    try:
        import matplotlib
        from pathlib import Path
        from PIL import ImageFont
        return ImageFont.truetype(str(Path(matplotlib.get_data_path())/'fonts'/'ttf'/'DejaVuSans.ttf'), FONT)
    except Exception: return None                    # an estimate below; DejaVu Sans is wide, so boxes err roomy

def text_width(s: str) -> float:
    f = _font()
    return f.getlength(s) if f else 0.6 * FONT * len(s)


def parse(src: str):
    "(direction, {id: (text lines, shape)}, [(from, to, style, label or None, has an arrowhead)]) of a Mermaid flowchart."
    lines = [l.strip() for l in src.strip().splitlines()]
    lines = [l for l in lines if l and not (l.startswith('%%') and not l.startswith('%%|'))]
    if not lines or not (m := _head.match(lines[0])):
        raise ValueError(f"not a flowchart the preview can draw (first line {lines[0] if lines else ''!r})")
    direction, nodes, edges = m.group(1).replace('TB', 'TD'), {}, []
    def node(s, pos):
        m = _node.match(s, pos)
        if not m: raise ValueError(f"cannot read a node at {s[pos:]!r}")
        nid, text = m.group(1), next((g for g in m.group(2, 3, 4, 5) if g is not None), None)
        shape = 'round' if m.group(4) is not None or m.group(5) is not None else 'rect'
        if text is not None or nid not in nodes: nodes[nid] = (_br.split(text if text is not None else nid), shape)
        return nid, m.end()
    for line in lines[1:]:
        line = line.rstrip(';')
        a, pos = node(line, 0)
        while line[pos:].strip():
            m = _edge.match(line, pos)
            if not m: raise ValueError(f"cannot read {line[pos:]!r} in {line!r}")
            b, pos = node(line, m.end())
            style = {'-.->': 'dotted', '-.-': 'dotted', '==>': 'thick'}.get(m.group(1), 'solid')
            label = m.group(2) if m.group(2) is not None else m.group(3)
            edges.append((a, b, style, html.unescape(label) if label else None, m.group(1) in ('-->', '-.->', '==>')))
            a = b
    return direction, nodes, edges


def layout(direction, nodes, edges):
    "Box centres and sizes, and each edge's points, in px."
    horizontal = direction in ('LR', 'RL')
    size = {}
    for n, (lines, _) in nodes.items():
        w, h = max(text_width(l) for l in lines) + 2 * PAD_X, len(lines) * LINE_H + 2 * PAD_Y
        size[n] = (w, h)
    main = lambda n: size[n][0] if horizontal else size[n][1]     # extent along the ranks
    cross = lambda n: size[n][1] if horizontal else size[n][0]
    order = list(nodes)
    # cycles: an edge back to a node on the depth-first stack is laid out reversed
    out = {n: [] for n in order}
    for i, (u, v, *_r) in enumerate(edges): out[u].append((v, i))
    state, back = {}, set()
    def dfs(u):
        state[u] = 1
        for v, i in out[u]:
            if state.get(v) == 1: back.add(i)
            elif v not in state: dfs(v)
        state[u] = 2
    for n in order:
        if n not in state: dfs(n)
    dag = [(v, u) if i in back else (u, v) for i, (u, v, *_r) in enumerate(edges)]
    if any(u == v for u, v in dag): raise ValueError("an edge from a node to itself")
    # ranks: longest path from the sources, then each source pulled up to just before its first successor
    preds = {n: [u for u, v in dag if v == n] for n in order}
    succs = {n: [v for u, v in dag if u == n] for n in order}
    rank = {}
    def r(n):
        if n not in rank: rank[n] = max((r(p) + 1 for p in preds[n]), default=0)
        return rank[n]
    for n in order: r(n)
    for n in order:
        if not preds[n] and succs[n]: rank[n] = min(rank[s] for s in succs[n]) - 1
    # one dummy point per rank that an edge crosses
    chains, layer_of = [], dict(rank)
    for i, (u, v) in enumerate(dag):
        chain = [u]
        for k in range(rank[u] + 1, rank[v]):
            d = f'\0{i}.{k}'; layer_of[d] = k; chain.append(d)
        chains.append(chain + [v])
    nr = max(layer_of.values()) + 1
    layers = [[n for n in layer_of if layer_of[n] == k] for k in range(nr)]
    up = {n: [] for n in layer_of}; down = {n: [] for n in layer_of}
    for c in chains:
        for a, b in zip(c, c[1:]): down[a].append(b); up[b].append(a)
    def crossings(ls):
        total = 0
        for k in range(nr - 1):
            pos = {n: i for i, n in enumerate(ls[k + 1])}
            segs = [(i, pos[b]) for i, a in enumerate(ls[k]) for b in down[a]]
            total += sum(1 for x in range(len(segs)) for y in range(x) if (segs[x][0] - segs[y][0]) * (segs[x][1] - segs[y][1]) < 0)
        return total
    best, best_c = [l[:] for l in layers], crossings(layers)
    for sweep in range(8):                           # barycentre sweeps, down then up, keeping the best order
        rng, nb = (range(1, nr), up) if sweep % 2 == 0 else (range(nr - 2, -1, -1), down)
        for k in rng:
            ref = {n: i for i, n in enumerate(layers[k - 1 if sweep % 2 == 0 else k + 1])}
            cur = {n: i for i, n in enumerate(layers[k])}
            layers[k].sort(key=lambda n: (sum(ref[m] for m in nb[n]) / len(nb[n])) if nb[n] else cur[n])
        if (c := crossings(layers)) < best_c: best, best_c = [l[:] for l in layers], c
    layers = best
    ext = lambda n: 0.0 if n.startswith('\0') else cross(n)
    def gap(a, b): return (ext(a) + ext(b)) / 2 + (NODE_SEP if not a.startswith('\0') and not b.startswith('\0') else DUMMY_SEP)
    pos = {}
    for l in layers:                                 # stacked, centred on 0
        at = 0.0
        for i, n in enumerate(l): at += gap(l[i - 1], n) if i else 0; pos[n] = at
        for n in l: pos[n] -= at / 2
    def settle(l, want):                             # nearest order-keeping positions to `want`, gaps kept
        a, b = [], []
        for i, n in enumerate(l): a.append(max(want[n], a[-1] + gap(l[i - 1], n)) if i else want[n])
        for i in range(len(l) - 1, -1, -1):
            b.insert(0, min(want[l[i]], b[0] - gap(l[i], l[i + 1])) if i < len(l) - 1 else want[l[i]])
        for i, n in enumerate(l): pos[n] = (a[i] + b[i]) / 2
    for it in range(12):
        for k in (range(nr) if it % 2 == 0 else range(nr - 1, -1, -1)):
            want = {n: (sum(pos[m] for m in up[n] + down[n]) / len(up[n] + down[n])) if up[n] + down[n] else pos[n] for n in layers[k]}
            settle(layers[k], want)
    # along the ranks: each rank as wide as its widest box, gaps widened for edge labels
    label_w = [0.0] * nr
    for i, ((u, v, _s, label, _a), c) in enumerate(zip(edges, chains)):
        if label:                                    # in the middle gap between ranks of its route (as render puts it)
            g = (len(c) - 2) // 2
            k = layer_of[c[len(c) - 2 - g]] if i in back else layer_of[c[g]]
            label_w[k] = max(label_w[k], text_width(label) + 20)
    widths = [max((main(n) for n in l if not n.startswith('\0')), default=0) for l in layers]
    at, centre = 0.0, []
    for k in range(nr):
        centre.append(at + widths[k] / 2); at += widths[k] + max(RANK_SEP, label_w[k] + 20)
    if direction in ('RL', 'BT'): centre = [at - c for c in centre]
    xy = {n: (centre[layer_of[n]], pos[n]) if horizontal else (pos[n], centre[layer_of[n]]) for n in layer_of}
    half = {n: widths[layer_of[n]] / 2 for n in layer_of if n.startswith('\0')}   # a long edge runs straight across a rank
    return horizontal, size, xy, chains, back, half


def _side(c, wh, toward, horizontal):
    "Where a box's edge meets the line from its centre along the rank axis toward `toward`."
    (x, y), (w, h) = c, wh
    if horizontal: return (x + (w / 2 if toward[0] > x else -w / 2), y)
    return (x, y + (h / 2 if toward[1] > y else -h / 2))

def render(src: str, uid: str = "fc") -> str:
    "An inline <svg> of a Mermaid flowchart; `uid` keeps its arrowhead's id apart from other diagrams on the page."
    direction, nodes, edges = parse(src)
    horizontal, size, xy, chains, back, half = layout(direction, nodes, edges)
    mc = (lambda n: xy[n]) if horizontal else (lambda n: xy[n][::-1])           # (along the ranks, across)
    msize = (lambda n: size[n]) if horizontal else (lambda n: size[n][::-1])
    pt = (lambda a, c: (a, c)) if horizontal else (lambda a, c: (c, a))
    routes, ends = [], {}                            # ends: (node, side) -> [(cross of the far point, edge, which end)]
    for i, chain in enumerate(chains):
        seq = chain[::-1] if i in back else chain
        u, v = seq[0], seq[-1]
        if len(seq) == 2 and i in back: routes.append(None); continue
        s = 1 if mc(v)[0] > mc(u)[0] else -1
        mid = [q for n in seq[1:-1] for q in ((mc(n)[0] - s * half[n], mc(n)[1]), (mc(n)[0] + s * half[n], mc(n)[1]))]
        routes.append((s, mid))
        ends.setdefault((u, s), []).append(((mid[0] if mid else mc(v))[1], i, 0))
        ends.setdefault((v, -s), []).append(((mid[-1] if mid else mc(u))[1], i, 1))
    attach = {}                                      # several edges on one side of a box meet it side by side
    for (n, side), lst in ends.items():
        lst.sort(); k, step = len(lst), min(msize(n)[1] / (len(lst) + 1), 10)
        for j, (_, i, which) in enumerate(lst):
            attach[i, which] = (mc(n)[0] + side * msize(n)[0] / 2, mc(n)[1] + (j - (k - 1) / 2) * step)
    paths, labels = [], []
    for i, ((u, v, style, label, arrow), route) in enumerate(zip(edges, routes)):
        if route is None:                            # a step back to the rank before: round the outside
            (a1, c1), (a2, c2), (_, e1), (_, e2) = mc(u), mc(v), msize(u), msize(v)
            c = max(c1 + e1 / 2, c2 + e2 / 2) + 30
            p0, p1, p2, p3 = pt(a1, c1 + e1 / 2), pt(a1, c), pt(a2, c), pt(a2, c2 + e2 / 2)
            d = f'M{p0[0]:.1f},{p0[1]:.1f} C{p1[0]:.1f},{p1[1]:.1f} {p2[0]:.1f},{p2[1]:.1f} {p3[0]:.1f},{p3[1]:.1f}'
            mid = pt((a1 + a2) / 2, 0.25 * (c1 + e1 / 2 + c2 + e2 / 2) + 0.75 * c)
        else:
            s, inner = route
            pts = [attach[i, 0], *inner, attach[i, 1]]
            d = 'M{:.1f},{:.1f}'.format(*pt(*pts[0]))
            for (aa, ca), (ab, cb) in zip(pts, pts[1:]):   # smooth steps, tangent along the rank axis
                if abs(cb - ca) < 0.5: d += ' L{:.1f},{:.1f}'.format(*pt(ab, cb))
                else: d += ' C{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}'.format(*pt((aa + ab) / 2, ca), *pt((aa + ab) / 2, cb), *pt(ab, cb))
            g = 2 * ((len(pts) - 2) // 4)               # the middle gap between ranks: pts[g] -> pts[g + 1]
            mid = pt((pts[g][0] + pts[g + 1][0]) / 2, (pts[g][1] + pts[g + 1][1]) / 2)
        dash = ' stroke-dasharray="3"' if style == 'dotted' else ''
        width = 3.5 if style == 'thick' else 2
        marker = f' marker-end="url(#{uid}-arrow)"' if arrow else ''
        paths.append(f'<path d="{d}" fill="none" stroke="{LINE}" stroke-width="{width}"{dash}{marker}/>')
        if label:
            w, h = text_width(label) + 8, LINE_H
            labels.append(f'<rect x="{mid[0] - w / 2:.1f}" y="{mid[1] - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{LABEL_BG}"/>'
                          f'<text x="{mid[0]:.1f}" y="{mid[1]:.1f}" dominant-baseline="central" text-anchor="middle">{html.escape(label)}</text>')
    boxes = []
    for n, (lines, shape) in nodes.items():
        (x, y), (w, h) = xy[n], size[n]
        rx = 5 if shape == 'round' else 0
        boxes.append(f'<g class="node"><rect x="{x - w / 2:.1f}" y="{y - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx}" '
                     f'fill="{NODE_FILL}" stroke="{NODE_STROKE}" stroke-width="1"/>'
                     + ''.join(f'<text x="{x:.1f}" y="{y + (j - (len(lines) - 1) / 2) * LINE_H:.1f}" dominant-baseline="central" '
                               f'text-anchor="middle">{html.escape(html.unescape(t))}</text>' for j, t in enumerate(lines)) + '</g>')
    xs = [xy[n][0] + s * size[n][0] / 2 for n in nodes for s in (-1, 1)]
    ys = [xy[n][1] + s * size[n][1] / 2 for n in nodes for s in (-1, 1)]
    for i in back:                                   # room for the loops drawn outside
        if horizontal: ys.append(max(ys) + 40)
        else: xs.append(max(xs) + 40)
    m = 8
    x0, y0, w, h = min(xs) - m, min(ys) - m, max(xs) - min(xs) + 2 * m, max(ys) - min(ys) + 2 * m
    return (f'<svg class="flowchart" xmlns="http://www.w3.org/2000/svg" viewBox="{x0:.1f} {y0:.1f} {w:.1f} {h:.1f}" '
            f'width="100%" style="max-width: {w:.0f}px" role="img" font-family=\'{FAMILY}\' font-size="{FONT}" fill="{TEXT}">'
            f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="12" '
            f'markerHeight="12" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{LINE}"/></marker></defs>'
            + ''.join(paths) + ''.join(boxes) + ''.join(labels) + '</svg>')
