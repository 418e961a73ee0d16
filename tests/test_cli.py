"""The `vggnet` command: installed console script, `python -m vggnet`, and every verb's output and errors."""

import argparse
import ast
import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from PIL import Image

from vggnet.cli import build_parser, main
from vggnet.cli.parser import positive
from vggnet.extras import MissingExtra
from vggnet.infer.records import render_records
from vggnet.training.config import TrainConfig, make_config


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
    for text in ["summary", "models", "examples:", "vggnet summary --model vgg16 --format json"]:
        assert text in result.stdout


def test_summary_table(capsys):
    code, out, _ = run(capsys, "summary", "--model", "vgg_tiny", "--img-size", "64")
    assert code == 0
    assert out.startswith("vgg11 (classic head, 1000 classes), input 3x64x64")
    assert "pool5    MaxPool2d" in out
    assert "total params: 132,863,336" in out


def test_summary_markdown_with_model_options(capsys):
    code, out, _ = run(
        capsys, "summary", "--model", "vgg16_bn", "--img-size", "32", "--head", "compact", "--num-classes", "10",
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
        (["summary", "--model", "vgg17"], "unknown model 'vgg17'; choose one of: vgg11, "),
    ],
)
def test_bad_values_exit_2_with_the_fix(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("vggnet summary: error: ")
    assert re.search(message, err)


@pytest.mark.parametrize(
    ("argv", "prog"),
    [(["summary", "vgg16", "--format", "yaml"], "vggnet summary"), (["train-all"], "vggnet"), ([], "vggnet")],
)
def test_usage_errors_exit_2_in_two_lines(capsys, argv, prog):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error, hint = capsys.readouterr().err.splitlines()
    assert error.startswith(f"{prog}: error: ")
    assert hint == f"run '{prog} --help' for usage"


def usage_error(capsys, *argv) -> str:
    """What a usage error prints (stderr), checking that it exits with 2 and prints nothing on stdout."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == ""
    return err


def test_a_bad_value_is_one_line_from_the_verb_with_a_hint(capsys):
    err = usage_error(capsys, "train", "--lr", "abc")
    assert err == (
        "vggnet train: error: argument --lr: invalid float value: 'abc'\nrun 'vggnet train --help' for usage\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--epoch", "3"], "vggnet train: error: unrecognized arguments: --epoch 3 (did you mean --epochs?)"),
        (
            ["predict", "--model", "m.pt", "x.jpg", "--top", "3"],
            "unrecognized arguments: --top 3 (did you mean --topk?)",
        ),
        (["summary", "--model", "vgg16", "--formt=json"], "(did you mean --format?)"),
        (["--vers", "models"], "vggnet: error: unrecognized arguments: --vers (did you mean --version?)"),
    ],
)
def test_abbreviations_are_refused_by_the_verb_that_was_given_them(capsys, argv, message):
    assert message in usage_error(capsys, *argv).splitlines()[0]


@pytest.mark.parametrize("command", build_parser().verbs)
def test_no_verb_takes_abbreviated_flags(capsys, command):
    assert build_parser().verbs[command].allow_abbrev is False
    # With abbreviations on, `--hel` would print the help and exit 0.
    assert usage_error(capsys, command, "--hel").startswith(f"vggnet {command}: error: ")


def train_help_defaults(capsys, monkeypatch) -> dict[str, tuple[str, str | None]]:
    """Flag -> (default shown, default shown for a run without --data, if given) from `vggnet train --help`."""
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapped help lines
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = re.sub(r"\n {3,}", " ", capsys.readouterr().out.split("options:")[1])  # a help line under its flag
    shown = {}
    # the default: the last parenthesised words of the line (a help text may have its own before them)
    for flag, default in re.findall(r"^  (--[a-z-]+)[^\n]*\(([^()]*)\)$", options, flags=re.MULTILINE):
        with_data, _, without_data = default.partition("; without --data: ")
        shown[flag] = (with_data, without_data or None)
    return shown


def shows(text: str, value, optimizer: str) -> bool:
    """Whether a default shown in help is `value`; optimizer-dependent ones read "sgd 0.01, adamw 0.001"."""
    return f"{optimizer} {value:g}" in text.split(", ") if "," in text else text == str(value)


def test_train_help_shows_the_defaults_each_kind_of_run_uses(capsys, monkeypatch):
    shown = train_help_defaults(capsys, monkeypatch)
    with_data, without_data = make_config({"data": "photos"}), make_config({})  # what `train` runs with
    checked = 0
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool) or flag not in shown or shown[flag][0].startswith("default:"):
            continue  # switches, and prose defaults such as --workers'
        used_with, used_without = getattr(with_data, field.name), getattr(without_data, field.name)
        first, second = shown[flag]
        assert shows(first, used_with, with_data.opt), flag
        assert shows(second or first, used_without, without_data.opt), flag
        assert (second is None) == (used_with == used_without), flag
        checked += 1
    assert checked >= 20
    assert shown["--epochs"] == ("30", "10") and shown["--model"] == ("vgg16_bn", "vgg11_bn")
    # a prose default, and the digits' own: decoded in the training process
    assert shown["--workers"] == ("default: one per spare core", "0") and without_data.workers == 0
    assert shown["--cache"] == ("none", "ram") and (with_data.cache, without_data.cache) == ("none", "ram")


def test_train_has_a_flag_for_each_config_field_and_three_of_its_own():
    settings = {"--" + setting.name.replace("_", "-") for setting in fields(TrainConfig)}
    assert set(build_parser().verbs["train"].flags) == settings | {"-h", "--help", "--config", "--resume", "--nproc"}


def test_each_train_flag_gives_the_config_its_value():
    """Switches turn on, numbers arrive as numbers, and every choice a flag offers is one the config accepts."""
    train = build_parser().verbs["train"]
    text = {
        "data": "photos",
        "model": "vgg13",
        "pretrained": "imagenet",
        "out": "elsewhere",
        "name": "trial",
        "path_column": "file",
        "label_column": "wnid",
        "split_column": "split",
        "image_root": "images",
    }
    argv, expected = [], {}
    for setting in fields(TrainConfig):
        flag = "--" + setting.name.replace("_", "-")
        choices = train.flags[flag].choices
        if setting.type is bool:
            if setting.name != "no_check":  # it excludes --strict: turned on in its own parse below
                argv.append(flag)
                expected[setting.name] = True
            continue
        if choices:
            for choice in choices:
                assert getattr(make_config({setting.name: choice}), setting.name) == choice, flag
            with pytest.raises(ValueError, match=f"unknown {flag} 'nonsense'"):
                make_config({setting.name: "nonsense"})
            value = choices[-1]
        elif setting.type in (int, int | None):
            value = 40
        elif setting.type in (float, float | None):
            value = 0.3
        else:
            value = text[setting.name]
        argv += [flag, str(value)]
        expected[setting.name] = value
    settings = vars(train.parse_args(argv))
    del settings["run"]
    config = TrainConfig(**settings)
    for name, value in expected.items():
        assert getattr(config, name) == value and type(getattr(config, name)) is type(value), name
    assert TrainConfig(**{**settings, "strict": False, "no_check": True}).no_check is True
    assert vars(train.parse_args(["--no-check"]))["no_check"] is True


def test_prediction_records_as_table_csv_and_json():
    top = [{"class": "cat", "index": 3, "prob": 0.9}, {"class": "dog", "index": 5, "prob": 0.1}]
    records = [{"path": "a.jpg", "top": top}, {"path": "photos/b.jpg", "error": "cannot decode"}]
    assert render_records(records, "table").splitlines() == [
        "path          class  top predictions",
        "------------  -----  --------------------",
        "a.jpg         cat    cat 0.900  dog 0.100",
        "photos/b.jpg  ERROR  cannot decode",
    ]
    assert render_records(records, "csv").splitlines() == [
        "path,rank,class,index,prob,error",
        "a.jpg,1,cat,3,0.900000,",
        "a.jpg,2,dog,5,0.100000,",
        "photos/b.jpg,,,,,cannot decode",
    ]
    assert json.loads(render_records(records, "json")) == records


def test_class_names_that_look_like_numbers_stay_left_aligned_in_the_table():
    """Digits' classes "3" and "10": a column of labels, whether or not a row failed."""
    digits = [{"path": "a.png", "top": [{"class": "3", "index": 3, "prob": 0.9}]},
              {"path": "b.png", "top": [{"class": "10", "index": 10, "prob": 0.8}]}]  # fmt: skip
    assert render_records(digits, "table").splitlines()[2:] == ["a.png  3      3 0.900", "b.png  10     10 0.800"]
    failed = [*digits, {"path": "c.png", "error": "cannot decode"}]
    assert render_records(failed, "table").splitlines()[2:4] == render_records(digits, "table").splitlines()[2:]


def test_summary_takes_model_like_the_other_verbs(capsys):
    code, by_flag, _ = run(capsys, "summary", "--model", "vgg_tiny", "--img-size", "64")
    assert code == 0 and by_flag.startswith("vgg11 (classic head, 1000 classes), input 3x64x64")
    assert run(capsys, "summary", "vgg_tiny", "--img-size", "64") == (0, by_flag, "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary"], "vggnet summary: error: which model? pass --model NAME (such as vgg16) or --model CHECKPOINT"),
        (["summary", "vgg16", "--model", "vgg13"], "vggnet summary: error: the model is given twice (--model vgg13 "),
    ],
)
def test_summary_needs_the_model_exactly_once(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith(message)


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (MissingExtra("ONNX export needs onnx: pip install 'vggnet[export]'"), "ONNX export needs onnx: pip install "),
        (ModuleNotFoundError("No module named 'safetensors'", name="safetensors"), "No module named 'safetensors'"),
    ],
)
def test_a_missing_package_is_one_line_without_a_traceback(capsys, monkeypatch, error, line):
    def export(*args, **kwargs):
        raise error

    monkeypatch.setattr("vggnet.infer.export.export", export)
    code, out, err = run(capsys, "export", "--model", "vgg11", "--format", "onnx")
    assert code == 1 and out == ""
    assert err.startswith(f"vggnet export: failed: {line}") and len(err.splitlines()) == 1


