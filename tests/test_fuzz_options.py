"""Fuzzing the options of `clip-annotated train`, `eval`, `embed` and `predict` (issue #14): whatever the
values, a command succeeds, or stops with one clear line -- never a raw traceback, never a hang.

The error contract: `clip_annotated.cli.main(argv)` returns the command's result, or raises
`CommandError` (a `SystemExit`) whose `str()` is ONE line starting `clip-annotated COMMAND: ` with
`.status` 2 for bad input and 1 for a failure (a diverged run), or argparse's plain `SystemExit(2)`
(`argument --x: ...` on stderr); `--help` exits 0.

1. Parse + validate (many examples, no training): argv over EVERY `TrainConfig` option with wild values
   (negatives, zero, huge ints, nan/inf/-0.0, non-numbers, empty and random text, JSON of every shape,
   templates with and without `{}`) through `parse_args` + `check_config`, directly and through
   `run_command`.
2. End to end (few examples, each under a time limit): `cli.main(['train', ...])` of a tiny model with
   small fuzzed settings. Settings `check_config` accepts must train (or diverge: status 1); a run
   that succeeded logged one record per step and reports no perfect recall from a diverged model.
3. eval / embed / predict options (few examples) against one tiny run trained once for the module.

Every example runs under `time_limit` (SIGALRM in the main thread, repeated until the example ends, with a
faulthandler backstop that ends the process if no alarm can interrupt it): a hang fails the test instead
of blocking it.
Hypothesis is derandomized, so CI draws the same examples every time.
The tests whose devices or precisions take another path on a GPU are marked `cuda`: `make gpu-check` runs them there.
"""
from __future__ import annotations

import contextlib, faulthandler, io, json, math, re, signal, sys, tempfile, time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings, strategies as st

from clip_annotated import cli
from clip_annotated.core import CommandError, get_device, run_command
from clip_annotated.model import CLIPConfig, CONFIGS
from clip_annotated.run import load_run, parse_args
from clip_annotated.runfolder import read_metrics
from clip_annotated.train import PRESETS, TrainConfig, check_config, check_device, check_template

pytestmark = pytest.mark.skipif(not hasattr(signal, 'SIGALRM'), reason="the time limits use SIGALRM (POSIX only)")

# The tiny model of the end-to-end examples (vision heads are vision_width // 64, so 64 is the least width).
TINY_MODEL = {"vision_layers": 1, "transformer_layers": 1, "vision_width": 64, "transformer_width": 64,
              "transformer_heads": 1, "embed_dim": 16}
TINY_ARGV = ['--preset', 'scenes-tiny', '--n-scenes', '64', '--model-overrides', json.dumps(TINY_MODEL),
             '--no-progress', '--threads', '1']
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                   HealthCheck.filter_too_much, HealthCheck.data_too_large])


# ------------------------------------------------------------------ helpers

class Hung(BaseException):
    "An example ran past its time limit. A BaseException, so that no `except Exception` (run_command's) turns it into a CommandError."


def torch_state() -> dict:
    "The global torch settings an exception raised half-way through torch code could leave changed."
    return dict(grad=torch.is_grad_enabled(), modes=torch._C._len_torch_function_stack(), dtype=torch.get_default_dtype(),
                autocast={d: torch.is_autocast_enabled(d) for d in ('cpu', 'cuda')})


def restore_torch_state(state: dict):
    "Put back `torch_state()`: grad mode, the `with torch.device(...)` stack, default dtype, autocast."
    torch.set_grad_enabled(state['grad'])
    while torch._C._len_torch_function_stack() > state['modes']: torch._C._pop_torch_function_stack()
    torch.set_default_dtype(state['dtype'])
    for d, on in state['autocast'].items(): torch.set_autocast_enabled(d, on)


@contextlib.contextmanager
def time_limit(seconds: int, argv):
    """Fail with `Hung` naming `argv` if the block runs longer than `seconds`.

    The alarm fires again every 2 s until the block ends: an exception raised by a signal handler that runs
    inside a finaliser or a gc callback (hypothesis installs one) is only printed by Python, not raised, so one
    alarm alone could let the block run on. A Hung can stop torch between entering and leaving a context
    (`no_grad`, `torch.device('meta')`), so torch's global settings are put back after one, or every later test
    would inherit them. A faulthandler backstop ends the process if no alarm can interrupt it (a hang in C code).
    Enter it inside `quiet()`, not around it, so that no alarm can interrupt the restoring of stdout/stderr."""
    live, fired, t0, state = [True], [False], time.monotonic(), torch_state()
    def on_alarm(signum, frame):
        if live[0]:
            fired[0] = True
            raise Hung(f"still running after {time.monotonic() - t0:.0f} s (limit {seconds} s): {argv!r}")
    old = signal.signal(signal.SIGALRM, on_alarm)
    faulthandler.dump_traceback_later(seconds + 120, exit=True, file=sys.__stderr__)
    signal.setitimer(signal.ITIMER_REAL, seconds, 2)
    try: yield
    finally:
        live[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()
        if fired[0]: restore_torch_state(state)


@contextlib.contextmanager
def quiet():
    "Capture stdout and stderr; yields (out, err) StringIO's."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): yield out, err


