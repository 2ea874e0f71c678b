"""`clip-annotated` on the user's own files: `embed`, `eval --data` (class folders, labelled CSV), `eval --retrieval`,
`export`, `download` (from a web server on the loopback interface), the checks made before a model is loaded, and the
top-level `--help`.

The model is a two-step run of a one-layer MiniCLIP on a few scenes (random-ish weights): the tests check the
plumbing (order, normalisation, skipping, the majority baseline of the data), not accuracy."""
from __future__ import annotations

import contextlib, hashlib, http.server, io, json, os, socket, subprocess, sys, threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import child_env
import torch
import torch.nn.functional as F
from PIL import Image

from clip_annotated.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return child_env()


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    "The installed console script, in a subprocess (as a user runs it)."
    exe = Path(sys.executable).parent / 'clip-annotated'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'from clip_annotated.cli import main; main()']
    return subprocess.run([*cmd, *map(str, args)], env=_env(), cwd=cwd, capture_output=True, text=True, timeout=600)


def _run(*argv):
    "(result, stdout, stderr) of main(argv) in this process."
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        result = main([str(a) for a in argv])
    return result, out.getvalue(), err.getvalue()


def _picture(path: Path, seed: int, size=(40, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    "A run folder: MiniCLIP with one layer per tower, trained for two steps on a few scenes."
    from clip_annotated.scenes import SceneDataset
    from clip_annotated.train import PRESETS, train
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp('own') / 'run'
    cfg = replace(PRESETS['mini-cpu'], steps=2, batch_size=8, warmup=1, eval_every=0, ckpt_every=2, out=str(out),
                  progress=False, threads=1,
                  model_overrides=dict(vision_layers=1, transformer_layers=1, vision_patch_size=12))
    n_px = cfg.clip_config().image_resolution
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(cfg, datasets=(SceneDataset(16, seed=1, image_size=n_px, train=True),
                             SceneDataset(8, seed=2, image_size=n_px)))
    assert (out / 'checkpoint.pt').is_file()
    return out


@pytest.fixture(scope='module')
def model_and_preprocess(run_dir):
    from clip_annotated.pretrained import load
    model, preprocess = load(run_dir, device='cpu')
    return model.eval(), preprocess


# ------------------------------------------------------------------ help

def test_help_lists_every_command(tmp_path):
    r = _cli('--help', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ('train', 'reproduce', 'eval', 'predict', 'embed', 'export', 'download'):
        assert f'  {name} ' in r.stdout, name
    assert set(COMMANDS) == {'train', 'reproduce', 'eval', 'predict', 'embed', 'export', 'download'}


def test_python_m_runs_the_command(tmp_path):
    "`python -m clip_annotated.cli` is the console script (its __main__ guard uses run.in_ipython)."
    from clip_annotated import __version__
    r = subprocess.run([sys.executable, '-m', 'clip_annotated.cli', '--version'], env=_env(), cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == f"clip-annotated {__version__}", (r.stdout, r.stderr[-2000:])


@pytest.mark.parametrize('command, options', [
    ('reproduce', ['--out', '--no-bias', 'clip-annotated train']),
    ('eval', ['--data', '--retrieval', '--template', '--classnames', '--csv-img-key', '--csv-label-key', '--json']),
    ('embed', ['--images', '--texts', '--out', '--batch-size', '--csv-img-key', 'truncated']),
    ('export', ['--format', '--out', 'open_clip']),
    ('download', ['--to', 'SHA256', 'ViT-B-32', 'without internet'])])
def test_each_command_has_its_own_help(command, options):
    with pytest.raises(SystemExit) as e, contextlib.redirect_stdout(io.StringIO()) as out:
        main([command, '--help'])
    assert e.value.code == 0
    text = ' '.join(out.getvalue().split())                       # argparse wraps lines
    assert text.startswith(f'usage: clip-annotated {command}')
    for o in options: assert o in text, (command, o)


# ------------------------------------------------------------------ eval on the book's own tasks

@pytest.mark.parametrize('name', ['emoji-skin-tone', 'emoji-gender', 'emoji-category', 'scenes-color', 'scenes-shape', 'scenes-count'])
def test_embedded_sets_prompt_with_no_training_caption(name):
    "`eval --dataset` on the book's own sets is zero-shot: no prompt of 'ensemble' or 'single' is a training caption."
    from clip_annotated.cli import EMBEDDED, _embedded_task, _embedded_templates
    from clip_annotated.tasks import caption_prompts
    assert name in EMBEDDED
    task = _embedded_task(name, 48)
    ensemble, single = _embedded_templates(task), _embedded_templates(task, 'single')
    assert ensemble and single == ensemble[:1]
    assert caption_prompts(task, ensemble) == 0 and caption_prompts(task, single) == 0, name
    assert set(ensemble) <= set(task.templates) | set(task.new_templates or [])


def test_eval_embedded_set_reports_its_caption_prompts(run_dir):
    from clip_annotated.tasks import emoji_task, zero_shot_templates
    for which in ('ensemble', 'single'):
        m, out, _ = _run('eval', '--model', run_dir, '--dataset', 'emoji-skin-tone', '--templates', which, '--device', 'cpu')
        want = zero_shot_templates(emoji_task('skin_tone'))
        assert m['caption_prompts'] == 0 and m['templates'] == (len(want) if which == 'ensemble' else 1), m
        assert 'no prompt a training caption' in out, out
    m, out, _ = _run('eval', '--model', run_dir, '--dataset', 'emoji-skin-tone', '--template', 'person, {} skin tone', '--device', 'cpu')
    assert m['caption_prompts'] > 0 and 'not zero-shot' in out, out            # a training caption the user asked for is counted


# ------------------------------------------------------------------ embed

def test_embed_folder_and_texts(run_dir, model_and_preprocess, tmp_path):
    pics = tmp_path / 'pics'
    for k, rel in enumerate(['b/2.png', 'a.jpg', 'b/10.png', 'c/d/e.webp', 'B.png']):
        _picture(pics / rel, k)
    (pics / 'b' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    (pics / 'notes.txt').write_text('not a picture')
    long = 'a very long caption ' * 50                              # far past the context length: cut, not refused
    (tmp_path / 'texts.txt').write_text(f'a red circle\n\n  two blue squares \n{long}\n')
    out = tmp_path / 'new' / 'emb'                                   # created by embed
    r = _cli('embed', '--model', run_dir, '--images', pics, '--texts', tmp_path / 'texts.txt', '--out', out,
             '--device', 'cpu', '--batch-size', '2', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'skipped 1 of 6 pictures' in r.stderr and 'broken.png' in r.stderr

    files = (out / 'image_files.txt').read_text().splitlines()
    rel = [Path(f).relative_to(pics).as_posix() for f in files]
    assert rel == sorted(['b/2.png', 'a.jpg', 'b/10.png', 'c/d/e.webp', 'B.png']) and 'b/broken.png' not in rel
    feats = np.load(out / 'image_features.npy')
    assert feats.dtype == np.float32 and feats.shape[0] == len(files)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    model, preprocess = model_and_preprocess
    with torch.no_grad():
        for k, f in enumerate(files):                                # row k is file k
            direct = F.normalize(model.encode_image(preprocess(Image.open(f)).unsqueeze(0)), dim=-1)[0].numpy()
            np.testing.assert_allclose(feats[k], direct, atol=1e-5)

    texts = (out / 'texts.txt').read_text().splitlines()
    assert texts == ['a red circle', 'two blue squares', long.strip()]
    T = np.load(out / 'text_features.npy')
    assert T.dtype == np.float32 and T.shape == (3, feats.shape[1])
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    from clip_annotated.tokenizer import tokenize
    with torch.no_grad():
        direct = F.normalize(model.encode_text(tokenize(texts, context_length=model.context_length, truncate=True)), dim=-1)
    np.testing.assert_allclose(T, direct.numpy(), atol=1e-5)


def test_embed_csv_keeps_file_order(run_dir, model_and_preprocess, tmp_path):
    for k in range(3): _picture(tmp_path / 'img' / f'{k}.png', 10 + k)
    (tmp_path / 'img' / 'bad.png').write_bytes(b'nope')
    names = ['img/2.png', 'img/missing.png', str(tmp_path / 'img' / '0.png'), 'img/bad.png', 'img/1.png']
    (tmp_path / 'list.tsv').write_text('path\tother\n' + ''.join(f'{n}\tx\n' for n in names))
    s, _, err = _run('embed', '--model', run_dir, '--images', tmp_path / 'list.tsv', '--csv-img-key', 'path',
                     '--out', tmp_path / 'o', '--device', 'cpu')
    kept = (tmp_path / 'o' / 'image_files.txt').read_text().splitlines()
    assert kept == ['img/2.png', str(tmp_path / 'img' / '0.png'), 'img/1.png']       # the column as written, in file order
    assert s['images'] == 3 and s['skipped'] == 2 and '1 missing image' in err and '1 corrupt image' in err
    assert not (tmp_path / 'o' / 'text_features.npy').exists()
    # the Python function: same rows, skipped files with their reasons
    from clip_annotated.cli import embed_images
    model, preprocess = model_and_preprocess
    paths = [tmp_path / 'img' / '2.png', tmp_path / 'img' / 'bad.png', tmp_path / 'nowhere.png']
    feats, kept_paths, skipped = embed_images(model, preprocess, paths, progress=False)
    assert kept_paths == paths[:1] and skipped == [(paths[1], 'corrupt image'), (paths[2], 'missing image')]
    np.testing.assert_allclose(feats.numpy()[0], np.load(tmp_path / 'o' / 'image_features.npy')[0], atol=1e-5)


# ------------------------------------------------------------------ eval --data

CLASSES = {'golden_retriever': 6, 'cat': 1, 'dog': 1, 'emu': 1, 'fox': 1, 'zebra': 2}   # imbalanced: 6 of 12 are one class


@pytest.fixture
def own_data(tmp_path):
    "A class-per-folder tree (plus one broken file) and the same pictures as a labelled CSV with string labels."
    rows, k = ['filepath,species'], 0
    for name, n in CLASSES.items():
        for j in range(n):
            rel = f'photos/{name}/{j}.png'
            _picture(tmp_path / rel, 100 + k); rows.append(f'{rel},{name}'); k += 1
    (tmp_path / 'photos' / 'cat' / 'broken.jpg').write_bytes(b'<html>404</html>')
    (tmp_path / 'labels.csv').write_text('\n'.join(rows) + '\n')
    return tmp_path


def test_eval_data_folder_and_csv(run_dir, own_data):
    m, printed, _ = _run('eval', '--model', run_dir, '--data', own_data / 'photos', '--template', 'a photo of a {}.',
                         '--template', 'a {}', '--device', 'cpu', '--json')
    j = json.loads(printed.strip().splitlines()[-1])
    for key in ('top1', 'top5', 'mean_per_class_recall', 'majority_top1', 'chance'):
        assert key in j and 0 <= j[key] <= 1, key
    assert (j['n'], j['classes'], j['skipped'], j['templates']) == (12, 6, 1, 2)
    assert j['majority_top1'] == 0.5 and j['majority_class_name'] == 'golden retriever'   # folder '_' read as a space
    assert j['chance'] == pytest.approx(1 / 6) and j['chance_top5'] == pytest.approx(5 / 6)

    c, printed, _ = _run('eval', '--model', run_dir, '--data', own_data / 'labels.csv', '--csv-label-key', 'species',
                         '--template', 'a photo of a {}.', '--template', 'a {}', '--device', 'cpu', '--json')
    for key in ('top1', 'top5', 'mean_per_class_recall', 'majority_top1', 'chance'):
        assert c[key] == pytest.approx(m[key], abs=1e-6), key        # same pictures, same classes, same order
    assert c['skipped'] == 0 and c['majority_class_name'] == 'golden retriever'

    _, text, _ = _run('eval', '--model', run_dir, '--data', own_data / 'photos', '--device', 'cpu')
    assert 'majority class' in text and '50.00%' in text and 'chance 16.67%' in text and 'skipped 1 of 13' in text


def test_eval_classnames_file(run_dir, own_data):
    names = ['a cat', 'a dog', 'an emu', 'a fox', 'a golden retriever', 'a zebra']        # sorted-label order
    (own_data / 'names.txt').write_text('\n'.join(names) + '\n')
    m, _, _ = _run('eval', '--model', run_dir, '--data', own_data / 'photos', '--classnames', own_data / 'names.txt',
                   '--device', 'cpu')
    assert m['majority_class_name'] == 'a golden retriever'
    (own_data / 'names.txt').write_text('cat\ndog\n')
    with pytest.raises(SystemExit, match='has 2 names but .* has 6 classes'):
        _run('eval', '--model', run_dir, '--data', own_data / 'photos', '--classnames', own_data / 'names.txt')


def test_eval_retrieval(run_dir, tmp_path):
    rows = ['filepath,title']
    for k in range(12):
        _picture(tmp_path / 'p' / f'{k}.png', 200 + k); rows.append(f'p/{k}.png,picture number {k % 10}')
    rows.append('p/missing.png,a missing picture')
    rows.append('p/0.png,')                                           # no caption
    rows.append('p/1.png,a caption,and a stray field')                # a row with one field too many
    (tmp_path / 'pairs.csv').write_text('\n'.join(rows) + '\n')
    m, text, _ = _run('eval', '--model', run_dir, '--retrieval', tmp_path / 'pairs.csv', '--device', 'cpu')
    assert (m['n_images'], m['n_texts'], m['skipped']) == (12, 10, 3)
    assert m['skipped_reasons'] == {'missing image': 1, 'empty caption': 1, 'malformed row': 1}   # each by its reason
    for d in ('i2t', 't2i'):
        for k in (1, 5, 10):
            assert 0 <= m[f'{d}_R@{k}'] <= 1 and 0 < m[f'{d}_chance@{k}'] <= 1
    assert m['i2t_chance@1'] == pytest.approx(1 / 10) and m['i2t_R@10'] >= m['i2t_R@5'] >= m['i2t_R@1']
    assert 'image → text' in text and 'text → image' in text and 'R@10' in text


# ------------------------------------------------------------------ errors before the model

@pytest.fixture
def no_model(monkeypatch):
    "Loading a model fails the test: the error must come first."
    import clip_annotated.pretrained as pretrained
    def refuse(*a, **k): raise AssertionError("a model was loaded before the inputs were checked")
    monkeypatch.setattr(pretrained, 'load', refuse)


@pytest.mark.parametrize('argv, message', [
    (['eval', '--data', '{tmp}/nowhere'], '--data {tmp}/nowhere: no such file or folder'),
    (['eval', '--retrieval', '{tmp}/pairs.csv'], '--retrieval {tmp}/pairs.csv: no such file'),
    (['eval', '--dataset', 'cifar10', '--root', '{tmp}/cifar'], '--root {tmp}/cifar: no such folder'),
    (['eval', '--data', '{tmp}', '--template', 'a photo'], "template 'a photo' has no '{}'"),
    (['eval', '--data', '{tmp}', '--template', 'a {0} {1}'], "template 'a {0} {1}'"),
    (['eval', '--data', '{tmp}'], 'has no class folders'),
    (['embed', '--images', '{tmp}/nowhere', '--out', '{tmp}/o'], '--images {tmp}/nowhere: no such file or folder'),
    (['embed', '--texts', '{tmp}/t.txt', '--out', '{tmp}/o'], '--texts {tmp}/t.txt'),
    (['export', '{tmp}/run', '--out', '{tmp}/o'], '{tmp}/run: no such file or folder'),
])
def test_errors_name_the_input_before_loading_a_model(no_model, tmp_path, argv, message):
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    if argv[0] in ('eval', 'embed'): argv = [argv[0], '--model', 'some-model', *argv[1:]]
    with pytest.raises(SystemExit) as e: main(argv)
    assert message.replace('{tmp}', str(tmp_path)) in str(e.value) and str(e.value).startswith(f'clip-annotated {argv[0]}: ')
    assert not (tmp_path / 'o').exists()


def test_missing_csv_column_is_named(no_model, tmp_path):
    (tmp_path / 'l.csv').write_text('image,label\nx.png,cat\n')
    with pytest.raises(SystemExit, match=r"missing \['filepath'\]; the file has columns \['image', 'label'\]"):
        main(['eval', '--model', 'm', '--data', str(tmp_path / 'l.csv')])


# ------------------------------------------------------------------ export

def test_export_hf_and_open_clip(run_dir, model_and_preprocess, tmp_path):
    import clip_annotated.pretrained as pretrained
    if not hasattr(pretrained, 'export_model'): pytest.skip("clip_annotated.pretrained has no export_model yet")
    written, text, _ = _run('export', run_dir, '--format', 'hf', '--out', tmp_path / 'hf')
    assert (tmp_path / 'hf' / 'config.json').exists() and 'CLIPModel.from_pretrained' in text
    back, _ = pretrained.load(written, device='cpu')
    model, _ = model_and_preprocess
    torch.testing.assert_close(back.visual.proj.detach(), model.visual.proj.detach())
    _, text, _ = _run('export', run_dir / 'checkpoint.pt', '--format', 'open_clip', '--out', tmp_path / 'oc')
    assert f"local-dir:{tmp_path / 'oc'}" in text and 'clip_annotated.load' in text


# ------------------------------------------------------------------ download: the first use of a machine without internet

class _Files(http.server.BaseHTTPRequestHandler):
    "Serves the files of `root` by the last segment of the path (OpenAI's layout: .../<sha256>/<file>), counting requests."
    timeout = 10                                                        # a stuck connection frees its thread

    def do_GET(self):
        self.requests.append(self.path)
        f = self.root / self.path.rsplit('/', 1)[-1]
        if not f.is_file():
            self.send_error(404); return
        body = f.read_bytes()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args): pass


@pytest.fixture
def file_server(tmp_path):
    "(base URL, served folder, request paths) of a web server on 127.0.0.1 in a thread, stopped after the test."
    root = tmp_path / 'served'; root.mkdir()
    handler = type('Handler', (_Files,), {'root': root, 'requests': []})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', root, handler.requests
    httpd.shutdown(); httpd.server_close(); thread.join(timeout=5)


def _small_clip_file(path: Path) -> tuple[torch.nn.Module, str]:
    "A small CLIP (one layer per tower, OpenAI's vocabulary) saved at `path` in float16, and the file's SHA256."
    from clip_annotated.model import CLIPConfig, create_model
    model = create_model(CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=64, vision_patch_size=8,
                                    context_length=8, transformer_width=64, transformer_heads=1, transformer_layers=1))
    torch.save(model.half().state_dict(), path)
    return model, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_file_and_says_what_to_copy(file_server, tmp_path, monkeypatch):
    import clip_annotated.pretrained as pretrained
    base, served, requests = file_server
    model, sha = _small_clip_file(served / 'ViT-B-32.pt')
    monkeypatch.setitem(pretrained.MODEL_URLS, 'ViT-B/32', f'{base}/{sha}/ViT-B-32.pt')   # OpenAI's address, served here
    path, out, _ = _run('download', 'ViT-B-32', '--to', tmp_path / 'to')                  # open_clip's spelling
    assert path == tmp_path / 'to' / 'ViT-B-32.pt' and os.listdir(tmp_path / 'to') == ['ViT-B-32.pt']
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha and len(requests) == 1
    assert f'{sha}: checked' in out and f'\n  {path}\n' in out                            # what to copy
    assert f'--model {path}' in out and f'--pretrained {path}' in out and f"clip_annotated.load('{path}')" in out
    again, out2, _ = _run('download', 'ViT-B/32', '--to', tmp_path / 'to')                # there and checked: no request
    assert again == path and len(requests) == 1 and out2 == out
    # the offline side: the file's path is all that load, --model and --pretrained need
    loaded, preprocess = pretrained.load(path, device='cpu')
    assert all(torch.equal(loaded.state_dict()[k], v.float()) for k, v in model.state_dict().items()) and preprocess.n_px == 16
    _picture(tmp_path / 'p.png', 0)
    ranked, _, _ = _run('predict', tmp_path / 'p.png', 'a dog', 'a cat', '--model', path, '--device', 'cpu')
    assert sorted(label for label, _ in ranked) == ['a cat', 'a dog']


def _refused(argv) -> tuple[str, int]:
    "(message, exit status) of a command that must stop with a one-line error."
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()): main([str(a) for a in argv])
    message = str(e.value)
    assert '\n' not in message and message.startswith(f'clip-annotated {argv[0]}: '), message
    return message, e.value.status


def test_download_wrong_checksum_is_refused_naming_the_file(file_server, tmp_path, monkeypatch):
    import clip_annotated.pretrained as pretrained
    base, served, _ = file_server
    _small_clip_file(served / 'ViT-B-32.pt')
    url = f'{base}/{"ab" * 32}/ViT-B-32.pt'                              # the address promises another file
    monkeypatch.setitem(pretrained.MODEL_URLS, 'ViT-B/32', url)
    message, status = _refused(['download', 'ViT-B/32', '--to', tmp_path / 'to'])
    assert status == 1 and 'ViT-B-32.pt was not saved' in message and url in message and f'expected {"ab" * 32}' in message
    assert not (tmp_path / 'to').exists() or os.listdir(tmp_path / 'to') == []              # nothing half-written stays


def test_download_unreachable_host_is_one_offline_line(tmp_path, monkeypatch):
    import clip_annotated.pretrained as pretrained
    with socket.socket() as s:                                            # a port nobody listens on
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}/{"cd" * 32}/RN50.pt'
    monkeypatch.setitem(pretrained.MODEL_URLS, 'RN50', url)
    message, status = _refused(['download', 'RN50', '--to', tmp_path / 'to'])
    assert status == 1 and f'could not download {url}' in message and 'offline' in message and 'RN50.pt' in message
    assert not (tmp_path / 'to' / 'RN50.pt').exists()


def test_download_bad_input_is_exit_status_2(tmp_path):
    message, status = _refused(['download', 'ViT-B-31', '--to', tmp_path / 'to'])
    assert status == 2 and "'ViT-B-31' is not a released model" in message and 'ViT-B/32' in message and 'ViT-B-32' in message
    (tmp_path / 'file').write_text('x')
    message, status = _refused(['download', 'RN50', '--to', tmp_path / 'file'])
    assert status == 2 and f'--to {tmp_path / "file"} is not a folder' in message
    r = _cli('download', 'ViT-B-31', '--to', tmp_path / 'to', cwd=tmp_path)                 # from the shell
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'ViT-B-31' in r.stderr and not (tmp_path / 'to').exists()


# ------------------------------------------------------------------ #26 item 7: export beside a run
def _tree(folder: Path) -> dict:
    "Every file under `folder` with its bytes and mode: what must not change."
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mode) for p in sorted(folder.rglob('*')) if p.is_file()}


