"""``lintorch probe``: run a training script for a few real steps under
instrumentation and confirm or refute the static findings with measurements.

Layout (only ``child`` and ``instrument`` import torch, and only inside the
child process, so the static CLI stays torch-free):

- ``cli``        argument parsing, static findings, exit status (parent)
- ``runner``     spawns the child, timeout, process-group cleanup (parent)
- ``checks``     the table code -> runtime measurement, evaluated on the
                 child's recorded data (parent, pure Python)
- ``report``     text and JSON rendering (parent)
- ``child``      entry point of the child process: runs the script as __main__
- ``instrument`` the hooks and narrow wrappers that record what happens
"""
