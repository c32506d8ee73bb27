"""Errors of the consistency checker, in credcore's hierarchy.

    CredgateError
    ├── SourceError          a source cannot be read at all (the CLI exits 2)
    │   ├── SourceUnavailable    an agency URL still failing after its retries
    │   └── AuthorityFeedError   a line of the authority feed is not a valid record
    └── ConfigError
        └── CalendarRangeError   (consistency.calendar) a date the holiday calendar lacks
"""

from __future__ import annotations

from credcore.errors import CredgateError


class SourceError(CredgateError):
    """A source that cannot be opened or read; the message names it."""

    code = "source_error"


class SourceUnavailable(SourceError):
    """A URL that still fails after every retry (an agency so failing is reported unavailable)."""

    code = "source_unavailable"


class AuthorityFeedError(SourceError):
    """The authority's feed has a line that is not a valid record: the whole check stops."""

    code = "authority_feed_malformed"
