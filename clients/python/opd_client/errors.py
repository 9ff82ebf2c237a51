"""Typed errors for opd's stable error codes (docs/protocol.md, "Errors").

Every error answer becomes an OpdError subclass chosen by its ``code``; a code this module
does not know becomes a plain OpdError (the protocol says: treat it as a failure).
"""


class OpdError(Exception):
    """An error answer from opd, or a failure to get one.

    code: the stable machine code ("busy", "unknown_language", ...) or None when there was no
    answer; message: opd's human text; id: the request's id; answer: the whole answer frame.
    retryable: whether the protocol says the request may succeed if tried again later.
    retry_after: opd's hint (busy, pool_exhausted) of when a retry is likely to find a VM, in
    seconds, or None.
    """

    code = None
    retryable = False

    def __init__(self, message, code=None, id=None, answer=None, retry_after=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.id = id
        self.answer = answer
        self.retry_after = retry_after

    def __str__(self):
        return f"{self.code}: {self.message}" if self.code else self.message


class BadRequest(OpdError):
    code = "bad_request"


class FrameTooLarge(OpdError):
    code = "frame_too_large"


class UnknownOp(OpdError):
    code = "unknown_op"


class UnknownLanguage(OpdError):
    code = "unknown_language"


class PoolExhausted(OpdError):
    code = "pool_exhausted"
    retryable = True


class GuestTimeout(OpdError):
    """The guest did not answer by the host's deadline (not a program that merely ran too
    long: that is a Result with timed_out=True)."""

    code = "timeout"
    retryable = True


class VMFailed(OpdError):
    code = "vm_failed"
    retryable = True


class Busy(OpdError):
    code = "busy"
    retryable = True


class ShuttingDown(OpdError):
    code = "shutting_down"
    retryable = True


class PermissionDenied(OpdError):
    code = "permission_denied"


class InternalError(OpdError):
    code = "internal_error"


class Unavailable(OpdError):
    """opd runs no untrusted code on this host: its accelerator is TCG (software emulation, no
    isolation boundary) and its configuration does not set allow_tcg = yes. Not retryable:
    nothing changes until the host or the configuration does."""

    code = "unavailable"


class NotFound(OpdError):
    """No such session: it was closed or expired, or it is another user's."""

    code = "not_found"


class QuotaExceeded(OpdError):
    """A count the configuration bounds was reached (session.max, session.max_per_uid): not
    retryable as such; close a session first."""

    code = "quota_exceeded"


class ConnectionClosed(OpdError):
    """opd closed the connection before answering (the request's fate is unknown)."""


class ProtocolError(OpdError):
    """opd sent something that is not a protocol v1 frame (or a frame over the client's
    limit); the connection is dropped."""


_BY_CODE = {cls.code: cls for cls in (BadRequest, FrameTooLarge, UnknownOp, UnknownLanguage,
                                      PoolExhausted, GuestTimeout, VMFailed, Busy, ShuttingDown,
                                      PermissionDenied, InternalError, Unavailable, NotFound,
                                      QuotaExceeded)}


def error_from_answer(answer):
    """The exception for an error answer {"ok": false, "error": {"code", "message"}}."""
    err = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    code = err.get("code") if isinstance(err.get("code"), str) else "internal_error"
    message = err.get("message") if isinstance(err.get("message"), str) else "(no message)"
    ms = err.get("retry_after_ms")
    retry_after = ms / 1000.0 if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0 \
        else None
    cls = _BY_CODE.get(code, OpdError)
    return cls(message, code=code, id=answer.get("id"), answer=answer, retry_after=retry_after)
