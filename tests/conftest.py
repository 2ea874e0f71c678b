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


def pytest_report_header(config):
    "The free space where tests write: a full disk fails tests with errors that do not name it."
    where = Path(config.option.basetemp or tempfile.gettempdir()).resolve()
    while not where.exists(): where = where.parent
    free = shutil.disk_usage(where).free / 2**30
    return f'temporary files: {free:.1f} GiB free' + (' (under 2 GiB: tests that write checkpoints may fail)' if free < 2 else '')
