"""How reading an answer's revisions grows with a pasted line's length: one pass per line, not one per position.

A learner may paste a whole log, or a megabyte on one line, into chapter 04's answer. Reading it must grow with
the line's length (10x the text, about 10x the time), not with its square (100x): the old step pattern was
searched for from every position, and a 1 MB line hung "Check my work". Prints the ratio, measured in this run.
"""

from throwaway import median_ms

from migration_lab.course.checks import hex_words

# A log pasted with its newlines lost, but no arrow in it: what the old pattern searched all of from every position.
LINE = "INFO [alembic] upgraded a1c4e7f20b13 - then 8b7e5d2c6a41 - add job entries; "


def pasted(length: int) -> list[str]:
    """One line of `length` characters: revision ids and words, no newline."""
    return [(LINE * (length // len(LINE) + 1))[:length]]


def main() -> None:
    short, long = 20_000, 200_000
    short_ms = median_ms(lambda: hex_words(pasted(short)), 5)
    long_ms = median_ms(lambda: hex_words(pasted(long)), 5)
    ratio = long_ms / short_ms
    print(f"a {short:,}-character line: {short_ms:.2f} ms; a {long:,}-character line: {long_ms:.2f} ms")
    print(f"10x the text took {ratio:.1f}x the time (linear: about 10; the old pattern: about 100)")


if __name__ == "__main__":
    main()
