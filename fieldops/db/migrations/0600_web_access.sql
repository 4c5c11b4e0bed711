-- Web access: users and roles, login attempts (rate limiting), customer tracking tokens,
-- processed idempotency keys of the JSON API.

CREATE TABLE users (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 100),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'dispatcher', 'technician')),
    technician_id integer UNIQUE REFERENCES technicians (id),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'technician') = (technician_id IS NOT NULL))
);

-- Failed logins per (username, address); rows older than the window are ignored and pruned.
CREATE TABLE login_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL,
    address text NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON login_attempts (username, address, attempted_at);

-- Only the SHA-256 of a token is stored; the token itself is shown once, in the tracking link.
CREATE TABLE tracking_tokens (
    token_hash bytea PRIMARY KEY,
    job_id integer NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON tracking_tokens (job_id);

-- A retried request with the same key (per user) returns the stored response instead of re-applying.
CREATE TABLE idempotency_keys (
    user_id integer NOT NULL REFERENCES users (id),
    key text NOT NULL CHECK (length(key) BETWEEN 8 AND 200),
    request_path text NOT NULL,
    status_code integer NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
