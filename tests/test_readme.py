"""README.md as a test: every `vggnet` command and Python snippet it shows works on the model its main job trains.

The main job (`vggnet train`: vgg11_bn, compact head, 32x32, the built-in digits) runs once per session, for one
epoch, in a sandbox folder that also holds what the README's commands name (photos/, more/*.jpg, cat.jpg,
data/train, data/val, ~/flowers, my.yaml, paths.txt, labels.csv). Each `vggnet ...` line of a bash block then runs
there in process and must exit 0. Lines that need what tests cannot have (downloads, several GPUs or machines,
minutes of timing) are parsed by the CLI's own parser instead, each for a reason listed in PARSE_ONLY; Python
snippets that download weights are compiled only.
"""

import ast
import contextlib
import csv
import io
import os
import re
import shlex
import subprocess
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from PIL import Image
from serving import ServeProcess

import vggnet
from vggnet.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"

# Commands checked by the parser only, by the first pattern that matches the command as shown, and why.
PARSE_ONLY = {
    r"--pretrained imagenet\b": "downloads torchvision's ImageNet weights (tests/test_weights.py serves them locally)",
    r"^(srun )?torchrun ": "starts several processes or machines (tests/test_distributed.py runs torchrun on CPUs)",
    r" --nproc ": "starts torchrun (tests/test_distributed.py runs it)",
    r" --engine ray\b": "starts or joins a Ray cluster (tests/test_ray_engine.py runs the engine on a local one)",
    r"^vggnet serve ": "serves until stopped (test_the_serve_section_runs_against_the_main_jobs_model runs it)",
    r"^vggnet benchmark ": "times vgg16 at 224 with torch.compile, int8 and peer runtimes: minutes by design "
    "(tests/test_benchmark.py runs it small)",
}
# Appended to every `vggnet train` that runs: the README's runs take 10 or more epochs; one shows that they work.
# A resume continues the main job, which ran one: one more (a finished run is refused, with the way to extend it).
TRAIN_OVERRIDES = ["--epochs", "1"]
RESUME_OVERRIDES = ["--epochs", "2"]
# What a reader types for the README's placeholders, for the commands that run.
PLACEHOLDERS = {"DIR": "eval_out", "NAME": "3", "PATH": "exported/best.onnx"}
# A settings file for `vggnet train --config my.yaml`: a tiny model on the tiny ~/flowers folder.
MY_YAML = {"data": "~/flowers", "model": "vgg11_bn", "head": "compact", "img_size": 32, "width_mult": 0.125,
           "batch_size": 8, "epochs": 1, "workers": 0}  # fmt: skip

CONTROL = {"&&", "||", ";", "|"}
ALTERNATIVES = re.compile(r"^[\w.-]+(\|[\w.-]+)+$")


@dataclass(frozen=True)
class Command:
    """One `vggnet` command of a bash block, as shown (comments dropped) and as the CLI receives it."""

    shown: str
    argv: tuple[str, ...]
    arrow: str | None  # the path in a trailing `# -> PATH` comment: a file the command writes

    @property
    def parse_only(self) -> str | None:
        """Why this command is only parsed, or None when it runs."""
        return next((why for pattern, why in PARSE_ONLY.items() if re.search(pattern, self.shown)), None)


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language tag, the heading above it and its text."""

    lang: str
    section: str
    text: str


def readme_blocks() -> list[Block]:
    """The fenced code blocks of README.md with the heading above each."""
    blocks, section, lines = [], "", README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        elif line.startswith("```"):
            end = lines.index("```", index + 1)
            blocks.append(Block(line[3:].strip(), section, "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    return blocks


def commands_of(block: Block) -> list[Command]:
    """The `vggnet` commands of a bash block: `\\` continuations joined, after `&&` too, or run by `-m vggnet`."""
    commands = []
    for line in block.text.replace("\\\n", " ").splitlines():
        arrow = re.search(r"\s#\s*->\s*(\S+)", line)
        segment: list[str] = []
        for token in [*shlex.split(line, comments=True), "&&"]:
            if token not in CONTROL:
                segment.append(token)
                continue
            module = segment.index("-m") + 1 if "-m" in segment else None
            if segment[:1] == ["vggnet"]:
                argv = segment[1:]
            elif module is not None and segment[module : module + 1] == ["vggnet"]:
                argv = segment[module + 1 :]
            else:
                argv = None
            if argv is not None:
                commands.append(Command(shlex.join(segment), tuple(argv), arrow and arrow.group(1)))
            segment = []
    return commands


def readme_commands() -> list[Command]:
    """Every `vggnet` command of the README's bash blocks, in order."""
    return [command for block in readme_blocks() if block.lang == "bash" for command in commands_of(block)]


