"""The one ``key=value`` parser of the package: ``--scheduler-args``, ``--optimizer-args``
and the like on every command line (:func:`refimpl.registry.parse_kv` is this function)."""

from __future__ import annotations

__all__ = ["parse_kv"]

_OPEN, _CLOSE = "[(", "])"


def parse_kv(text: str, *, option: str = "--scheduler-args") -> dict[str, object]:
    """Parse ``"k=v,k2=v2"`` into a dict of Python values.

    Values are read as ``int``, ``float`` (``1e-3``, ``inf``, ``-inf``, ``nan``), ``True`` /
    ``False``, ``None`` (any case), a quoted or bare string, or a list: ``milestones=30;60``
    or ``milestones=[30,60]`` (commas inside brackets do not split items); ``(a,b)`` gives a
    tuple (``betas=(0.9,0.999)``).

    Parameters
    ----------
    text : str
        The option's value; empty or blank gives ``{}``.
    option : str
        The option's name, used in error messages.

    Raises
    ------
    ValueError
        An item without ``=``, an empty key or value, a repeated key, or unbalanced brackets;
        the message names ``option``, the item and the fix.

    Examples
    --------
    >>> parse_kv("factor=0.5,patience=3,mode=max,milestones=[30,60],eps=1e-8")
    {'factor': 0.5, 'patience': 3, 'mode': 'max', 'milestones': [30, 60], 'eps': 1e-08}
    """
    out: dict[str, object] = {}
    for item in _split_top(text, ",", option):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"{option}: {item!r} is not of the form key=value; write e.g. "
                             f"{(key or 'name')}=0.5")
        if not value:
            raise ValueError(f"{option}: {item!r} has no value; write {key}=VALUE")
        if key in out:
            raise ValueError(f"{option}: {key!r} is given twice; keep one {key}=...")
        out[key] = _value(value, item, option)
    return out


def _split_top(text: str, sep: str, option: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ValueError(f"{option}: unbalanced {char!r} in {text!r}; close every "
                                 "bracket you open")
        if char == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"{option}: unclosed bracket in {text!r}; close every bracket you open")
    parts.append("".join(current))
    return parts


def _value(text: str, item: str, option: str) -> object:
    """One value: a bracketed list/tuple, a ``;``-separated list, or a scalar."""
    if text[0] in _OPEN and text[-1] == _CLOSE[_OPEN.index(text[0])]:
        inner = text[1:-1].strip()
        values = [_value(p.strip(), item, option) for p in _split_top(inner, ",", option)
                  if p.strip()] if inner else []
        return values if text[0] == "[" else tuple(values)
    if ";" in text:
        return [_scalar(p) for p in text.split(";") if p.strip()]
    return _scalar(text)


def _scalar(text: str) -> object:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
