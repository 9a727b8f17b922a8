"""Security: users, passwords, tokens, roles and permissions (later: TOTP, vault, audit chain).

Modules (import them directly; this package re-exports nothing so imports stay cheap and acyclic):

* :mod:`.passwords`   Argon2id hashing, verification, generated passwords.
* :mod:`.tokens`      Ed25519-signed access JWTs (:class:`~.tokens.TokenSigner`), signing-key storage.
* :mod:`.users`       :class:`~.users.UserStore`: accounts, policy checks, disabling.
* :mod:`.auth`        :class:`~.auth.AuthService`: login, refresh rotation with reuse detection,
                      logout, access-token authentication into a :class:`~.auth.Principal`.
* :mod:`.permissions` roles, permissions, the per-RPC permission table (fail closed).
"""
