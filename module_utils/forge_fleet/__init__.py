"""Forge Fleet logic shared by modules, tools and tests.

Everything in this package runs on the target VMs inside AnsiballZ, so it uses only
Python's standard library. Modules import it as ``ansible.module_utils.forge_fleet.<name>``;
the command-line tools and the tests put ``module_utils/`` on ``sys.path`` and import
``forge_fleet.<name>``. Submodules import each other relatively (``from . import x``).
"""
