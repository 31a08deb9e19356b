"The documentation site (.ci/docs) as a reader sees it in headless Chromium: typeset equations, images, no errors."
import shutil, subprocess
import pytest
from conftest import ROOT, CHROMIUM, browse

@pytest.mark.slow
def test_docs_site_in_chromium(tmp_path):
    if CHROMIUM is None: pytest.skip('headless Chromium not installed (apt-get install chromium; .ci/run does)')
    if shutil.which('npm') is None and not (ROOT / '_docs' / 'node' / 'node_modules' / 'mathjax').is_dir():
        pytest.skip("npm not installed: .ci/docs fetches MathJax with it (apt-get install npm)")
    html = tmp_path / 'html'
    r = subprocess.run(['bash', str(ROOT / '.ci' / 'docs'), str(html)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    pages = sorted(html.glob('*.html'))
    names = {p.name for p in pages}
    assert {'index.html', 'api.html', '10_avbt.html', '12_tacma.html', '16_localize.html'} <= names, names
    seen = browse([p.as_uri() for p in pages], math=True)
    for url, s in seen.items():
        assert not s['errors'], (url, s['errors'])
        assert all(ok for _, ok in s['images']), (url, [src for src, ok in s['images'] if not ok])
        assert '$$' not in s['text'], url                                       # no raw display math anywhere
    method = {n: seen[(html / n).as_uri()] for n in ('10_avbt.html', '12_tacma.html')}
    for n, s in method.items(): assert s['math'] >= 5, (n, s['math'])             # the method pages' equations typeset
    front = seen[(html / 'index.html').as_uri()]
    assert 'Use it from Python' in front['text'] and len(front['images']) >= 4   # the README, its figures
    assert 'save_pipeline' in seen[(html / 'api.html').as_uri()]['text']          # the API reference from docstrings
