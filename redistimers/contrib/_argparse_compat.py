"""The subcommands of an argparse parser. argparse lists them only through private names
(``_actions``, ``_SubParsersAction``, ``_choices_actions``), reached in this module alone:
should a Python keep them elsewhere, the answer is empty, and callers do without."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("redistimers")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Name -> help of `parser`'s subcommands, in the order they were added ("" for one
    without help); {} when there are none or this argparse keeps them elsewhere."""
    try:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                return {name: helps.get(name, "") for name in action.choices}
    except (AttributeError, TypeError):
        log.debug("cannot list the subcommands of %s", parser.prog, exc_info=True)
    return {}
