"""`otflows bench logdet` as a script (its options: `--help`)."""

from otflows.bench.logdet import main

if __name__ == "__main__":
    main()
