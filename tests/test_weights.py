"""The official weights table against torchvision's, and the download path against a server on 127.0.0.1."""

import dataclasses
import hashlib

import pytest
import torch
from torchvision.models._meta import _IMAGENET_CATEGORIES
from torchvision_reference import TORCHVISION_WEIGHTS

import vggnet
from vggnet.models import weights as weights_module
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
    # torchvision's preset for these weights, applied to an image, equals our preprocessing record's.
    preset = theirs.transforms()
    pre = ours.preprocess
    assert (preset.crop_size[0], preset.resize_size[0]) == (pre["img_size"], pre["resize"])
    assert tuple(preset.mean) == pre["mean"] and tuple(preset.std) == pre["std"]
    assert preset.interpolation.value == pre["interpolation"]


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
    with pytest.raises(RuntimeError, match=f"could not download .* put it at {expected_path}"):
        vggnet.create_model("vgg16", pretrained="imagenet", progress=False)
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
