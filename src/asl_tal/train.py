"""``python -m asl_tal.train``: the README's stable spelling of ``asl-train``
(:mod:`asl_tal.cli.train`)."""

if __name__ == "__main__":
    from asl_tal.cli.train import main

    main()
