"""`otflows bench peers` as a script (its options: `--help`)."""

from otflows.bench.peers import main

if __name__ == "__main__":
    main()