def test_eval_and_predict_say_where_they_wrote(trained, tmp_path, capsys):
    checkpoint, data = trained
    image = next((data / "val" / "ant").iterdir())
    code, out, err = run(capsys, "eval", "--model", str(checkpoint), "--data", str(data), "--format", "json",
                         "--out", str(tmp_path / "eval"), "--precision", "fp32")  # fmt: skip
    assert code == 0 and json.loads(out)["num_images"] == 12
    written = sorted(path.name for path in (tmp_path / "eval").iterdir())
    assert err.splitlines()[-1] == f"wrote {', '.join(written)} -> {tmp_path / 'eval'}" and len(written) == 3
    viz = tmp_path / "viz"
    code, out, err = run(capsys, "predict", "--model", str(checkpoint), str(image), "--format", "csv",
                         "--save-viz", str(viz))  # fmt: skip
    assert code == 0 and out.splitlines()[0].startswith("path,rank,class")
    assert err.splitlines()[-1] == f"wrote 1 image(s) with their predictions drawn -> {viz}"
    assert [path.name for path in viz.iterdir()] == [image.name]


def test_help_and_version_and_import_do_not_import_torch():
    # In a fresh interpreter: the heavy packages each step had imported once it was done (none, for all of them).
    script = """
import json, sys
from vggnet.cli import main

loaded = {}
def record(step):
    loaded[step] = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)

for argv in (["--help"], ["--version"], ["train", "--help"], ["summary", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
    record(" ".join(argv))
import vggnet

record("import vggnet")
vggnet.list_models()
record("vggnet.list_models()")
print(json.dumps(loaded))
"""
    heavy = ["torch", "torchvision", "torchmetrics", "numpy", "PIL", "matplotlib", "scipy", "yaml"]
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {heavy!r}\n{script}"], capture_output=True, text=True, check=True
    )
    assert "vggnet train [-h]" in result.stdout and "\nvggnet 0." in result.stdout
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded == dict.fromkeys(loaded, []) and len(loaded) == 6


