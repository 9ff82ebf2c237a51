"""opd_client: a Python client for opd's socket protocol (docs/protocol.md), standard library only.

    from opd_client import Client, run
    print(run("python", "print(input().upper())", stdin="hi").stdout)
"""
from .client import Client, Execution, Session, exec_request, run, session_exec_request
from .errors import (BadRequest, Busy, ConnectionClosed, FrameTooLarge, GuestTimeout,
                     InternalError, NotFound, OpdError, PermissionDenied, PoolExhausted,
                     ProtocolError, QuotaExceeded, ShuttingDown, Unavailable, UnknownLanguage,
                     UnknownOp, VMFailed, error_from_answer)
from .protocol import PROTO_VERSION, Event, Result

__version__ = "0.1.0"

__all__ = [
    "Client", "Execution", "Session", "Event", "Result", "run", "exec_request",
    "session_exec_request", "PROTO_VERSION", "NotFound", "QuotaExceeded",
    "OpdError", "BadRequest", "FrameTooLarge", "UnknownOp", "UnknownLanguage", "PoolExhausted",
    "GuestTimeout", "VMFailed", "Busy", "ShuttingDown", "PermissionDenied", "InternalError",
    "Unavailable", "ConnectionClosed", "ProtocolError", "error_from_answer",
]
