"""``JsonFile``: JSON text and file round trips for any type with ``to_dict``/``from_dict``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonFile:
    """Mixin: ``to_json``/``from_json``/``save``/``load`` around the class's ``to_dict`` and
    ``from_dict(data, source=...)``; malformed text or an unreadable file raise ``json_error``."""

    json_error: type[Exception] = ValueError
    json_what: str = "file"

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - provided by the class
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, *, source: str | None = None):
        source = source or cls.json_what
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise cls.json_error(f"{source}:{error.lineno}: not valid JSON ({error.msg})") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike):
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise cls.json_error(f"{path}: cannot read {cls.json_what} file ({error.strerror})") from None
        return cls.from_json(text, source=str(path))
