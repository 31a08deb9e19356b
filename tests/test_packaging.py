"What a pip user gets: the wheel ships the reproduction notebooks and the `repro` extra names what they import."
import configparser, json, re, subprocess, sys, zipfile
from pathlib import Path
import pytest
from conftest import ROOT
from avbt_tacma.steps import REPRO_MODULES

def _cfg():
    c = configparser.ConfigParser(delimiters=['=']); c.read(ROOT / 'settings.ini'); return c['DEFAULT']

def test_repro_extra_is_repro_modules():
    "settings.ini's `repro_requirements` (the extra) and the packages `avbt reproduce` checks for are one list."
    assert sorted(_cfg()['repro_requirements'].split()) == sorted(REPRO_MODULES.values())

def test_repro_extra_covers_notebook_imports():
    "Every top-level module a paper notebook imports is the library, the standard library, a requirement or the extra."
    ok = set(REPRO_MODULES) | {'avbt_tacma', 'IPython', 'matplotlib', 'numpy', 'torch', 'pathlib', 'json', 'math'}
    for nb in sorted((ROOT / 'nbs' / 'paper').glob('*.ipynb')):
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        mods = re.findall(r'^\s*(?:from|import)\s+([A-Za-z_]\w*)', src, re.M)
        assert set(mods) <= ok, f"{nb.name} imports {set(mods) - ok}: add them to repro_requirements"

@pytest.mark.slow
def test_wheel_ships_paper_notebooks(tmp_path):
    "`pip wheel .` puts every nbs/paper notebook into the wheel as avbt_tacma/paper/*.ipynb, and the repro extra."
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    whl, = tmp_path.glob('avbt_tacma-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    want = {f"avbt_tacma/paper/{p.name}" for p in (ROOT / 'nbs' / 'paper').glob('*.ipynb')}
    assert want and want <= names, want - names
    meta = next(zipfile.ZipFile(whl).read(n).decode() for n in names if n.endswith('METADATA'))
    assert 'Provides-Extra: repro' in meta and 'Requires-Dist: papermill; extra == "repro"' in meta

def test_package_docstring_names_real_modules():
    "help(avbt_tacma) describes the package and names only modules that exist."
    import importlib, avbt_tacma
    doc = avbt_tacma.__doc__ or ''
    assert 'AV-BT' in doc and 'TACMA' in doc
    mods = set(re.findall(r'`(avbt_tacma\.\w+)`', doc))
    assert len(mods) >= 10
    for m in mods: importlib.import_module(m)
