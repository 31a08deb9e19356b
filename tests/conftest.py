import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
META = ROOT.parent / 'shared' / 'ave-meta'
if not META.exists() and os.environ.get('AVE_META'): META = Path(os.environ['AVE_META'])

@pytest.fixture(scope='session')
def ave_meta():
    "The real AVE metadata folder (../shared/ave-meta or $AVE_META); tests using it skip when it is absent."
    if not (META / 'Annotations.txt').exists(): pytest.skip('real AVE metadata (../shared/ave-meta) not available')
    return META

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long end-to-end test (deselect with -m "not slow")')
