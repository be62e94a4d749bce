"""The ``asip`` command: ``asip bench ...`` runs the benchmarks (see ``asip bench --help``).

The benchmarks are the separate package ``asip_bench`` (``benchmarks/asip_bench``),
so that the runtime imports none of their dependencies; ``asip bench`` delegates to it.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_USAGE = """usage: asip <command> [options]

commands:
  bench     benchmark asip's solvers against the ASIP paper, scikit-learn and dask-glm
            (asip bench --quick for a < 2 minute run; asip bench --help for options)
  version   print asip's version
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``asip <command>``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "bench":
        try:
            from asip_bench import main as bench_main
        except ImportError as exc:  # an install without the benchmark package
            sys.stderr.write(f"asip bench: the benchmark package asip_bench is missing ({exc}): "
                             "pip install 'asip[bench]'\n")
            return 2
        return bench_main(rest)
    if command in ("version", "--version"):
        import asip

        sys.stdout.write(f"asip {asip.__version__}\n")
        return 0
    sys.stderr.write(f"asip: unknown command {command!r}\n{_USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
