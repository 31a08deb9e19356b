"""Sphinx configuration of the documentation site (`.ci/docs` builds it from the notebooks of nbs/, offline)."""
project = 'avbt-tacma'
author = 'avbt-tacma developers'
extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.mathjax']
myst_enable_extensions = ['dollarmath', 'amsmath']
nb_execution_mode = 'off'                 # the notebooks' kept outputs are shown as they are, nothing re-runs
root_doc = 'index'                        # the README (nbs/index.ipynb) is the front page
exclude_patterns = ['_build', 'paper/**']
html_theme = 'alabaster'
html_theme_options = {'page_width': '1180px', 'sidebar_width': '230px'}
html_static_path = ['_static']
mathjax_path = 'mathjax/tex-chtml.js'     # MathJax 3 copied into _static by .ci/docs: no CDN
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True}
suppress_warnings = ['myst.header', 'misc.highlighting_failure', 'mystnb.unknown_mime_type']
