"""The house rules of STYLE.md, checked on the exported modules (issue #15 item 9).

* Imports flow forward: a module imports only from the modules of chapters before it (by notebook
  order), at the top or inside a function, so the dependency graph is the table of contents.
* No private name (`_x`) is imported from another module: what two chapters share is public in the
  earlier one.
* No two modules export the same public name (`main`, the command entry point, excepted).
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
