"""`otflows bench conditional` as a script (its options: `--help`)."""

from otflows.bench.conditional import main

if __name__ == "__main__":
    main()
