"""Every option a recipe in train/recipes passes on its own command line exists.

A recipe runs for hours before its last line; an option that a script or ``uir`` command does
not have fails only there. Each logical line (continuations joined) is split as the shell would;
each ``uir COMMAND`` and each ``train/*.py`` or ``benchmarks/*.py`` (run by python or accelerate)
has the ``--options`` that follow it, up to the next control or redirection token, checked
against that parser's options. Options that a shell function or variable expands to are not
seen here.
"""

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from uir.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "train" / "recipes").glob("*.sh"))
SCRIPT = re.compile(r"^(train|benchmarks)/\w+\.py$")
OPTION = re.compile(r"^--?[A-Za-z][\w-]*")
STOP = {";", "&&", "||", "|", "&", "<", "(", ")"}  # and any word starting with ">" (a redirection)


def _options(parser: argparse.ArgumentParser, words: list[str]) -> set[str]:
    """The option strings ``parser`` accepts, in the subcommand that ``words`` names if it has any."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            command = next((w for w in words if w in action.choices), None)
            if command is not None:
                return _options(action.choices[command], words[words.index(command) + 1:])
    return {option for action in parser._actions for option in action.option_strings}


class _Parser(Exception):
    def __init__(self, parser):
        self.parser = parser


def _script_parser(path: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser that ``path``'s ``main`` builds, caught as it parses (nothing else runs)."""
    def catch(self, *args, **kwargs):
        raise _Parser(self)

    spec = importlib.util.spec_from_file_location(f"recipe_{Path(path).stem}", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", catch)
        patch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
        with pytest.raises(_Parser) as caught:
            module.main()
    return caught.value.parser


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _commands():
    """``(program, the words after it up to a control token)`` for every call, with its recipe and
    first line as the id."""
    for recipe in RECIPES:
        start = 1
        for line in re.split(r"(?<!\\)\n", recipe.read_text()):  # a logical line: continuations joined
            here, start = start, start + line.count("\n") + 1
            line = line.replace("\\\n", " ")
            if line.lstrip().startswith("#") or ("uir " not in line and ".py" not in line):
                continue
            words = _words(line)
            for i, word in enumerate(words):
                program = None
                if word == "uir" and (i == 0 or words[i - 1] in STOP or "=" in words[i - 1]):
                    program = "uir"
                elif SCRIPT.match(word):
                    program = word
                if program is None:
                    continue
                rest, j = [], i + 1
                while j < len(words) and words[j] not in STOP and not words[j].startswith(">"):
                    if words[j] == "$" and words[j + 1:j + 2] == ["("]:  # $(...): flags not seen here
                        j = words.index(")", j)
                    else:
                        rest.append(words[j])
                    j += 1
                yield pytest.param(program, rest, id=f"{recipe.name}:{here}:{program}")


COMMANDS = list(_commands())


@pytest.mark.parametrize("program, words", COMMANDS)
def test_every_option_a_recipe_passes_exists(program, words, monkeypatch):
    parser = build_parser() if program == "uir" else _script_parser(program, monkeypatch)
    known = _options(parser, words)
    passed = {OPTION.match(w).group() for w in words if OPTION.match(w)}
    assert passed - known == set(), f"{program} has no option {sorted(passed - known)}"


def test_the_recipes_were_read():
    programs = {program for program, *_ in (c.values for c in COMMANDS)}
    assert "uir" in programs and "train/train_router.py" in programs and len(COMMANDS) >= 40


def test_an_unknown_option_is_caught():
    assert "-o" not in _options(build_parser(), ["eval-router"])
    assert "-o" in _options(build_parser(), ["eval"])
