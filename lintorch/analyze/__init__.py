"""Domain facts of the semantic model (see ``lintorch.analysis``)."""
