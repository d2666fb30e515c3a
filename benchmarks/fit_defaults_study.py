"""`otflows bench fit-defaults` as a script (its options: `--help`)."""

from otflows.bench.fit_defaults import main

if __name__ == "__main__":
    main()
