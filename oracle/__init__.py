"""The PyTorch oracle: golden files that pin gpuconv's ops to PyTorch's answers.

A development tool, not part of the gpuconv runtime (which never imports it).

- ``oracle.golden``   numpy-only loader / saver of the committed golden files
                       (``oracle/goldens/*.npz``); what the tests use.
- ``oracle.cases``    the case definitions (torch-free data): the slides' worked
                       examples and a systematic grid of small shapes.
- ``oracle.generate`` runs PyTorch (float64, CPU, deterministic) on every case.

    python -m oracle generate   # rewrite oracle/goldens/ (deleting stale files)
    python -m oracle check      # regenerate in memory, compare with the committed files
"""
