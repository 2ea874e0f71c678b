"""The evaluation-sets chapter's promises: every reader reads its fake (written in the set's real file
format) with the right labels, pictures and class names; missing data and failed downloads end in a
FileNotFoundError that names the set and the root; the class-name and template tables are OpenAI's,
word for word, in the data's label order.

Nothing here touches the network: downloads run with urllib's urlopen and socket connections patched
to fail, as they do without a network."""
from __future__ import annotations

import pickle, socket, urllib.error, urllib.request
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from clip_annotated import evalsets as E
from clip_annotated.pretrained import image_transform

ALL = list(E.EVALSETS)
DOWNLOADABLE = ['cifar10', 'cifar100', 'stl10', 'pets', 'caltech101', 'food101', 'imagenet-v2', 'imagenet-r', 'imagenet-a']
BY_HAND = ['imagenet', 'imagenet-sketch']

CLASS_COUNTS = {'cifar10': 10, 'cifar100': 100, 'stl10': 10, 'pets': 37, 'caltech101': 101, 'food101': 101,
                'imagenet': 1000, 'imagenet-v2': 1000, 'imagenet-r': 200, 'imagenet-sketch': 1000, 'imagenet-a': 200}


@contextmanager
def offline():
    "No network: urlopen raises URLError (what it does without a route), and no socket may connect."
    with mock.patch('urllib.request.urlopen', side_effect=urllib.error.URLError('no network (test)')) as m, \
         mock.patch.object(socket.socket, 'connect', side_effect=OSError('network disabled in tests')):
        yield m


# ------------------------------------------------------------------ the tables

def test_keys_and_class_counts():
    assert set(E.EVALSETS) == set(CLASS_COUNTS)
    for key, n in CLASS_COUNTS.items():
        es = E.EVALSETS[key]
        assert es.key == key and len(es.classnames) == n and len(es.folders) == n, key
        assert len(set(es.folders)) == n, f"{key}: two classes share a name on disk"


def test_templates():
    assert len(E.OPENAI_IMAGENET_TEMPLATES) == 80 and len(set(E.OPENAI_IMAGENET_TEMPLATES)) == 80
    for key, es in E.EVALSETS.items():
        assert es.templates and es.single, key
        assert all(t.count('{}') == 1 for t in es.templates + es.single), key
        assert all(t.format('x') != t for t in es.templates), key
        if key.startswith('imagenet'): assert es.templates == E.OPENAI_IMAGENET_TEMPLATES


def test_imagenet_lists_match_open_clip():
    meta = pytest.importorskip('open_clip.zero_shot_metadata')
    assert E.IMAGENET_CLASSNAMES == list(meta.IMAGENET_CLASSNAMES)
    theirs = [t('{}') if callable(t) else t for t in meta.OPENAI_IMAGENET_TEMPLATES]
    assert E.OPENAI_IMAGENET_TEMPLATES == theirs


# The lists as published in OpenAI's CLIP repository, data/prompts.md (copied verbatim: facts to check against).
PROMPTS_CIFAR = ['a photo of a {}.', 'a blurry photo of a {}.', 'a black and white photo of a {}.',
                 'a low contrast photo of a {}.', 'a high contrast photo of a {}.', 'a bad photo of a {}.',
                 'a good photo of a {}.', 'a photo of a small {}.', 'a photo of a big {}.', 'a photo of the {}.',
                 'a blurry photo of the {}.', 'a black and white photo of the {}.', 'a low contrast photo of the {}.',
                 'a high contrast photo of the {}.', 'a bad photo of the {}.', 'a good photo of the {}.',
                 'a photo of the small {}.', 'a photo of the big {}.']
