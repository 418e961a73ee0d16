"""`CommandParser`: argparse's parser with whole flags only and usage errors in one line that say what to run; and
the argparse types of the verbs' number flags (`at_least`, `positive`, `IMG_SIZE`), so that every verb refuses a
bad count the same way, before anything is loaded.

    $ vggnet train --epoch 3
    vggnet train: error: unrecognized arguments: --epoch 3 (did you mean --epochs?)
    run 'vggnet train --help' for usage
    $ vggnet eval --model best.pt --data DIR --batch-size 0
    vggnet eval: error: argument --batch-size: must be at least 1, got 0
    run 'vggnet eval --help' for usage

Exit code 2, as for every usage error.
"""

import argparse
import difflib
from collections.abc import Callable
from typing import NoReturn

from ..models.cfgs import MIN_INPUT_SIZE


class CommandParser(argparse.ArgumentParser):
    """The top-level parser, and each verb's (`add_subparsers` makes them of the top-level parser's class).

    It takes whole flags only (`--epoch` is not taken for `--epochs`), and reports a usage error in one line, with
    the command that shows the usage, instead of argparse's usage block. Arguments a verb does not know are the
    verb's error (`vggnet train: error: ...`, with the closest flag): argparse would leave them to the top-level
    parser, whose message names neither the verb nor its flags. An unknown verb gets the closest verb the same way.

    Attributes:
        verbs: Each verb's name -> its parser, once `add_subparsers` has made them.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.verbs: dict[str, CommandParser] = {}
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    @property
    def flags(self) -> dict[str, argparse.Action]:
        """Each option string (`--epochs`, `-h`) -> its action, those of argument groups (`--engine`) included:
        argparse's own table, which it keeps in a private attribute."""
        return self._option_string_actions

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

    def _check_value(self, action: argparse.Action, value) -> None:
        # argparse checks the verb here, as a choice of the subparsers' action: an unknown one gets the closest verb,
        # as an unknown flag gets the closest flag (`_unrecognized`).
        if action.choices is self.verbs and value not in self.verbs:
            close = difflib.get_close_matches(value, list(self.verbs), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; choose one of: {', '.join(self.verbs)}"
            raise argparse.ArgumentError(None, f"unknown command {value!r}{hint}")
        super()._check_value(action, value)

    def _unrecognized(self, extras: list[str]) -> str:
        """The message for arguments this parser does not take, with the closest flag for the first unknown one."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        given = next((extra.split("=")[0] for extra in extras if extra.startswith("-")), None)
        close = difflib.get_close_matches(given, list(self.flags), n=1) if given else []
        return message + (f" (did you mean {close[0]}?)" if close else "")


def at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """The argparse `type` of a count flag: an integer of at least `minimum` (`why`: the reason for it, if not
    plain), else a usage error naming the flag, its minimum and the value given."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}" + (f" ({why})" if why else ""))
        return value

    return count


def positive(text: str) -> float:
    """The argparse `type` of a flag that takes a number above 0, such as a multiplier."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not value > 0:  # NaN included
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


# The type of every --img-size but train's (its config checks it).
IMG_SIZE = at_least(MIN_INPUT_SIZE, "for VGG's five 2x2 max-pools")
