"""The JSON request parser: bodies bounded in shape (nesting, array and object sizes, string
lengths) as well as in size, so that no body is a 500."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from todos.models import TITLE_MAX_LENGTH

# Every body this API takes is one object of scalars (depth 1). A wrongly nested value one or
# two levels down (`{"title": ["x"]}`) still reaches the serializer, which names the field and
# the type it wants; anything deeper is refused here. Python's json module would otherwise
# recurse until RecursionError (a 500) at about a thousand levels.
MAX_DEPTH = 4
# A todo has 4 writable fields and is represented with 8; a client sending a whole
# representation back, with a few typos, stays far below 16 members and gets the serializer's
# "Unknown field" per name. No field takes an array, so arrays get the same bound.
MAX_OBJECT_MEMBERS = 16
MAX_ARRAY_LENGTH = 16
# The longest string any field takes is a title (500 characters). Up to twice that, the
# serializer answers with its own error naming the field; beyond, the parser refuses the body.
# Object keys count too: an unknown key is echoed back in the error.
MAX_STRING_LENGTH = 2 * TITLE_MAX_LENGTH


def _location(path: tuple) -> str:
    """`$.title[0]`: where in the body a value sits, as JSONPath writes it. Keys are cut to 40
    characters and escaped, since the one being refused may be long or no valid text."""
    return "$" + "".join(
        f"[{part}]"
        if isinstance(part, int)
        else "." + part[:40].encode("utf-8", "backslashreplace").decode()
        for part in path
    )


def _check_string(value: str, path: tuple, what: str) -> None:
    if len(value) > MAX_STRING_LENGTH:
        raise ParseError(
            f"JSON {what} at {_location(path)} is longer than {MAX_STRING_LENGTH} characters."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # `"\ud800"` is valid JSON but no text: the database could not store it.
        raise ParseError(
            f"JSON {what} at {_location(path)} is not valid Unicode (a lone surrogate)."
        ) from None


def check_shape(data) -> None:
    """Raise `ParseError` naming the first value of `data` beyond the limits above.

    Iterative, so a body of any shape costs no recursion; it stops at the first violation.
    """
    stack = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            _check_string(value, path, "string")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels at {_location(path)}.")
        if isinstance(value, dict):
            if len(value) > MAX_OBJECT_MEMBERS:
                raise ParseError(
                    f"JSON object at {_location(path)} has more than {MAX_OBJECT_MEMBERS} members."
                )
            for key, item in value.items():
                _check_string(key, (*path, key), "key")
                stack.append((item, depth + 1, (*path, key)))
        else:
            if len(value) > MAX_ARRAY_LENGTH:
                raise ParseError(
                    f"JSON array at {_location(path)} has more than {MAX_ARRAY_LENGTH} items."
                )
            stack.extend((item, depth + 1, (*path, index)) for index, item in enumerate(value))


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, with every body's shape checked by `check_shape`."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.") from None
        check_shape(data)
        return data