def test_export_into_a_run_folder_is_refused(run_dir, tmp_path):
    "Exporting into a run folder would make `--model RUN` load the export from then on: refused, one line, the run untouched."
    before = _tree(run_dir)
    r = _cli('export', run_dir, '--format', 'hf', '--out', run_dir, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith(f"clip-annotated export: {run_dir} is a training run's folder (it holds checkpoint.pt"), r.stderr
    assert _tree(run_dir) == before


def test_export_folder_has_a_readme_and_ordinary_modes(run_dir, tmp_path):
    out = tmp_path / 'exported'
    _run('export', run_dir, '--format', 'hf', '--out', out)
    _run('export', run_dir, '--format', 'open_clip', '--out', out)
    readme = (out / 'README.md').read_text()
    assert str(run_dir) in readme and 'a training run of this book' in readme
    for how in ("CLIPModel.from_pretrained('exported')", "create_model_from_pretrained('local-dir:exported')",
                "clip_annotated.load('exported')"):
        assert how in readme, readme
    umask = os.umask(0); os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes                   # the safetensors files too, not 0o600


# ------------------------------------------------------------------ #26 item 11: the error contract of the edges
def _bad_pictures(folder: Path) -> dict:
    "Pictures no reader should take: cut short, a decompression bomb, not a picture at all."
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO(); Image.new('RGB', (64, 64), 'red').save(buf, format='JPEG')
    (folder / 'cut.jpg').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    Image.new('1', (20000, 20000)).save(folder / 'bomb.png')                  # 4e8 pixels: past PIL's hard limit
    (folder / 'text.png').write_text('not a picture')
    return {name: folder / name for name in ('cut.jpg', 'bomb.png', 'text.png')}


@pytest.fixture(scope='module')
def bad_pictures(tmp_path_factory):
    return _bad_pictures(tmp_path_factory.mktemp('bad'))


@pytest.mark.parametrize('name', ['cut.jpg', 'bomb.png', 'text.png'])
def test_predict_bad_picture_is_exit_2_naming_it(run_dir, bad_pictures, tmp_path, name):
    r = _cli('predict', bad_pictures[name], 'a cat', 'a dog', '--model', run_dir, '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f'clip-annotated predict: {bad_pictures[name]} is not a picture that can be read ('), r.stderr
    assert 'Traceback' not in r.stderr and 'Warning:' not in r.stderr and r.stdout == '', r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads a file without read permission')
def test_predict_unreadable_picture_is_exit_2_naming_it(run_dir, tmp_path):
    p = tmp_path / 'secret.png'; _picture(p, 0); p.chmod(0)
    r = _cli('predict', p, 'a cat', '--model', run_dir, '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith(f'clip-annotated predict: {p} is not a picture'), r.stderr


def test_large_pictures_print_no_python_warning(run_dir, tmp_path):
    "Over PIL's warning limit but under its hard limit: decoded, and no two-line DecompressionBombWarning on the way."
    Image.new('1', (12000, 12000)).save(tmp_path / 'big.png')                  # 1.44e8 pixels
    r = _cli('predict', tmp_path / 'big.png', 'a cat', 'a dog', '--model', run_dir, '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0 and 'Warning' not in r.stderr and 'warnings.warn' not in r.stderr, r.stderr


def test_a_warning_is_one_line_naming_the_command(run_dir, tmp_path):
    (tmp_path / 'pairs.csv').write_bytes('filepath,title\na.png,caf\u00e9\n'.encode('latin-1'))
    _picture(tmp_path / 'a.png', 1)
    r = _cli('eval', '--model', run_dir, '--retrieval', tmp_path / 'pairs.csv', '--device', 'cpu', cwd=tmp_path)
    said = [l for l in r.stderr.splitlines() if 'is not UTF-8 text' in l]
    assert len(said) == 1 and said[0].startswith('clip-annotated eval: warning: '), r.stderr
    assert 'UserWarning' not in r.stderr and "encoding='latin-1')" in said[0] and 'CsvDataset' in said[0], said  # no CLI option it lacks


def test_embed_and_eval_skip_bad_pictures_quietly(run_dir, bad_pictures, tmp_path):
    for name, p in bad_pictures.items(): (tmp_path / 'cls' / 'x').mkdir(parents=True, exist_ok=True); (tmp_path / 'cls' / 'x' / name).write_bytes(p.read_bytes())
    _picture(tmp_path / 'cls' / 'y' / 'good.png', 2)
    r = _cli('eval', '--model', run_dir, '--data', tmp_path / 'cls', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0 and 'skipped 3 of 4 pictures (3 corrupt image)' in r.stdout and 'Warning' not in r.stderr, r.stdout + r.stderr


def test_symlink_loop_in_a_class_folder_is_exit_2_naming_it(run_dir, tmp_path):
    _picture(tmp_path / 'data' / 'cat' / 'a.png', 3); _picture(tmp_path / 'data' / 'dog' / 'b.png', 4)
    (tmp_path / 'data' / 'loop').symlink_to(tmp_path / 'data' / 'loop')
    outside = _tree(tmp_path / 'data')
    r = _cli('eval', '--model', run_dir, '--data', tmp_path / 'data', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith(f"clip-annotated eval: {tmp_path / 'data' / 'loop'} is a symbolic link that cannot be followed"), r.stderr
    (tmp_path / 'top').symlink_to(tmp_path / 'top')                            # the --data path itself
    r = _cli('eval', '--model', run_dir, '--data', tmp_path / 'top', '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 2 and 'top is a symbolic link to nothing that can be read' in r.stderr, r.stderr
    assert _tree(tmp_path / 'data') == outside


def test_symlink_loop_as_train_data_is_exit_2_naming_it(tmp_path):
    (tmp_path / 'loop').symlink_to(tmp_path / 'loop')
    r = _cli('train', '--train-data', tmp_path / 'loop', '--steps', '1', '--out', tmp_path / 'run', cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and str(tmp_path / 'loop') in r.stderr, r.stderr
    assert not (tmp_path / 'run').exists()


def test_template_with_two_slots_says_so(no_model, tmp_path):
    with pytest.raises(SystemExit) as e: main(['eval', '--model', 'm', '--data', str(tmp_path), '--template', 'a {} of a {}'])
    assert "template 'a {} of a {}' has 2 '{}'" in str(e.value) and e.value.status == 2, e.value


@pytest.mark.parametrize('argv, says', [
    (['eval', '--model', 'm', '--dataset', 'scenes-color', '--batch-size', '1' + '0' * 20], "argument --batch-size: '100000000000000000000' is more than 2,147,483,647"),
    (['eval', '--model', 'm', '--dataset', 'scenes-color', '--batch-size', '1e20'], "argument --batch-size: '1e20' is not a whole number ≥ 1"),
    (['embed', '--model', 'm', '--texts', 'x', '--out', 'o', '--workers', '100000'], "argument --workers: '100000' is more than 256"),
    (['train', '--batch-size', '1' + '0' * 20], "argument --batch-size: '100000000000000000000' is more than 2,147,483,647"),
    (['train', '--steps', '1e3'], "argument --steps: '1e3' is not a whole number"),
    (['reproduce', '--bogus'], "clip-annotated reproduce: error: unrecognized arguments: --bogus"),
])
def test_counts_are_whole_numbers_refused_by_name(tmp_path, argv, says):
    r = _cli(*argv, cwd=tmp_path)
    assert r.returncode == 2 and says in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert 'clip-annotated train' not in r.stderr or argv[0] == 'train', r.stderr       # the command's own name
    assert list(tmp_path.iterdir()) == []


def test_embed_of_only_bad_pictures_names_them(run_dir, bad_pictures, tmp_path):
    (tmp_path / 'list.csv').write_text('filepath\n' + ''.join(f'{p}\n' for p in bad_pictures.values()))
    r = _cli('embed', '--model', run_dir, '--images', tmp_path / 'list.csv', '--out', tmp_path / 'o', '--device', 'cpu', cwd=tmp_path)
    last = r.stderr.splitlines()[-1]                                             # after the progress bar, if one was drawn
    assert r.returncode == 2 and last.startswith('clip-annotated embed: --images '), r.stderr
    assert str(bad_pictures['cut.jpg']) in last and 'Warning' not in r.stderr, r.stderr
