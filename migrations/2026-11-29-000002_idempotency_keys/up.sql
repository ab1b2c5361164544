-- Responses of requests sent with an Idempotency-Key (draft-ietf-httpapi-idempotency-key-header),
-- written in the same transaction as the write they answer, so that every instance replays them
-- and no crash can keep one without the other. The primary key is unique on purpose: the
-- no-unique-constraint rule is about products.
CREATE TABLE idempotency_keys (
    -- Whose key: a fingerprint of the caller's API token, or '' when tokens are off.
    scope       text        NOT NULL,
    key         text        NOT NULL,
    -- SHA-256 of the request (method, path, body): the same key with another request is a 422.
    fingerprint bytea       NOT NULL,
    status      smallint    NOT NULL,
    -- The answer's headers worth replaying (Location, ETag, Content-Type): [[name, value], ...].
    headers     jsonb       NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

-- The cleanup deletes expired keys oldest first.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