def run_cli(argv: list[str], seconds: int):
    "(result or the SystemExit, stdout, stderr) of cli.main(argv), under a time limit."
    with quiet() as (o, e), time_limit(seconds, argv):
        try: return cli.main(argv), o.getvalue(), e.getvalue()
        except SystemExit as err: return err, o.getvalue(), e.getvalue()


def one_line_error(e: CommandError, command: str, argv, status: int | tuple = (1, 2)):
    "Assert `e` is the contract's error: one line, `clip-annotated COMMAND: ` first, the expected status."
    msg = str(e)
    assert '\n' not in msg and '\r' not in msg, f"{argv!r}: a multi-line message: {msg!r}"
    assert msg.startswith(f'clip-annotated {command}: '), f"{argv!r}: {msg!r} does not start with 'clip-annotated {command}: '"
    assert len(msg) > len(f'clip-annotated {command}: '), f"{argv!r}: an empty message"
    assert 'Traceback' not in msg, f"{argv!r}: {msg!r}"
    statuses = (status,) if isinstance(status, int) else status
    assert e.status in statuses, f"{argv!r}: status {e.status}, expected {statuses}: {msg!r}"


def asks_help(argv) -> bool:
    "Whether argparse reads `argv` as a request for help (-h, --help or a prefix of it, -h with more letters)."
    return any(a.startswith('-h') or (len(a) >= 3 and '--help'.startswith(a.split('=')[0])) for a in argv)


def argparse_exit(e: SystemExit, err: str, out: str, argv):
    "Assert `e` is argparse's own exit: 2 with `error:` on stderr, or 0 for --help."
    assert not isinstance(e, CommandError), f"{argv!r}: {e!r}"
    if e.code == 0:
        assert asks_help(argv) and 'usage:' in out, f"{argv!r}: exit 0 without asking for help"
    else:
        assert e.code == 2, f"{argv!r}: argparse exit code {e.code!r}: {err[-300:]}"
        assert 'error: ' in err, f"{argv!r}: exit 2 without argparse's message: {err[-300:]!r}"


@pytest.fixture(scope='module', autouse=True)
def _env(tmp_path_factory):
    "No progress bars, no debug tracebacks, runs only under a temporary folder; torch's thread count restored."
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('CLIP_ANNOTATED_PROGRESS', '0')
        mp.setenv('CLIP_ANNOTATED_RUNS', str(tmp_path_factory.mktemp('runs')))
        mp.delenv('CLIP_ANNOTATED_DEBUG', raising=False)
        yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ the grammar of values
# Every option draws a GOOD value (valid, or at a boundary) six times in seven and a WILD one otherwise, so that
# most argv get past argparse and each check of check_config is reached, not only the first.

RARELY = st.sampled_from([False, False, False, True, False, False, False])   # True one time in 7 (wild in the middle:
                                                                            # hypothesis favours the ends of a range)

