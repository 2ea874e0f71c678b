"""What the test files share: the environment of the subprocesses they start (the CLI, torchrun workers)."""
from __future__ import annotations

import os, shutil, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child_env(threads: int = 1, progress: bool | None = None) -> dict:
    "The environment for a subprocess of a test: this checkout first on the path, `threads` CPU threads, a fixed hash seed, not under nbdev_test."
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONHASHSEED': '0'}
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
    env.pop('IN_TEST', None)
    if progress is not None: env['CLIP_ANNOTATED_PROGRESS'] = '1' if progress else '0'
    return env


def _free_gib(config) -> float:
    "Free space, in GiB, where the tests write their temporary files."
    where = Path(config.option.basetemp or tempfile.gettempdir()).resolve()
    while not where.exists(): where = where.parent
    return shutil.disk_usage(where).free / 2**30


def pytest_report_header(config):
    return f'temporary files: {_free_gib(config):.1f} GiB free'


def pytest_sessionstart(session):
    "A full disk fails tests with errors that do not name it: say so first, even under -q."
    free = _free_gib(session.config)
    if free < 2: session.config.pluginmanager.get_plugin('terminalreporter').write_line(
        f'warning: {free:.1f} GiB free for temporary files; tests that write checkpoints may fail with write errors')
