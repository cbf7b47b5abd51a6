"""Config blocks -> objects: the one way a block of ours becomes what it configures.

A block feeds a frozen dataclass, or the keyword parameters of a constructor or function of
ours (:func:`settings_from`, which :func:`check_settings` serves). What a block holds is
declared once, on each field or parameter: its type (``int``, ``float``, ``bool``, ``str``,
``None``-able, lists, tuples, ``Literal`` for the allowed values, a dataclass for a block
inside the block) and, with ``Annotated``, its range (a :class:`Constraint` such as
:data:`POSITIVE`; :data:`NON_EMPTY` for a list that needs an entry), e.g.
``d_emb: Annotated[int, POSITIVE]``. Rules between the keys of one block are the target's
``config_rules(values, key)``, which returns the problems found (``key(name)`` is a key's
full name). No field or parameter a block feeds has a default: the YAML under ``conf/``
holds every value. A problem is one :class:`ConfigValueError` line naming the full key,
e.g. ``model.network.l1 (alias model.l1): expected an integer, got 'abc'``.

Third-party objects (the Lightning trainer, loggers and callbacks, the torch optimizer) stay
Hydra ``_target_`` blocks built by ``hydra.utils.instantiate``: their parameters, types and
defaults are declared by their own libraries, which we can neither annotate nor strip of
defaults, and a block that names them passes on whatever key the library takes. The few of
their keys that we check (``optimizer.lr``...) are declared by a dataclass of ours and
checked with :func:`check_values`.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Annotated, Any, Literal, Union

from hydra.utils import get_object

# the keys of a `_target_` block that Hydra reads, not arguments
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})


class ConfigValueError(ValueError):
    """A config key that is missing, unknown, of the wrong type or out of range."""


# keys of the stable interface (conf/model/asl.yaml) that interpolate into a block's key
ALIASES = {
    "model.network.l1": "model.l1",
    "model.network.l2": "model.l2",
    "model.network.l3": "model.l3",
    "model.sensitivity.evaluator_layers": "model.l4",
    "model.network.d_emb": "model.d_emb",
    "model.network.n_heads": "model.n_heads",
    "model.network.head_width": "model.head_width",
    "model.network.input_dim": "dataset.input_dim",
    "model.network.max_seq_len": "dataset.max_seq_len",
}


@dataclass(frozen=True)
class Constraint:
    """The range of a value (of each entry of a list): ``test(value)`` holds; ``text`` says
    so in a message ("> 0"). ``minimum`` is the smallest integer it admits and
    ``trusted_max`` the largest a checkpoint may ask for before anything is built from it
    (:func:`trusted_bounds`; None: no bound a checkpoint is held to)."""

    test: Callable[[Any], bool]
    text: str
    minimum: int | None
    trusted_max: int | None

    def up_to(self, trusted_max: int) -> Constraint:
        """This constraint, a checkpoint's value also at most ``trusted_max``."""
        return replace(self, trusted_max=trusted_max)


def _constraint(test: Callable[[Any], bool], text: str, minimum: int | None = None) -> Constraint:
    return Constraint(test, text, minimum, None)


