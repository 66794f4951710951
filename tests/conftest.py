"""Shared pytest configuration. The repository root is on sys.path (pyproject:
``pythonpath = ["."]``), so tests import ``oracle`` as well as ``gpuconv``."""
