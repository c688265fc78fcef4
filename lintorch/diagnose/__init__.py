"""``lintorch diagnose``: start from a symptom ("my loss is flat") and rank
its likely causes in one training script.

Layout (torch-free and plot-free unless noted, so that ``lintorch`` checks
never import torch or matplotlib through this package):

- ``symptoms`` the fixed vocabulary and its spelling slack
- ``causes``   causes, evidence, the static findings' part, the ranking
- ``measure``  the probe run's measurements -> causes and facts
- ``report``   the diagnosis as text or JSON
- ``html``     the self-contained HTML report (imports matplotlib)
- ``cli``      the command; the run goes through ``lintorch.probe``
               (whose child records with ``lintorch.probe.diagnostics``)
"""
