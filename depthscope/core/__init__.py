"""Foundation: one-line user errors, progress, atomic data-only files, the ``Result`` document,
the run folder and output folders, the card registry, the CPU allocator."""
