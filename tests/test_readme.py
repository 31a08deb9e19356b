"The front page nbs/index.ipynb says what README.md says, and the README's commands exist."
import json, re
from conftest import ROOT

def test_index_agrees_with_readme():
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    md = '\n\n'.join(''.join(c['source']).strip('\n') for c in nb['cells'] if c['cell_type'] == 'markdown')
    readme = (ROOT / 'README.md').read_text().strip('\n')
    norm = lambda s: re.sub(r'\n{2,}', '\n\n', s)
    assert norm(md) == norm(readme), 'nbs/index.ipynb and README.md disagree: regenerate the index from the README'

def test_readme_commands_exist():
    readme = (ROOT / 'README.md').read_text()
    assert 'tests/run.sh' in readme and (ROOT / 'tests' / 'run.sh').exists()
    assert 'tests/run.sh' in (ROOT / '.ci' / 'run').read_text()
    from avbt_tacma.cli import COMMANDS, ALIASES
    for cmd in re.findall(r'`avbt ([a-z-]+)', readme): assert cmd in COMMANDS or cmd in ALIASES, cmd
