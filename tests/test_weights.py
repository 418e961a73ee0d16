"""The official weights table against torchvision's, and the download path against a server on 127.0.0.1."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models._meta import _IMAGENET_CATEGORIES
from torchvision_reference import TORCHVISION_WEIGHTS

import vggnet
from vggnet.models import weights as weights_module
from vggnet.models.loading import weights_keyword
from vggnet.models.weights import PRETRAINED, cache_path, fetch_pretrained, get_pretrained


@pytest.mark.parametrize("name", vggnet.list_models())
def test_table_row_matches_torchvision(name):
    ours, theirs = get_pretrained(name, "imagenet"), TORCHVISION_WEIGHTS[name]
    assert ours.url == theirs.url
    assert ours.num_params == theirs.meta["num_params"]
    assert ours.gmacs == theirs.meta["_ops"]
    assert ours.acc1 == theirs.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert ours.acc5 == theirs.meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert ours.hash_prefix in theirs.url and len(ours.hash_prefix) == 8
    # torchvision's preset for these weights equals our preprocessing record, and gives the same tensor.
    preset = theirs.transforms()
    pre = ours.preprocess
    assert (preset.crop_size[0], preset.resize_size[0]) == (pre.img_size, pre.resize)
    assert tuple(preset.mean) == pre.mean and tuple(preset.std) == pre.std
    assert preset.interpolation.value == pre.interpolation
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    torch.testing.assert_close(ours.transforms()(image), preset(image), atol=1e-5, rtol=0)


def test_imagenet_categories_ship_with_the_package():
    categories = vggnet.imagenet_categories()
    assert categories == list(_IMAGENET_CATEGORIES)
    assert len(set(categories)) == 1000
    assert get_pretrained("vgg16", "imagenet").categories[0] == "tench"


def test_imagenet_wordnet_ids_ship_with_the_package():
    from vggnet.models.weights import imagenet_synsets

    ids = imagenet_synsets()
    assert len(set(ids)) == 1000 and ids == sorted(ids)  # ImageNet-1K's class index is the sorted ids
    assert all(len(i) == 9 and i[0] == "n" and i[1:].isdigit() for i in ids)
    assert (ids[0], ids[-1]) == ("n01440764", "n15075141")  # tench, toilet tissue


def _publish(folder, base_url, state_dict, model="vgg11"):
    """Write a weights file named like torchvision's (`<model>-<sha256 prefix>.pth`) and point the table at it."""
    staging = folder / "staging.pth"
    torch.save(state_dict, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"{model}-{digest[:8]}.pth"
    staging.rename(folder / name)
    return dataclasses.replace(PRETRAINED[(model, "imagenet")], url=f"{base_url}/{name}")


@pytest.fixture
def tiny_weights():
    torch.manual_seed(0)
    return vggnet.create_model("vgg11", head="compact", width_mult=0.125).state_dict()


def test_download_checks_the_hash_and_loads(hub_dir, file_server, tiny_weights, monkeypatch):
    folder, base_url = file_server
    entry = _publish(folder, base_url, tiny_weights)
    monkeypatch.setitem(PRETRAINED, ("vgg11", "imagenet"), entry)
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.125, pretrained="imagenet", progress=False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_weights.items())
    assert cache_path(entry) == hub_dir / "checkpoints" / entry.file_name
    assert cache_path(entry).is_file()
    assert model.pretrained_cfg["classes"] == vggnet.imagenet_categories()
    assert model.pretrained_cfg["preprocess"]["resize"] == 256
    # The cached copy is used from then on: the server may go away.
    (folder / entry.file_name).unlink()
    assert fetch_pretrained(entry, progress=False) == cache_path(entry)


def test_a_download_with_the_wrong_hash_leaves_nothing(hub_dir, file_server, tiny_weights, monkeypatch):
    folder, base_url = file_server
    entry = _publish(folder, base_url, tiny_weights)
    (folder / entry.file_name).write_bytes(b"tampered" + (folder / entry.file_name).read_bytes()[8:])
    monkeypatch.setitem(PRETRAINED, ("vgg11", "imagenet"), entry)
    with pytest.raises(RuntimeError, match=f"download of {base_url}/{entry.file_name} is corrupted.*nothing was saved"):
        vggnet.create_model("vgg11", head="compact", width_mult=0.125, pretrained="imagenet", progress=False)
    assert list((hub_dir / "checkpoints").iterdir()) == []


def test_a_server_that_is_gone_says_where_to_put_the_file(hub_dir, closed_port_url, monkeypatch):
    entry = dataclasses.replace(PRETRAINED[("vgg16", "imagenet")], url=f"{closed_port_url}/vgg16-397923af.pth")
    monkeypatch.setitem(PRETRAINED, ("vgg16", "imagenet"), entry)
    expected_path = hub_dir / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(RuntimeError, match=f"could not download .* put it at {expected_path}") as error:
        vggnet.create_model("vgg16", pretrained="imagenet", progress=False)
    # Said for both the CLI and Python.
    assert str(error.value).endswith("or pass a local copy with --pretrained PATH (checkpoint_path=PATH in Python)")
    assert list((hub_dir / "checkpoints").iterdir()) == []