PROMPTS_CALTECH = ['a photo of a {}.', 'a painting of a {}.', 'a plastic {}.', 'a sculpture of a {}.', 'a sketch of a {}.',
                   'a tattoo of a {}.', 'a toy {}.', 'a rendition of a {}.', 'a embroidered {}.', 'a cartoon {}.',
                   'a {} in a video game.', 'a plushie {}.', 'a origami {}.', 'art of a {}.', 'graffiti of a {}.',
                   'a drawing of a {}.', 'a doodle of a {}.', 'a photo of the {}.', 'a painting of the {}.',
                   'the plastic {}.', 'a sculpture of the {}.', 'a sketch of the {}.', 'a tattoo of the {}.', 'the toy {}.',
                   'a rendition of the {}.', 'the embroidered {}.', 'the cartoon {}.', 'the {} in a video game.',
                   'the plushie {}.', 'the origami {}.', 'art of the {}.', 'graffiti of the {}.', 'a drawing of the {}.',
                   'a doodle of the {}.']


def test_small_set_lists_match_prompts_md():
    ev = E.EVALSETS
    assert ev['cifar10'].templates == PROMPTS_CIFAR and ev['cifar100'].templates == PROMPTS_CIFAR
    assert ev['caltech101'].templates == PROMPTS_CALTECH
    assert ev['stl10'].templates == ['a photo of a {}.', 'a photo of the {}.']
    assert ev['pets'].templates == ['a photo of a {}, a type of pet.']
    assert ev['food101'].templates == ['a photo of {}, a type of food.']
    assert ev['cifar10'].classnames == ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    assert ev['stl10'].classnames == ['airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey', 'ship', 'truck']
    c100 = ev['cifar100'].classnames
    assert (c100[:3], c100[45], c100[-3:]) == (['apple', 'aquarium fish', 'baby'], 'lobster', ['wolf', 'woman', 'worm'])
    cal = ev['caltech101'].classnames
    assert cal[:4] == ['off-center face', 'centered face', 'leopard', 'motorbike'] and cal[-1] == 'yin and yang symbol'
    assert 'background' not in cal and 'snoopy (cartoon beagle)' in cal
    food = ev['food101'].classnames
    assert (food[0], food[-1], food == sorted(food)) == ('apple pie', 'waffles', True)


def test_pets_names_follow_the_class_ids():
    "Class ids 1…37 of Oxford-IIIT Pets run alphabetically ignoring case; prompts.md lists capitals first."
    names = E.EVALSETS['pets'].classnames
    assert names == sorted(names, key=str.lower) and set(names) == set(E._PETS_AS_PUBLISHED)
    assert names[:6] == ['Abyssinian', 'american bulldog', 'american pit bull terrier', 'basset hound', 'beagle', 'Bengal']
    assert names[33:35] == ['Sphynx', 'staffordshire bull terrier']


def test_caltech_folders_map_to_names():
    es = E.EVALSETS['caltech101']
    assert es.folders == sorted(es.folders)                      # torchvision's order: sorted, capitals first
    pairs = dict(zip(es.folders, es.classnames))
    assert pairs['Faces'] == 'off-center face' and pairs['car_side'] == 'side of a car'
    assert pairs['yin_yang'] == 'yin and yang symbol' and pairs['accordion'] == 'accordion'


def test_wnid_tables():
    w = E.IMAGENET_WNIDS
    assert len(w) == 1000 and w == sorted(w) and len(set(w)) == 1000
    assert (w[0], E.IMAGENET_CLASSNAMES[0], w[-1], E.IMAGENET_CLASSNAMES[-1]) == ('n01440764', 'tench', 'n15075141', 'toilet paper')
    for key, sub in (('imagenet-r', E.IMAGENET_R_WNIDS), ('imagenet-a', E.IMAGENET_A_WNIDS)):
        es = E.EVALSETS[key]
        assert len(sub) == 200 and sub == sorted(sub) and set(sub) <= set(w)
        assert [w[i] for i in es.imagenet_index] == sub == es.folders
        assert es.classnames == [E.IMAGENET_CLASSNAMES[i] for i in es.imagenet_index]
    assert E.EVALSETS['imagenet-a'].classnames[0] == 'stingray' and E.EVALSETS['imagenet-r'].classnames[0] == 'goldfish'
    assert E.EVALSETS['imagenet-v2'].folders[:3] == ['0', '1', '2']


