"""Rendering a request template's ``{name}`` placeholders at run time, refusing values that would widen a
request to more than one record or tenant."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

from retention.subprocessors.errors import SubprocessorError

# Path values that would change which resource a path names: "" drops a segment, and "." / ".." are
# resolved away by the HTTP client (httpx turns /v1/accounts/../contacts into /v1/contacts), so a
# request aimed at one tenant's records would be sent to the collection of every tenant.
UNAIMED_PATH_VALUES = frozenset({"", ".", ".."})


def render(template: str, variables: dict[str, Any], *, in_path: bool = False, join: str = ",") -> str:
    """``{name}`` replaced by its value (a list is joined); path values are percent-encoded.

    Refused with a SubprocessorError naming the placeholder, before anything is sent: an empty value
    anywhere (an empty filter or header can widen a request to every tenant), and ``.`` or ``..`` in a
    path, whether the value is the account id, an id a provider returned, or a fan-out binding."""
    def value(name: str) -> str:
        v = variables[name]
        parts = [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
        bad = [p for p in parts if (p in UNAIMED_PATH_VALUES if in_path else p == "")]
        if bad or not parts:
            shown = repr(bad[0]) if bad else "an empty list"  # only "", "." or "..": never personal data
            raise SubprocessorError(f"{{{name}}} is {shown} in the {'path' if in_path else 'request'}, which "
                                    "would not name one record or tenant; nothing was sent")
        return join.join(quote(p, safe="") if in_path else p for p in parts)

    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(value(name))
    return "".join(out)


def render_body(template: Any, variables: dict[str, Any]) -> Any:
    """A JSON template: ``"{ids}"`` alone becomes the list itself; other strings are rendered."""
    if isinstance(template, str):
        whole = template[1:-1] if template.startswith("{") and template.endswith("}") else None
        if whole in variables and isinstance(variables[whole], (list, tuple)):
            return list(variables[whole])
        if whole in variables and isinstance(variables[whole], int):
            return variables[whole]  # a JSON number stays a number (Datadog's epoch milliseconds)
        return render(template, variables)
    if isinstance(template, dict):
        return {k: render_body(v, variables) for k, v in template.items()}
    if isinstance(template, list):
        return [render_body(v, variables) for v in template]
    return template