def test_a_missing_file_on_the_server(hub_dir, file_server, monkeypatch):
    _, base_url = file_server
    entry = dataclasses.replace(PRETRAINED[("vgg13", "imagenet")], url=f"{base_url}/vgg13-19584684.pth")
    monkeypatch.setitem(PRETRAINED, ("vgg13", "imagenet"), entry)
    with pytest.raises(RuntimeError, match="HTTP 404"):
        fetch_pretrained(entry, progress=False)


def test_a_corrupted_cached_file_is_reported(hub_dir):
    entry = PRETRAINED[("vgg19", "imagenet")]
    path = cache_path(entry)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    with pytest.raises(RuntimeError, match=f"cached weights {path} are corrupted.*delete the file"):
        fetch_pretrained(entry, progress=False)
    assert path.exists()  # the user's file is reported, not deleted


def test_hub_dir_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert cache_path(PRETRAINED[("vgg16", "imagenet")]) == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"


def test_sha256_of_reads_in_chunks(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10_000
    path.write_bytes(data)
    assert weights_module.sha256_of(path) == hashlib.sha256(data).hexdigest()


def _count_hashing(monkeypatch) -> list:
    """Count the SHA-256 computations (torch hub's while downloading, and vggnet's of a cached file)."""
    calls = []
    real = hashlib.sha256

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", counting)
    return calls


def test_the_hash_is_checked_once_and_remembered_until_it_changes(hub_dir, file_server, tiny_weights, monkeypatch):
    folder, base_url = file_server
    entry = _publish(folder, base_url, tiny_weights)
    monkeypatch.setitem(PRETRAINED, ("vgg11", "imagenet"), entry)
    hashed = _count_hashing(monkeypatch)
    path = fetch_pretrained(entry, progress=False)  # downloaded, hashed while it streams in
    assert len(hashed) == 1
    for _ in range(2):
        model = vggnet.create_model("vgg11", head="compact", width_mult=0.125, pretrained="imagenet", progress=False)
    assert len(hashed) == 1  # two loads, no second hash of the file
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_weights.items())
    memo = weights_module.memo_path(path)
    assert json.loads(memo.read_text())["size"] == path.stat().st_size

    # A new modification time (the same bytes, copied back, say) is hashed again once, then remembered again.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert fetch_pretrained(entry, progress=False) == path and len(hashed) == 2
    assert fetch_pretrained(entry, progress=False) == path and len(hashed) == 2


@pytest.mark.parametrize("same_size", [True, False])
def test_a_file_corrupted_after_its_check_is_still_caught(hub_dir, file_server, tiny_weights, monkeypatch, same_size):
    folder, base_url = file_server
    entry = _publish(folder, base_url, tiny_weights)
    path = fetch_pretrained(entry, progress=False)
    memo = weights_module.memo_path(path)
    stale = memo.read_text()
    data = path.read_bytes()
    damaged = bytes([data[0] ^ 0xFF]) + data[1:] if same_size else data[:-100]
    stat = path.stat()
    path.write_bytes(damaged)
    # Rewritten within the same clock tick, the file could keep its time: give it a later one, as time would.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert memo.read_text() == stale
    with pytest.raises(RuntimeError, match=f"cached weights {path} are corrupted"):
        fetch_pretrained(entry, progress=False)


def test_a_damaged_or_foreign_memo_means_hashing_again(hub_dir, file_server, tiny_weights, monkeypatch):
    folder, base_url = file_server
    entry = _publish(folder, base_url, tiny_weights)
    path = fetch_pretrained(entry, progress=False)
    hashed = _count_hashing(monkeypatch)
    memo = weights_module.memo_path(path)
    record = json.loads(memo.read_text())
    for text in ["{not json", json.dumps({**record, "sha256_prefix": "00000000"})]:
        memo.write_text(text)
        assert fetch_pretrained(entry, progress=False) == path
    assert len(hashed) == 2
    assert json.loads(memo.read_text()) == record  # rewritten by the check that passed


def test_the_imagenet_tag_never_means_a_file_of_that_name(hub_dir, file_server, tiny_weights, monkeypatch, tmp_path):
    folder, base_url = file_server
    monkeypatch.setitem(PRETRAINED, ("vgg11", "imagenet"), _publish(folder, base_url, tiny_weights))
    torch.manual_seed(1)
    local = vggnet.create_model("vgg11", head="compact", width_mult=0.125).state_dict()
    work = tmp_path / "work"
    work.mkdir()
    torch.save(local, work / "imagenet")
    monkeypatch.chdir(work)

    def loaded(pretrained):
        """The weights that a user's `--pretrained` value loads."""
        weights = weights_keyword(pretrained)
        model = vggnet.create_model("vgg11", head="compact", width_mult=0.125, progress=False, **weights)
        return model.state_dict()

    official = loaded("imagenet")
    assert all(torch.equal(official[k], v) for k, v in tiny_weights.items())
    for as_file in ["./imagenet", work / "imagenet"]:  # a path spelled as one, or a Path object
        assert all(torch.equal(loaded(as_file)[k], v) for k, v in local.items())
