"""``telesweep <command> ...``: one console script for every step, beside the ``python -m`` forms.

    telesweep synth|check ...                        python -m telemetry synth|check ...
    telesweep sweep|resume|leaderboard|plan|schema   python -m search run|resume|leaderboard|plan|schema ...
    telesweep build|demo|auto|decision ...           python -m ensemble build|demo|auto|decision ...

It lives in ``ensemble`` because that package is the top of the dependency arrow (telemetry ->
models -> search -> ensemble), so it may import the other three.
"""
from __future__ import annotations

import sys

COMMANDS = {
    "synth": ("telemetry", "synth"), "synth-fleet": ("telemetry", "synth-fleet"),
    "synth-discharges": ("telemetry", "synth-discharges"), "check": ("telemetry", "check"),
    "sweep": ("search", "run"), "resume": ("search", "resume"), "leaderboard": ("search", "leaderboard"),
    "plan": ("search", "plan"), "schema": ("search", "schema"), "finalize": ("search", "finalize"),
    "build": ("ensemble", "build"), "demo": ("ensemble", "demo"), "auto": ("ensemble", "auto"),
    "decision": ("ensemble", "decision"),
}
USAGE = ("usage: telesweep {" + ",".join(COMMANDS) + "} ...\n"
         "  synth, synth-fleet, synth-discharges, check: data (python -m telemetry); sweep, resume, finalize, leaderboard, plan, schema: search (python -m search);\n"
         "  build, demo, auto, decision: ensemble (python -m ensemble). 'telesweep <command> --help' for each.")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"telesweep: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    package, sub = COMMANDS[argv[0]]
    if package == "telemetry":
        from telemetry.__main__ import main as run
    elif package == "search":
        from search.__main__ import main as run
    else:
        from ensemble.__main__ import main as run
    return run([sub, *argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
