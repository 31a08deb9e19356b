"""Stage the documentation sources for Sphinx (called by .ci/docs): the notebooks of nbs/ and their images, the
README's front page with a table of contents appended, and an API reference page with one section per module."""
import json, shutil, sys
from pathlib import Path

root, src = Path(__file__).resolve().parent.parent, Path(sys.argv[1])
if src.exists(): shutil.rmtree(src)
src.mkdir(parents=True)
shutil.copytree(root / 'nbs' / 'images', src / 'images')
shutil.copy(root / 'docs' / 'conf.py', src / 'conf.py')
pages = sorted(p.stem for p in (root / 'nbs').glob('[0-9]*.ipynb'))
for p in pages: shutil.copy(root / 'nbs' / f'{p}.ipynb', src / f'{p}.ipynb')
index = json.loads((root / 'nbs' / 'index.ipynb').read_text())
toc = '```{toctree}\n:maxdepth: 1\n:caption: The method, notebook by notebook\n\n' + '\n'.join(pages + ['api']) + '\n```\n'
index['cells'].append({'cell_type': 'markdown', 'metadata': {}, 'source': toc, 'id': 'toc'})
(src / 'index.ipynb').write_text(json.dumps(index))
mods = sorted(p.stem for p in (root / 'avbt_tacma').glob('*.py') if not p.stem.startswith('_'))
api = ['# API reference', '', 'Generated from the docstrings of the package `avbt_tacma`.', '']
for m in mods: api += [f'## `avbt_tacma.{m}`', '', '```{eval-rst}', f'.. automodule:: avbt_tacma.{m}', '```', '']
(src / 'api.md').write_text('\n'.join(api))
