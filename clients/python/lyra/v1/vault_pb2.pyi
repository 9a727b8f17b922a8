import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VaultState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VAULT_STATE_UNSPECIFIED: _ClassVar[VaultState]
    VAULT_STATE_UNINITIALIZED: _ClassVar[VaultState]
    VAULT_STATE_SEALED: _ClassVar[VaultState]
    VAULT_STATE_UNSEALED: _ClassVar[VaultState]
VAULT_STATE_UNSPECIFIED: VaultState
VAULT_STATE_UNINITIALIZED: VaultState
VAULT_STATE_SEALED: VaultState
VAULT_STATE_UNSEALED: VaultState

class VaultStatus(_message.Message):
    __slots__ = ("state", "data_key_version", "kdf", "credentials", "unsealed_since", "stale_credentials")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATA_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KDF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    UNSEALED_SINCE_FIELD_NUMBER: _ClassVar[int]
    STALE_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    state: VaultState
    data_key_version: int
    kdf: str
    credentials: int
    unsealed_since: _timestamp_pb2.Timestamp
    stale_credentials: int
    def __init__(self, state: _Optional[_Union[VaultState, str]] = ..., data_key_version: _Optional[int] = ..., kdf: _Optional[str] = ..., credentials: _Optional[int] = ..., unsealed_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stale_credentials: _Optional[int] = ...) -> None: ...

class GetVaultStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InitializeVaultRequest(_message.Message):
    __slots__ = ("passphrase",)
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    passphrase: str
    def __init__(self, passphrase: _Optional[str] = ...) -> None: ...

class UnsealVaultRequest(_message.Message):
    __slots__ = ("passphrase",)
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    passphrase: str
    def __init__(self, passphrase: _Optional[str] = ...) -> None: ...

class SealVaultRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChangeVaultPassphraseRequest(_message.Message):
    __slots__ = ("current_passphrase", "new_passphrase")
    CURRENT_PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    current_passphrase: str
    new_passphrase: str
    def __init__(self, current_passphrase: _Optional[str] = ..., new_passphrase: _Optional[str] = ...) -> None: ...

class RotateDataKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Credential(_message.Message):
    __slots__ = ("credential_id", "venue", "label", "create_time", "rotate_time", "fingerprint", "version", "rotation_pending", "pending_fingerprint", "age_days", "stale", "fields")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROTATION_PENDING_FIELD_NUMBER: _ClassVar[int]
    PENDING_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    venue: str
    label: str
    create_time: _timestamp_pb2.Timestamp
    rotate_time: _timestamp_pb2.Timestamp
    fingerprint: str
    version: int
    rotation_pending: bool
    pending_fingerprint: str
    age_days: int
    stale: bool
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, credential_id: _Optional[str] = ..., venue: _Optional[str] = ..., label: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fingerprint: _Optional[str] = ..., version: _Optional[int] = ..., rotation_pending: _Optional[bool] = ..., pending_fingerprint: _Optional[str] = ..., age_days: _Optional[int] = ..., stale: _Optional[bool] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class CredentialSecrets(_message.Message):
    __slots__ = ("api_key", "secret", "passphrase", "uid")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    secret: str
    passphrase: str
    uid: str
    def __init__(self, api_key: _Optional[str] = ..., secret: _Optional[str] = ..., passphrase: _Optional[str] = ..., uid: _Optional[str] = ...) -> None: ...

class CreateCredentialRequest(_message.Message):
    __slots__ = ("venue", "label", "secrets")
    VENUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    venue: str
    label: str
    secrets: CredentialSecrets
    def __init__(self, venue: _Optional[str] = ..., label: _Optional[str] = ..., secrets: _Optional[_Union[CredentialSecrets, _Mapping]] = ...) -> None: ...

class ListCredentialsRequest(_message.Message):
    __slots__ = ("venue",)
    VENUE_FIELD_NUMBER: _ClassVar[int]
    venue: str
    def __init__(self, venue: _Optional[str] = ...) -> None: ...

class ListCredentialsResponse(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ...) -> None: ...

class GetCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class RotateCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "secrets")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    secrets: CredentialSecrets
    def __init__(self, credential_id: _Optional[str] = ..., secrets: _Optional[_Union[CredentialSecrets, _Mapping]] = ...) -> None: ...

class ConfirmCredentialRotationRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class AbortCredentialRotationRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class DeleteCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class DeleteCredentialResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