def test_paper_numbers():
    for model, accs in E.PAPER_ZERO_SHOT.items():
        assert set(accs) <= set(E.EVALSETS) and all(0 < v < 100 for v in accs.values()), model
    assert set(E.PAPER_ZERO_SHOT['ViT-B/32']) == {'cifar10', 'cifar100', 'stl10', 'pets', 'caltech101', 'food101', 'imagenet'}
    assert set(E.PAPER_ZERO_SHOT['RN50']) >= {'cifar10', 'cifar100', 'stl10', 'food101', 'imagenet'}
    for accs in E.PAPER_ROBUSTNESS.values():
        assert set(accs) == {'imagenet', 'imagenet-v2', 'imagenet-r', 'imagenet-sketch', 'imagenet-a', 'objectnet'}
    assert E.PAPER_ROBUSTNESS['ViT-L/14@336px']['imagenet'] == E.PAPER_ZERO_SHOT['ViT-L/14@336px']['imagenet']


# ------------------------------------------------------------------ fakes, read back

def test_fake_colours_round_trip():
    from PIL import Image
    for y in (0, 5, 10, 99, 100, 123, 999):
        assert E.fake_label(Image.fromarray(E._fake_picture(y, 20, 16))) == y
    with pytest.raises(ValueError, match='upright'):
        E.fake_label(Image.fromarray(E._fake_picture(7, 16, 16).transpose(1, 0, 2)))


@pytest.mark.parametrize('key', ALL)
def test_reader_reads_its_fake(key, tmp_path):
    labels = E.write_fake(key, tmp_path)
    ds = E.load_evalset(key, tmp_path)
    n = CLASS_COUNTS[key]
    assert len(ds) == len(labels) and sorted(ds.targets) == labels
    assert labels[0] == 0 and labels[-1] == n - 1                 # the first and the last class are among the fakes
    assert ds.classnames == E.EVALSETS[key].classnames and len(ds.classnames) == n
    assert ds.templates == E.EVALSETS[key].templates
    for i in range(len(ds)):
        image, y = ds[i]
        assert image.mode == 'RGB' and y == ds.targets[i] and isinstance(y, int)
        assert E.fake_label(image) == y                           # the picture spells the label it came with
    sized = E.load_evalset(key, tmp_path, transform=image_transform(24))
    x, y = sized[len(sized) - 1]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and y == n - 1
    xb, yb = next(iter(DataLoader(sized, batch_size=4)))
    assert xb.shape == (4, 3, 24, 24) and yb.tolist() == sized.targets[:4]


@pytest.mark.parametrize('key', [k for k in ALL if 'train' in E.EVALSETS[k].splits])
def test_train_split_fakes(key, tmp_path):
    labels = E.write_fake(key, tmp_path, n_per_class=1, classes=[1, 3], split='train')
    ds = E.load_evalset(key, tmp_path, split='train')
    assert sorted(ds.targets) == labels == [1, 3]
    assert [E.fake_label(ds[i][0]) for i in range(len(ds))] == ds.targets


def test_datasets_pickle_for_workers(tmp_path):
    "DataLoader workers receive the data set by pickle: every reader's pictures must survive it."
    for key in ('cifar10', 'stl10', 'pets', 'caltech101', 'imagenet-r'):
        E.write_fake(key, tmp_path / key, n_per_class=1)
        ds = pickle.loads(pickle.dumps(E.load_evalset(key, tmp_path / key)))
        assert [E.fake_label(ds[i][0]) for i in range(len(ds))] == ds.targets


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize('key', ALL)
def test_missing_root_names_path_and_set(key, tmp_path):
    root = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError) as e:
        E.load_evalset(key, root)
    msg = str(e.value)
    assert str(root) in msg and E.EVALSETS[key].name in msg and 'expected' in msg
    assert ('download=True' in msg) == (key in DOWNLOADABLE)
    assert not root.exists()                                       # looking does not create anything


