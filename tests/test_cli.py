"""The `vggnet` command: installed console script, `python -m vggnet`, and every verb's output and errors."""

import json
import re
import subprocess
import sys

import pytest

from vggnet.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_reports_vgg16_as_json():
    result = subprocess.run(
        ["vggnet", "summary", "vgg16", "--format", "json"], capture_output=True, text=True, check=True
    )
    data = json.loads(result.stdout)
    assert data["total_params"] == 138_357_544
    assert data["gmacs"] == 15.47
    assert data["model"] == "vgg16" and data["input_size"] == 224
    assert [layer["name"] for layer in data["layers"]][-3:] == ["relu7", "drop7", "fc8"]


def test_python_dash_m_lists_the_commands_with_examples():
    result = subprocess.run([sys.executable, "-m", "vggnet", "--help"], capture_output=True, text=True, check=True)
    for text in ["summary", "models", "examples:", "vggnet summary vgg16 --format json"]:
        assert text in result.stdout


def test_summary_table(capsys):
    code, out, _ = run(capsys, "summary", "vgg_tiny", "--input-size", "64")
    assert code == 0
    assert out.startswith("vgg11 (classic head, 1000 classes), input 3x64x64")
    assert "pool5    MaxPool2d" in out
    assert "total params: 132,863,336" in out


def test_summary_markdown_with_model_options(capsys):
    code, out, _ = run(
        capsys, "summary", "vgg16_bn", "--input-size", "32", "--head", "compact", "--num-classes", "10",
        "--in-chans", "1", "--width-mult", "0.5", "--format", "markdown",
    )  # fmt: skip
    assert code == 0
    assert "| conv1_1 | Conv2d | 32x32x32 | 320 |" in out
    assert "| fc | Linear | 10 | 2,570 |" in out


def test_models_table_and_json(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["model", "aliases", "params", "GMACs@224", "acc@1", "acc@5"]
    assert "vgg16     vgg        138,357,544     15.470  71.592  90.382" in out
    assert sum(line.startswith("vgg") for line in lines) == 8
    code, out, _ = run(capsys, "models", "--format", "json")
    rows = json.loads(out)
    assert [row["model"] for row in rows][-1] == "vgg19_bn" and rows[-1]["acc1"] == 74.218


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "vgg17"], "unknown model 'vgg17'; choose one of: vgg11, "),
        (["summary", "vgg16", "--input-size", "16"], "input size 16 is too small .* at least 32"),
        (["summary", "vgg16", "--num-classes", "-1"], "num_classes=-1 must be an integer >= 0"),
    ],
)
def test_bad_values_exit_2_with_the_fix(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("vggnet summary: error: ")
    assert re.search(message, err)


@pytest.mark.parametrize("argv", [["summary"], ["summary", "vgg16", "--format", "yaml"], ["train-all"], []])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: vggnet" in capsys.readouterr().err
