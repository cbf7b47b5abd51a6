"""What the tests share besides fixtures: running the commands, tiny runs, feature files,
the model's defaults, callbacks for runs (``tests/`` is on the path: ``import helpers``)."""