def good_or_wild(good: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    "`good` six times in seven, `wild` otherwise."
    return RARELY.flatmap(lambda w: wild if w else good)


ANY_TEXT = st.text(st.characters(codec='utf-8', exclude_categories=['Cs']), max_size=12)
TEMPLATES_TEXT = ['{}', 'a {}', 'a photo of a {}.', '{x}', 'a {x}', '{0}', 'a {0}.', '{', '}', '{}}', '{{}', '{{}}',
                  '{}{}', '{} and {}', '{!r}', '{}{!r}', '{:>10}', '{} {:>10}', '{}{:{}}', '{} {.real}', '{} {0.real}',
                  '{}{[0]}', '{} {[a]}', '{} {x}', '{0}{}', '{}{0}', '', ' ', 'no braces', '-{}', '--{}', '{}\n{}',
                  'a {} \t.', '{\u00e9}', '\u00e9t\u00e9 {}', 'x' * 300 + '{}', '{{{}}}', '{}{{', '}}{}']
TEMPLATE = st.one_of(st.sampled_from(TEMPLATES_TEXT), ANY_TEXT, ANY_TEXT.map(lambda s: s + '{}'),
                     st.tuples(ANY_TEXT, ANY_TEXT).map(lambda p: p[0] + '{}' + p[1]))

INT_GOOD = st.one_of(st.integers(0, 64).map(str), st.sampled_from(['-1', '0', '1', '-0', '+5', '1_000', str(2**32)]))
INT_WILD = st.one_of(st.sampled_from([' 7 ', '\u0663', '0x10', '1e3', '1.0', '1.5', 'nan', 'inf', '', ' ', 'one',
                                      str(2**31), str(2**63), str(2**64), str(10**30), '9' * 5000, '-' + str(10**30)]),
                     st.integers().map(str), ANY_TEXT)
FLOAT_GOOD = st.one_of(st.floats(0, 1, exclude_max=True).map(repr),
                       st.sampled_from(['nan', 'inf', '-0.0', '0', '1', '1e-3', '5e-4', '1e30', '1e-300', '5e-324',
                                        '0.2', '0.9', '0.98', '0.999', '0.99999999999', '1e400']))
FLOAT_WILD = st.one_of(st.sampled_from(['-nan', 'NaN', '-inf', 'Infinity', '-1e400', '-1', '', ' ', 'abc', '1,5',
                                        '0x1p-3', '1_0.5', '\u0661.5']),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr), ANY_TEXT)

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=6))
JSON_ANY = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                        max_leaves=10)
OVERRIDE_KEYS = [f.name for f in fields(CLIPConfig)]
OVERRIDE_GOOD = st.one_of(st.sampled_from([1, 2, 4, 8, 12, 16, 32, 48, 64, 128]), st.integers(-2, 160),
                          st.sampled_from([None, [1, 1, 1, 1], [2, 1, 1, 1]]))
OVERRIDE_WILD = st.one_of(st.sampled_from([0, -1, True, False, 1.5, 2.0, float('nan'), float('inf'), '8', '',
                                           [1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1.0], {'a': 1}, 2**31, 2**63, 10**20,
                                           10**30, -10**30]), JSON_LEAF)
OVERRIDES = st.dictionaries(st.sampled_from(OVERRIDE_KEYS + ['bogus', 'heads', 'Vision_Layers']),
                            good_or_wild(OVERRIDE_GOOD, OVERRIDE_WILD), max_size=4)
JSON_WILD = st.one_of(JSON_ANY.map(json.dumps),
                      st.sampled_from(['', ' ', '{', '}', '[]', 'null', 'NaN', '"{}"', '{"vision_layers": }',
                                       "{'vision_layers': 2}", '{"vision_layers": 2,}', '{"vision_layers": 2}x',
                                       '{"a": {"b": {"c": [1, [2, [3]]]}}}', '[' * 50 + ']' * 50, '1' * 5000]),
                      ANY_TEXT)


