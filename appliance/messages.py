"""Text a person reads, marked for translation without a web framework.

The data layer and the box's features mark messages with `lazy` (translated when shown)
or translate them now with `gettext`. Both go through the translator the web app
installs (`use`: Flask-Babel's, in the language of the request); elsewhere (the CLI,
jobs) messages stay in English. `make messages` extracts `_` and `_l` as before.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator

# The interface's languages, each named in itself (a reader who cannot read the current
# language still finds their own). Catalogues: appliance/web/translations/.
LANGUAGES = {"en": "English", "fr": "Français", "sw": "Kiswahili", "ar": "العربية"}
RIGHT_TO_LEFT = {"ar"}
DEFAULT_LANGUAGE = "en"


def _english(text: str, **params: object) -> str:
    return text % params if params else text


_translate: Callable[..., str] = _english


def use(translate: Callable[..., str]) -> None:
    """Translate every message through `translate(text, **params)` from now on."""
    global _translate
    _translate = translate


def gettext(text: str, **params: object) -> str:
    """`text` translated now, with %(name)s parameters filled in."""
    return _translate(text, **params)


class LazyString:
    """A message translated each time it becomes text, so it follows the reader's language."""

    __slots__ = ("_text", "_params")

    def __init__(self, text: str, params: dict[str, object]) -> None:
        self._text, self._params = text, params

    def __str__(self) -> str:
        return _translate(self._text, **self._params)

    def __html__(self) -> str:
        return html.escape(str(self))  # parameters may hold what a user typed

    def __repr__(self) -> str:
        return f"lazy({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __len__(self) -> int:
        return len(str(self))

    def __contains__(self, part: str) -> bool:
        return part in str(self)

    def __iter__(self) -> Iterator[str]:
        return iter(str(self))

    def __getitem__(self, index: int | slice) -> str:
        return str(self)[index]

    def __add__(self, other: object) -> str:
        return str(self) + str(other)

    def __radd__(self, other: object) -> str:
        return str(other) + str(self)

    def __getattr__(self, name: str) -> object:
        return getattr(str(self), name)


def lazy(text: str, **params: object) -> LazyString:
    """`text` marked for translation, translated when it is shown."""
    return LazyString(text, params)
