"""One meaning per flag: every command's --help shows the shared option groups with the same flags."""

from __future__ import annotations

import re

import pytest

from sleuth.cli import main


def help_of(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def flag_lines(text: str, flag: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", line)]


@pytest.mark.parametrize("command, groups", [
    (("eval",), ("Model", "Agent", "Frame index", "Output")),
    (("ask",), ("Model", "Agent", "Frame index", "Output")),
    (("demo",), ("Model", "Frame index", "Output")),
    (("index",), ("Frame index",)),
    (("search",), ("Frame index",)),
])
def test_commands_show_the_shared_groups(capsys, command, groups):
    text = help_of(capsys, *command)
    for group in groups:
        assert re.search(rf"╭─ {group} ─", text), f"{' '.join(command)} lacks the {group} group"


@pytest.mark.parametrize("command", [("eval",), ("ask",), ("demo",), ("report",), ("trace", "html")])
def test_dash_o_is_always_the_output(capsys, command):
    text = help_of(capsys, *command)
    (line,) = [line for line in text.splitlines() if re.search(r"\s-o\s", line)]
    assert "--out" in line


def test_device_flags_mean_one_thing_each(capsys):
    for command in (("index",), ("search",), ("ask",), ("eval",), ("demo",)):
        text = help_of(capsys, *command)
        assert flag_lines(text, "--clip-device"), command  # CLIP's device
        if command[0] in ("index", "search"):
            assert not flag_lines(text, "--device"), command  # no model of their own
    for command in (("ask",), ("eval",)):
        text = help_of(capsys, *command)
        assert flag_lines(text, "--frames") and not flag_lines(text, "--frame-budget")
