"""Measure the checks with the corpus: per lesson and overall, how many mistakes are caught, passed
wrongly, crash the check, and are named with the right words; then every mistake that is not.

    python -m tests.variants.measure            # every lesson
    python -m tests.variants.measure 02 04      # some lessons
    python -m tests.variants.measure --hints    # also count the words found in the hint
    python -m tests.variants.measure --missed   # print missed_today.py for the checks as they are

"Named with the right words": the CheckFailure's message (what is wrong, without the hint) holds one of
the mistake's alternative phrases, case-insensitively. With --hints the hint counts too (a second
column), since a hint chosen for the right mistake also names it.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections import defaultdict

import torch

from tests.variants import LESSONS, Outcome, Variant, all_variants, run, said


def measure(variants: list[Variant]) -> list[tuple[Variant, Outcome, float]]:
    results = []
    for v in variants:
        start = time.perf_counter()
        outcome = run(v)
        results.append((v, outcome, time.perf_counter() - start))
    return results


def report(results: list[tuple[Variant, Outcome, float]], hints: bool = False) -> str:
    rows = defaultdict(lambda: defaultdict(int))
    for v, o, _ in results:
        for key in (v.lesson, "all"):
            r = rows[key]
            if v.kind == "correct":
                r["correct"] += 1
                r["rejected"] += o.result != "passed"
                continue
            r["mistakes"] += 1
            r[o.result] += 1
            r["named"] += o.named(v.words)
            r["named+hint"] += o.result == "caught" and said(o.full, v.words)
    head = (
        f"{'lesson':<7}{'correct':>8}{'rejected':>9}{'mistakes':>9}{'caught':>7}{'passed':>7}{'crashed':>8}"
    )
    head += f"{'named':>7}{'named %':>9}" + (f"{'+hint %':>9}" if hints else "")
    lines = [
        "correct: variants (rejected: of them, failed by the check); mistakes: caught (CheckFailure),",
        "passed (wrongly), crashed (another exception); named: caught with the right words in the message.",
        "",
        head,
    ]
    for key in [*sorted(k for k in rows if k != "all"), "all"]:
        r = rows[key]
        pct = 100 * r["named"] / r["mistakes"] if r["mistakes"] else 100.0
        line = (
            f"{key:<7}{r['correct']:>8}{r['rejected']:>9}{r['mistakes']:>9}{r['caught']:>7}{r['passed']:>7}"
        )
        line += f"{r['crashed']:>8}{r['named']:>7}{pct:>8.1f}%"
        if hints:
            hpct = 100 * r["named+hint"] / r["mistakes"] if r["mistakes"] else 100.0
            line += f"{hpct:>8.1f}%"
        lines.append(line)

    lines += ["", "Correct variants the check rejects:"]
    bad = [(v, o) for v, o, _ in results if v.kind == "correct" and o.result != "passed"]
    lines += [f"- {v.id}: {o.result}: {_short(o.message)}" for v, o in bad] or ["(none)"]
    lines += ["", "Mistakes not caught, or caught without the right words:"]
    missed = [(v, o) for v, o, _ in results if v.kind == "mistake" and not o.named(v.words)]
    for v, o in missed:
        what = {"passed": "PASSED", "crashed": "CRASHED", "caught": "wrong words"}[o.result]
        lines.append(f"- {v.id} [{what}]")
        lines.append(textwrap.indent(textwrap.fill(f"teacher: {v.teacher}", 106), "    "))
        lines.append(textwrap.indent(textwrap.fill(f"words: {list(v.words)}", 106), "    "))
        if o.message:
            lines.append(textwrap.indent(textwrap.fill(f"got: {_short(o.message)}", 106), "    "))
    if not missed:
        lines.append("(none)")
    return "\n".join(lines)


def missed_today(results: list[tuple[Variant, Outcome, float]]) -> str:
    """The text of missed_today.py: every correct variant rejected, every mistake not caught or not named."""
    lines = [
        '"""Variants the checks get wrong today: tests/test_variants.py marks them xfail (strict).',
        "",
        "Made by `python -m tests.variants.measure --missed`; when a check is fixed, remove its line.",
        '"""',
        "",
        "MISSED_TODAY: dict[str, str] = {",
    ]
    for v, o, _ in results:
        if v.kind == "correct" and o.result != "passed":
            why = f"a correct variant is {o.result}: {_short(o.message, 120)}"
        elif v.kind == "mistake" and o.result != "caught":
            why = (
                "the mistake passes"
                if o.result == "passed"
                else f"the check crashes: {_short(o.message, 120)}"
            )
        elif v.kind == "mistake" and not o.named(v.words):
            why = f"caught, but not named: {_short(o.message, 120)}"
        else:
            continue
        lines.append(f"    {json.dumps(v.id)}: {json.dumps(why, ensure_ascii=False)},")
    lines.append("}")
    return "\n".join(lines)


def _short(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lessons", nargs="*", default=list(LESSONS), help="lesson numbers, e.g. 02 04")
    parser.add_argument("--hints", action="store_true", help="also count the words found in the hint")
    parser.add_argument("--slowest", type=int, default=0, help="list the N slowest variants")
    parser.add_argument("--missed", action="store_true", help="print missed_today.py for today's checks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lessons = [f"{int(x):02d}" for x in args.lessons]
    start = time.perf_counter()
    results = measure(all_variants(lessons))
    if args.missed:
        print(missed_today(results))
        return 0
    print(report(results, hints=args.hints))
    print(f"\n{len(results)} variants in {time.perf_counter() - start:.1f} s")
    for v, _, t in sorted(results, key=lambda r: -r[2])[: args.slowest]:
        print(f"  {t:6.2f} s  {v.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
