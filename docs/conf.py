"""Sphinx configuration: builds offline (no intersphinx, no remote themes)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "fairprune"
author = "fairprune developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath"]
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["myst.xref_missing"]
