"""What the test files share: the environment of the subprocesses they start (the CLI, torchrun workers)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child_env(threads: int = 1, progress: bool | None = None) -> dict:
    "The environment for a subprocess of a test: this checkout first on the path, `threads` CPU threads, a fixed hash seed, not under nbdev_test."
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONHASHSEED': '0'}
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
    env.pop('IN_TEST', None)
    if progress is not None: env['CLIP_ANNOTATED_PROGRESS'] = '1' if progress else '0'
    return env
