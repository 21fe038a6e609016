"""Sphinx configuration: the API reference, generated from the docstrings.

Built by ``make docs`` with warnings as errors. No extension reaches the network (no
intersphinx), so the build needs nothing beyond the packages installed from the index.
"""

from __future__ import annotations

from fsm_session import __version__

project = "fsm_session"
author = "the fsm_session authors"
copyright = "2026, the fsm_session authors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
root_doc = "index"
exclude_patterns = ["_build"]
default_role = "any"

# Members in source order, read from each module's __all__; signatures without the noise of
# fully qualified annotations, which the descriptions repeat.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

html_theme = "alabaster"
html_title = f"fsm_session {version}"
html_static_path: list[str] = []