def test_the_package_offers_its_names_lazily_and_to_type_checkers_alike():
    import vggnet
    import vggnet.models
    import vggnet.training

    for package in (vggnet, vggnet.models, vggnet.training):
        source = Path(package.__file__).read_text(encoding="utf-8")
        guarded = next(
            node
            for node in ast.parse(source).body
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        )
        for_checkers = {
            ("." * node.level + (node.module or ""), alias.name) for node in guarded.body for alias in node.names
        }
        lazy = {(module, name) for module, names in package._EXPORTS.items() for name in names}
        assert for_checkers == lazy, package.__name__
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None
    namespace = {}
    exec("from vggnet import *", namespace)  # noqa: S102
    assert namespace["create_model"] is vggnet.models.factory.create_model
    with pytest.raises(AttributeError, match="module 'vggnet' has no attribute 'create_modle'"):
        vggnet.create_modle  # noqa: B018


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    # `vggnet models | head -1`: the reader is gone before the table is printed, so every write meets a closed pipe.
    process = subprocess.Popen(
        [sys.executable, "-m", "vggnet", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait() == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "failed" not in stderr, stderr


# ---- output paths ----------------------------------------------------------------------------------------------


# Each verb, its output last, under a file (`{file}`), and inputs that do not exist (`{missing}`): the output is
# refused before the data, the images or the calibration folder are looked at (the model, real, is loaded by some).
OUTPUT_UNDER_A_FILE = [
    ["train", "--data", "{missing}", "--out", "{file}"],
    ["train", "--data", "{missing}", "--out", "{file}/runs"],
    ["eval", "--model", "{model}", "--data", "{missing}", "--out", "{file}"],
    ["predict", "--model", "{model}", "{missing}", "--save-viz", "{file}"],
    ["embed", "--model", "{model}", "{missing}", "--out", "{file}/e.npz"],
    ["embed", "--model", "{model}", "{missing}", "--out", "{file}/e.parquet"],
    ["export", "--model", "{model}", "--format", "onnx", "--out", "{file}/m.onnx"],
    ["quantize", "--model", "{model}", "--calib", "{missing}", "--out", "{file}/m.int8.pt"],
    ["explain", "--model", "{model}", "{missing}", "--out", "{file}/c.png"],
    ["features", "--model", "{model}", "{missing}", "--out", "{file}/g.png"],
    ["data", "digits", "--out", "{file}/digits"],
]


@pytest.mark.parametrize("argv", OUTPUT_UNDER_A_FILE, ids=[" ".join(argv[-2:]) for argv in OUTPUT_UNDER_A_FILE])
def test_an_output_under_a_file_is_refused_first_naming_the_flag(trained, tmp_path, capsys, argv):
    afile = tmp_path / "afile.png"
    afile.touch()
    argv = [arg.format(file=afile, missing=tmp_path / "missing", model=trained[0]) for arg in argv]
    code, out, err = run(capsys, *argv)
    flag, path = argv[-2:]
    where = f"{path} is a file" if path == str(afile) else f"{path}: {afile} is a file"
    assert code == 2 and out == ""
    assert err == f"vggnet {argv[0]}: error: {flag} {where}, not a folder; choose another {flag}\n"
    assert sorted(tmp_path.iterdir()) == [afile]  # nothing made, not even an empty folder


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which refuses new files")
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "{missing}", "--out", "/proc/runs"],
        ["explain", "--model", "{model}", "{missing}", "--out", "/proc/x.png"],
    ],
)
def test_an_output_in_a_folder_that_refuses_files_is_refused_first(trained, tmp_path, capsys, argv):
    code, out, err = run(capsys, *(arg.format(missing=tmp_path / "missing", model=trained[0]) for arg in argv))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"vggnet {argv[0]}: error: --out {argv[-1]}: cannot write in /proc (")
    assert err.endswith("); choose another --out\n")