def variants(argv: tuple[str, ...]) -> list[list[str]]:
    """The concrete argument lists a line stands for: without its `[optional]` parts and with all of them, each
    `a|b|c` alternative in turn (the first only without the optional parts)."""
    items, inside = [], False
    for token in argv:
        opening = token.startswith("[")
        items.append((token.strip("[]"), inside or opening))
        inside = (inside or opening) and not token.endswith("]")
    bare = [token for token, optional in items if not optional]
    full = [token for token, _ in items]
    result = []
    for tokens, alternatives in ((bare, 1), (full, None)):
        choices = next((token.split("|") for token in tokens if ALTERNATIVES.match(token)), [None])
        for choice in choices[:alternatives]:
            concrete = [choice if ALTERNATIVES.match(token) else token for token in tokens]
            if concrete not in result:
                result.append(concrete)
    return result


def run_vggnet(argv: list[str], sandbox: Path) -> tuple[int, str, str]:
    """`vggnet ARGV` in process, as a shell in `sandbox` would run it (HOME there, `~` expanded)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(sandbox)
        patch.setenv("HOME", str(sandbox / "home"))
        patch.setenv("VGGNET_HOME", str(sandbox / "home" / ".cache" / "vggnet"))
        argv = [os.path.expanduser(token) if token.startswith("~") else token for token in argv]
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def main_job() -> Command:
    """The README's main job: a bare `vggnet train`."""
    jobs = [command for command in readme_commands() if command.argv == ("train",)]
    assert jobs, "README.md no longer shows the main job `vggnet train`"
    return jobs[0]


def _save(image: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(image).convert("RGB").save(target)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Path:
    """A folder where the README's main job has run (one epoch) and its other commands find what they name."""
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    argv = [*main_job().argv, *TRAIN_OVERRIDES]
    code, out, err = run_vggnet(argv, root)
    assert code == 0, f"the main job `vggnet {shlex.join(argv)}` failed:\n{out}\n{err}"
    assert (root / "runs/train/exp/best.pt").is_file() and (root / "runs/train/exp/last.pt").is_file()

    digits = home / ".cache/vggnet/datasets/digits"  # written by the main job
    val = {folder.name: sorted(folder.glob("*.png")) for folder in (digits / "val").iterdir()}
    train = {folder.name: sorted(folder.glob("*.png")) for folder in (digits / "train").iterdir()}
    for index, digit in enumerate(sorted(val)[:4]):
        _save(val[digit][0], root / "photos" / f"{digit}.png")
        _save(val[digit][1], root / "more" / f"{digit}.jpg")
        if index == 0:
            _save(val[digit][2], root / "cat.jpg")
    for digit in sorted(val):
        for image in train[digit][:3]:
            _save(image, root / "data/train" / digit / image.name)
        for image in val[digit][3:5]:
            _save(image, root / "data/val" / digit / image.name)
    for digit in ("0", "1", "2"):
        for image in train[digit][:6]:
            _save(image, home / "flowers" / digit / image.name)
    (root / "my.yaml").write_text(yaml.safe_dump(MY_YAML), encoding="utf-8")
    (root / "paths.txt").write_text("".join(f"photos/{path.name}\n" for path in (root / "photos").iterdir()))
    rows = [
        (path.relative_to(root), split)
        for split in ("train", "val")
        for path in sorted((root / "data" / split).rglob("*.png"))
    ]
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [["path", "label", "split"], *[[path, path.parent.name, split] for path, split in rows]]
        )
    return root


# ---- the commands ----------------------------------------------------------------------------------------------


def test_the_readme_runs_every_verb_that_uses_a_trained_model():
    commands = readme_commands()
    verbs = {command.argv[0] for command in commands if command.parse_only is None}
    assert verbs >= {"train", "data", "eval", "predict", "embed", "features", "explain", "export", "quantize"}
    reasons = [command.parse_only for command in commands]
    for why in PARSE_ONLY.values():  # each reason still applies to some command, or it goes
        assert why in reasons, f"no README command is parse-only for: {why}"


