"""Sphinx configuration of the otflows documentation (built with -W: a warning fails it)."""

import otflows

project = "otflows"
author = "The otflows authors"
copyright = "2026, The otflows authors"
release = version = otflows.__version__

extensions = [
    "myst_nb",  # markdown pages (MyST) and the notebooks, shown with their committed outputs
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the built site: formulas render offline
    "sphinx.ext.viewcode",
]
# the notebooks run in the tests (tests/test_notebooks.py); the docs show their saved outputs
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not entries that duplicate autodoc's

html_theme = "furo"
html_title = f"otflows {release}"