def test_an_unforeseen_os_error_is_one_line_naming_the_file(capsys, monkeypatch):
    def export(*args, **kwargs):
        raise OSError(28, "No space left on device", "/full/m.onnx")

    monkeypatch.setattr("vggnet.infer.export.export", export)
    code, out, err = run(capsys, "export", "--model", "vgg11", "--format", "onnx")
    assert (code, out, err) == (1, "", "vggnet export: failed: [Errno 28] No space left on device: '/full/m.onnx'\n")


def test_other_libraries_unhelpful_warnings_are_kept_off_the_command_line(caplog, monkeypatch):
    """PyTorch's notices at every int8 start (torchao's Enum) and compilation without CUDA: silenced by every verb,
    while their errors and other libraries' warnings still show."""
    import logging

    from vggnet.console import UNHELPFUL_LOGGERS

    for name in UNHELPFUL_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    assert main(["models", "--format", "json"]) == 0
    with caplog.at_level(logging.WARNING):
        logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found, using CUDA_HOME='/usr'")
        logging.getLogger("torch.utils._pytree").warning("<enum 'KernelPreference'> is an Enum subclass")
        logging.getLogger("torch.utils.cpp_extension").error("a real error")
        logging.getLogger("torch._inductor").warning("another warning")
    assert [record.getMessage() for record in caplog.records] == ["a real error", "another warning"]