def option(name: str, good: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    "`--name VALUE` or `--name=VALUE`, the value mostly good."
    flag = '--' + name.replace('_', '-')
    return st.tuples(RARELY, good_or_wild(good, wild)).map(lambda p: [f'{flag}={p[1]}'] if p[0] else [flag, p[1]])


def switch(name: str) -> st.SearchStrategy:
    "A yes/no option: --name, --no-name, or (rarely) a mistaken value."
    flag = '--' + name.replace('_', '-')
    return good_or_wild(st.sampled_from([[flag], ['--no-' + flag[2:]]]),
                        st.sampled_from([[flag, 'yes'], [f'{flag}=1'], [flag, flag], [f'--no{flag[1:]}']]))


def choice(name: str, good: list, odd: list) -> st.SearchStrategy:
    return option(name, st.sampled_from(good), st.one_of(st.sampled_from(odd), ANY_TEXT))


def text(name: str, good: list) -> st.SearchStrategy:
    return option(name, st.sampled_from(good), ANY_TEXT)


def templates_option() -> st.SearchStrategy:
    good = st.sampled_from(['{}', 'a {}', 'an emoji of {}.', '{} {{x}}', '{{{}}}'])
    many = st.lists(st.one_of(good, TEMPLATE), min_size=1, max_size=3)
    return good_or_wild(many.map(lambda ts: ['--templates', *ts]),
                        st.one_of(TEMPLATE.map(lambda t: [f'--templates={t}']), st.just(['--templates'])))


def betas_option() -> st.SearchStrategy:
    good = st.lists(st.one_of(st.floats(0, 1, exclude_max=True).map(repr), FLOAT_GOOD), min_size=2, max_size=2)
    wild = st.lists(st.one_of(FLOAT_GOOD, FLOAT_WILD), min_size=0, max_size=3)
    return good_or_wild(good, wild).map(lambda bs: ['--betas', *bs])


def zoom_option() -> st.SearchStrategy:
    good = st.lists(st.floats(1, 1.3).map(repr), min_size=2, max_size=2).map(lambda zs: sorted(zs, key=float))
    wild = st.lists(st.one_of(FLOAT_GOOD, FLOAT_WILD), min_size=0, max_size=3)
    return good_or_wild(good, wild).map(lambda zs: ['--zoom', *zs])


INT_OPTIONS = ['n_scenes', 'batch_size', 'steps', 'warmup', 'accum', 'seed', 'ckpt_every', 'eval_every', 'threads',
               'prefetch', 'train_num_samples', 'workers', 'log_every']
FLOAT_OPTIONS = ['lr', 'weight_decay', 'eps', 'grad_clip']
SWITCHES = ['resume', 'progress', 'dataset_resampled', 'lock_image', 'lock_text', 'grad_checkpointing']

GRAMMAR: dict[str, st.SearchStrategy] = {
    **{n: option(n, INT_GOOD, INT_WILD) for n in INT_OPTIONS},
    **{n: option(n, FLOAT_GOOD, FLOAT_WILD) for n in FLOAT_OPTIONS},
    **{n: switch(n) for n in SWITCHES},
    'model': choice('model', list(CONFIGS), ['', 'miniclip', 'ViT-B/33', 'RN50 ', 'None']),
    'model_overrides': option('model_overrides', OVERRIDES.map(json.dumps), JSON_WILD),
    'data': choice('data', ['emoji', 'scenes'], ['', 'Scenes', 'cifar10', 'none']),
    'templates': templates_option(),
    'betas': betas_option(),
    'zoom': zoom_option(),
    'precision': choice('precision', ['auto', 'fp32', 'bf16', 'fp16'], ['', 'FP32', 'fp8', 'float16', 'amp']),
    'out': text('out', ['run-a', 'sub/run', '.', '', ' ']),
    'device': choice('device', ['cpu', 'cuda', 'cuda:0', 'cuda:7', 'meta', 'banana', 'cpu:0', ''],
                     ['cuda:-1', 'cpu:1', 'cpu:banana', 'mps', 'xla', 'xpu', '0', '-1', 'cpu\n', 'CPU', 'cuda:99999999999']),
    'train_data': text('train_data', ['pairs.csv', 'shards/{000..009}.tar', 'pipe:cat x', '', 'http://x/y.tar']),
    'val_data': text('val_data', ['pairs.csv', '', 'missing.tsv']),
    'dataset_type': choice('dataset_type', ['auto', 'csv', 'webdataset', 'tar'], ['', 'CSV', 'parquet']),
    'csv_img_key': text('csv_img_key', ['filepath', 'image', '']),
    'csv_caption_key': text('csv_caption_key', ['title', 'caption', '']),
    'csv_separator': text('csv_separator', [',', '\t', ';', '', ';;', '\n', '\\t', 'tab']),
    'pretrained': text('pretrained', ['', 'ViT-B/32', 'no/such/run', 'runs/mini']),
}
EXTRA = st.sampled_from([['--debug'], ['--bogus'], ['stray'], ['--step', '3'], ['--lr=1e-3'], ['--'], ['-x'],
                         ['--help']])


@st.composite
def train_argv(draw) -> list[str]:
    "argv for `clip-annotated train`: maybe a preset, then up to 6 options (repeats allowed), rarely a stray token."
    argv = []
    if draw(st.booleans()):
        argv += draw(option('preset', st.sampled_from(list(PRESETS)), st.sampled_from(['', 'nope', 'mini'])))
    for name in draw(st.lists(st.sampled_from(sorted(GRAMMAR)), max_size=6)): argv += draw(GRAMMAR[name])
    if draw(RARELY) and draw(RARELY): argv += draw(EXTRA)
    return argv


def test_grammar_covers_every_option():
    "The fuzz grammar has every TrainConfig field (a new option must be added to GRAMMAR to be fuzzed)."
    assert set(GRAMMAR) == {f.name for f in fields(TrainConfig)} == {f.name for f in fields(TrainConfig) if f.metadata.get('help')}


@pytest.mark.parametrize('command', ['train', 'eval', 'embed', 'predict', 'export', 'reproduce'])
def test_help_exits_0(command):
    r, out, _ = run_cli([command, '--help'], 60)
    assert isinstance(r, SystemExit) and not isinstance(r, CommandError) and r.code == 0, r
    assert out.startswith(f'usage: clip-annotated {command}'), out[:200]


# ------------------------------------------------------------------ 1. parse + validate

KNOWN_OPTIONS = {f.name.replace('_', '-') for f in fields(TrainConfig)} | {'preset'}


def check_train_options(argv: list[str], seconds: int = 10):
    "parse_args + check_config of `argv`: accepted, argparse's exit, or a one-line ValueError naming an option; run_command alike."
    with quiet() as (out, err), time_limit(seconds, argv):
        try: cfg = parse_args(argv)
        except SystemExit as e: direct = ('argparse', e.code)
        else:
            try: check_config(cfg); direct = ('ok', None)
            except ValueError as e:
                msg = str(e)
                assert '\n' not in msg and '\r' not in msg, f"{argv!r}: check_config's message is not one line: {msg!r}"
                named = set(re.findall(r'--([a-z][a-z-]*)', msg))
                assert named & KNOWN_OPTIONS, f"{argv!r}: check_config's message names no option: {msg!r}"
                direct = ('refused', msg)
    if direct[0] == 'argparse': argparse_exit(SystemExit(direct[1]), err.getvalue(), out.getvalue(), argv)

    with quiet() as (out, err), time_limit(seconds, argv):
        try:
            run_command('clip-annotated train', lambda a: check_config(parse_args(a)), list(argv))
            via = 'ok'
        except CommandError as e: via = e
        except SystemExit as e: via = e
    if isinstance(via, CommandError):
        one_line_error(via, 'train', argv, status=2); via = 'refused'
    elif isinstance(via, SystemExit):
        argparse_exit(via, err.getvalue(), out.getvalue(), argv); via = 'argparse'
    assert via == direct[0], f"{argv!r}: run_command gave {via}, parse_args + check_config {direct}"
    return direct[0] if direct[0] != 'refused' else f"refused: {re.match(r'--[a-z-]*', direct[1] + ' ')[0]}"


@pytest.mark.cuda
@settings(max_examples=300, **FUZZ)
@given(argv=train_argv())
def test_fuzz_train_options(argv):
    event(check_train_options(argv))              # what was tried: pytest --hypothesis-show-statistics


@pytest.mark.parametrize('argv', [
    pytest.param(['--model-overrides', '[' * 3000 + ']' * 3000], id='deeply-nested-json'),
    pytest.param(['--model-overrides', '{"transformer_layers": 100000}'], id='100000-text-layers'),
    pytest.param(['--model', 'RN50', '--model-overrides', '{"vision_layers": [100000, 1, 1, 1]}'], id='100000-resnet-blocks'),
    pytest.param(['--model-overrides', '{"vision_width": 100000000000000000000}'], id='huge-width'),
    pytest.param(['--templates', '{} {.real}', '{0}{}'], id='format-tricks'),
    pytest.param(['--betas', 'nan', '0.5'], id='nan-beta'),
    pytest.param(['--zoom', '1.2', '1.0'], id='zoom-reversed'),
    pytest.param(['--zoom', 'inf', 'inf'], id='zoom-infinite'),
    pytest.param(['--lr=-inf', '--eps=-0.0'], id='negative-inf'),
])
def test_train_options_edge_cases(argv):
    check_train_options(argv)


# ------------------------------------------------------------------ 2. end to end

LR_DIVERGES = '1e30'


def expect_train(argv: list[str]) -> tuple[str, object]:
    "What `train argv` must do: ('argparse', None), ('refused', None) -> status 2, or ('trains', cfg)."
    with quiet():
        try: cfg = parse_args(argv)
        except SystemExit: return 'argparse', None
    try: check_config(cfg)
    except ValueError: return 'refused', None
    if cfg.precision == 'fp16' and get_device(cfg.device).type != 'cuda': return 'refused', None   # fp16 needs CUDA
    if cfg.batch_size % cfg.accum: return 'refused', None          # the batch must split into equal chunks
    if cfg.n_scenes < cfg.batch_size: return 'refused', None       # not one full batch of training data
    return 'trains', cfg


def check_train_run(extra: list[str], out: Path, seconds: int = 150):
    "`cli.main(['train', *TINY_ARGV, '--out', out, *extra])` keeps the contract, and what succeeded is right."
    argv = ['train', *TINY_ARGV, '--out', str(out), *extra]
    kind, cfg = expect_train(argv[1:])
    with quiet() as (o, e), time_limit(seconds, argv):
        try: result = cli.main(argv)
        except CommandError as err: result = err
        except SystemExit as err:
            argparse_exit(err, e.getvalue(), o.getvalue(), argv)
            assert kind == 'argparse', f"{argv!r}: argparse refused what parse_args accepts"
            return 'argparse'
    diverges = kind == 'trains' and cfg.lr == float(LR_DIVERGES)
    if isinstance(result, CommandError):
        one_line_error(result, 'train', argv)
        if kind == 'refused': assert result.status == 2, f"{argv!r}: bad input with status {result.status}: {result}"
        elif diverges:
            assert result.status == 1 and 'diverged' in str(result), (
                f"{argv!r}: lr {LR_DIVERGES} should stop as a diverged run (TrainingDiverged, status 1), got "
                f"status {result.status}: {result}")
        else: pytest.fail(f"{argv!r}: settings check_config accepts did not train: status {result.status}: {result}")
        return f'status {result.status}'
    assert kind == 'trains', f"{argv!r}: trained although it should have been refused ({kind})"
    assert isinstance(result, dict) and Path(result['dir']) == out, f"{argv!r}: {result!r}"
    recs = read_metrics(out / 'metrics.jsonl')
    losses = [r for r in recs if 'loss' in r]
    assert [r['step'] for r in losses] == list(range(1, cfg.steps + 1)), f"{argv!r}: not one record per step: {recs}"
    assert all(math.isfinite(r['loss']) for r in losses), f"{argv!r}: a non-finite loss in a run that succeeded: {losses}"
    evals = [r['step'] for r in recs if 'eval' in r]
    want = [s for s in range(1, cfg.steps) if cfg.eval_every and s % cfg.eval_every == 0] + [cfg.steps]
    if 'test' not in result:                            # no held-out data (--n-scenes below 4 leaves none)
        assert cfg.n_scenes // 4 == 0 and evals == [], f"{argv!r}: no held-out result: {result!r}"
    else:
        assert evals == want, f"{argv!r}: held-out evaluations at steps {evals}, expected {want}"
        test = result['test']
        recall = {k: v for k, v in test.items() if '_R@' in k}
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in recall.values()), f"{argv!r}: recall {recall}"
        if diverges:
            assert test['i2t_R@1'] < 1 and test['t2i_R@1'] < 1, f"{argv!r}: lr {LR_DIVERGES} 'succeeded' with R@1 of 100%: {recall}"
    assert (out / 'checkpoint.pt').is_file() and (out / 'report.md').is_file()
    return 'trained'


