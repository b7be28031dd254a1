"""The command line (``python -m core ...``): parses arguments, calls one core function or starts one run, prints.

May import: every ``core`` package.
"""
