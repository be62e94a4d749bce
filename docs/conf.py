"""Sphinx configuration for asip's documentation (``sphinx-build -W -b html docs docs/_build``)."""

from __future__ import annotations

import importlib.util

import asip

project = "asip"
author = "the asip developers"
copyright = "the asip developers"
release = version = asip.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "numpydoc"]

# numpydoc renders the docstrings; autodoc's ``:members:`` lists the members, so numpydoc's own
# member tables (which need autosummary stubs) are off
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
# single backticks in asip's docstrings name objects: resolve them where Sphinx can
default_role = "py:obj"

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "asynchronous distributed optimization on Dask",
                      "fixed_sidebar": True}
html_static_path: list[str] = []

# API sections for modules that may be absent in a checkout (they arrive with the dashboard page
# and the pytest plugin): documented when importable, left out otherwise, so that the build
# never warns about them
OPTIONAL_API = {"asip.dashboard": "Dashboard page: ``asip.dashboard``",
                "asip.testing": "Testing kit: ``asip.testing``"}


def _importable(module: str) -> bool:
    """False when ``module`` or a third-party package it needs is not installed."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module or not (exc.name or "").startswith("asip"):
            return False
        raise  # asip itself is broken: let the build fail
    return True


def _optional_api(app, docname, source) -> None:
    if docname != "api":
        return
    for module, title in OPTIONAL_API.items():
        if _importable(module):
            source[0] += f"\n{title}\n{'-' * len(title)}\n\n.. automodule:: {module}\n"


def _skip_sklearn_routing(app, what, name, obj, skip, options):
    """scikit-learn attaches ``set_*_request`` methods to each estimator class; skip them."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app) -> None:
    app.connect("source-read", _optional_api)
    app.connect("autodoc-skip-member", _skip_sklearn_routing)