@st.composite
def train_settings(draw) -> list[str]:
    "Small fuzzed settings for the tiny end-to-end run: half the time all in the ranges that train, else anywhere."
    ok = draw(st.booleans())
    ints = lambda bad, lo, hi: str(draw(st.integers(lo, hi) if ok else st.integers(bad, hi)))
    pick = lambda good, bad: draw(st.sampled_from(good if ok else good + bad))
    x = ['--steps', ints(-2, 1, 3), '--batch-size', ints(-2, 1, 40), '--accum', ints(-1, 1, 5),
         '--lr', pick(['1e-3', '1e-3', LR_DIVERGES], ['-1', '0', 'nan']), '--warmup', ints(-2, 0, 3),
         '--grad-clip', pick(['0', '1'], ['-1']), '--weight-decay', pick(['0', '0.2'], ['-1']),
         '--precision', pick(['auto', 'fp32', 'bf16', 'fp16'], []),
         '--eval-every', ints(-1, 0, 2), '--ckpt-every', ints(-1, 1, 2)]
    if draw(RARELY): x += ['--device', pick(['cpu'], ['banana'])]
    if draw(RARELY): x += ['--seed', pick(['1', str(2**31)], ['-1'])]
    pairs = [x[i:i + 2] for i in range(0, len(x), 2)]
    order = draw(st.permutations(range(len(pairs))))
    return [t for i in order for t in pairs[i]]


