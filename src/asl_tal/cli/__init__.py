"""The commands: one module per console script (``asl-train`` → :mod:`asl_tal.cli.train`,
``asl-evaluate`` → :mod:`asl_tal.cli.score`), each on top of the rest of the package."""
