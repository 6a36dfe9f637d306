"""The notifier contract: one attempt per call; the delivery loop (auditor.alerting) retries."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from auditor.errors import AuditorError

LIBRARY_LOGGERS = ("httpx", "apprise", "urllib3.connectionpool")  # httpx logs each request's URL at INFO; Apprise and urllib3 (under it) theirs

class AlertError(AuditorError):
    """A delivery failed; `permanent` failures are not retried (the channel is misconfigured)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _ChannelSecrets(logging.Filter):
    """Takes the secret parts of channel URLs out of the records of the libraries that deliver notices: with INFO
    logging on, httpx wrote `POST http://user:password@host/hook?token=…` for every notice."""

    def __init__(self) -> None:
        super().__init__()
        self.values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            query = [value for _key, value in parse_qsl(parts.query, keep_blank_values=False)]
        except ValueError:
            found = {url}
        else:
            found = {parts.password or "", *query, parts.fragment, *(s for s in parts.path.split("/") if len(s) >= 8)}
            if parts.password:
                found.add(f"{parts.username}:{parts.password}")
            if parts.scheme.lower() not in ("http", "https"):  # Apprise services keep tokens where a host would be (tgram://bot:token/chat)
                userinfo, _, host = parts.netloc.rpartition("@")
                found |= {piece for piece in re.split(r"[:@]", f"{userinfo}:{host}") if len(piece) >= 8}
        with self._lock:
            self.values = self.values | {v for v in found if len(v) >= 4}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            text = record.getMessage()
            hidden = text
            for value in sorted(self.values, key=len, reverse=True):
                hidden = hidden.replace(value, "REDACTED")
            if hidden != text:
                record.msg, record.args = hidden, ()
        return True


_SECRETS = _ChannelSecrets()
for _name in LIBRARY_LOGGERS:
    logging.getLogger(_name).addFilter(_SECRETS)


def keep_out_of_logs(url: str) -> None:
    """Have the delivering libraries' log records leave out this channel URL's password, tokens and query values."""
    _SECRETS.add(url)


class Notifier:
    def notify(self, message: str, payload: Mapping[str, Any], *, notice_id: int, sent_at: datetime) -> None:
        """Deliver one notice once. Raises AlertError on failure, returns None on success."""
        raise NotImplementedError