@pytest.mark.parametrize('key', DOWNLOADABLE)
def test_download_offline_is_a_clear_error(key, tmp_path):
    root = tmp_path / 'offline'
    with offline() as urlopen, pytest.raises(FileNotFoundError) as e:
        E.load_evalset(key, root, download=True)
    msg = str(e.value)
    assert urlopen.called, "the download did not go through urllib"
    assert 'could not download' in msg and E.EVALSETS[key].name in msg and str(root) in msg
    assert isinstance(e.value.__cause__, OSError)                  # the URLError, chained


@pytest.mark.parametrize('key', BY_HAND)
def test_download_impossible_says_how(key, tmp_path):
    with offline() as urlopen, pytest.raises(FileNotFoundError, match='it cannot be downloaded for you'):
        E.load_evalset(key, tmp_path, download=True)
    assert not urlopen.called


def test_download_skipped_when_present(tmp_path):
    E.write_fake('cifar10', tmp_path)
    with offline() as urlopen:
        ds = E.load_evalset('cifar10', tmp_path, download=True)
    assert len(ds) == 20 and not urlopen.called


def test_unknown_set_and_split(tmp_path):
    with pytest.raises(ValueError, match='cifar10'): E.load_evalset('cifar-10', tmp_path)
    with pytest.raises(ValueError, match='no split'): E.load_evalset('caltech101', tmp_path, split='train')
    with pytest.raises(ValueError, match='no split'): E.write_fake('imagenet-a', tmp_path, split='train')
    with pytest.raises(ValueError, match='classes 0'): E.write_fake('cifar10', tmp_path, classes=[10])


def test_mismatched_data_is_refused(tmp_path):
    E.write_fake('cifar100', tmp_path / 'c')                       # meta names in another order
    meta = tmp_path / 'c/cifar-100-python/meta'
    names = E._unpickle(meta)['fine_label_names']
    E._pickle(meta, {'fine_label_names': names[::-1]})
    with pytest.raises(ValueError, match='names 100 classes'): E.load_evalset('cifar100', tmp_path / 'c')

    E.write_fake('caltech101', tmp_path / 'k')                     # a stray category folder
    (tmp_path / 'k/caltech101/101_ObjectCategories/extra_stuff').mkdir()
    with pytest.raises(ValueError, match='extra_stuff'): E.load_evalset('caltech101', tmp_path / 'k')

    E.write_fake('imagenet-a', tmp_path / 'a')                     # a folder that is not one of the 200 classes
    (tmp_path / 'a/imagenet-a/n01440764').mkdir()
    with pytest.raises(ValueError, match='n01440764'): E.load_evalset('imagenet-a', tmp_path / 'a')

    E.write_fake('pets', tmp_path / 'p')                           # a class id that does not match the breed
    ann = tmp_path / 'p/oxford-iiit-pet/annotations/test.txt'
    lines = ann.read_text().splitlines()
    name, y, *rest = lines[0].split()
    ann.write_text('\n'.join([' '.join([name, str(int(y) + 1), *rest])] + lines[1:]) + '\n')
    with pytest.raises(ValueError, match='class id'): E.load_evalset('pets', tmp_path / 'p')

    E.write_fake('food101', tmp_path / 'f')                        # a class missing from meta/test.json
    js = tmp_path / 'f/food-101/meta/test.json'
    import json
    meta = json.loads(js.read_text()); meta.pop('baklava'); js.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match='baklava'): E.load_evalset('food101', tmp_path / 'f')


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self): return (print, ('must not run',))
    E.write_fake('cifar10', tmp_path)
    E._pickle(tmp_path / 'cifar-10-batches-py/test_batch', {'data': Evil(), 'labels': [0]})
    with pytest.raises(pickle.UnpicklingError, match='never contains'):
        E.load_evalset('cifar10', tmp_path)


def test_stl10_size_mismatch(tmp_path):
    E.write_fake('stl10', tmp_path)
    x = tmp_path / 'stl10_binary/test_X.bin'
    x.write_bytes(x.read_bytes()[:-1])
    with pytest.raises(ValueError, match='96×96×3'): E.load_evalset('stl10', tmp_path)
