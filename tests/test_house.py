"""The house rules of STYLE.md, checked on the exported modules (issue #15 item 9).

* Imports flow forward: a module imports only from the modules of chapters before it (by notebook
  order), at the top or inside a function, so the dependency graph is the table of contents.
* No private name (`_x`) is imported from another module: what two chapters share is public in the
  earlier one.
* No two modules export the same public name (`main`, the command entry point, excepted).
* Rooms with one job (issue #25): no module is longer than `MAX_LINES`, save the few in `ALLOWANCE`, a list
  that can only shrink; one module per chapter, named after it; the landing page's chapter table links every
  notebook and names every module.
"""
from __future__ import annotations

import ast, json, re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / 'clip_annotated'


def _chapter_order() -> dict[str, int]:
    "module name -> position of its notebook in reading order (nbs/*.ipynb sorted; index first)."
    order = {}
    for i, nb in enumerate(sorted((REPO / 'nbs').glob('*.ipynb'), key=lambda p: (p.stem != 'index', p.stem))):
        for cell in json.loads(nb.read_text())['cells']:
            if cell['cell_type'] == 'code' and (m := re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(cell['source']))):
                order[m[1]] = i
                break
    return order


ORDER = _chapter_order()
MODULES = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    "(imported clip_annotated module, names, line) for every import of ours in `module`, at any depth."
    tree, out = ast.parse((PKG / f'{module}.py').read_text()), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: name = node.module or ''
            elif node.module and node.module.startswith('clip_annotated.'): name = node.module.split('.', 1)[1]
            else: continue
            out.append((name, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name.split('.', 1)[1], [], node.lineno) for a in node.names if a.name.startswith('clip_annotated.')]
    return out


def test_every_module_has_a_chapter():
    assert set(MODULES) <= set(ORDER), f"modules without a notebook: {sorted(set(MODULES) - set(ORDER))}"


@pytest.mark.parametrize('module', MODULES)
def test_imports_flow_forward(module):
    late = [f"line {line}: {name}" for name, _, line in _imports(module)
            if name in ORDER and ORDER[name] >= ORDER[module] and name != module]
    assert not late, f"{module} imports from chapters at or after its own: {late}"


@pytest.mark.parametrize('module', MODULES)
def test_no_private_names_across_modules(module):
    private = [f"line {line}: {name}.{n}" for name, names, line in _imports(module) for n in names
               if n.startswith('_') and name != module]
    assert not private, f"{module} imports private names; make them public in the earlier chapter: {private}"


def test_no_public_name_twice():
    owners: dict[str, list[str]] = {}
    for module in MODULES:
        tree = ast.parse((PKG / f'{module}.py').read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '__all__' for t in node.targets):
                for name in ast.literal_eval(node.value): owners.setdefault(name, []).append(module)
    twice = {n: m for n, m in owners.items() if len(m) > 1 and n != 'main'}
    assert not twice, f"public names defined in more than one module: {twice}"


# --- rooms with one job (issue #25) -------------------------------------------------------------------------

MAX_LINES = 500   # STYLE.md: "a module a reader can hold in their head"; past this it is two ideas

# Modules not yet brought under MAX_LINES, each with the most lines it may have today. The list can only
# shrink: a module over its allowance fails, and so does an entry whose module has come under MAX_LINES
# (remove it then). Do not add to it: split the module along its seam into an appendix instead.
ALLOWANCE: dict[str, int] = {}   # empty since the command line (98) gave its results table to appendix 98b

# Modules whose names predate the rule "a module is named after its chapter", kept so that users' imports
# keep working: module -> the chapter name it stands for. A new module takes its chapter's name.
NAMED_OTHERWISE = {'core': 'prelims', 'limits': 'limitations', 'viz': 'visualize', 'prompts': 'prompt_engineering',
                   'objectives': 'experiments'}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.parametrize('module', sorted(p.stem for p in PKG.glob('*.py') if p.name != '_modidx.py'))
def test_modules_stay_small(module):
    n, limit = _lines(PKG / f'{module}.py'), ALLOWANCE.get(module, MAX_LINES)
    assert n <= limit, (f"{module}.py has {n} lines, more than {limit}: split it along its seam into an appendix "
                        f"chapter (STYLE.md, one job per module)")
    if module in ALLOWANCE:
        assert n > MAX_LINES, f"{module}.py has come under {MAX_LINES} lines ({n}): remove it from ALLOWANCE"


def test_allowance_names_real_modules():
    assert set(ALLOWANCE) <= {p.stem for p in PKG.glob('*.py')}, f"ALLOWANCE names no module: {sorted(set(ALLOWANCE) - set(MODULES))}"


def _exports() -> dict[str, list[str]]:
    "module -> the notebooks (stems) whose `default_exp` names it."
    out: dict[str, list[str]] = {}
    for nb in sorted((REPO / 'nbs').glob('*.ipynb')):
        for cell in json.loads(nb.read_text())['cells']:
            if cell['cell_type'] != 'code': continue
            for m in re.finditer(r'#\|\s*default_exp\s+(\S+)', ''.join(cell['source'])): out.setdefault(m[1], []).append(nb.stem)
    return out


def test_one_module_per_chapter():
    shared = {m: nbs for m, nbs in _exports().items() if len(nbs) > 1}
    assert not shared, f"notebooks that export the same module (one module per chapter): {shared}"


@pytest.mark.parametrize('module', MODULES)
def test_module_named_after_its_chapter(module):
    chapter = _exports()[module][0]
    title = re.sub(r'^\d+[a-z]?_', '', chapter)                          # 05e_run_folder -> run_folder
    name = NAMED_OTHERWISE.get(module, module)
    assert name.replace('_', '') in title.replace('_', ''), (
        f"module {module} is exported by {chapter}.ipynb: name it after its chapter, or the chapter after it")


def test_index_lists_every_chapter_and_module():
    text = ''.join(''.join(c['source']) for c in json.loads((REPO / 'nbs' / 'index.ipynb').read_text())['cells']
                   if c['cell_type'] == 'markdown')
    chapters = [p.name for p in sorted((REPO / 'nbs').glob('*.ipynb')) if p.stem != 'index']
    missing = [c for c in chapters if f'({c})' not in text]
    assert not missing, f"chapters the landing page's table does not link: {missing}"
    unnamed = [m for m in MODULES if f'`{m}`' not in text]
    assert not unnamed, f"modules the landing page's table does not name: {unnamed}"
