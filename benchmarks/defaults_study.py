"""`otflows bench defaults` as a script (its options: `--help`)."""

from otflows.bench.defaults import main

if __name__ == "__main__":
    main()
