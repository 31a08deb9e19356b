"The front page nbs/index.ipynb says what README.md says, and the README's commands exist."
import json, re
from conftest import ROOT

def test_index_agrees_with_readme():
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    md = '\n\n'.join(''.join(c['source']).strip('\n') for c in nb['cells'] if c['cell_type'] == 'markdown')
    readme = (ROOT / 'README.md').read_text().strip('\n').replace('](nbs/', '](')   # links relative to nbs/
    norm = lambda s: re.sub(r'\n{2,}', '\n\n', s)
    assert norm(md) == norm(readme), 'nbs/index.ipynb and README.md disagree: regenerate the index from the README'

def test_readme_commands_exist():
    readme = (ROOT / 'README.md').read_text()
    assert 'tests/run.sh' in readme and (ROOT / 'tests' / 'run.sh').exists()
    assert 'tests/run.sh' in (ROOT / '.ci' / 'run').read_text()
    from avbt_tacma.cli import COMMANDS, ALIASES
    for cmd in re.findall(r'`avbt ([a-z-]+)', readme): assert cmd in COMMANDS or cmd in ALIASES, cmd

def test_index_images_exist():
    "The front page's images resolve from nbs/ (where JupyterLab and the docs site open it)."
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    md = '\n'.join(''.join(c['source']) for c in nb['cells'])
    imgs = re.findall(r'!\[[^]]*\]\(([^)]+)\)', md)
    assert imgs and all((ROOT / 'nbs' / p).is_file() for p in imgs), imgs

def test_readme_python_examples_run(tmp_path):
    "The README's 'Use it from Python' examples run verbatim, one after the other, in an empty folder."
    import subprocess, sys
    readme = (ROOT / 'README.md').read_text()
    sec = readme.split('## Use it from Python', 1)[1].split('\n## ', 1)[0]
    code = re.findall(r'```python\n(.*?)```', sec, re.S)
    assert len(code) >= 3, 'the section should hold AV-BT, TACMA and localize examples'
    r = subprocess.run([sys.executable, '-c', '\n'.join(code)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env={**__import__('os').environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'torch.Size([1, 10, 128]) torch.Size([1, 10, 128])' in r.stdout and "'second': 0" in r.stdout, r.stdout

def test_readme_speaks_to_readers():
    "No path of a development machine, nothing outside the repository, no team talk."
    readme = (ROOT / 'README.md').read_text()
    for bad in ('/work/', '../shared', 'shared/ave-meta', 'developers', 'this session', 'issue 1', 'issue 2'):
        assert bad not in readme, bad
