"""`otflows bench gaussian` as a script (its options: `--help`)."""

from otflows.bench.gaussian_coupling import main

if __name__ == "__main__":
    main()