@pytest.mark.cuda
@settings(max_examples=20, **FUZZ)
@given(extra=train_settings())
def test_fuzz_train_end_to_end(extra, tmp_path_factory):
    event(check_train_run(extra, Path(tempfile.mkdtemp(dir=tmp_path_factory.mktemp('e2e'))) / 'run'))


@pytest.mark.cuda
@pytest.mark.parametrize('extra', [
    pytest.param(['--steps', '1', '--batch-size', '16', '--lr', LR_DIVERGES], id='lr-1e30-one-step'),
    pytest.param(['--steps', '2', '--batch-size', '8', '--accum', '2', '--lr', LR_DIVERGES], id='lr-1e30-accum'),
    pytest.param(['--steps', '1', '--batch-size', '2', '--n-scenes', '3'], id='n-scenes-3-no-held-out'),
    pytest.param(['--steps', '1', '--batch-size', '16', '--seed', str(2**32)], id='seed-2**32'),
    pytest.param(['--steps', '1', '--batch-size', '16', '--device', 'meta'], id='device-meta'),
    pytest.param(['--steps', '1', '--batch-size', '16', '--threads', str(2**32)], id='threads-2**32'),
    pytest.param(['--steps', '2', '--batch-size', '40', '--accum', '5', '--eval-every', '1', '--precision', 'bf16'],
                 id='accum-bf16-eval-every-step'),
])
def test_train_end_to_end_edge_cases(extra, tmp_path):
    check_train_run(extra, tmp_path / 'run')