@pytest.mark.parametrize("command", readme_commands(), ids=lambda command: command.shown)
def test_every_command_parses(command):
    parser = build_parser()
    for argv in variants(command.argv):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the CLI refuses the README's `vggnet {shlex.join(argv)}` (its message is above)")


@pytest.mark.slow
def test_the_main_job_trains_what_the_readme_says(sandbox):
    from vggnet.training.config import make_config

    comment = next(
        line for block in readme_blocks() for line in block.text.splitlines() if re.match(r"vggnet train\s+#", line)
    )
    run = yaml.safe_load((sandbox / "runs/train/exp/config.yaml").read_text(encoding="utf-8"))
    for stated in (run["model"], f"{run['head']} head", f"{run['img_size']}x{run['img_size']}"):
        assert stated in comment
    assert f"{make_config({}).epochs} epochs" in comment  # the run itself had TRAIN_OVERRIDES


def runnable_blocks() -> list[Block]:
    """The bash blocks with a command to run besides the main job (which makes the sandbox)."""
    return [
        block
        for block in readme_blocks()
        if block.lang == "bash"
        and any(command.parse_only is None and command.argv != main_job().argv for command in commands_of(block))
    ]


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.section)
def test_every_command_runs_on_the_main_jobs_model(block, sandbox):
    """Each command of the block, in order, exits 0 and writes what its `--out` or `# -> PATH` names."""
    failures = []
    for command in commands_of(block):
        if command.parse_only or command.argv == main_job().argv:  # the main job made the sandbox
            continue
        for argv in variants(command.argv):
            argv = [PLACEHOLDERS.get(token, token) for token in argv]
            if argv[0] == "train":
                argv += RESUME_OVERRIDES if "--resume" in argv else TRAIN_OVERRIDES
            code, out, err = run_vggnet(argv, sandbox)
            written = [argv[i + 1] for i, token in enumerate(argv) if token == "--out"]
            written += [command.arrow] if command.arrow else []
            missing = [path for path in written if not (sandbox / path).exists()]
            if code != 0 or missing:
                failures.append(f"vggnet {shlex.join(argv)}: exit {code}, missing {missing}\n{out[-800:]}{err[-1500:]}")
    assert not failures, "\n\n".join(failures)


# ---- the command line's synopsis, its output example and the Python snippets ------------------------------------


def test_the_summary_example_is_the_commands_output(tmp_path):
    block = next(block for block in readme_blocks() if block.text.startswith("$ vggnet "))
    first, *shown = block.text.splitlines()
    code, out, err = run_vggnet(shlex.split(first)[2:], tmp_path)
    assert code == 0, err
    lines = iter(line.rstrip() for line in out.splitlines())
    for line in shown:  # in order, skipping what the README elides with "..."
        if line != "...":
            assert line.rstrip() in lines, f"README shows {line!r}, which `{first[2:]}` does not print (in order)"


def usages_named_in_prose_and_synopsis() -> list[str]:
    """`vggnet` usages outside the bash blocks: the text blocks' synopsis lines (with their `[...]` continuation
    lines) and inline code in the prose."""
    usages = []
    for block in readme_blocks():
        if block.lang == "text":
            for line in block.text.splitlines():
                if line.startswith("vggnet "):
                    usages.append(line)
                elif line.strip().startswith("[") and usages:
                    usages[-1] += " " + line.strip()
    prose = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    return usages + re.findall(r"`(vggnet [^`]+)`", prose)


@pytest.mark.parametrize("usage", usages_named_in_prose_and_synopsis())
def test_every_verb_and_flag_the_readme_names_exists(usage):
    tokens = usage.split()
    parser = build_parser()
    if tokens[1].startswith("-"):  # a flag of the command itself: `vggnet --help`, `vggnet --version`
        assert tokens[1] in parser.flags, f"`vggnet` has no {tokens[1]}"
        return
    verbs = [tokens[1]] + [tokens[i + 1] for i in range(2, len(tokens) - 1, 2) if tokens[i] == "|"]
    for verb in verbs:
        assert verb in parser.verbs, f"README names `vggnet {verb}`, which is not a command"
        flags = parser.verbs[verb].flags
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", usage):
            assert flag in flags, f"`vggnet {verb}` has no {flag}"
        for flag, shown in re.findall(r"(--[a-z][\w-]*) ([\w.]+(?:\|[\w.]+)+)", usage):  # `--format table|json`
            choices = flags[flag].choices
            if choices is not None:
                assert set(shown.split("|")) == set(choices), f"`vggnet {verb} {flag}` takes {choices}, not {shown}"


