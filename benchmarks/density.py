"""`otflows bench density` as a script (its options: `--help`)."""

from otflows.bench.density import main

if __name__ == "__main__":
    main()
