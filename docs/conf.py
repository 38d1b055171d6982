"""Sphinx configuration for the trio-actors documentation.

Build it the way the gate does (``scripts/check``)::

    sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

``DOCS_OFFLINE`` decides whether intersphinx may fetch the Python and Trio inventories. It
defaults to ``1`` (offline), because the build must pass without network access, as in CI.
``DOCS_OFFLINE=0`` fetches them and links ``trio.Nursery``, ``int`` and friends to their docs.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import typing
from importlib.metadata import version as _distribution_version
from pathlib import Path

from docutils.nodes import Element, TextElement
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

# Document the packages of this work tree, whichever copy happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "trio-actors"
author = "trio-actors contributors"
copyright = "trio-actors contributors"
release = _distribution_version("trio-actors")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style Args: / Returns: / Raises: sections
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinxcontrib_trio",  # async / async-with / decorator markers, as in trio's own docs
]

exclude_patterns = ["_build"]
# `single backticks` are cross-references to Python objects, as in trio's docs.
default_role = "py:obj"

# -- autodoc ----------------------------------------------------------------------------------------

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- cross-references -------------------------------------------------------------------------------

DOCS_OFFLINE = os.environ.get("DOCS_OFFLINE", "1") != "0"

intersphinx_mapping: dict[str, tuple[str, str | None]] = (
    {}
    if DOCS_OFFLINE
    else {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
    }
)
intersphinx_timeout = 30

# Every reference to our own API must resolve: a link to a name that is not documented is a build
# error under -W. References to other projects (trio, attrs, the standard library) are allowed to
# stay plain text, since offline there is no inventory to resolve them against. A TypeVar (the
# ``T`` of ``ActorRef[T]``) has no page of its own either; see the hook at the end.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!(actors|transport)(\.|$)).*")]

# -- HTML -------------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"trio-actors {release}"
html_static_path = ["_static"]
html_css_files = ["side-by-side.css"]  # the two columns of code of migrating.rst

# -- hooks ------------------------------------------------------------------------------------------


def _type_variables_stay_plain_text(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: TextElement
) -> Element | None:
    """Render a reference to a TypeVar (``actors._ref.T``) as its name, not as a broken link."""
    module_name, _, name = str(node.get("reftarget", "")).rpartition(".")
    target = getattr(sys.modules.get(module_name), name, None)
    if isinstance(target, typing.TypeVar | typing.ParamSpec | typing.TypeVarTuple):
        return contnode
    return None


#: The modules whose ``__all__`` the reference must document in full (``reference.rst``).
PUBLIC_MODULES = (
    "actors",
    "actors.testing",
    "transport",
    "transport.backplane",
    "transport.workers",
    "transport.observe",
)

_logger = logging.getLogger(__name__)


def _public_name(module_name: str, obj: object) -> str | None:
    """The name under which ``module_name`` exports ``obj``, if it does."""
    module = sys.modules.get(module_name)
    for name in getattr(module, "__all__", ()):
        if getattr(module, name, None) is obj:
            return f"{module_name}.{name}"
    return None


def _document_reexported_data(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Give re-exported module data (``actors.DEFAULT_ASK_TIMEOUT``) its ``#:`` comment.

    autodoc reads ``#:`` comments from the module it documents, which for a re-exported
    constant is the package ``__init__``, not the private module that defines it; without
    this, an ``int`` would be described by ``int``'s own docstring. A type alias (a union
    of message classes) also gets the list of its members, linked.
    """
    package_name, _, attribute = name.rpartition(".")
    if what != "data" or package_name not in PUBLIC_MODULES:
        return
    found: list[str] | None = None
    for module_name in sorted(sys.modules):
        if not module_name.startswith(package_name + "._"):
            continue
        if getattr(sys.modules[module_name], attribute, None) is not obj:
            continue
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", attribute))
        if docs:
            found = list(docs)
            break
    if found is None:
        own = ModuleAnalyzer.for_module(package_name).find_attr_docs().get(("", attribute))
        if not own:
            _logger.warning("public data %s has no #: comment where it is defined", name)
        return
    lines[:] = found
    if isinstance(obj, types.UnionType):
        members = [_public_name(package_name, member) for member in typing.get_args(obj)]
        links = ", ".join(f"`~{member}`" for member in members if member is not None)
        lines.extend(["", f"One of: {links}.", ""])


def _every_public_name_is_documented(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under ``-W``) for a name in a public ``__all__`` that no page documents."""
    documented = set(env.domains["py"].objects)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if f"{module_name}.{name}" not in documented:
                _logger.warning(
                    "%s.%s is public (in __all__) but not documented; add it to reference.rst",
                    module_name,
                    name,
                )


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _type_variables_stay_plain_text)
    app.connect("autodoc-process-docstring", _document_reexported_data)
    app.connect("env-check-consistency", _every_public_name_is_documented)