# Where the README's serve section says the server listens (its default address).
SERVER_ADDRESS = r"(127\.0\.0\.1|localhost):8000"
# Python snippets that are compiled only, by the first pattern that matches the snippet, and why.
COMPILE_ONLY = {
    r"pretrained=\"imagenet\"": "downloads torchvision's ImageNet weights",
    SERVER_ADDRESS: "needs a running server (test_the_serve_section_runs_against_the_main_jobs_model runs it)",
}


def python_snippets() -> list[str]:
    """The paragraphs of the README's Python blocks: each is one step a reader can run on its own."""
    return [
        paragraph
        for block in readme_blocks()
        if block.lang == "python"
        for paragraph in re.split(r"\n\s*\n", block.text)
    ]


def run_snippets(snippets: list[str], cwd: Path, compile_only: dict[str, str] = COMPILE_ONLY) -> int:
    """Run the snippets that need no download in one namespace in `cwd`, and return how many stated outputs
    they checked: an expression whose comment is a Python literal (`vggnet.list_models()   # ['vgg11', ...]`)
    must equal it. Every snippet must compile."""
    namespace: dict = {}
    checked = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        for snippet in snippets:
            compile(snippet, "README.md", "exec")
            if any(re.search(pattern, snippet) for pattern in compile_only):
                continue
            comments = {
                token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(snippet).readline)
                if token.type == tokenize.COMMENT
            }
            for statement in ast.parse(snippet).body:
                try:
                    stated = ast.literal_eval(comments.get(statement.end_lineno, ""))
                except (ValueError, SyntaxError):
                    stated = None
                if isinstance(statement, ast.Expr) and stated is not None:
                    value = eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace)
                    assert value == stated, f"README says {ast.unparse(statement)} is {stated!r}; it is {value!r}"
                    checked += 1
                else:
                    exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
    return checked


def test_python_snippets_run_and_print_what_their_comments_say(tmp_path):
    """All but those that load the main job's model (the slow test below runs them)."""
    snippets = [snippet for snippet in python_snippets() if "runs/train/" not in snippet]
    # list_models, the compact model's output shape, the vgg16 totals, the receptive fields
    assert run_snippets(snippets, tmp_path) >= 4


@pytest.mark.slow
def test_python_snippets_run_on_the_main_jobs_model(sandbox):
    assert any("runs/train/" in snippet for snippet in python_snippets())
    run_snippets(python_snippets(), sandbox)


# ---- the serve section -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_serve_section_runs_against_the_main_jobs_model(sandbox):
    """The README's first `vggnet serve` command serves the main job's model; every curl line of the section then
    succeeds against it (curl -f: an HTTP error fails the line), and the Python client prints the top-1 class that
    `vggnet predict` gives."""
    serve = next(command for command in readme_commands() if command.argv[:1] == ("serve",))
    curl_blocks = [block.text for block in readme_blocks() if block.lang == "bash" and "curl " in block.text]
    routes = {route for route in re.findall(r"localhost:8000(/[\w/]*)", curl_blocks[0])}
    assert len(curl_blocks) == 1 and len(routes) == 14  # every route but the page (`/`, tests/test_serve_page.py)
    clients = [snippet for snippet in python_snippets() if re.search(SERVER_ADDRESS, snippet)]
    assert clients
    with ServeProcess(list(serve.argv[1:]), cwd=sandbox) as server:
        address = server.url.removeprefix("http://")
        script = 'curl() { command curl -sSf "$@"; }\nset -e\n' + re.sub(SERVER_ADDRESS, address, curl_blocks[0])
        done = subprocess.run(["bash", "-c", script], cwd=sandbox, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"a curl line of the README failed:\n{done.stdout[-2000:]}\n{done.stderr}"
        assert (sandbox / "cam.png").read_bytes().startswith(b"\x89PNG")
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            run_snippets([re.sub(SERVER_ADDRESS, address, snippet) for snippet in clients], sandbox, compile_only={})
    expected = vggnet.predict(sandbox / "runs/train/exp/best.pt", [sandbox / "cat.jpg"], topk=1)[0]["top"][0]["class"]
    assert output.getvalue().split() == [expected]
