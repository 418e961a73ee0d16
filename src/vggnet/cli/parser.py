"""`CommandParser`: argparse's parser with whole flags only and usage errors in one line that say what to run.

    $ vggnet train --epoch 3
    vggnet train: error: unrecognized arguments: --epoch 3 (did you mean --epochs?)
    run 'vggnet train --help' for usage

Exit code 2, as for every usage error.
"""

import argparse
import difflib
from typing import NoReturn


class CommandParser(argparse.ArgumentParser):
    """The top-level parser, and each verb's (`add_subparsers` makes them of the top-level parser's class).

    It takes whole flags only (`--epoch` is not taken for `--epochs`), and reports a usage error in one line, with
    the command that shows the usage, instead of argparse's usage block. Arguments a verb does not know are the
    verb's error (`vggnet train: error: ...`, with the closest flag): argparse would leave them to the top-level
    parser, whose message names neither the verb nor its flags.

    Attributes:
        flags: Each option string (`--epochs`, `-h`) -> its action, kept as `add_argument` adds them (argparse
            holds them only in private attributes; arguments added through groups would be missing, and none are).
        verbs: Each verb's name -> its parser, once `add_subparsers` has made them.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.flags: dict[str, argparse.Action] = {}
        self.verbs: dict[str, CommandParser] = {}
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.flags.update(dict.fromkeys(action.option_strings, action))
        return action

    def add_subparsers(self, **kwargs) -> argparse._SubParsersAction:
        commands = super().add_subparsers(**kwargs)
        self.verbs = commands.choices  # filled in by `commands.add_parser`
        return commands

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return namespace, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for usage\n")

    def _unrecognized(self, extras: list[str]) -> str:
        """The message for arguments this parser does not take, with the closest flag for the first unknown one."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        given = next((extra.split("=")[0] for extra in extras if extra.startswith("-")), None)
        close = difflib.get_close_matches(given, list(self.flags), n=1) if given else []
        return message + (f" (did you mean {close[0]}?)" if close else "")