def test_ctrl_c_in_a_verb_is_one_line_and_exit_code_130(capsys, monkeypatch):
    def export(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vggnet.infer.export.export", export)
    code, out, err = run(capsys, "export", "--model", "vgg11", "--format", "onnx")
    assert (code, out, err) == (130, "", "\nvggnet export: interrupted\n")


def test_explain_and_features_name_the_picture_they_write(trained, tmp_path, capsys):
    checkpoint, data = trained
    image = data / "val" / "cat" / "cat_000.png"
    model = ["--model", str(checkpoint), str(image)]
    code, out, _ = run(capsys, "explain", *model, "--out", str(tmp_path / "cam"))  # no suffix: a PNG
    assert code == 0 and out.endswith(f" -> {tmp_path / 'cam.png'}\n")
    assert Image.open(tmp_path / "cam.png").format == "PNG" and not (tmp_path / "cam").exists()
    folder = tmp_path / "imgs"
    folder.mkdir()
    code, out, _ = run(capsys, "explain", *model, "--out", str(folder))  # a folder: a file named after the image in it
    assert code == 0 and out.endswith(f" -> {folder / 'cat_000_gradcam.png'}\n")
    code, out, _ = run(capsys, "features", *model, "--out", f"{folder}/")
    assert code == 0 and out.endswith(f" -> {folder / 'cat_000_conv1_1.png'}\n")
    code, out, _ = run(capsys, "features", *model, "--layer", "relu1_1", "--out", f"{tmp_path / 'new'}/")
    assert code == 0 and out.endswith(f" -> {tmp_path / 'new' / 'cat_000_relu1_1.png'}\n")
    assert sorted(path.name for path in folder.iterdir()) == ["cat_000_conv1_1.png", "cat_000_gradcam.png"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cam.png", "imgs", "new"]  # no imgs.png beside


@pytest.mark.parametrize("verb", ["explain", "features"])
def test_a_picture_suffix_that_cannot_be_written_is_refused_first(trained, tmp_path, capsys, verb):
    out_path = tmp_path / "g.txt"
    code, out, err = run(
        capsys, verb, "--model", str(trained[0]), str(tmp_path / "missing.png"), "--out", str(out_path)
    )
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"vggnet {verb}: error: --out {out_path}: pictures cannot be saved as .txt; use one of: ")
    assert {".png", ".pdf", ".svg", ".jpg"} <= set(err.split("use one of: ")[1].strip().split(", "))


# ---- flags: values, names and help -----------------------------------------------------------------------------


def test_summary_of_a_checkpoint_refuses_the_flags_that_would_describe_another_model(trained, capsys):
    checkpoint = str(trained[0])  # vgg11_bn, compact head, 3 classes, 1/8 width, 32x32
    code, out, _ = run(capsys, "summary", "--model", checkpoint, "--img-size", "64")  # not the architecture
    assert code == 0 and out.startswith("vgg11_bn (compact head, 3 classes), input 3x64x64")
    code, out, err = run(capsys, "summary", "--model", checkpoint, "--head", "classic")
    assert (code, out, err) == (2, "", "vggnet summary: error: --head is fixed by the checkpoint (compact); drop it\n")
    code, out, err = run(capsys, "summary", checkpoint, "--num-classes", "3", "--in-chans", "1", "--width-mult", "0.5")
    assert (code, out) == (2, "")
    assert err == (
        "vggnet summary: error: --num-classes, --in-chans and --width-mult are fixed by the checkpoint (3, 3, 0.125); "
        "drop them\n"
    )


# Each count flag of each verb but train (whose settings check themselves), given a value below its minimum. The
# verbs' other arguments are left out: the value is refused as it is read, before they are looked for.
BELOW_THE_MINIMUM = [
    ("eval", "--batch-size", "0", 1),
    ("predict", "--batch-size", "0", 1),
    ("embed", "--batch-size", "0", 1),
    ("benchmark", "--batch-size", "8,0", 1),
    ("serve", "--max-batch-size", "0", 1),
    ("eval", "--workers", "-1", 0),
    ("predict", "--workers", "-1", 0),
    ("embed", "--workers", "-1", 0),
    ("predict", "--topk", "0", 1),
    ("serve", "--topk", "0", 1),
    ("serve", "--max-queue", "0", 1),
    ("predict", "--shard-size", "0", 1),
    ("embed", "--shard-size", "0", 1),
    ("predict", "--num-workers", "0", 1),
    ("embed", "--num-workers", "0", 1),
    ("features", "--max-maps", "0", 1),
    ("quantize", "--calib-images", "0", 1),
    ("benchmark", "--rounds", "0", 1),
    ("summary", "--num-classes", "-1", 0),
    ("summary", "--in-chans", "0", 1),
    ("summary", "--img-size", "16", 32),
    ("summary", "--input-size", "16", 32),
    ("models", "--img-size", "16", 32),
    ("models", "--input-size", "16", 32),
    ("export", "--img-size", "16", 32),
    ("benchmark", "--img-size", "16", 32),
]


@pytest.mark.parametrize(
    ("verb", "flag", "value", "minimum"),
    BELOW_THE_MINIMUM,
    ids=[f"{verb} {flag}" for verb, flag, *_ in BELOW_THE_MINIMUM],
)
def test_a_count_below_its_minimum_is_refused_alike_by_every_verb(capsys, verb, flag, value, minimum):
    why = " (for VGG's five 2x2 max-pools)" if minimum == 32 else ""
    assert usage_error(capsys, verb, flag, value).splitlines() == [
        f"vggnet {verb}: error: argument {flag}: must be at least {minimum}, got {value.split(',')[-1]}{why}",
        f"run 'vggnet {verb} --help' for usage",
    ]


def test_every_count_flag_has_its_minimum():
    """A new number flag takes a type with a minimum (and a line above); --port alone is a plain int (0-65535)."""
    counts = {
        (verb, flag)
        for verb, parser in build_parser().verbs.items()
        if verb != "train"
        for flag, action in parser.flags.items()
        if action.type not in (None, float, positive)
    }
    assert counts == {(verb, flag) for verb, flag, *_ in BELOW_THE_MINIMUM} | {("serve", "--port")}
    assert build_parser().verbs["serve"].flags["--port"].type is int


def test_a_number_that_must_be_positive_names_its_flag(capsys):
    assert usage_error(capsys, "summary", "vgg16", "--width-mult", "0").startswith(
        "vggnet summary: error: argument --width-mult: must be more than 0, got 0\n"
    )


@pytest.mark.parametrize(
    ("verb", "message"),
    [
        ("tain", "unknown command 'tain' (did you mean train?)"),
        ("sumary", "unknown command 'sumary' (did you mean summary?)"),
        ("xyzzy", f"unknown command 'xyzzy'; choose one of: {', '.join(build_parser().verbs)}"),
    ],
)
def test_a_misspelt_verb_gets_the_closest_one_as_a_misspelt_flag_does(capsys, verb, message):
    assert usage_error(capsys, verb, "--help").splitlines() == [
        f"vggnet: error: {message}",
        "run 'vggnet --help' for usage",
    ]


def test_a_misspelt_flag_of_an_argument_group_gets_the_closest_one(capsys):
    argv = ["embed", "--model", "m.pt", "--out", "e.npz", "--num-worker=2"]
    assert usage_error(capsys, *argv).splitlines()[0] == (
        "vggnet embed: error: unrecognized arguments: --num-worker=2 (did you mean --num-workers?)"
    )


def test_every_verb_that_takes_an_input_side_calls_it_img_size(capsys, monkeypatch):
    verbs = build_parser().verbs
    takes = {verb for verb, parser in verbs.items() if {"--img-size", "--input-size"} & set(parser.flags)}
    assert takes == {"train", "export", "benchmark", "summary", "models"}
    assert all(verbs[verb].flags["--img-size"].dest == "img_size" for verb in takes)
    # --input-size, summary's and models' name before, still works, and the help shows --img-size alone
    code, out, _ = run(capsys, "summary", "vgg_tiny", "--input-size", "64")
    assert code == 0 and out.startswith("vgg11 (classic head, 1000 classes), input 3x64x64")
    code, out, _ = run(capsys, "models", "--input-size", "64")
    assert code == 0 and run(capsys, "models", "--img-size", "64") == (0, out, "") and "GMACs@64" in out
    monkeypatch.setenv("COLUMNS", "1000")
    for verb in ("summary", "models"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        shown = capsys.readouterr().out
        assert "--img-size IMG_SIZE" in shown and "--input-size" not in shown


@pytest.mark.parametrize("verb", [verb for verb in build_parser().verbs if verb != "train"])
def test_every_argument_has_help_that_ends_with_its_default_as_trains_do(verb):
    """As in `vggnet train --help` (`test_train_help_shows_the_defaults_each_kind_of_run_uses`): a flag's default is
    the bare value in the last parentheses, "(table)" or "(8; 1: no batching)"; "(default: ...)" is for words
    that say what a flag left out does, as "(default: the checkpoint's, else 224)"."""
    for action in build_parser().verbs[verb]._actions:  # argparse's list, positionals included
        if action.help == argparse.SUPPRESS:  # an older name, which still works
            continue
        assert action.help, f"{verb} {action.dest}: no help"
        if action.nargs == 0 or action.required or action.default is None or isinstance(action.default, list):
            continue  # switches, required flags, flags whose help says in words what not giving them does, lists
        default = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
        shown = re.search(r"\(([^()]*)\)$", action.help)
        assert shown and shown[1].split(";")[0] == default, f"{verb} {action.option_strings[0]}: {action.help!r}"


@pytest.mark.parametrize(("given", "printed"), [("preds.json", "json"), ("preds.csv", "csv"), ("preds", "json")])
def test_predict_says_how_to_save_what_it_prints_when_out_is_not_a_parquet_folder(capsys, given, printed):
    code, out, err = run(capsys, "predict", "--model", "m.pt", "x.jpg", "--out", given)
    assert (code, out) == (2, "")
    assert err == (
        f"vggnet predict: error: --out {given}: predict's --out is a folder of Parquet shards, its name ending in "
        f".parquet (--out preds.parquet); for JSON or CSV, drop --out and redirect the output: --format {printed} > "
        f"preds.{printed}\n"
    )
