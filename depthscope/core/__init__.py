"""Foundation: one-line user errors, progress, atomic data-only files, output folders, the CPU allocator."""