# ------------------------------------------------------------------ 3. eval, embed and predict options

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory) -> Path:
    "A tiny model trained for 2 steps: the run folder."
    out = tmp_path_factory.mktemp('tiny') / 'run'
    with quiet(), time_limit(300, 'tiny_run'):
        cli.main(['train', *TINY_ARGV, '--steps', '2', '--batch-size', '16', '--out', str(out)])
    return out


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> tuple[Path, Path]:
    "(a folder of two small PNGs, a file of two texts)."
    from PIL import Image
    d = tmp_path_factory.mktemp('files')
    rng = np.random.default_rng(0)
    (d / 'imgs').mkdir()
    for i, size in enumerate([(20, 30), (64, 48)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(d / 'imgs' / f'{i}.png')
    (d / 'texts.txt').write_text('a red circle\n\ntwo blue squares\n', encoding='utf-8')
    return d / 'imgs', d / 'texts.txt'


def template_args(templates: list[str], equals: list[bool]) -> list[str]:
    "--template T for each, as --template=T where T would read as an option."
    out = []
    for t, eq in zip(templates, equals):
        out += [f'--template={t}'] if eq or t.startswith('-') else ['--template', t]
    return out


def device_ok(d) -> bool:
    try: check_device(d); return True
    except ValueError: return False


def template_ok(t) -> bool:
    try: check_template(t); return True
    except ValueError: return False


GOOD_TEMPLATE = st.sampled_from(['{}', 'a {}', 'a {} shape.', 'something {}!', '{{{}}}'])


@pytest.mark.cuda
@settings(max_examples=20, **FUZZ)
@given(batch=st.integers(-2, 300), workers=st.integers(-1, 1),
       templates=st.lists(good_or_wild(GOOD_TEMPLATE, TEMPLATE), max_size=2), equals=st.lists(st.booleans(), min_size=2, max_size=2),
       device=st.sampled_from([None, 'cpu', 'banana', 'cuda:7']))
def test_fuzz_eval_options(tiny_run, batch, workers, templates, equals, device):
    argv = ['eval', '--model', str(tiny_run), '--dataset', 'scenes-color', '--batch-size', str(batch),
            '--workers', str(workers), *template_args(templates, equals), *(['--device', device] if device else [])]
    bad_args = batch < 1 or workers < 0 or not device_ok(device)
    bad_template = not all(template_ok(t) for t in templates)
    r, out, err = run_cli(argv, 120)
    event(type(r).__name__)
    if isinstance(r, CommandError):
        one_line_error(r, 'eval', argv, status=2)
        assert bad_template and not bad_args, f"{argv!r}: refused: {r}"
    elif isinstance(r, SystemExit):
        argparse_exit(r, err, out, argv)
        assert bad_args, f"{argv!r}: argparse refused good options: {err[-300:]}"
    else:
        assert not bad_args and not bad_template, f"{argv!r}: bad options accepted: {r!r}"
        assert isinstance(r, dict) and r['n'] == 400 and r['templates'] == (len(templates) or r['templates'])
        assert all(math.isfinite(r[k]) and 0 <= r[k] <= 1 for k in ('top1', 'top5', 'mean_per_class_recall') if k in r), r


@settings(max_examples=10, **FUZZ)
@given(batch=st.integers(-2, 300), workers=st.integers(-1, 1), device=st.sampled_from([None, 'cpu', 'banana']))
def test_fuzz_embed_options(tiny_run, files, tmp_path_factory, batch, workers, device):
    imgs, texts = files
    out = Path(tempfile.mkdtemp(dir=tmp_path_factory.mktemp('embed'))) / 'emb'
    argv = ['embed', '--model', str(tiny_run), '--images', str(imgs), '--texts', str(texts), '--out', str(out),
            '--batch-size', str(batch), '--workers', str(workers), *(['--device', device] if device else [])]
    bad_args = batch < 1 or workers < 0 or not device_ok(device)
    r, o, e = run_cli(argv, 120)
    event(type(r).__name__)
    if isinstance(r, CommandError): pytest.fail(f"{argv!r}: refused: {r}")
    elif isinstance(r, SystemExit):
        argparse_exit(r, e, o, argv)
        assert bad_args, f"{argv!r}: argparse refused good options: {e[-300:]}"
    else:
        assert not bad_args, f"{argv!r}: bad options accepted: {r!r}"
        assert r['images'] == 2 and r['texts'] == 2 and r['skipped'] == 0, r
        for name in ('image_features.npy', 'text_features.npy'):
            f = np.load(out / name)
            assert f.shape == (2, 16) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-4), (name, f)
        assert [Path(l).name for l in (out / 'image_files.txt').read_text(encoding='utf-8').splitlines()] == ['0.png', '1.png']


@settings(max_examples=10, **FUZZ)
@given(templates=st.lists(good_or_wild(GOOD_TEMPLATE, TEMPLATE), max_size=2), equals=st.lists(st.booleans(), min_size=2, max_size=2),
       labels=st.lists(st.one_of(st.sampled_from(['a dog', 'red', '', ' ', '{}', 'x' * 200]), ANY_TEXT.filter(
           lambda s: not s.startswith('-'))), min_size=1, max_size=3),
       device=st.sampled_from([None, 'cpu', 'banana']))
def test_fuzz_predict_options(tiny_run, files, templates, equals, labels, device):
    picture = str(sorted(files[0].iterdir())[0])
    argv = ['predict', picture, *labels, '--model', str(tiny_run), *template_args(templates, equals),
            *(['--device', device] if device else [])]
    bad_template = not all(template_ok(t) for t in templates)
    r, o, e = run_cli(argv, 60)
    event(type(r).__name__)
    if isinstance(r, CommandError):
        one_line_error(r, 'predict', argv, status=2)
        assert bad_template or not device_ok(device), f"{argv!r}: refused: {r}"
    elif isinstance(r, SystemExit):
        argparse_exit(r, e, o, argv)
        assert not device_ok(device), f"{argv!r}: argparse refused good options: {e[-300:]}"
    else:
        assert device_ok(device) and not bad_template, f"{argv!r}: bad options accepted"
        probs = [p for _, p in r]
        assert sorted(l for l, _ in r) == sorted(labels) and all(math.isfinite(p) for p in probs), r
        assert abs(sum(probs) - 1) < 1e-3, r


# ------------------------------------------------------------------ a run train accepts is a run eval can read

@pytest.mark.parametrize('width', [32, 128], ids=['text-width-32', 'text-width-128'])
def test_a_run_trained_with_one_text_head_reads_back_the_same(width, files, tmp_path):
    "train accepts --model-overrides with transformer_heads 1; embed must then read the run back as trained (1 head)."
    overrides = {**TINY_MODEL, 'transformer_width': width, 'transformer_heads': 1}
    run = tmp_path / 'run'
    argv = ['train', *TINY_ARGV, '--model-overrides', json.dumps(overrides), '--steps', '1', '--batch-size', '16',
            '--out', str(run)]
    r, _, _ = run_cli(argv, 120)
    if isinstance(r, CommandError):                        # refusing the architecture up front keeps the contract too
        one_line_error(r, 'train', argv, status=2); return
    assert isinstance(r, dict), r
    argv = ['embed', '--model', str(run), '--texts', str(files[1]), '--out', str(tmp_path / 'emb'), '--device', 'cpu']
    r, _, _ = run_cli(argv, 60)
    assert isinstance(r, dict), f"train accepted {overrides} but {argv!r} cannot read the run: {r}"
    model, _ = load_run(run, device='cpu')
    from clip_annotated.zeroshot import encode_texts
    want = encode_texts(model, ['a red circle', 'two blue squares'], 2, 'cpu').float().numpy()
    got = np.load(tmp_path / 'emb' / 'text_features.npy')
    assert np.allclose(got, want, atol=1e-4), (f"embed read the run with another architecture than it was trained with "
                                              f"(max difference {np.abs(got - want).max():.3f})")
