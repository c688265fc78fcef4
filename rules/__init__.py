"""lintorch's rules: one module per rule (or small family of rules).

Installed as ``lintorch.rules``. Every ``lintorch.rule.Rule`` subclass defined
in a module here is registered automatically; see ``lintorch.registry``.
"""
