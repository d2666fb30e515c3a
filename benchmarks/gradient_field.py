"""`otflows bench gradient-field` as a script (its options: `--help`)."""

from otflows.bench.gradient_field import main

if __name__ == "__main__":
    main()
