"""Building blocks for the fixes rules attach to their reports.

A fix replaces one node of the parsed module (see :class:`lintorch.rule.Fix`);
these helpers build the replacements so each rule's fix stays a few lines
and the tricky parts (parentheses, indentation) are handled once.
"""

from typing import Callable, Optional

import libcst as cst

from lintorch.index import call_arg

_ATOMS = (
    cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.Imaginary,
    cst.SimpleString, cst.ConcatenatedString, cst.FormattedString, cst.List, cst.Tuple, cst.Dict,
    cst.Set, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp, cst.Ellipsis,
)


def parenthesized(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``expr`` wrapped in parentheses unless it is an atom (a name, a call,
    an attribute...) or already parenthesised, so that moving it into
    another expression cannot change how it binds (``(a + b).float()``)."""
    if isinstance(expr, _ATOMS) or expr.lpar:
        if isinstance(expr, cst.Tuple) and not expr.lpar:
            return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return expr
    return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def keep_outer_parens(old: cst.BaseExpression, new: cst.BaseExpression) -> cst.BaseExpression:
    """Carry the parentheses written around ``old`` over to ``new``."""
    if old.lpar and not new.lpar:
        return new.with_changes(lpar=old.lpar, rpar=old.rpar)
    return new


def activation_input(call: cst.Call, qualified: bool) -> Optional[cst.BaseExpression]:
    """The tensor an activation call applies to: ``x`` in
    ``torch.softmax(x, 1)`` (``qualified``: a function from an import) or in
    ``x.softmax(dim=1)`` (a tensor method)."""
    if qualified:
        return call_arg(call, 0, "input")
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.value
    return None


def unwrap(call: cst.Call, inner: cst.BaseExpression) -> Callable[[cst.CSTNode], cst.CSTNode]:
    """A replacement turning ``call`` into its argument ``inner``."""

    def replace(updated: cst.CSTNode) -> cst.CSTNode:
        return keep_outer_parens(call, parenthesized(inner))

    return replace


def count_name_loads(root: cst.CSTNode, name: str) -> int:
    """How many times ``name`` is read or written as a variable under
    ``root`` (attribute names and keyword names are not variables)."""
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            if node.value == name:
                count += 1
            continue
        if isinstance(node, cst.Attribute):
            stack.append(node.value)
            continue
        if isinstance(node, cst.Arg):
            stack.append(node.value)
            continue
        stack.extend(node.children)
    return count


def prepend_statement(code: str) -> Callable[[cst.CSTNode], cst.CSTNode]:
    """A replacement for an indented block that adds the statement ``code``
    at its top (before any comment heading the first statement)."""
    statement = cst.parse_statement(code.rstrip("\n") + "\n")

    def replace(updated: cst.CSTNode) -> cst.CSTNode:
        assert isinstance(updated, cst.IndentedBlock)
        return updated.with_changes(body=[statement, *updated.body])

    return replace


def renamed_method(call: cst.Call, new_name: str) -> Optional[cst.Call]:
    """``x.softmax(1)`` / ``F.softmax(x, 1)`` with the last name of the
    callee replaced (``x.log_softmax(1)`` / ``F.log_softmax(x, 1)``); None
    for a bare-name callee (``softmax(x)``), whose new name may not be imported."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return None
    return call.with_changes(func=func.with_changes(attr=cst.Name(new_name)))


def with_argument(call: cst.Call, keyword: str, position: Optional[int], value: str) -> cst.Call:
    """``call`` with the argument ``keyword`` (or the positional one at
    ``position``) set to the expression ``value``: replaced where present
    (``dim=None``), else appended as ``keyword=value``."""
    expression = cst.parse_expression(value)
    args = list(call.args)
    index = 0
    for i, arg in enumerate(args):
        if arg.keyword is not None and arg.keyword.value == keyword:
            args[i] = arg.with_changes(value=expression)
            return call.with_changes(args=args)
        if arg.keyword is None and not arg.star:
            if position is not None and index == position:
                args[i] = arg.with_changes(value=expression)
                return call.with_changes(args=args)
            index += 1
    new = cst.Arg(
        keyword=cst.Name(keyword),
        value=expression,
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )
    if args and isinstance(args[-1].comma, cst.Comma):
        # a trailing comma stays trailing: f(x,) -> f(x, dim=-1,)
        last_comma = args[-1].comma
        args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        new = new.with_changes(comma=last_comma)
    return call.with_changes(args=[*args, new])


def call_without_method(call: cst.Call) -> Optional[cst.Call]:
    """``model.forward(x)`` -> ``model(x)``."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return None
    return call.with_changes(func=parenthesized(func.value))
