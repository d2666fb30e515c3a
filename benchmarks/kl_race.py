"""`otflows bench kl-race` as a script (its options: `--help`)."""

from otflows.bench.kl_race import main

if __name__ == "__main__":
    main()
