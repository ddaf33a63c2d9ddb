-- App registrations (Admin → Provider apps) and the instance's keys for private_key_jwt.

-- One app registration per EHR platform, made by the person running Fasten with that vendor, so
-- members connect without knowing or typing a client id. `platform` is a catalog platform id
-- ('epic', 'oracle-health', ...) or 'other' for every other SMART server. The client secret is
-- sealed by the vault (label `provider-app/<platform>/client-secret`), like the connections'
-- secrets. `scopes` empty means the catalog's default scopes.
CREATE TABLE provider_apps (
    platform      TEXT    PRIMARY KEY,
    client_id     TEXT    NOT NULL CHECK (client_id <> ''),
    client_auth   TEXT    NOT NULL CHECK (client_auth IN ('none', 'client_secret', 'private_key_jwt')),
    client_secret BLOB,
    -- Which instance key signs this registration's client assertions (private_key_jwt).
    signing_alg   TEXT    NOT NULL DEFAULT 'ES384' CHECK (signing_alg IN ('ES384', 'RS384')),
    scopes        TEXT    NOT NULL DEFAULT '',
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- The instance's signing key pairs, published at /.well-known/jwks.json. The private key (PKCS#8
-- DER for ES384, PKCS#1 DER for RS384, base64) is sealed by the vault under `client-key/<kid>`.
-- A key signs from `signing_from` until the next key of its algorithm takes over; a new key is
-- published a grace period before it signs, and an old one a grace period after it stopped, so
-- servers that cache the JWK Set never meet an unknown or missing key. Retired keys are deleted.
CREATE TABLE client_keys (
    id           INTEGER PRIMARY KEY,
    kid          TEXT    NOT NULL UNIQUE,
    alg          TEXT    NOT NULL CHECK (alg IN ('ES384', 'RS384')),
    public_jwk   TEXT    NOT NULL,
    private_key  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    signing_from INTEGER NOT NULL
);
CREATE INDEX client_keys_by_alg ON client_keys (alg, signing_from);

-- Connections gain `private_key_jwt`, and `registration`: the platform whose registration they
-- were made with. Such a connection takes its client id, authentication and secret from that
-- registration at every use, so a secret the administrator replaces or a key rotation reaches
-- every member's connection without a reconnect; its own client_secret stays NULL. SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE connections_new (
    source_id          INTEGER PRIMARY KEY REFERENCES sources (id) ON DELETE CASCADE,
    catalog_id         TEXT,
    fhir_base          TEXT    NOT NULL,
    authorize_url      TEXT    NOT NULL,
    token_url          TEXT    NOT NULL,
    client_id          TEXT    NOT NULL,
    client_secret      BLOB,
    client_auth        TEXT    NOT NULL CHECK (client_auth IN ('none', 'basic', 'post',
                                                               'private_key_jwt')),
    scopes_requested   TEXT    NOT NULL,
    scopes_granted     TEXT,
    patient_id         TEXT,
    access_token       BLOB,
    refresh_token      BLOB,
    access_expires_at  INTEGER,
    refresh_expires_at INTEGER,
    status             TEXT    NOT NULL CHECK (status IN ('connected', 'needs_reconnect')),
    status_message     TEXT,
    sync_settings      TEXT    NOT NULL DEFAULT '[]',
    next_sync_at       INTEGER,
    last_sync_at       INTEGER,
    sync_cursor        TEXT,
    connected_at       INTEGER NOT NULL,
    oauth_quirks       TEXT    NOT NULL DEFAULT '{}',
    access_lifetime    INTEGER,
    registration       TEXT
);
INSERT INTO connections_new (source_id, catalog_id, fhir_base, authorize_url, token_url, client_id,
    client_secret, client_auth, scopes_requested, scopes_granted, patient_id, access_token,
    refresh_token, access_expires_at, refresh_expires_at, status, status_message, sync_settings,
    next_sync_at, last_sync_at, sync_cursor, connected_at, oauth_quirks, access_lifetime)
SELECT source_id, catalog_id, fhir_base, authorize_url, token_url, client_id, client_secret,
    client_auth, scopes_requested, scopes_granted, patient_id, access_token, refresh_token,
    access_expires_at, refresh_expires_at, status, status_message, sync_settings, next_sync_at,
    last_sync_at, sync_cursor, connected_at, oauth_quirks, access_lifetime
FROM connections;
DROP TABLE connections;
ALTER TABLE connections_new RENAME TO connections;
CREATE INDEX connections_due ON connections (next_sync_at) WHERE next_sync_at IS NOT NULL;