POSITIVE = _constraint(lambda v: v > 0, "> 0", 1)
NON_NEGATIVE = _constraint(lambda v: v >= 0, ">= 0", 0)
FRACTION = _constraint(lambda v: 0 <= v <= 1, "in [0, 1]")
OPEN_FRACTION = _constraint(lambda v: 0 < v < 1, "in (0, 1)")
UP_TO_ONE = _constraint(lambda v: 0 < v <= 1, "in (0, 1]")
BELOW_ONE = _constraint(lambda v: 0 <= v < 1, "in [0, 1)")
ODD = _constraint(lambda v: v > 0 and v % 2 == 1, "a positive odd number", 1)
FINITE_POSITIVE = _constraint(lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
# what lightning's seed_everything accepts (numpy's seed range)
SEED = _constraint(lambda v: 0 <= v < 2**32, "in [0, 2**32)", 0)


def at_least(minimum: int) -> Constraint:
    """An integer of at least ``minimum``."""
    return _constraint(lambda v: v >= minimum, f">= {minimum}", minimum)


class NonEmpty:
    """``Annotated`` marker of a list that needs at least one entry."""


NON_EMPTY = NonEmpty()


@dataclass(frozen=True)
class Declared:
    """What a field or parameter declares: its type and its ``Annotated`` metadata."""

    hint: Any
    constraints: tuple[Constraint, ...]
    non_empty: bool


def key_name(key: str) -> str:
    """``key`` with its stable-interface alias: ``model.network.l1 (alias model.l1)``."""
    return f"{key} (alias {ALIASES[key]})" if key in ALIASES else key


def declared(target: Callable[..., Any]) -> dict[str, Declared]:
    """The fields of a dataclass, or the parameters of a constructor or function (less
    ``self``, ``*args``, ``**kwargs``), with what each declares."""
    if is_dataclass(target):
        names = [f.name for f in fields(target)]
    else:
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        params = inspect.signature(target).parameters.values()
        names = [p.name for p in params if p.kind not in variadic and p.name != "self"]
    init = target.__init__ if inspect.isclass(target) and not is_dataclass(target) else target
    hints = typing.get_type_hints(init, include_extras=True)
    return {name: _declaration(hints.get(name, Any)) for name in names}


def _declaration(hint: Any) -> Declared:
    if typing.get_origin(hint) is not Annotated:
        return Declared(hint, (), False)
    base, *extras = typing.get_args(hint)
    constraints = tuple(e for e in extras if isinstance(e, Constraint))
    return Declared(base, constraints, any(isinstance(e, NonEmpty) for e in extras))


def check_settings(
    target: Callable[..., Any], block: Mapping[str, Any], where: str, supplied: Sequence[str] = ()
) -> dict[str, Any]:
    """The keyword arguments that ``block`` (the config block at the full key ``where``)
    gives ``target``, checked: the keys are exactly the declared ones less ``supplied``
    (those come from the code), each value fits its type and constraints, and the
    target's ``config_rules`` hold. A list given for a tuple becomes a tuple (YAML has
    none); a block for a dataclass-typed field becomes that dataclass (:func:`settings_from`
    at ``where.field``).

    Raises:
        ConfigValueError: one line naming each key at fault.
    """
    declarations = {n: d for n, d in declared(target).items() if n not in supplied}
    _check_keys(set(block), set(declarations), where)
    values, problems = {}, []
    for name, value in block.items():
        key, declaration = f"{where}.{name}", declarations[name]
        if is_dataclass(declaration.hint):
            if not isinstance(value, Mapping):
                raise ConfigValueError(f"{key}: expected a block of keys, got {value!r}")
            values[name] = settings_from(declaration.hint, value, key)
            continue
        problem = _value_problem(key, value, declaration)
        if problem:
            problems.append(problem)
        values[name] = _tuple_if_needed(value, declaration.hint)
    rules = getattr(target, "config_rules", None)
    if not problems and rules is not None:
        problems = rules(values, lambda name: key_name(f"{where}.{name}"))
    if problems:
        raise ConfigValueError("; ".join(problems))
    return values


def settings_from(
    target: Callable[..., Any], block: Mapping[str, Any], where: str, **supplied: Any
) -> Any:
    """``target(**block, **supplied)``, the block checked first (:func:`check_settings`):
    a settings dataclass, or the object a constructor of ours builds."""
    return target(**check_settings(target, block, where, tuple(supplied)), **supplied)


def target_of(block: Mapping[str, Any]) -> Callable[..., Any] | None:
    """What a block of ours feeds: the class or function its ``_target_`` names, or that
    class's ``settings_class`` where it has one (a data module's block feeds that
    dataclass); None for a third-party ``_target_`` or none."""
    target = block.get("_target_")
    if not isinstance(target, str) or not target.startswith("asl_tal."):
        return None
    found = get_object(target)
    return getattr(found, "settings_class", found)


def from_target(block: Mapping[str, Any], where: str, **supplied: Any) -> Any:
    """What the ``_target_`` of a block of ours builds from the block's other keys and the
    ``supplied`` arguments (:func:`settings_from`). Hydra's own keys (``_partial_``...) mean
    nothing here: the code supplies what a partial would leave out."""
    values = {key: value for key, value in block.items() if key not in HYDRA_KEYS}
    return settings_from(get_object(block["_target_"]), values, where, **supplied)


def check_values(block: Mapping[str, Any], where: str, declared_by: Callable[..., Any]) -> None:
    """Raise like :func:`check_settings` when a value of ``block`` that ``declared_by``
    declares does not fit its declaration; the keys it does not declare are not checked
    (a third-party block: the library takes them). ``where`` is the block's full key (""
    for top-level keys)."""
    declarations = declared(declared_by)
    problems = [
        _value_problem(f"{where}.{name}" if where else name, value, declarations[name])
        for name, value in block.items()
        if name in declarations
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ConfigValueError("; ".join(problems))


def trusted_bounds(target: Callable[..., Any]) -> dict[str, tuple[int, int]]:
    """``(minimum, trusted_max)`` of each field or parameter of ``target`` that declares
    the largest value a checkpoint may ask for (:meth:`Constraint.up_to`)."""
    return {
        name: (c.minimum, c.trusted_max)
        for name, d in declared(target).items()
        for c in d.constraints
        if c.trusted_max is not None
    }


def _check_keys(given: set[str], names: set[str], where: str) -> None:
    unknown, missing = sorted(given - names), sorted(names - given)
    if unknown or missing:
        parts = [f"unknown {', '.join(f'{where}.{k}' for k in unknown)}"] if unknown else []
        parts += [f"missing {', '.join(f'{where}.{k}' for k in missing)}"] if missing else []
        raise ConfigValueError(
            f"{where}: {'; '.join(parts)} (known keys: {', '.join(sorted(names))})"
        )


def _value_problem(key: str, value: Any, declaration: Declared) -> str | None:
    """What is wrong with ``value`` at ``key`` (None: nothing): type first, then an empty
    list that needs an entry, then the constraints (None passes; a list: every entry)."""
    if not matches(value, declaration.hint):
        return f"{key_name(key)}: expected {describe(declaration.hint)}, got {value!r}"
    within = "".join(f" {c.text}" for c in declaration.constraints)
    if declaration.non_empty and _is_list(value) and not value:
        return f"{key_name(key)}: must list at least one value{within}, got []"
    values = value if _is_list(value) else [value]
    for constraint in declaration.constraints:
        if not all(v is None or _satisfies(constraint.test, v) for v in values):
            return f"{key_name(key)}: must be {constraint.text}, got {value!r}"
    return None


def _satisfies(test: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(test(value))
    except TypeError:  # no annotation said what the value must be: a string, say
        return False


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _tuple_if_needed(value: Any, hint: Any) -> Any:
    arms = typing.get_args(hint) if _is_union(hint) else (hint,)
    wants_tuple = any(typing.get_origin(a) is tuple for a in arms)
    return tuple(value) if wants_tuple and isinstance(value, list) else value


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits an annotation (ints pass as floats, lists as tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if _is_union(hint):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple or origin in (list, Sequence) or hint in (list, tuple, Sequence):
        if not _is_list(value):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(matches, value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    try:
        return isinstance(value, origin or hint)
    except TypeError:  # an annotation isinstance cannot test: not checked
        return True


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def describe(hint: Any) -> str:
    """An annotation in words: ``int | list[int]`` -> ``an integer or a list of integers``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return "null"
    if _is_union(hint):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    simple = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in simple:
        return simple[hint]
    if origin is tuple and args and args[-1] is not Ellipsis:
        kinds = {describe(a) for a in args}
        return f"a list of {len(args)} " + (
            _PLURAL.get(args[0], "values") if len(kinds) == 1 else "values"
        )
    if origin in (list, tuple, Sequence) and args:
        return "a list of " + _PLURAL.get(args[0], f"({describe(args[0])})")
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        return "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))
