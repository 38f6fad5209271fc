"""hunkwise's one way to read git: the read-only environment and revision look-ups
(``command``), path quoting (``paths``), git's view of file content (``content``), the
streaming ``git log -p`` reader (``log``) and the reader of patch files (``patch``)."""
