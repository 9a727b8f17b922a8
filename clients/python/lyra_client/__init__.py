"""lyra_client: typed Python SDK for the Lyra appliance's gRPC API, and the ``lyractl`` CLI.

Public API::

    from lyra_client import LyraClient, LyraError, Unauthenticated, ...
    from lyra_client.convert import to_dict        # protobuf message -> JSON-ready dict

Methods return the protobuf response messages of ``lyra.v1`` (decimals are strings); see
:mod:`lyra_client.client` for the conventions.
"""

from .client import DEFAULT_TARGET, LyraClient
from .errors import (
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    LyraError,
    MfaRequired,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "DEFAULT_TARGET",
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "LyraClient",
    "LyraError",
    "MfaRequired",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
