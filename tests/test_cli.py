"The avbt command: help for every subcommand, one-line errors for bad input."
import subprocess, sys
import pytest
from avbt_tacma.cli import COMMANDS, build_parser, main

def run(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *args], capture_output=True, text=True, timeout=300)

def test_top_level_help():
    r = run('--help')
    assert r.returncode == 0 and 'COMMAND' in r.stdout

def test_every_subcommand_has_help():
    names = build_parser()._subparsers._group_actions[0].choices
    assert set(names) == set(COMMANDS), f"subcommands not available: {set(COMMANDS) - set(names)}"
    for cmd in names:
        r = run(cmd, '--help')
        assert r.returncode == 0, (cmd, r.stderr)
        assert 'usage: avbt ' + cmd in r.stdout

def test_import_is_light():
    "import avbt_tacma and the CLI parser must not pull in papermill or jupyter (dev-only dependencies)."
    code = ('import sys, avbt_tacma, avbt_tacma.cli as c; c.build_parser(); '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("papermill", "jupyterlab", "notebook", "nbclient")]; '
            'print(bad); sys.exit(1 if bad else 0)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
