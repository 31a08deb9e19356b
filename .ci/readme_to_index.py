"""Regenerate nbs/index.ipynb (the nbdev front page) from README.md: one markdown cell per `## ` section.

Run after every README edit: `python .ci/readme_to_index.py`; tests/test_readme.py checks that the two agree.
"""
import json, re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
# the README's images live under nbs/images; the index sits in nbs/, so its links drop the nbs/ prefix
readme = (root / 'README.md').read_text().strip('\n').replace('](nbs/', '](')
parts = [p.strip('\n') for p in re.split(r'\n(?=## )', readme) if p.strip()]
# key order as nbdev_clean writes it (cell_type, id, metadata, source), so a clean check finds nothing to change
cells = [dict(cell_type='markdown', id=str(i), metadata={}, source=p.splitlines(keepends=True))
         for i, p in enumerate(parts)]
nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
          nbformat=4, nbformat_minor=5)
(root / 'nbs' / 'index.ipynb').write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
