"""Test-wide settings that must hold before any notebook kernel starts."""

from gptlib.course.execute import pin_threads

# Stored notebook outputs were made with this many threads; kernels inherit it from here.
pin_threads()

# Notebooks that are fixtures of a test, not lessons for nbval.
collect_ignore_glob = ["tests/**/*.ipynb", "lessons/*.ipynb", "docs/**/*.ipynb"]
