"The avbt command: help for every subcommand, one-line errors for bad input."
import subprocess, sys
import pytest
from avbt_tacma.cli import COMMANDS, ALIASES, build_parser, main

def run(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *args], capture_output=True, text=True, timeout=300)

def test_top_level_help():
    r = run('--help')
    assert r.returncode == 0 and 'COMMAND' in r.stdout

def test_every_subcommand_has_help():
    names = build_parser()._subparsers._group_actions[0].choices
    assert set(names) == set(COMMANDS) | set(ALIASES), f"subcommands not available: {set(COMMANDS) - set(names)}"
    for cmd in names:
        r = run(cmd, '--help')
        assert r.returncode == 0, (cmd, r.stderr)
        assert 'usage: avbt ' + ALIASES.get(cmd, cmd) in r.stdout

def test_import_is_light():
    "import avbt_tacma and the CLI parser must not pull in papermill or jupyter (dev-only dependencies)."
    code = ('import sys, avbt_tacma, avbt_tacma.cli as c; c.build_parser(); '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("papermill", "jupyterlab", "notebook", "nbclient")]; '
            'print(bad); sys.exit(1 if bad else 0)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_exit_codes_and_the_old_command_name(tmp_path, monkeypatch, capsys):
    "One convention: 2 for bad input, 1 for a failed step; `train-tacma` still runs, as `train-head`."
    from avbt_tacma.core import AVBTError, RunError
    import avbt_tacma.cli as cli
    assert run().returncode == 2                                            # no command
    for name in ('train-head', 'train-tacma'):
        r = run(name, '--features', str(tmp_path / 'nope.h5'), '--out', str(tmp_path / 'o'))
        assert r.returncode == 2 and r.stderr.startswith(f'avbt {name}: error:') and 'nope.h5' in r.stderr, r.stderr
    def fail(args): raise RunError('notebook table2 failed in cell [3]: ValueError: boom')
    def refuse(args): raise AVBTError('--data: no such folder')
    for run_, code in ((fail, 1), (refuse, 2)):
        monkeypatch.setitem(cli.COMMANDS, 'synth', (lambda p: None, run_, 'a test command'))
        assert cli.main(['synth']) == code
        assert capsys.readouterr().err.count('\n') == 1
