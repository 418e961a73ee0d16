"""The docstring examples of vggnet's modules, run as doctests, and one for every name the top level offers.

The examples run on tiny models, with images they write themselves and no download (lines that would download
are marked `# doctest: +SKIP`), each module's in a fresh temporary folder, where they write their files.
"""

import doctest
import importlib
import inspect
import pkgutil

import pytest

import vggnet

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def vggnet_modules() -> list[str]:
    """Every module of the package (`__main__` runs the command line, and holds no examples)."""
    found = pkgutil.walk_packages(vggnet.__path__, "vggnet.")
    return ["vggnet", *sorted(info.name for info in found if info.name != "vggnet.__main__")]


@pytest.mark.parametrize("name", vggnet_modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)  # the test extra installs every optional package a module imports
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0, capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(set(vggnet.__all__) - {"__version__"}))
def test_every_public_name_shows_an_example(name):
    assert ">>>" in (inspect.getdoc(getattr(vggnet, name)) or ""), f"vggnet.{name}'s docstring has no example"


def test_the_top_level_offers_the_results_users_receive_and_no_process_setting():
    assert {"GradCam", "Embeddings", "LoadedModel", "ExportResult", "QuantizeResult", "Preprocess"} <= set(dir(vggnet))
    assert "keep_freed_memory" not in vggnet.__all__
    with pytest.raises(AttributeError):
        vggnet.keep_freed_memory  # noqa: B018 - the attribute access is the test
